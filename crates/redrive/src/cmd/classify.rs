//! `redrive classify`: what a policy makes of one outcome.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use redrive_core::{
    parse_duration, AttemptContext, Decision, HumanDuration, Outcome, RequestFacts, Response,
    TransportFailure,
};
use serde_json::{json, Map, Value};

use crate::input::{self, PolicyChoice};

/// `redrive classify` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The response status (100-599).
    #[arg(
        long,
        value_name = "N",
        required_unless_present = "transport",
        conflicts_with = "transport"
    )]
    status: Option<u16>,
    /// A transport failure instead of a response: refused, dns, tls,
    /// connect_timeout (never reached the server), timeout, reset, closed,
    /// malformed (may have).
    #[arg(long, value_name = "KIND", value_parser = parse_transport)]
    transport: Option<TransportFailure>,
    /// A response header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "K: V")]
    headers: Vec<String>,
    /// The response body, or @FILE to read it from a file.
    #[arg(long, value_name = "DATA|@FILE", requires = "status")]
    body: Option<String>,
    /// The request's method.
    #[arg(long, value_name = "M", default_value = "POST")]
    method: String,
    /// The request carried this idempotency key, and the receiver honours it.
    #[arg(long, value_name = "K")]
    idempotency_key: Option<String>,
    /// The request's content blocks duplicates by itself (seed 000: a unique email).
    #[arg(long)]
    idempotent: bool,
    /// Which attempt of the cycle this outcome ended (from 1).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    attempt: u32,
    /// Time since the cycle started, for the policy's deadline (`90s`, `2h`).
    #[arg(long, value_name = "DURATION", value_parser = parse_elapsed)]
    elapsed: Option<Duration>,
    /// Seed the jitter, for a reproducible delay.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// The destination renews its token (`auth = { oauth2 = ... }`): a
    /// rejected token is renewed rather than parked.
    #[arg(long)]
    renewable_token: bool,
    /// The destination has a `[destinations.NAME.reconcile]` probe.
    #[arg(long)]
    reconcile: bool,
    #[command(flatten)]
    policy: PolicyChoice,
    /// Print one JSON object on one line.
    #[arg(long)]
    json: bool,
}

fn parse_transport(s: &str) -> Result<TransportFailure, String> {
    s.parse()
        .map_err(|e: redrive_core::outcome::UnknownTransport| e.to_string())
}

fn parse_elapsed(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

pub fn run(args: Args) -> Result<ExitCode> {
    let policy = args.policy.resolve()?;
    if let Some(status) = args.status {
        if !(100..=599).contains(&status) {
            bail!("--status {status}: an HTTP status is between 100 and 599");
        }
    }
    if args.method.is_empty() || !args.method.bytes().all(|b| b.is_ascii_alphabetic()) {
        bail!("--method '{}': not an HTTP method", args.method);
    }
    let headers: Vec<(String, String)> = args
        .headers
        .iter()
        .map(|h| input::header(h))
        .collect::<Result<_>>()?;
    let header_refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = match &args.body {
        Some(b) => input::data_or_file("--body", b)?,
        None => Vec::new(),
    };
    let outcome = match (args.status, args.transport) {
        (Some(status), _) => Outcome::Response(Response {
            status,
            headers: &header_refs,
            body: &body,
        }),
        (None, Some(kind)) => Outcome::Transport(kind),
        (None, None) => bail!("give --status N or --transport KIND"),
    };
    let request = RequestFacts {
        method: &args.method,
        idempotency_key: args.idempotency_key.is_some(),
        marked_idempotent: args.idempotent,
    };
    let now = SystemTime::now();
    let elapsed = args.elapsed.unwrap_or(Duration::ZERO);
    let ctx = AttemptContext {
        attempt: args.attempt,
        now,
        cycle_started_at: now.checked_sub(elapsed).unwrap_or(SystemTime::UNIX_EPOCH),
    };
    let mut rng = match args.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    };
    let recovery = redrive_core::Recovery {
        credentials: if args.renewable_token {
            redrive_core::Credentials::Renewable
        } else {
            redrive_core::Credentials::Fixed
        },
        reconcile: args.reconcile,
    };
    let verdict = policy.decide_with(&request, &outcome, &ctx, recovery, &mut rng);
    let explanation = verdict.explain(&policy, args.attempt);
    let rule = verdict.why.rule().map(ToString::to_string);

    if args.json {
        let mut o = Map::new();
        o.insert("class".into(), json!(verdict.class().as_str()));
        o.insert("decision".into(), json!(verdict.decision.as_str()));
        o.insert("reason".into(), json!(verdict.reason()));
        if let Decision::Retry { delay, .. } = verdict.decision {
            o.insert(
                "delay_ms".into(),
                json!(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
            );
        }
        if let Decision::Park { reason } = verdict.decision {
            o.insert("park_reason".into(), json!(reason.as_str()));
        }
        o.insert("status".into(), json!(verdict.classification.status));
        o.insert(
            "transport".into(),
            json!(verdict.classification.transport.map(|t| t.as_str())),
        );
        o.insert("policy".into(), json!(policy.name));
        o.insert("attempt".into(), json!(args.attempt));
        o.insert("max_attempts".into(), json!(policy.max_attempts));
        o.insert("idempotent".into(), json!(verdict.idempotent));
        o.insert("indeterminate".into(), json!(verdict.indeterminate));
        o.insert("rule".into(), json!(rule));
        o.insert("explanation".into(), json!(explanation));
        if let Some(links) = &verdict.classification.signals.link_identities {
            o.insert("link_identities".into(), links.clone());
        }
        println!("{}", Value::Object(o));
    } else {
        let what = match (
            verdict.classification.status,
            verdict.classification.transport,
        ) {
            (Some(s), _) => format!("HTTP {s}"),
            (None, Some(t)) => format!("transport failure `{t}`"),
            (None, None) => String::new(),
        };
        println!("class     {} ({what})", verdict.class());
        let decision = match verdict.decision {
            Decision::Delivered => "delivered".to_owned(),
            Decision::Retry { delay, reason } => format!(
                "retry in {} ({}), attempt {} of {}",
                HumanDuration(delay),
                reason.as_str(),
                args.attempt + 1,
                policy.max_attempts
            ),
            Decision::Park { reason } => format!("park ({reason})"),
            Decision::RenewCredentials => {
                "renew the token and send again at once (credentials_renewed), spending no attempt"
                    .to_owned()
            }
            Decision::Probe => {
                "ask the destination whether it took effect, then decide (reconcile)".to_owned()
            }
        };
        println!("decision  {decision}");
        println!("why       {explanation}");
        println!(
            "policy    {}; attempt {} of {}; {} {} idempotent",
            policy.name,
            args.attempt,
            policy.max_attempts,
            args.method.to_ascii_uppercase(),
            if verdict.idempotent { "is" } else { "is not" }
        );
        if let Some(links) = &verdict.classification.signals.link_identities {
            println!("kept      linkIdentities {links}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
