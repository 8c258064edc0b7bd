//! Scenarios: which route answers what, as a sequence or a weighted mix of steps.
//!
//! A scenario file is TOML (`redrive mock --example` prints one with every step).
//! Loading validates everything up front and reads `body_file`s, so a running
//! mock never meets a bad step; an error names the file, the key and the problem.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use redrive_core::duration::DurationText;
use redrive_core::toml_file::{parse_toml, TomlError};
use serde::Deserialize;

use crate::oauth::OAuthSpec;
use crate::presets::{canned, Preset};

/// The most entries the journal keeps unless the scenario says otherwise.
pub const DEFAULT_JOURNAL_LIMIT: usize = 100_000;

/// A loaded, validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The TOML it came from (served back by `GET /__mock/scenario`).
    pub text: String,
    /// Journal entries kept (oldest dropped first); 0 keeps none.
    pub journal_limit: usize,
    /// Routes, tried in order.
    pub routes: Vec<Route>,
    /// The answer when no route matches.
    pub default: Step,
    /// The token endpoint's client and its tokens' life, if any.
    pub oauth: Option<OAuthSpec>,
}

/// A route: which requests it takes and how it answers them.
#[derive(Clone, Debug)]
pub struct Route {
    /// Its name in the journal and counts (default `METHOD path`).
    pub name: String,
    /// The method it takes (upper case); `None` takes any.
    pub method: Option<String>,
    /// The paths it takes.
    pub path: PathPattern,
    /// Whether a sequence advances per route or per idempotency key.
    pub per: Per,
    /// The header that holds the key when `per = "idempotency_key"` (lower case).
    pub key_header: String,
    /// How it chooses a step.
    pub responder: Responder,
    /// Requests without a valid token get seed 001's `invalid_token` 401
    /// (and spend no step).
    pub require_token: bool,
    /// A JSON pointer into the body that names what a request creates:
    /// requests answered by a step that `applies` are remembered by it, for
    /// a `lookup` step to find.
    pub remember: Option<String>,
}

/// Which paths a route takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathPattern {
    /// `*`: every path.
    Any,
    /// `/v1/users`: exactly this path.
    Exact(String),
    /// `/v1/*`: every path that starts with `/v1/`.
    Prefix(String),
}

impl PathPattern {
    fn parse(p: &str) -> Self {
        if p == "*" {
            PathPattern::Any
        } else if let Some(prefix) = p.strip_suffix('*') {
            PathPattern::Prefix(prefix.to_owned())
        } else {
            PathPattern::Exact(p.to_owned())
        }
    }

    /// True when `path` (without its query) is taken.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Any => true,
            PathPattern::Exact(p) => p == path,
            PathPattern::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// What a sequence counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    /// One sequence for the whole route.
    Route,
    /// One sequence per idempotency key: "fail twice then succeed" for each message.
    IdempotencyKey,
}

/// How a route chooses its step.
#[derive(Clone, Debug)]
pub enum Responder {
    /// Steps in order, each `times` times; the last repeats for ever.
    Sequence(Vec<(Step, u32)>),
    /// A weighted random choice, reproducible from `seed`.
    Mix {
        /// Each step and its weight.
        steps: Vec<(Step, u32)>,
        /// The seed of the route's random source.
        seed: u64,
    },
}

impl Responder {
    /// The steps, in order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        let v = match self {
            Responder::Sequence(v) | Responder::Mix { steps: v, .. } => v,
        };
        v.iter().map(|(s, _)| s)
    }

    /// The index of the step that answers the `n`-th request (from 0) of a sequence.
    pub fn sequence_index(steps: &[(Step, u32)], n: u64) -> usize {
        let mut left = n;
        for (i, (_, times)) in steps.iter().enumerate() {
            if left < u64::from(*times) {
                return i;
            }
            left -= u64::from(*times);
        }
        steps.len().saturating_sub(1)
    }
}

/// One answer.
#[derive(Clone, Debug)]
pub struct Step {
    /// A short description for the journal (`respond 503`, `reset`).
    pub label: String,
    /// Wait this long before acting.
    pub delay: Option<Duration>,
    /// What to do.
    pub action: Action,
    /// The request takes effect (remembered by the route's `remember`):
    /// by default when the step answers 2xx.
    pub applies: bool,
}

