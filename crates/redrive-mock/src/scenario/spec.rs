//! A scenario file as written (the serde types) and its checks: each route,
//! step and reply read into the model of `scenario`, every error naming the
//! file, the key and what to write instead.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use redrive_core::duration::DurationText;
use redrive_core::toml_file::TomlError;
use serde::Deserialize;

use super::{Action, PathPattern, Per, Reply, Responder, Route, Step};
use crate::oauth::OAuthSpec;
use crate::presets::{canned, Preset};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScenarioSpec {
    #[serde(default)]
    pub(super) journal: JournalSpec,
    #[serde(default)]
    pub(super) routes: Vec<RouteSpec>,
    pub(super) default: Option<StepSpec>,
    pub(super) oauth: Option<OAuthSpec>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct JournalSpec {
    pub(super) limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteSpec {
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
pub(super) struct StepSpec {
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
pub(super) enum Fault {
    Timeout,
    Reset,
    Close,
    Malformed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SlowBodySpec {
    chunk: usize,
    every: DurationText,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum StepIn {
    Sequence,
    Mix,
    Default,
}

pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
    pub(super) base_dir: Option<&'a Path>,
}

impl Ctx<'_> {
    pub(super) fn err(&self, key: &str, message: impl Into<String>) -> TomlError {
        TomlError::at_key(self.file, key, message)
    }

    pub(super) fn route(&self, key: &str, r: &RouteSpec) -> Result<Route, TomlError> {
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

    pub(super) fn step(&self, key: &str, s: &StepSpec, within: StepIn) -> Result<Step, TomlError> {
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
