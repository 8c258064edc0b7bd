//! `redrive send`: one request delivered inline with a policy, each attempt
//! printed; exit 1 if it ends parked. For scripts and cron jobs.

use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rand::rngs::StdRng;
use rand::SeedableRng;
use redrive_core::{AttemptContext, Decision, HumanDuration, RequestFacts};
use redrive_engine::{ClientConfig, HttpClient, OutboundRequest};

use crate::input::{self, PolicyChoice};

/// `redrive send` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The URL to send to.
    url: String,
    /// The method.
    #[arg(
        short = 'X',
        long = "request",
        value_name = "METHOD",
        default_value = "POST"
    )]
    method: String,
    /// A header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "K: V")]
    headers: Vec<String>,
    /// The body, or @FILE.
    #[arg(short = 'd', long = "data", value_name = "DATA|@FILE")]
    data: Option<String>,
    /// The idempotency key (default: a generated one), sent in the policy's
    /// idempotency header if it has one.
    #[arg(long, value_name = "K")]
    idempotency_key: Option<String>,
    /// The content blocks duplicates by itself (seed 000).
    #[arg(long)]
    idempotent: bool,
    #[command(flatten)]
    policy: PolicyChoice,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let policy = match (&args.policy.profile, &args.policy.policy_file) {
        (None, None) => input::builtin("standard")?,
        _ => args.policy.resolve()?,
    };
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| anyhow::anyhow!("-X {}: not an HTTP method", args.method))?;
    let uri: http::Uri = args
        .url
        .parse()
        .map_err(|_| anyhow::anyhow!("`{}` is not a URL", args.url))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        bail!("`{}` is not an http:// or https:// URL", args.url);
    }
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let (k, v) = input::header(h)?;
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| anyhow::anyhow!("-H '{h}': not a header name"))?;
        let value = HeaderValue::from_str(&v)
            .map_err(|_| anyhow::anyhow!("-H '{h}': not a header value"))?;
        headers.append(name, value);
    }
    let body = match &args.data {
        Some(d) => input::data_or_file("-d", d)?,
        None => Vec::new(),
    };
    let key = args.idempotency_key.clone().unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        ulid::Ulid::from_parts(now, rand::random()).to_string()
    });
    if let Some(h) = &policy.idempotency_header {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.as_bytes()),
            HeaderValue::from_str(&key),
        ) {
            headers.insert(name, value);
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let parked = runtime.block_on(async {
        let client =
            HttpClient::new(ClientConfig::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let cycle_started = SystemTime::now();
        let started = Instant::now();
        let mut rng = StdRng::from_os_rng();
        let facts = RequestFacts {
            method: method.as_str(),
            idempotency_key: false,
            marked_idempotent: args.idempotent,
        };
        eprintln!(
            "policy {} ({} attempts at most); key {key}",
            policy.name, policy.max_attempts
        );
        for attempt in 1.. {
            let attempted = client
                .attempt(OutboundRequest {
                    method: method.clone(),
                    uri: uri.clone(),
                    headers: headers.clone(),
                    body: Bytes::from(body.clone()),
                    timeout: policy.attempt_timeout,
                })
                .await;
            let ctx = AttemptContext {
                attempt,
                now: SystemTime::now(),
                cycle_started_at: cycle_started,
            };
            let (decision, class, why) = attempted.with_outcome(|o| {
                let v = policy.decide(&facts, o, &ctx, &mut rng);
                (v.decision, v.class(), v.explain(&policy, attempt))
            });
            let outcome = match &attempted.result {
                Ok(r) => format!("HTTP {}", r.status),
                Err(e) => format!("{} ({})", e.kind, e.detail),
            };
            eprintln!(
                "attempt {attempt} at +{}: {outcome}, {}ms, class {class}: {why}",
                HumanDuration(started.elapsed()),
                attempted.latency.as_millis()
            );
            match decision {
                Decision::Delivered => {
                    if let Ok(r) = &attempted.result {
                        print!("{}", String::from_utf8_lossy(&r.body));
                    }
                    return Ok::<bool, anyhow::Error>(false);
                }
                Decision::Park { reason } => {
                    eprintln!("parked: {reason}");
                    return Ok(true);
                }
                // `decide` tries nothing first (no renewable token, no
                // probe): neither comes from it.
                Decision::RenewCredentials | Decision::Probe => {
                    eprintln!("parked: {}", decision.reason());
                    return Ok(true);
                }
                Decision::Retry { delay, .. } => {
                    eprintln!(
                        "waiting {} before attempt {}",
                        HumanDuration(delay),
                        attempt + 1
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
        Ok(true)
    })?;
    Ok(if parked {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
