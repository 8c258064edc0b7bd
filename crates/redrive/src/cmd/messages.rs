//! `redrive messages`, `redrive dlq` and `redrive report`: people acting on a
//! running server.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::api_client::{encode, ApiClient, ServerArgs};

/// Filters shared by the list commands.
#[derive(clap::Args, Debug, Default)]
pub struct Filters {
    /// Only this destination.
    #[arg(long, value_name = "D")]
    destination: Option<String>,
    /// Only this error class (of the last attempt).
    #[arg(long, value_name = "C")]
    class: Option<String>,
    /// Only this park reason: not_retryable, exhausted, expired, indeterminate.
    #[arg(long, value_name = "R")]
    reason: Option<String>,
    /// Only messages changed within this window (24h) or since an RFC 3339 time.
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// Only messages received on this inbound source.
    #[arg(long, value_name = "S")]
    source: Option<String>,
}

impl Filters {
    /// The filters that are set, as (name, value).
    fn pairs(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            ("destination", &self.destination),
            ("class", &self.class),
            ("reason", &self.reason),
            ("since", &self.since),
            ("source", &self.source),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    }

    fn query(&self) -> String {
        self.pairs()
            .map(|(k, v)| format!("&{k}={}", encode(v)))
            .collect()
    }

    fn body(&self) -> Value {
        Value::Object(
            self.pairs()
                .map(|(k, v)| (k.to_owned(), json!(v)))
                .collect(),
        )
    }
}

