//! `redrive.toml`: the server, its destinations, policies and alerts.
//!
//! Loading order: the file (or defaults), `${VAR}` expanded in every string,
//! then `REDRIVE__SECTION__KEY` environment overrides, then validation. Every
//! error names the key; nothing falls back silently.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};
use redrive_core::duration::DurationText;
use redrive_core::toml_file::TomlError;
use redrive_core::{profiles, PolicySet};
use redrive_engine::{Destination, Rate, SigningSecret};
use serde::Deserialize;

use crate::credentials::{self, AuthSpec, ReconcileSpec};
use crate::roles::{ApiToken, Role};

mod env;
use env::{apply_overrides, expand};

/// Where the server listens when nothing says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
/// The embedded default database.
pub const DEFAULT_DATABASE: &str = "sqlite://redrive.db";
/// The largest enqueue request accepted by default.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// A lease's margin over the longest attempt timeout by default.
pub const DEFAULT_LEASE_MARGIN: Duration = Duration::from_secs(30);
/// The shortest lease margin accepted: the record of an attempt that ran to
/// its timeout must still find its lease.
pub const MIN_LEASE_MARGIN: Duration = Duration::from_secs(1);

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the API listens.
    pub listen: SocketAddr,
    /// The database URL.
    pub database: String,
    /// Accepted bearer tokens, each with a name and a role (empty: auth is
    /// off, allowed on loopback only).
    pub api_tokens: Vec<ApiToken>,
    /// The largest request body accepted.
    pub max_body: usize,
    /// Delivered and discarded messages are purged after this long.
    pub retention: Duration,
    /// The destinations, by name.
    pub destinations: Vec<Destination>,
    /// Where parks are reported.
    pub alert_webhook: Option<Uri>,
    /// This node's name (leases, logs).
    pub node_id: String,
    /// PostgreSQL: connections in the pool.
    pub pool_size: usize,
    /// PostgreSQL: the statement timeout of every connection.
    pub statement_timeout: Duration,
    /// Added to the longest attempt timeout to make a lease: how long
    /// after a node died its messages wait before another node takes them.
    pub lease_margin: Duration,
    /// The file it came from, if any.
    pub source: String,
    /// Inbound sources (`[sources.*]`).
    pub sources: Vec<crate::inbound::Source>,
    /// Where `/in/*` is served when not on `listen`.
    pub inbound_listen: Option<SocketAddr>,
    /// SQLite: below this many bytes free, enqueues are refused (`None`:
    /// the smaller of 1 GiB and 5 % of the filesystem).
    pub min_free_disk: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    server: ServerSpec,
    #[serde(default)]
    destinations: BTreeMap<String, DestinationSpec>,
    #[serde(default)]
    policies: Option<toml::Table>,
    #[serde(default)]
    alerts: AlertsSpec,
    #[serde(default)]
    sources: BTreeMap<String, crate::inbound::source::SourceSpec>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServerSpec {
    listen: Option<String>,
    database: Option<String>,
    api_tokens: Option<Vec<toml::Value>>,
    max_body_bytes: Option<usize>,
    retention: Option<DurationText>,
    node_id: Option<String>,
    pool_size: Option<usize>,
    statement_timeout: Option<DurationText>,
    lease_margin: Option<DurationText>,
    inbound_listen: Option<String>,
    min_free_disk: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationSpec {
    url: String,
    policy: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    max_in_flight: Option<usize>,
    rate_limit: Option<String>,
    signing_secret: Option<String>,
    auth: Option<AuthSpec>,
    reconcile: Option<ReconcileSpec>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AlertsSpec {
    webhook: Option<String>,
}

impl Config {
    /// Loads `path` (or, without one, `./redrive.toml` if it exists, else the
    /// defaults), expanding `${VAR}` from `env` and applying `REDRIVE__*`
    /// overrides from it.
    pub fn load(path: Option<&Path>, env: &HashMap<String, String>) -> Result<Config, TomlError> {
        let (name, text) = match path {
            Some(p) => (p.display().to_string(), read(p)?),
            None if Path::new("redrive.toml").exists() => {
                ("redrive.toml".to_owned(), read(Path::new("redrive.toml"))?)
            }
            None => ("(defaults)".to_owned(), String::new()),
        };
        Config::from_toml(&name, &text, env)
    }

    /// Parses configuration text; `name` names it in errors.
    pub fn from_toml(
        name: &str,
        text: &str,
        env: &HashMap<String, String>,
    ) -> Result<Config, TomlError> {
        let err = |key: &str, msg: String| TomlError::at_key(name, key, msg);
        // Syntax first, with positions.
        let mut value: toml::Value = redrive_core::toml_file::parse_toml(name, text)?;
        expand(&mut value, "", env).map_err(|(key, msg)| err(&key, msg))?;
        apply_overrides(&mut value, env).map_err(|(key, msg)| err(&key, msg))?;
        let expanded = toml::to_string(&value).map_err(|e| err("", e.to_string()))?;
        let spec: FileSpec = redrive_core::toml_file::parse_toml(name, &expanded)?;
        let policies = match &spec.policies {
            Some(_) => PolicySet::from_toml(name, &expanded)?,
            None => PolicySet::default(),
        };

        let listen_text = spec.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|_| err("server.listen", format!("`{listen_text}` is not an address; write HOST:PORT, for example 127.0.0.1:7878")))?;
        let database = spec
            .server
            .database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        if !(database.starts_with("sqlite:")
            || database.starts_with("postgres://")
            || database.starts_with("postgresql://"))
        {
            return Err(err(
                "server.database",
                format!("`{database}` is not a database URL; write sqlite://redrive.db or postgres://user@host/db"),
            ));
        }
        let api_tokens = api_tokens(spec.server.api_tokens.as_deref().unwrap_or(&[]))
            .map_err(|(key, msg)| err(&key, msg))?;
        let max_body = spec.server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
        if max_body < 1024 {
            return Err(err(
                "server.max_body_bytes",
                "must be at least 1024".to_owned(),
            ));
        }
        let retention = spec
            .server
            .retention
            .map_or(Duration::from_secs(7 * 86_400), |d| d.0);

        let mut destinations = Vec::with_capacity(spec.destinations.len());
        for (dname, d) in &spec.destinations {
            let key = |k: &str| format!("destinations.{dname}.{k}");
            if dname.is_empty()
                || !dname
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(err(
                    &format!("destinations.{dname}"),
                    "a destination name may hold only letters, digits, `-` and `_`".to_owned(),
                ));
            }
            let url = parse_url(&d.url).map_err(|m| err(&key("url"), m))?;
            let policy_name = d.policy.clone().unwrap_or_else(|| "standard".to_owned());
            let policy = match profiles::builtin(&policy_name)
                .or_else(|| policies.get(&policy_name).cloned())
            {
                Some(p) => p,
                None => {
                    let mut known: Vec<String> =
                        profiles::NAMES.iter().map(|s| (*s).to_owned()).collect();
                    known.extend(policies.names().map(str::to_owned));
                    return Err(err(
                        &key("policy"),
                        format!("`{policy_name}` is neither a built-in profile nor a [policies.*] table; known: {}", known.join(", ")),
                    ));
                }
            };
            let mut headers = Vec::new();
            for (h, v) in &d.headers {
                let name = HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    err(
                        &key(&format!("headers.{h}")),
                        "is not a valid header name".to_owned(),
                    )
                })?;
                let value = HeaderValue::from_str(v).map_err(|_| {
                    err(
                        &key(&format!("headers.{h}")),
                        "is not a valid header value".to_owned(),
                    )
                })?;
                headers.push((name, value));
            }
            let max_in_flight = d.max_in_flight.unwrap_or(32);
            if max_in_flight == 0 {
                return Err(err(&key("max_in_flight"), "must be at least 1".to_owned()));
            }
            let rate_limit = match &d.rate_limit {
                Some(r) => Some(
                    r.parse::<Rate>()
                        .map_err(|e| err(&key("rate_limit"), e.to_string()))?,
                ),
                None => None,
            };
            let signing = match &d.signing_secret {
                Some(s) => Some(
                    SigningSecret::parse(s)
                        .map_err(|e| err(&key("signing_secret"), e.to_string()))?,
                ),
                None => None,
            };
            let credentials = match &d.auth {
                Some(auth) => credentials::apply(dname, auth, &mut headers)
                    .map_err(|(k, m)| err(&key(&format!("auth{k}")), m))?,
                None => None,
            };
            let reconcile = match &d.reconcile {
                Some(r) => Some(Arc::new(
                    credentials::probe(r)
                        .map_err(|(k, m)| err(&key(&format!("reconcile{k}")), m))?,
                )),
                None => None,
            };
            destinations.push(Destination {
                name: dname.clone(),
                url,
                policy_name,
                policy: Arc::new(policy),
                headers,
                max_in_flight,
                rate_limit,
                signing,
                credentials,
                reconcile,
            });
        }
        let alert_webhook = match &spec.alerts.webhook {
            Some(u) => Some(parse_url(u).map_err(|m| err("alerts.webhook", m))?),
            None => None,
        };
        let node_id = spec
            .server
            .node_id
            .clone()
            .unwrap_or_else(|| format!("node-{}", std::process::id()));
        let pool_size = spec.server.pool_size.unwrap_or(16);
        if pool_size == 0 {
            return Err(err("server.pool_size", "must be at least 1".to_owned()));
        }
        let statement_timeout = spec
            .server
            .statement_timeout
            .map_or(Duration::from_secs(30), |d| d.0);
        if statement_timeout.is_zero() {
            return Err(err(
                "server.statement_timeout",
                "must be above 0s".to_owned(),
            ));
        }
        let lease_margin = spec
            .server
            .lease_margin
            .map_or(DEFAULT_LEASE_MARGIN, |d| d.0);
        if lease_margin < MIN_LEASE_MARGIN {
            return Err(err(
                "server.lease_margin",
                format!(
                    "must be at least {}: a lease must outlast an attempt's record",
                    redrive_core::HumanDuration(MIN_LEASE_MARGIN)
                ),
            ));
        }
        let names: Vec<&str> = destinations.iter().map(|d| d.name.as_str()).collect();
        let sources = crate::inbound::source::sources(&spec.sources, &names)
            .map_err(|(key, msg)| err(&key, msg))?;
        let inbound_listen = match &spec.server.inbound_listen {
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                err(
                    "server.inbound_listen",
                    format!(
                        "`{text}` is not an address; write HOST:PORT, for example 0.0.0.0:7879"
                    ),
                )
            })?),
            None => None,
        };
        let min_free_disk = match &spec.server.min_free_disk {
            None => None,
            Some(toml::Value::Integer(n)) if *n >= 0 => Some(*n as u64),
            Some(toml::Value::String(s)) => Some(
                redrive_core::size::parse_size(s)
                    .map_err(|e| err("server.min_free_disk", e.to_string()))?,
            ),
            Some(other) => {
                return Err(err(
                    "server.min_free_disk",
                    format!(
                        "`{other}` is not a size; write a number of bytes or one such as \"1GiB\""
                    ),
                ))
            }
        };
        Ok(Config {
            listen,
            database,
            api_tokens,
            max_body,
            retention,
            destinations,
            alert_webhook,
            node_id,
            pool_size,
            statement_timeout,
            lease_margin,
            source: name.to_owned(),
            sources,
            inbound_listen,
            min_free_disk,
        })
    }
}

