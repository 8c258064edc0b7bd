//! What a person does from the command line: `redrive dlq edit` (the
//! request in `$EDITOR`, as `git commit` and `kubectl edit` do), `redrive
//! dlq resolve`, `redrive destinations pause|resume` and `redrive audit`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::api_client::{encode, ApiClient, ServerArgs};

/// How many times an invalid edit reopens the editor before giving up.
const TRIES: usize = 5;

/// The request of a message as a person edits it: method, path, headers and
/// the body (as JSON when it is JSON, else as `body_base64`).
fn editable(message: &Value) -> Value {
    let mut o = Map::new();
    o.insert("method".into(), message["method"].clone());
    o.insert("path".into(), message["path"].clone());
    let headers: Map<String, Value> = message["headers"]
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|p| Some((p[0].as_str()?.to_owned(), p[1].clone())))
                .collect()
        })
        .unwrap_or_default();
    o.insert("headers".into(), Value::Object(headers));
    let revision = message["revisions"]
        .as_array()
        .and_then(|r| r.last())
        .cloned()
        .unwrap_or(Value::Null);
    match (revision["body"].as_str(), revision["body_base64"].as_str()) {
        (Some(text), _) => match serde_json::from_str::<Value>(text) {
            Ok(v) => {
                o.insert("body".into(), v);
            }
            Err(_) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
                o.insert("body_base64".into(), json!(b64));
            }
        },
        (None, Some(b64)) => {
            o.insert("body_base64".into(), json!(b64));
        }
        (None, None) => {}
    }
    o.insert("note".into(), json!(""));
    Value::Object(o)
}

/// The editor a person chose: `$VISUAL`, `$EDITOR`, else `vi`.
fn editor() -> String {
    std::env::var("VISUAL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            std::env::var("EDITOR")
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
        .unwrap_or_else(|| "vi".to_owned())
}

/// Runs the editor on `file` (through the shell, so `EDITOR="code --wait"`
/// works); an editor that fails is the person saying "abandon".
fn run_editor(file: &Path) -> Result<()> {
    let editor = editor();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("redrive-edit")
        .arg(file)
        .status()
        .with_context(|| format!("cannot run the editor `{editor}`"))?;
    if !status.success() {
        bail!("the editor `{editor}` exited with {status}; nothing was saved");
    }
    Ok(())
}

/// Asks a yes/no question on the terminal; `default` when not a terminal.
fn confirm(question: &str, default: bool) -> bool {
    if !std::io::stdin().is_terminal() {
        return default;
    }
    eprint!("{question} [{}] ", if default { "Y/n" } else { "y/N" });
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return default;
    }
    match answer.trim().to_ascii_lowercase().as_str() {
        "" => default,
        a => a.starts_with('y'),
    }
}

/// `redrive dlq edit ID`: saves a new revision of a parked message's
/// request, then redrives it if asked.
pub async fn edit(api: &ApiClient, id: &str, redrive: Option<bool>) -> Result<()> {
    let message = api
        .call("GET", &format!("/v1/messages/{}", encode(id)), None)
        .await?;
    if message["state"] != "parked" {
        bail!(
            "message {id} is {}; only a parked message can be edited",
            message["state"].as_str().unwrap_or("unknown")
        );
    }
    let dir = tempfile::tempdir().context("cannot make a folder for the draft")?;
    let file = dir.path().join(format!("redrive-{id}.json"));
    let draft = serde_json::to_string_pretty(&editable(&message))?;
    std::fs::write(&file, format!("{draft}\n"))
        .with_context(|| format!("cannot write {}", file.display()))?;
    let mut edited = None;
    for _ in 0..TRIES {
        run_editor(&file)?;
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        match serde_json::from_str::<Value>(&text) {
            Ok(v) if v.is_object() => {
                edited = Some(v);
                break;
            }
            Ok(_) => eprintln!("redrive: the draft must be one JSON object; edit it again"),
            Err(e) => eprintln!("redrive: the draft is not JSON: {e}; edit it again"),
        }
    }
    let Some(mut edited) = edited else {
        bail!("the draft was not valid JSON after {TRIES} tries; nothing was saved");
    };
    if edited == editable(&message) {
        eprintln!("nothing changed; nothing saved");
        return Ok(());
    }
    // An empty note is no note.
    if edited["note"].as_str() == Some("") {
        if let Some(o) = edited.as_object_mut() {
            o.remove("note");
        }
    }
    let saved = api
        .call(
            "PATCH",
            &format!("/v1/messages/{}", encode(id)),
            Some(&edited),
        )
        .await?;
    println!(
        "{id}: revision {} saved",
        saved["revision"].as_u64().unwrap_or(0)
    );
    let redrive = redrive.unwrap_or_else(|| confirm("Redrive it now?", false));
    if redrive {
        api.call(
            "POST",
            &format!("/v1/messages/{}/redrive", encode(id)),
            None,
        )
        .await?;
        println!("{id}: redriven");
    } else {
        println!("redrive it with: redrive dlq redrive {id}");
    }
    Ok(())
}

