//! `redrive messages wait`: block until messages leave `pending`, for
//! scripts and walk-throughs that must not guess at timing.
//!
//! It polls the API (every [`POLL`]), and keeps trying while the server
//! cannot be reached, so that it can follow a `redrive serve &` at once.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::Value;

use crate::api_client::{encode, ApiClient, ServerArgs, Unreachable};

/// How often the server is asked.
const POLL: Duration = Duration::from_millis(100);

/// `redrive messages wait` arguments.
#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    /// Message ids. Without any: wait until no message (of --destination)
    /// is pending.
    ids: Vec<String>,
    /// Only this destination (without ids).
    #[arg(long, value_name = "D", conflicts_with = "ids")]
    destination: Option<String>,
    /// Give up after this long (exit code 2).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    timeout: Duration,
    #[command(flatten)]
    server: ServerArgs,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    redrive_core::parse_duration(s).map_err(|e| e.to_string())
}

/// Exit codes: 0 every message waited for was delivered (or none is
/// pending), 1 one ended parked or discarded, 2 the timeout (or bad input).
pub async fn run(a: WaitArgs) -> Result<ExitCode> {
    let api = ApiClient::new(&a.server)?;
    let deadline = tokio::time::Instant::now() + a.timeout;
    if a.ids.is_empty() {
        let mut path = "/v1/messages?state=pending&limit=1".to_owned();
        if let Some(d) = &a.destination {
            path.push_str(&format!("&destination={}", encode(d)));
        }
        let whose = a
            .destination
            .as_deref()
            .map_or(String::new(), |d| format!(" to {d}"));
        loop {
            let mut down = None;
            match api.call("GET", &path, None).await {
                Ok(v) if v["messages"].as_array().is_some_and(|m| m.is_empty()) => {
                    println!("no message{whose} pending");
                    return Ok(ExitCode::SUCCESS);
                }
                Ok(_) => {}
                Err(e) if unreachable(&e) => down = Some(e),
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                if let Some(e) = down {
                    return Err(e);
                }
                bail_timeout(&a.timeout, &format!("messages{whose} still pending"))?;
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let mut settled = vec![None::<Value>; a.ids.len()];
    loop {
        let mut down = None;
        for (id, done) in a.ids.iter().zip(settled.iter_mut()) {
            if done.is_some() {
                continue;
            }
            match api
                .call("GET", &format!("/v1/messages/{}", encode(id)), None)
                .await
            {
                Ok(m) if m["state"].as_str() != Some("pending") => {
                    println!("{}", line(&m));
                    *done = Some(m);
                }
                Ok(_) => {}
                Err(e) if unreachable(&e) => down = Some(e),
                Err(e) => return Err(e),
            }
        }
        if settled.iter().all(Option::is_some) {
            let delivered = settled
                .iter()
                .flatten()
                .all(|m| m["state"].as_str() == Some("delivered"));
            return Ok(if delivered {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        if tokio::time::Instant::now() >= deadline {
            if let Some(e) = down {
                return Err(e);
            }
            let left = settled.iter().filter(|s| s.is_none()).count();
            bail_timeout(&a.timeout, &format!("{left} of the messages still pending"))?;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The server is not up (yet): keep asking.
fn unreachable(e: &anyhow::Error) -> bool {
    e.is::<Unreachable>()
}

fn bail_timeout(timeout: &Duration, what: &str) -> Result<()> {
    bail!(
        "timed out after {}: {what}",
        redrive_core::HumanDuration(*timeout)
    )
}

/// `ID  STATE[ (REASON)]  after N attempts`.
fn line(m: &Value) -> String {
    let attempts = m["total_attempts"].as_u64().unwrap_or(0);
    format!(
        "{}  {}{}  after {attempts} attempt{}",
        m["id"].as_str().unwrap_or(""),
        m["state"].as_str().unwrap_or(""),
        m["park_reason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        if attempts == 1 { "" } else { "s" }
    )
}