/// What a step does to the connection.
#[derive(Clone, Debug)]
pub enum Action {
    /// Answer with a response.
    Respond(Reply),
    /// Read the request, never answer (the client times out).
    Timeout,
    /// Read the request, then reset the connection (TCP RST).
    Reset,
    /// Read the request, then close without a response (an empty reply).
    Close,
    /// Answer with bytes that are not HTTP.
    Malformed,
    /// Close this connection and stop listening for this long: connections are
    /// refused, then the listener comes back.
    Down(Duration),
    /// The token endpoint: issue a token to the scenario's `[oauth]` client,
    /// or answer `invalid_client`.
    IssueToken,
    /// 200 when a request remembered with this query parameter's value took
    /// effect, else 404.
    Lookup(String),
}

/// A response to send.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
    /// Send `Retry-After` as an HTTP-date this far after the answer.
    pub retry_after_date: Option<Duration>,
    /// Send the body `chunk` bytes at a time, `every` apart.
    pub slow_body: Option<(usize, Duration)>,
}

impl Scenario {
    /// A scenario with no routes whose default answers 200: what `redrive mock`
    /// serves without `--scenario`.
    pub fn ok() -> Scenario {
        Scenario {
            text: String::new(),
            journal_limit: DEFAULT_JOURNAL_LIMIT,
            routes: Vec::new(),
            default: Step {
                label: "respond 200".to_owned(),
                delay: None,
                action: Action::Respond(Reply {
                    status: 200,
                    headers: Vec::new(),
                    body: Bytes::new(),
                    retry_after_date: None,
                    slow_body: None,
                }),
                applies: false,
            },
            oauth: None,
        }
    }