/// `redrive dlq resolve ID --applied|--not-applied`.
pub async fn resolve(api: &ApiClient, id: &str, applied: bool, note: Option<&str>) -> Result<()> {
    let outcome = if applied { "applied" } else { "not_applied" };
    let v = api
        .call(
            "POST",
            &format!("/v1/messages/{}/resolve", encode(id)),
            Some(&json!({ "outcome": outcome, "note": note })),
        )
        .await?;
    println!(
        "{id}: resolved {outcome}; now {}",
        v["state"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `redrive destinations ...`
#[derive(clap::Subcommand, Debug)]
pub enum DestinationsCommand {
    /// Stop attempting a destination's messages (they are kept).
    Pause {
        /// The destination.
        name: String,
        /// Why, for the audit and the dashboard.
        #[arg(long, value_name = "T")]
        note: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Continue delivering to a paused destination.
    Resume {
        /// The destination.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `redrive audit`: who did what.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// The window: a duration (24h) or an RFC 3339 time.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    since: String,
    /// Only this token's name.
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
    /// Only this action: edit, redrive, discard, resolve, bulk_redrive, pause, resume.
    #[arg(long, value_name = "A")]
    action: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print JSON lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run_destinations(c: DestinationsCommand) -> Result<ExitCode> {
    super::messages::runtime()?.block_on(async move {
        let (server, name, verb, body) = match &c {
            DestinationsCommand::Pause { name, note, server } => {
                (server, name, "pause", json!({ "note": note }))
            }
            DestinationsCommand::Resume { name, server } => (server, name, "resume", json!({})),
        };
        let v = ApiClient::new(server)?
            .call(
                "POST",
                &format!("/v1/destinations/{}/{verb}", encode(name)),
                Some(&body),
            )
            .await?;
        let now = if v["paused"] == true {
            "paused"
        } else {
            "delivering"
        };
        let changed = if v["changed"] == true {
            ""
        } else {
            " (already)"
        };
        println!("{name}: {now}{changed}");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_audit(a: AuditArgs) -> Result<ExitCode> {
    super::messages::runtime()?.block_on(async move {
        let api = ApiClient::new(&a.server)?;
        let mut query = format!(
            "/v1/audit?since={}&limit={}",
            encode(&a.since),
            a.limit.clamp(1, 1000)
        );
        for (k, v) in [("actor", &a.actor), ("action", &a.action)] {
            if let Some(v) = v {
                query.push_str(&format!("&{k}={}", encode(v)));
            }
        }
        let v = api.call("GET", &query, None).await?;
        let records = v["records"].as_array().cloned().unwrap_or_default();
        if a.json {
            for r in &records {
                println!("{r}");
            }
            return Ok(());
        }
        if records.is_empty() {
            println!("(no change by a person since {})", a.since);
        }
        for r in records {
            let detail = match &r["detail"] {
                Value::Object(o) if !o.is_empty() => {
                    let parts: Vec<String> = o
                        .iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    format!("  {}", parts.join(" "))
                }
                _ => String::new(),
            };
            println!(
                "{}  {:<12} {:<13} {}{detail}",
                r["at"].as_str().unwrap_or(""),
                r["actor"].as_str().unwrap_or(""),
                r["action"].as_str().unwrap_or(""),
                r["target"].as_str().unwrap_or(""),
            );
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
