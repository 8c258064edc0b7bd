//! `redrive send`: one request delivered inline with a policy, each attempt
//! printed; exit 1 if it ends parked. For scripts and cron jobs.
//!
//! It sends as a destination would: with `--config F --destination NAME`,
//! that destination's URL, policy, headers, credentials and reconciliation
//! probe; otherwise a URL with flags for the policy and the credentials.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rand::rngs::StdRng;
use rand::SeedableRng;
use redrive_core::reconcile::MessageFacts;
use redrive_core::{AttemptContext, Credentials, Decision, HumanDuration, Recovery, RequestFacts};
use redrive_engine::credentials::Grant;
use redrive_engine::{
    ClientAuth, ClientConfig, Destination, HttpClient, OAuth2, OutboundRequest, TokenSource,
};

use crate::input::{self, PolicyChoice};

/// `redrive send` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The URL to send to; with --destination, the path below its URL.
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
    /// A configuration file (`${VAR}` expanded from the environment) whose
    /// --destination to send as.
    #[arg(long, value_name = "FILE", requires = "destination", conflicts_with_all = ["profile", "policy_file"])]
    config: Option<PathBuf>,
    /// The destination of --config: its URL, policy, headers, `auth` and
    /// `reconcile`.
    #[arg(long, value_name = "NAME", requires = "config")]
    destination: Option<String>,
    /// `Authorization: Bearer TOKEN`; `env:VAR` reads it from the environment.
    #[arg(long, value_name = "TOKEN|env:VAR", conflicts_with_all = ["config", "oauth2_token_url"])]
    bearer: Option<String>,
    /// OAuth 2.0 client credentials: the token URL (with --oauth2-client-id
    /// and --oauth2-client-secret).
    #[arg(long, value_name = "URL", requires_all = ["oauth2_client_id", "oauth2_client_secret"], conflicts_with = "config")]
    oauth2_token_url: Option<String>,
    /// The OAuth 2.0 client id.
    #[arg(long, value_name = "ID", requires = "oauth2_token_url")]
    oauth2_client_id: Option<String>,
    /// The OAuth 2.0 client secret; `env:VAR` reads it from the environment
    /// (a secret on the command line shows in `ps`).
    #[arg(long, value_name = "SECRET|env:VAR", requires = "oauth2_token_url")]
    oauth2_client_secret: Option<String>,
    /// The OAuth 2.0 scope to ask for.
    #[arg(long, value_name = "SCOPE", requires = "oauth2_token_url")]
    oauth2_scope: Option<String>,
}

/// `env:VAR` read from the environment, anything else as given.
fn secret(flag: &str, value: &str) -> Result<String> {
    match value.strip_prefix("env:") {
        Some(var) => std::env::var(var)
            .with_context(|| format!("{flag} env:{var}: the environment variable is not set")),
        None => Ok(value.to_owned()),
    }
}

