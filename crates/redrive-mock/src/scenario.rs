//! Scenarios: which route answers what, as a sequence or a weighted mix of steps.
//!
//! A scenario file is TOML (`redrive mock --example` prints one with every step).
//! Loading validates everything up front and reads `body_file`s, so a running
//! mock never meets a bad step; an error names the file, the key and the problem.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use redrive_core::toml_file::{parse_toml, TomlError};
use serde::Deserialize;

use crate::oauth::OAuthSpec;

mod spec;
use spec::{Ctx, ScenarioSpec, StepIn};

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