/// The tokens of `server.api_tokens`: plain strings are `admin` (named
/// `admin`, `admin-2`, ...), tables name their token and role.
fn api_tokens(specs: &[toml::Value]) -> Result<Vec<ApiToken>, (String, String)> {
    let mut tokens: Vec<ApiToken> = Vec::with_capacity(specs.len());
    let mut plain = 0;
    for (i, spec) in specs.iter().enumerate() {
        let key = |k: &str| format!("server.api_tokens[{i}]{k}");
        let (name, token, role, token_key) = match spec {
            toml::Value::String(t) => {
                plain += 1;
                let name = if plain == 1 {
                    "admin".to_owned()
                } else {
                    format!("admin-{plain}")
                };
                (name, t.clone(), Role::Admin, key(""))
            }
            toml::Value::Table(t) => {
                if let Some(other) = t
                    .keys()
                    .find(|k| !["name", "token", "role"].contains(&k.as_str()))
                {
                    return Err((
                        key(&format!(".{other}")),
                        "unknown field; a token is { name, token, role }".to_owned(),
                    ));
                }
                let field = |f: &str| -> Result<String, (String, String)> {
                    match t.get(f) {
                        Some(toml::Value::String(v)) => Ok(v.clone()),
                        Some(_) => Err((key(&format!(".{f}")), "must be a string".to_owned())),
                        None => Err((
                            key(""),
                            format!("missing field `{f}`; a token is {{ name, token, role }}"),
                        )),
                    }
                };
                let (name, token, role) = (field("name")?, field("token")?, field("role")?);
                let role = Role::parse(&role).ok_or_else(|| {
                    (
                        key(".role"),
                        format!("`{role}` is not a role; use reader, sender, operator or admin"),
                    )
                })?;
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
                {
                    return Err((
                        key(".name"),
                        "a name holds letters, digits, `-`, `_`, `.` and `@`".to_owned(),
                    ));
                }
                (name, token, role, key(".token"))
            }
            _ => {
                return Err((
                    key(""),
                    "is neither a token (a string) nor { name, token, role }".to_owned(),
                ))
            }
        };
        if token.len() < 16 {
            return Err((
                token_key,
                "is shorter than 16 characters (or empty: is its ${VAR} set?); use a long random token".to_owned(),
            ));
        }
        if tokens.iter().any(|t| t.name == name) {
            return Err((
                key(".name"),
                format!("`{name}` names two tokens; the audit could not tell them apart"),
            ));
        }
        if tokens.iter().any(|t| t.token == token) {
            return Err((token_key, "is the same secret as another token".to_owned()));
        }
        tokens.push(ApiToken { name, token, role });
    }
    Ok(tokens)
}

fn read(p: &Path) -> Result<String, TomlError> {
    std::fs::read_to_string(p).map_err(|e| TomlError {
        file: p.display().to_string(),
        location: None,
        key: None,
        message: format!("cannot read the configuration: {e}"),
    })
}

pub(crate) fn parse_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|_| format!("`{text}` is not a URL; write https://host[:port][/base]"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) if uri.query().is_none() => Ok(uri),
        (Some("http" | "https"), Some(_)) => Err(format!(
            "`{text}`: a destination URL has no query; put it in the message's path"
        )),
        _ => Err(format!(
            "`{text}` is not an http:// or https:// URL with a host"
        )),
    }
}

#[cfg(test)]
mod tests;