/// The destination to send as: from --config, or built from the flags.
fn target(args: &Args) -> Result<(Destination, String)> {
    if let (Some(file), Some(name)) = (&args.config, &args.destination) {
        let env = std::env::vars().collect();
        let config = redrive_server::config::Config::load(Some(file), &env)?;
        let dest = config
            .destinations
            .into_iter()
            .find(|d| &d.name == name)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--destination {name}: no [destinations.{name}] in {}",
                    file.display()
                )
            })?;
        if !args.url.starts_with('/') {
            bail!(
                "with --destination, give the path below its URL (`/v1/users`), not `{}`",
                args.url
            );
        }
        return Ok((dest, args.url.clone()));
    }
    let policy = match (&args.policy.profile, &args.policy.policy_file) {
        (None, None) => input::builtin("standard")?,
        _ => args.policy.resolve()?,
    };
    let uri: http::Uri = args
        .url
        .parse()
        .map_err(|_| anyhow::anyhow!("`{}` is not a URL", args.url))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        bail!("`{}` is not an http:// or https:// URL", args.url);
    }
    let path = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let mut base = http::uri::Parts::default();
    base.scheme = uri.scheme().cloned();
    base.authority = uri.authority().cloned();
    base.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    let url = http::Uri::from_parts(base).context("the URL's scheme and host")?;
    let mut headers = Vec::new();
    if let Some(token) = &args.bearer {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", secret("--bearer", token)?))
            .map_err(|_| anyhow::anyhow!("--bearer: not a header value"))?;
        value.set_sensitive(true);
        headers.push((http::header::AUTHORIZATION, value));
    }
    let credentials = match (
        &args.oauth2_token_url,
        &args.oauth2_client_id,
        &args.oauth2_client_secret,
    ) {
        (Some(token_url), Some(id), Some(client_secret)) => Some(Arc::new(TokenSource::new(
            "send",
            OAuth2 {
                token_url: token_url.parse().map_err(|_| {
                    anyhow::anyhow!("--oauth2-token-url: `{token_url}` is not a URL")
                })?,
                client_id: id.clone(),
                client_secret: secret("--oauth2-client-secret", client_secret)?,
                scope: args.oauth2_scope.clone(),
                audience: None,
                client_auth: ClientAuth::Basic,
            },
        ))),
        _ => None,
    };
    let dest = Destination {
        name: "send".into(),
        url,
        policy_name: policy.name.clone(),
        policy: Arc::new(policy),
        headers,
        max_in_flight: 1,
        rate_limit: None,
        signing: None,
        credentials,
        reconcile: None,
    };
    Ok((dest, path))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn run(args: Args) -> Result<ExitCode> {
    let (dest, path) = target(&args)?;
    let policy = Arc::clone(&dest.policy);
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| anyhow::anyhow!("-X {}: not an HTTP method", args.method))?;
    let uri = dest
        .url_for(&path)
        .map_err(|_| anyhow::anyhow!("`{path}` is not a path"))?;
    let mut headers = HeaderMap::new();
    let mut message_headers = Vec::new();
    for h in &args.headers {
        let (k, v) = input::header(h)?;
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| anyhow::anyhow!("-H '{h}': not a header name"))?;
        let value = HeaderValue::from_str(&v)
            .map_err(|_| anyhow::anyhow!("-H '{h}': not a header value"))?;
        headers.append(name, value);
        message_headers.push((k, v));
    }
    for (name, value) in &dest.headers {
        headers.insert(name.clone(), value.clone());
    }
    let body = match &args.data {
        Some(d) => input::data_or_file("-d", d)?,
        None => Vec::new(),
    };
    let key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(|| ulid::Ulid::from_parts(now_ms() as u64, rand::random()).to_string());
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
        let mut attempt = 1;
        let mut renewed = false;
        loop {
            let mut headers = headers.clone();
            let grant = match &dest.credentials {
                None => None,
                Some(source) => match source.header(&client, now_ms).await {
                    Grant::Token { header, generation } => {
                        headers.insert(http::header::AUTHORIZATION, header);
                        Some((source, generation))
                    }
                    Grant::Held { .. } => {
                        if let redrive_engine::CredentialsState::Failing { detail, .. } =
                            source.health(now_ms())
                        {
                            eprintln!("no token: {detail}");
                        }
                        eprintln!("parked: the credentials are failing");
                        return Ok(true);
                    }
                },
            };
            let attempted = client
                .attempt(OutboundRequest {
                    method: method.clone(),
                    uri: uri.clone(),
                    headers,
                    body: Bytes::from(body.clone()),
                    timeout: policy.attempt_timeout,
                })
                .await;
            let ctx = AttemptContext {
                attempt,
                now: SystemTime::now(),
                cycle_started_at: cycle_started,
            };
            let recovery = Recovery {
                credentials: match (&grant, renewed) {
                    (None, _) => Credentials::Fixed,
                    (Some(_), false) => Credentials::Renewable,
                    (Some(_), true) => Credentials::JustRenewed,
                },
                reconcile: dest.reconcile.is_some(),
            };
            let outcome = match &attempted.result {
                Ok(r) => format!("HTTP {}", r.status),
                Err(e) => format!("{} ({})", e.kind, e.detail),
            };
            let (mut decision, class, why) = attempted.with_outcome(|o| {
                let v = policy.decide_with(&facts, o, &ctx, recovery, &mut rng);
                (v.decision, v.class(), v.explain(&policy, attempt))
            });
            eprintln!(
                "attempt {attempt} at +{}: {outcome}, {}ms, class {class}: {why}",
                HumanDuration(started.elapsed()),
                attempted.latency.as_millis()
            );
            renewed = false;
            if decision == Decision::Probe {
                let message = MessageFacts {
                    id: &key,
                    key: &key,
                    path: &path,
                    headers: &message_headers,
                    body: &body,
                };
                let (probed, line) =
                    redrive_engine::probe::reconcile(&client, &dest, &message, now_ms, i64::MAX)
                        .await;
                eprintln!("{line}");
                let (after, why) = attempted.with_outcome(|o| {
                    let v = policy.after_probe(&facts, o, &ctx, &probed, &mut rng);
                    (v.decision, v.explain(&policy, attempt))
                });
                eprintln!("{why}");
                decision = after;
            }
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
                Decision::RenewCredentials => {
                    if let Some((source, generation)) = grant {
                        source.reject(generation);
                    }
                    renewed = true;
                    eprintln!("renewing the token and sending again (no attempt spent)");
                }
                // `after_probe` decides; it never asks for another probe.
                Decision::Probe => {
                    eprintln!("parked: indeterminate");
                    return Ok(true);
                }
                Decision::Retry { delay, .. } => {
                    eprintln!(
                        "waiting {} before attempt {}",
                        HumanDuration(delay),
                        attempt + 1
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    })?;
    Ok(if parked {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