/// `redrive messages ...`
#[derive(clap::Subcommand, Debug)]
pub enum MessagesCommand {
    /// List messages: pending ones by due time, delivered ones by delivery
    /// time, the others by id; oldest first.
    List {
        /// Only this state: pending, delivered, parked, discarded.
        #[arg(long, value_name = "S")]
        state: Option<String>,
        #[command(flatten)]
        filters: Filters,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One message and every attempt.
    Show {
        /// The message id.
        id: String,
        /// Print the JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Wait until messages leave `pending`: these ids, or every message
    /// (of a destination). Exit code 0 delivered, 1 parked or discarded,
    /// 2 timed out.
    Wait(super::wait::WaitArgs),
}

/// `redrive dlq ...`
#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// List parked messages.
    List {
        #[command(flatten)]
        filters: Filters,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One parked message and every attempt.
    Show {
        /// The message id.
        id: String,
        /// Print the JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Put parked messages back into delivery: by id, or every one matching
    /// the filters with --all.
    Redrive {
        /// Message ids.
        ids: Vec<String>,
        /// Every parked message that matches the filters.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        filters: Filters,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Correct a parked message's request in $EDITOR (JSON) and save it as
    /// a new revision; then redrive it if asked.
    Edit {
        /// The message id.
        id: String,
        /// Redrive it once saved, without asking.
        #[arg(long, conflicts_with = "no_redrive")]
        redrive: bool,
        /// Do not redrive it, without asking.
        #[arg(long)]
        no_redrive: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Close a parked message as you found it: the request took effect
    /// (--applied: delivered) or did not (--not-applied: sent again).
    Resolve {
        /// The message id.
        id: String,
        /// The request took effect.
        #[arg(
            long,
            required_unless_present = "not_applied",
            conflicts_with = "not_applied"
        )]
        applied: bool,
        /// It did not: send it again.
        #[arg(long)]
        not_applied: bool,
        /// Why, for the audit.
        #[arg(long, value_name = "T")]
        note: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Discard parked messages (kept for audit until retention).
    Discard {
        /// Message ids.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `redrive report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The window: a duration (24h) or an RFC 3339 time.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    since: String,
    /// Print the JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn run_messages(c: MessagesCommand) -> Result<ExitCode> {
    runtime()?.block_on(async move {
        match c {
            MessagesCommand::List {
                state,
                filters,
                limit,
                json,
                server,
            } => {
                list(
                    &ApiClient::new(&server)?,
                    state.as_deref(),
                    &filters,
                    limit,
                    json,
                )
                .await?;
                Ok(ExitCode::SUCCESS)
            }
            MessagesCommand::Show { id, json, server } => {
                show(&ApiClient::new(&server)?, &id, json).await?;
                Ok(ExitCode::SUCCESS)
            }
            MessagesCommand::Wait(a) => super::wait::run(a).await,
        }
    })
}

pub fn run_dlq(c: DlqCommand) -> Result<ExitCode> {
    runtime()?.block_on(async move {
        match c {
            DlqCommand::List {
                filters,
                limit,
                json,
                server,
            } => {
                list(
                    &ApiClient::new(&server)?,
                    Some("parked"),
                    &filters,
                    limit,
                    json,
                )
                .await
            }
            DlqCommand::Show { id, json, server } => {
                show(&ApiClient::new(&server)?, &id, json).await
            }
            DlqCommand::Redrive {
                ids,
                all,
                filters,
                server,
            } => {
                let api = ApiClient::new(&server)?;
                if all {
                    redrive_all(&api, &filters).await
                } else if ids.is_empty() {
                    bail!("give message ids, or --all with filters")
                } else {
                    act(&api, &ids, "redrive").await
                }
            }
            DlqCommand::Discard { ids, server } => {
                act(&ApiClient::new(&server)?, &ids, "discard").await
            }
            DlqCommand::Edit {
                id,
                redrive,
                no_redrive,
                server,
            } => {
                let choice = match (redrive, no_redrive) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                };
                super::people::edit(&ApiClient::new(&server)?, &id, choice).await
            }
            DlqCommand::Resolve {
                id,
                applied,
                note,
                server,
                ..
            } => {
                super::people::resolve(&ApiClient::new(&server)?, &id, applied, note.as_deref())
                    .await
            }
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_report(a: ReportArgs) -> Result<ExitCode> {
    runtime()?.block_on(async move {
        let api = ApiClient::new(&a.server)?;
        let v = api
            .call(
                "GET",
                &format!("/v1/report?since={}", encode(&a.since)),
                None,
            )
            .await?;
        if a.json {
            println!("{v}");
            return Ok(());
        }
        println!(
            "failed attempts since {}",
            v["since"].as_str().unwrap_or("")
        );
        println!(
            "{:<20} {:<22} {:>9} {:>9} {:>9}",
            "destination", "class", "attempts", "messages", "parked"
        );
        let rows = v["failures"].as_array().cloned().unwrap_or_default();
        if rows.is_empty() {
            println!("(none)");
        }
        for r in rows {
            println!(
                "{:<20} {:<22} {:>9} {:>9} {:>9}",
                r["destination"].as_str().unwrap_or(""),
                r["class"].as_str().unwrap_or(""),
                r["attempts"].as_u64().unwrap_or(0),
                r["messages"].as_u64().unwrap_or(0),
                r["parked"].as_u64().unwrap_or(0)
            );
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn list(
    api: &ApiClient,
    state: Option<&str>,
    filters: &Filters,
    limit: usize,
    json: bool,
) -> Result<()> {
    let mut cursor: Option<String> = None;
    let mut shown = 0;
    // Pending messages are listed by due time, which moves while the engine
    // claims and reschedules them: one may come back on a later page.
    let mut seen = std::collections::HashSet::new();
    if !json {
        println!(
            "{:<28} {:<10} {:<14} {:<32} {:>4} {:<14} reason",
            "id", "state", "destination", "request", "try", "class"
        );
    }
    while shown < limit {
        let page = (limit - shown).min(1000);
        let mut path = format!("/v1/messages?limit={page}{}", filters.query());
        if let Some(s) = state {
            path.push_str(&format!("&state={}", encode(s)));
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", encode(c)));
        }
        let v = api.call("GET", &path, None).await?;
        for m in v["messages"].as_array().cloned().unwrap_or_default() {
            if !seen.insert(m["id"].as_str().unwrap_or_default().to_owned()) {
                continue;
            }
            shown += 1;
            if json {
                println!("{m}");
                continue;
            }
            let request = format!(
                "{} {}",
                m["method"].as_str().unwrap_or(""),
                m["path"].as_str().unwrap_or("")
            );
            let row = format!(
                "{:<28} {:<10} {:<14} {:<32} {:>4} {:<14} {}",
                m["id"].as_str().unwrap_or(""),
                m["state"].as_str().unwrap_or(""),
                m["destination"].as_str().unwrap_or(""),
                request.chars().take(32).collect::<String>(),
                m["attempts_in_cycle"].as_u64().unwrap_or(0),
                m["class"].as_str().unwrap_or("-"),
                m["park_reason"].as_str().unwrap_or("")
            );
            println!("{}", row.trim_end());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    Ok(())
}

async fn show(api: &ApiClient, id: &str, json: bool) -> Result<()> {
    let m = api
        .call("GET", &format!("/v1/messages/{}", encode(id)), None)
        .await?;
    if json {
        println!("{m}");
        return Ok(());
    }
    println!("message      {}", m["id"].as_str().unwrap_or(""));
    println!(
        "request      {} {} -> {}",
        m["method"].as_str().unwrap_or(""),
        m["path"].as_str().unwrap_or(""),
        m["destination"].as_str().unwrap_or("")
    );
    println!(
        "state        {}{}",
        m["state"].as_str().unwrap_or(""),
        m["park_reason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    println!(
        "key          {}",
        m["idempotency_key"].as_str().unwrap_or("")
    );
    let in_cycle = m["attempts_in_cycle"].as_u64().unwrap_or(0);
    println!(
        "cycle        {} ({in_cycle} attempt{} in it, {} in all)",
        m["cycle"],
        if in_cycle == 1 { "" } else { "s" },
        m["total_attempts"]
    );
    if let Some(next) = m["next_attempt_at"].as_str() {
        println!("next attempt {next}");
    }
    println!("attempts");
    for a in m["attempts"].as_array().cloned().unwrap_or_default() {
        let outcome = match (a["status"].as_u64(), a["transport"].as_str()) {
            (Some(s), _) => format!("HTTP {s}"),
            (None, Some(t)) => t.to_owned(),
            _ => "-".to_owned(),
        };
        let decision = match a["delay_ms"].as_u64() {
            Some(d) => format!(
                "{} in {}",
                a["decision"].as_str().unwrap_or(""),
                redrive_core::HumanDuration(std::time::Duration::from_millis(d))
            ),
            None => format!(
                "{} ({})",
                a["decision"].as_str().unwrap_or(""),
                a["reason"].as_str().unwrap_or("")
            ),
        };
        println!(
            "  #{:<3} {}  {:<10} {:<22} {:>6}ms  {}",
            a["n"].as_u64().unwrap_or(0),
            a["started_at"].as_str().unwrap_or(""),
            outcome,
            a["class"].as_str().unwrap_or(""),
            a["latency_ms"].as_u64().unwrap_or(0),
            decision
        );
        if let Some(d) = a["detail"].as_str() {
            println!("        {d}");
        }
        if let Some(l) = a.get("link_identities").filter(|l| !l.is_null()) {
            println!("        link identities: {l}");
        }
        if let Some(x) = a["response_excerpt"].as_str() {
            println!("        {}", x.chars().take(160).collect::<String>());
        }
    }
    Ok(())
}

async fn act(api: &ApiClient, ids: &[String], verb: &str) -> Result<()> {
    let mut failed = 0;
    for id in ids {
        match api
            .call("POST", &format!("/v1/messages/{}/{verb}", encode(id)), None)
            .await
        {
            Ok(m) => println!("{id}: {}", m["state"].as_str().unwrap_or("")),
            // One id: its error is the one line.
            Err(e) if ids.len() == 1 => return Err(e.context(id.clone())),
            Err(e) => {
                failed += 1;
                eprintln!("{id}: {e:#}");
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} could not be {}",
            ids.len(),
            if verb == "redrive" {
                "redriven"
            } else {
                "discarded"
            }
        );
    }
    Ok(())
}

/// Counts the matching parked messages, then redrives them in slices with a
/// progress bar. Bounded by that count, so messages that park again during the
/// run are not redriven twice.
async fn redrive_all(api: &ApiClient, filters: &Filters) -> Result<()> {
    let mut total = 0u64;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/messages?state=parked&limit=1000{}", filters.query());
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", encode(c)));
        }
        let v = api.call("GET", &path, None).await?;
        total += v["messages"].as_array().map_or(0, |a| a.len() as u64);
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    if total == 0 {
        println!("no parked message matches");
        return Ok(());
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} redriven ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut done = 0u64;
    while done < total {
        let mut body = filters.body();
        body["limit"] = json!((total - done).min(500));
        let v = api
            .call("POST", "/v1/dead-letters/redrive", Some(&body))
            .await?;
        let n = v["redriven"].as_u64().unwrap_or(0);
        if n == 0 {
            break;
        }
        done += n;
        bar.set_position(done.min(total));
    }
    bar.finish_and_clear();
    println!("redriven {done} parked message(s)");
    Ok(())
}