    /// Reads and validates a scenario file; `body_file`s are relative to it.
    pub fn load(path: &Path) -> Result<Scenario, TomlError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TomlError {
            file: name.clone(),
            location: None,
            key: None,
            message: format!("cannot read the scenario: {e}"),
        })?;
        Scenario::from_toml(&name, &text, path.parent())
    }

    /// Parses and validates scenario text; `base_dir` resolves `body_file`.
    pub fn from_toml(
        file: &str,
        text: &str,
        base_dir: Option<&Path>,
    ) -> Result<Scenario, TomlError> {
        let spec: ScenarioSpec = parse_toml(file, text)?;
        let ctx = Ctx { file, base_dir };
        let mut routes = Vec::with_capacity(spec.routes.len());
        for (i, r) in spec.routes.iter().enumerate() {
            routes.push(ctx.route(&format!("routes[{i}]"), r)?);
        }
        let default = match &spec.default {
            Some(step) => ctx.step("default", step, StepIn::Default)?,
            None => Step {
                label: "respond 404".to_owned(),
                delay: None,
                action: Action::Respond(Reply {
                    status: 404,
                    headers: vec![("content-type".to_owned(), "text/plain".to_owned())],
                    body: Bytes::from_static(b"no route of the scenario matches this request\n"),
                    retry_after_date: None,
                    slow_body: None,
                }),
                applies: false,
            },
        };
        if let Some(o) = &spec.oauth {
            if o.client_id.is_empty() || o.client_secret.is_empty() {
                return Err(ctx.err("oauth", "give a non-empty `client_id` and `client_secret`"));
            }
            if o.expires_after == Some(0) {
                return Err(ctx.err("oauth.expires_after", "must be at least 1 request"));
            }
        }
        if spec.oauth.is_none() {
            let needs = routes.iter().position(|r| {
                r.require_token
                    || r.responder
                        .steps()
                        .any(|s| matches!(s.action, Action::IssueToken))
            });
            if let Some(i) = needs {
                return Err(ctx.err(
                    &format!("routes[{i}]"),
                    "issues or demands tokens, but the scenario has no [oauth] table (client_id, client_secret)",
                ));
            }
        }
        Ok(Scenario {
            text: text.to_owned(),
            journal_limit: spec.journal.limit.unwrap_or(DEFAULT_JOURNAL_LIMIT),
            routes,
            default,
            oauth: spec.oauth,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioSpec {
    #[serde(default)]
    journal: JournalSpec,
    #[serde(default)]
    routes: Vec<RouteSpec>,
    default: Option<StepSpec>,
    oauth: Option<OAuthSpec>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct JournalSpec {
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSpec {
    name: Option<String>,
    method: Option<String>,
    path: String,
    per: Option<Per>,
    key_header: Option<String>,
    steps: Option<Vec<StepSpec>>,
    mix: Option<Vec<StepSpec>>,
    seed: Option<u64>,
    require_token: Option<bool>,
    remember: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    status: Option<u16>,
    headers: Option<BTreeMap<String, String>>,
    body: Option<String>,
    body_file: Option<String>,
    preset: Option<Preset>,
    retryable: Option<bool>,
    retry_after: Option<u64>,
    retry_after_date: Option<DurationText>,
    delay: Option<DurationText>,
    fault: Option<Fault>,
    slow_body: Option<SlowBodySpec>,
    down: Option<DurationText>,
    times: Option<u32>,
    weight: Option<u32>,
    applies: Option<bool>,
    issue_token: Option<bool>,
    lookup: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Fault {
    Timeout,
    Reset,
    Close,
    Malformed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlowBodySpec {
    chunk: usize,
    every: DurationText,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StepIn {
    Sequence,
    Mix,
    Default,
}

struct Ctx<'a> {
    file: &'a str,
    base_dir: Option<&'a Path>,
}

impl Ctx<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> TomlError {
        TomlError::at_key(self.file, key, message)
    }

    fn route(&self, key: &str, r: &RouteSpec) -> Result<Route, TomlError> {
        if !(r.path == "*" || r.path.starts_with('/')) {
            return Err(self.err(
                &format!("{key}.path"),
                format!(
                    "`{}` is not a path: start it with `/` (`/v1/users`, `/v1/*`) or write `*`",
                    r.path
                ),
            ));
        }
        if r.path.starts_with("/__mock") {
            return Err(self.err(
                &format!("{key}.path"),
                "`/__mock/` is reserved for the mock's own API",
            ));
        }
        let method = match &r.method {
            Some(m) if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) => {
                return Err(self.err(
                    &format!("{key}.method"),
                    format!("`{m}` is not an HTTP method"),
                ))
            }
            Some(m) => Some(m.to_ascii_uppercase()),
            None => None,
        };
        let responder = match (&r.steps, &r.mix) {
            (Some(_), Some(_)) => {
                return Err(self.err(key, "give either `steps` or `mix`, not both"))
            }
            (None, None) => {
                return Err(self.err(
                    key,
                    "give `steps = [...]` (a sequence) or `mix = [...]` (weighted)",
                ))
            }
            (Some(steps), None) => {
                if steps.is_empty() {
                    return Err(
                        self.err(&format!("{key}.steps"), "is empty; give at least one step")
                    );
                }
                if r.seed.is_some() {
                    return Err(self.err(&format!("{key}.seed"), "only a `mix` uses a seed"));
                }
                let mut v = Vec::with_capacity(steps.len());
                for (i, s) in steps.iter().enumerate() {
                    let k = format!("{key}.steps[{i}]");
                    let times = s.times.unwrap_or(1);
                    if times == 0 {
                        return Err(self.err(&format!("{k}.times"), "must be at least 1"));
                    }
                    v.push((self.step(&k, s, StepIn::Sequence)?, times));
                }
                Responder::Sequence(v)
            }
            (None, Some(mix)) => {
                if mix.is_empty() {
                    return Err(self.err(&format!("{key}.mix"), "is empty; give at least one step"));
                }
                let mut v = Vec::with_capacity(mix.len());
                for (i, s) in mix.iter().enumerate() {
                    let k = format!("{key}.mix[{i}]");
                    let weight = s.weight.ok_or_else(|| {
                        self.err(
                            &format!("{k}.weight"),
                            "every step of a mix needs a weight, for example `weight = 9`",
                        )
                    })?;
                    if weight == 0 {
                        return Err(self.err(&format!("{k}.weight"), "must be at least 1"));
                    }
                    v.push((self.step(&k, s, StepIn::Mix)?, weight));
                }
                Responder::Mix {
                    steps: v,
                    seed: r.seed.unwrap_or(0),
                }
            }
        };
        let per = r.per.unwrap_or(Per::Route);
        if per == Per::IdempotencyKey && matches!(responder, Responder::Mix { .. }) {
            return Err(self.err(
                &format!("{key}.per"),
                "`per` applies to `steps`; a `mix` draws at random",
            ));
        }
        let name = r.name.clone().unwrap_or_else(|| match &method {
            Some(m) => format!("{m} {}", r.path),
            None => r.path.clone(),
        });
        Ok(Route {
            name,
            method,
            path: PathPattern::parse(&r.path),
            per,
            key_header: r
                .key_header
                .as_deref()
                .unwrap_or("idempotency-key")
                .to_ascii_lowercase(),
            responder,
            require_token: r.require_token.unwrap_or(false),
            remember: match &r.remember {
                Some(p) if !p.starts_with('/') => {
                    return Err(self.err(
                        &format!("{key}.remember"),
                        format!("`{p}` is not a JSON pointer; write one such as `/email`"),
                    ))
                }
                other => other.clone(),
            },
        })
    }

    fn step(&self, key: &str, s: &StepSpec, within: StepIn) -> Result<Step, TomlError> {
        let k = |field: &str| format!("{key}.{field}");
        if s.times.is_some() && within != StepIn::Sequence {
            return Err(self.err(&k("times"), "only the steps of a sequence repeat"));
        }
        if s.weight.is_some() && within != StepIn::Mix {
            return Err(self.err(&k("weight"), "only the steps of a mix have a weight"));
        }
        let delay = s.delay.map(|d| d.0);
        let response_keys = [
            ("status", s.status.is_some()),
            ("headers", s.headers.is_some()),
            ("body", s.body.is_some()),
            ("body_file", s.body_file.is_some()),
            ("preset", s.preset.is_some()),
            ("retryable", s.retryable.is_some()),
            ("retry_after", s.retry_after.is_some()),
            ("retry_after_date", s.retry_after_date.is_some()),
            ("slow_body", s.slow_body.is_some()),
        ];
        let lone = |what: &str| -> Result<(), TomlError> {
            match response_keys.iter().find(|(_, set)| *set) {
                Some((name, _)) => Err(self.err(
                    &k(name),
                    format!(
                        "a `{what}` step sends no response, so `{name}` has no effect; remove it"
                    ),
                )),
                None => Ok(()),
            }
        };
        if let (Some(_), Some(_)) = (s.fault, s.down) {
            return Err(self.err(key, "give either `fault` or `down`, not both"));
        }
        let specials = [
            s.fault.is_some(),
            s.down.is_some(),
            s.issue_token == Some(true),
            s.lookup.is_some(),
        ];
        if specials.iter().filter(|b| **b).count() > 1 {
            return Err(self.err(
                key,
                "give one of `fault`, `down`, `issue_token` and `lookup`",
            ));
        }
        let (label, action) = if s.issue_token == Some(true) {
            lone("issue_token")?;
            ("issue a token".to_owned(), Action::IssueToken)
        } else if let Some(param) = &s.lookup {
            lone("lookup")?;
            if param.is_empty() {
                return Err(self.err(&k("lookup"), "name the query parameter to look up"));
            }
            (format!("lookup {param}"), Action::Lookup(param.clone()))
        } else if let Some(fault) = s.fault {
            let (name, action) = match fault {
                Fault::Timeout => ("timeout", Action::Timeout),
                Fault::Reset => ("reset", Action::Reset),
                Fault::Close => ("close", Action::Close),
                Fault::Malformed => ("malformed", Action::Malformed),
            };
            lone(name)?;
            (name.to_owned(), action)
        } else if let Some(d) = s.down {
            lone("down")?;
            if d.0.is_zero() {
                return Err(self.err(&k("down"), "must be above 0s"));
            }
            (
                format!("down {}", redrive_core::HumanDuration(d.0)),
                Action::Down(d.0),
            )
        } else {
            let reply = self.reply(key, s)?;
            let label = match s.preset {
                Some(p) => format!("respond {} ({})", reply.status, preset_name(p)),
                None => format!("respond {}", reply.status),
            };
            (label, Action::Respond(reply))
        };
        let applies = s
            .applies
            .unwrap_or(matches!(&action, Action::Respond(r) if (200..300).contains(&r.status)));
        Ok(Step {
            label,
            delay,
            action,
            applies,
        })
    }

    fn reply(&self, key: &str, s: &StepSpec) -> Result<Reply, TomlError> {
        let k = |field: &str| format!("{key}.{field}");
        let base = s.preset.map(|p| canned(p, s.retryable));
        if s.retryable.is_some()
            && !matches!(s.preset, Some(Preset::PublishError | Preset::ProcessError))
        {
            return Err(self.err(
                &k("retryable"),
                "applies to the publish_error and process_error presets; for another body write it in `body`",
            ));
        }
        let status = match (s.status, &base) {
            (Some(st), _) if !(100..=599).contains(&st) => {
                return Err(self.err(&k("status"), format!("{st} is not an HTTP status (100-599)")))
            }
            (Some(st), _) => st,
            (None, Some(c)) => c.status,
            (None, None) => {
                return Err(self.err(
                    key,
                    "a step needs `status`, `preset`, `fault` (timeout, reset, close, malformed) or `down`",
                ))
            }
        };
        let mut headers = base.as_ref().map(|c| c.headers.clone()).unwrap_or_default();
        for (name, value) in s.headers.iter().flatten() {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid || value.contains(['\r', '\n']) {
                return Err(self.err(&format!("{}.{name}", k("headers")), "is not a valid header"));
            }
            let lower = name.to_ascii_lowercase();
            if lower == "content-length" || lower == "transfer-encoding" {
                return Err(self.err(
                    &format!("{}.{name}", k("headers")),
                    "is set by the mock from the body; remove it",
                ));
            }
            headers.retain(|(n, _)| n != &lower);
            headers.push((lower, value.clone()));
        }
        if let Some(secs) = s.retry_after {
            headers.retain(|(n, _)| n != "retry-after");
            headers.push(("retry-after".to_owned(), secs.to_string()));
        }
        if s.retry_after.is_some() && s.retry_after_date.is_some() {
            return Err(self.err(
                key,
                "give either `retry_after` (seconds) or `retry_after_date`, not both",
            ));
        }
        if s.retry_after_date.is_some() {
            headers.retain(|(n, _)| n != "retry-after");
        }
        let body = match (&s.body, &s.body_file) {
            (Some(_), Some(_)) => {
                return Err(self.err(key, "give either `body` or `body_file`, not both"))
            }
            (Some(b), None) => Bytes::from(b.clone()),
            (None, Some(f)) => {
                let path = match self.base_dir {
                    Some(dir) => dir.join(f),
                    None => Path::new(f).to_path_buf(),
                };
                let data = std::fs::read(&path).map_err(|e| {
                    self.err(
                        &k("body_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Bytes::from(data)
            }
            (None, None) => Bytes::from(base.map(|c| c.body).unwrap_or_default()),
        };
        let slow_body = match &s.slow_body {
            Some(sb) if sb.chunk == 0 => {
                return Err(self.err(&k("slow_body.chunk"), "must be at least 1 byte"))
            }
            Some(sb) => Some((sb.chunk, sb.every.0)),
            None => None,
        };
        Ok(Reply {
            status,
            headers,
            body,
            retry_after_date: s.retry_after_date.map(|d| d.0),
            slow_body,
        })
    }
}

fn preset_name(p: Preset) -> &'static str {
    match p {
        Preset::InvalidToken => "invalid_token",
        Preset::PrivoValidationError => "privo_validation_error",
        Preset::RetryLater => "retry_later",
        Preset::PublishError => "publish_error",
        Preset::ProcessError => "process_error",
        Preset::RateLimited => "rate_limited",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq_of(times: &[u32]) -> Vec<(Step, u32)> {
        times.iter().map(|t| (Scenario::ok().default, *t)).collect()
    }

    #[test]
    fn a_sequence_runs_each_step_its_times_then_repeats_the_last() {
        let steps = seq_of(&[2, 1, 1]);
        let got: Vec<usize> = (0..6)
            .map(|n| Responder::sequence_index(&steps, n))
            .collect();
        assert_eq!(got, vec![0, 0, 1, 2, 2, 2]);
    }

    #[test]
    fn path_patterns() {
        assert!(PathPattern::parse("*").matches("/anything"));
        assert!(PathPattern::parse("/v1/*").matches("/v1/users"));
        assert!(!PathPattern::parse("/v1/*").matches("/v2/users"));
        assert!(PathPattern::parse("/v1/users").matches("/v1/users"));
        assert!(!PathPattern::parse("/v1/users").matches("/v1/users/7"));
    }
}
