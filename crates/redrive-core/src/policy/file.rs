//! Policy files: `[policies.NAME]` tables in TOML, each extending a built-in
//! profile or another policy of the same file.
//!
//! Loading is strict: an unknown key, an empty schedule, a cap below its base or
//! an unreadable duration is an error naming the file, the key and the problem,
//! and nothing falls back to a default. The caller reads the file; this module
//! only parses text, so the core stays free of I/O.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::class::ErrorClass;
use crate::duration::{DurationText as DurationSpec, HumanDuration};
use crate::policy::{Condition, IndeterminateAction, Policy, Rule, StatusRange};
use crate::profiles;
use crate::schedule::{Jitter, Schedule};
use crate::toml_file::{parse_toml, TomlError};

/// The most attempts a policy may allow in one cycle: a guard against typos
/// such as `max_attempts = 80000`.
pub const MAX_ATTEMPTS_LIMIT: u32 = 1000;

/// The policies of one file, resolved and validated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicySet {
    policies: BTreeMap<String, Policy>,
}

impl PolicySet {
    /// Parses and validates the TOML text of a policy (or configuration) file.
    /// `file` names it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<PolicySet, TomlError> {
        let spec: FileSpec = parse_toml(file, text)?;
        if spec.policies.is_empty() {
            return Err(TomlError {
                file: file.to_owned(),
                location: None,
                key: None,
                message:
                    "no policy found; define one as [policies.NAME] with `extends = \"standard\"`"
                        .to_owned(),
            });
        }
        let mut resolver = Resolver {
            file,
            specs: &spec.policies,
            done: BTreeMap::new(),
            visiting: Vec::new(),
        };
        for name in spec.policies.keys() {
            resolver.resolve(name)?;
        }
        Ok(PolicySet {
            policies: resolver.done,
        })
    }

    /// The policy called `name` in this file.
    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.policies.get(name)
    }

    /// The names of the file's policies, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }

    /// The policies, sorted by name.
    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.policies.values()
    }
}

/// The whole file. The configuration's other tables may sit beside the
/// policies (so `redrive.toml` is a valid policy file); any other key is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    policies: BTreeMap<String, PolicySpec>,
    #[serde(default, rename = "server")]
    _server: Option<toml::Value>,
    #[serde(default, rename = "destinations")]
    _destinations: Option<toml::Value>,
    #[serde(default, rename = "alerts")]
    _alerts: Option<toml::Value>,
    #[serde(default, rename = "sources")]
    _sources: Option<toml::Value>,
}

/// One `[policies.NAME]` table: every key optional; what is absent comes from
/// the policy it extends.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySpec {
    extends: Option<String>,
    description: Option<String>,
    max_attempts: Option<u32>,
    schedule: Option<ScheduleSpec>,
    retry_on: Option<Vec<ConditionSpec>>,
    never_retry: Option<Vec<ConditionSpec>>,
    success: Option<Vec<StatusSpec>>,
    retry_after: Option<RetryAfterSpec>,
    indeterminate: Option<IndeterminateSpec>,
    indeterminate_statuses: Option<Vec<StatusSpec>>,
    idempotent_methods: Option<Vec<String>>,
    idempotency_header: Option<HeaderSpec>,
    attempt_timeout: Option<DurationSpec>,
    deadline: Option<DurationSpec>,
    alert_on_park: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryAfterSpec {
    honour: Option<bool>,
    cap: Option<DurationSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum IndeterminateSpec {
    Park,
    Retry,
}

/// `idempotency_header = "Idempotency-Key"`, or `false` for none.
struct HeaderSpec(Option<String>);

impl<'de> Deserialize<'de> for HeaderSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HeaderSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a header name such as \"Idempotency-Key\", or false for none")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<HeaderSpec, E> {
                if v {
                    Err(E::custom("write the header's name, or false for none"))
                } else {
                    Ok(HeaderSpec(None))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HeaderSpec, E> {
                let token = !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if token {
                    Ok(HeaderSpec(Some(v.to_owned())))
                } else {
                    Err(E::custom(format!("`{v}` is not a valid HTTP header name")))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A status matcher: `503`, `"5xx"`, `"500-504"`.
struct StatusSpec(StatusRange);

impl<'de> Deserialize<'de> for StatusSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StatusSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status (503), a class (\"5xx\") or a range (\"500-504\")")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusSpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusSpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusSpec, E> {
                v.parse().map(StatusSpec).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// One entry of `retry_on` / `never_retry`. `"network"` stands for both
/// network classes, hence a list.
struct ConditionSpec(Vec<Condition>);

const CONDITION_HELP: &str = "write a status (429), a status class (\"5xx\"), a range (\"500-504\"), \"network\", an error class (\"rate_limited\"), or a table: { problem_type = \"...\" }, { type_code = \"...\" }, { retryable = true }, { oauth_error = \"...\" }";

impl<'de> Deserialize<'de> for ConditionSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ConditionSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(CONDITION_HELP)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ConditionSpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ConditionSpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConditionSpec, E> {
                if v == "network" {
                    return Ok(ConditionSpec(vec![
                        Condition::Class(ErrorClass::NetworkUnsent),
                        Condition::Class(ErrorClass::NetworkIndeterminate),
                    ]));
                }
                if v.starts_with(|c: char| c.is_ascii_digit()) {
                    return v
                        .parse()
                        .map(|r| ConditionSpec(vec![Condition::Status(r)]))
                        .map_err(E::custom);
                }
                match v.parse::<ErrorClass>() {
                    Ok(ErrorClass::Success) => {
                        Err(E::custom("`success` cannot be retried; list error classes"))
                    }
                    Ok(class) => Ok(ConditionSpec(vec![Condition::Class(class)])),
                    Err(_) => Err(E::custom(format!(
                        "`{v}` is not a condition; {CONDITION_HELP}"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConditionSpec, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(format!(
                        "the table is empty; {CONDITION_HELP}"
                    )));
                };
                let condition = match key.as_str() {
                    "problem_type" => Condition::ProblemType(map.next_value()?),
                    "type_code" => Condition::TypeCode(map.next_value()?),
                    "retryable" => Condition::Retryable(map.next_value()?),
                    "oauth_error" => Condition::OAuthError(map.next_value()?),
                    other => {
                        return Err(de::Error::custom(format!(
                            "unknown condition `{other}`; expected problem_type, type_code, retryable or oauth_error"
                        )))
                    }
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(
                        "a condition table has exactly one key; write two entries to match either",
                    ));
                }
                Ok(ConditionSpec(vec![condition]))
            }
        }
        d.deserialize_any(V)
    }
}

/// `schedule = ["1m", "10m"]`, `{ offsets = [...] }`, `{ exponential = {...} }`
/// or `{ linear = {...} }`.
enum ScheduleSpec {
    Fixed(Vec<DurationSpec>),
    Offsets(Vec<DurationSpec>),
    Exponential(ExponentialSpec),
    Linear(LinearSpec),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExponentialSpec {
    base: DurationSpec,
    #[serde(default = "two")]
    factor: f64,
    cap: DurationSpec,
    #[serde(default)]
    jitter: JitterSpec,
}

fn two() -> f64 {
    2.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinearSpec {
    base: DurationSpec,
    step: DurationSpec,
    cap: DurationSpec,
    #[serde(default)]
    jitter: JitterSpec,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum JitterSpec {
    #[default]
    None,
    Full,
}

impl<'de> Deserialize<'de> for ScheduleSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ScheduleSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of delays such as [\"1m\", \"10m\"], or a table { exponential = { base = \"1s\", factor = 2, cap = \"1h\", jitter = \"full\" } }, { linear = { base, step, cap } } or { offsets = [\"1m\", \"10m\"] }")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ScheduleSpec, A::Error> {
                let mut delays = Vec::new();
                while let Some(d) = seq.next_element()? {
                    delays.push(d);
                }
                Ok(ScheduleSpec::Fixed(delays))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ScheduleSpec, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "the schedule table is empty; use exponential, linear or offsets",
                    ));
                };
                let spec = match key.as_str() {
                    "exponential" => ScheduleSpec::Exponential(map.next_value()?),
                    "linear" => ScheduleSpec::Linear(map.next_value()?),
                    "offsets" => ScheduleSpec::Offsets(map.next_value()?),
                    other => {
                        return Err(de::Error::custom(format!(
                        "unknown schedule kind `{other}`; expected exponential, linear or offsets"
                    )))
                    }
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom("a schedule has exactly one kind"));
                }
                Ok(spec)
            }
        }
        d.deserialize_any(V)
    }
}

/// Resolves `extends` chains, detecting cycles, and validates each policy.
struct Resolver<'a> {
    file: &'a str,
    specs: &'a BTreeMap<String, PolicySpec>,
    done: BTreeMap<String, Policy>,
    visiting: Vec<String>,
}

impl Resolver<'_> {
    fn error(&self, key: String, message: impl Into<String>) -> TomlError {
        TomlError::at_key(self.file, key, message)
    }

    fn resolve(&mut self, name: &str) -> Result<Policy, TomlError> {
        if let Some(p) = self.done.get(name) {
            return Ok(p.clone());
        }
        let key = format!("policies.{name}");
        if profiles::builtin(name).is_some() {
            return Err(self.error(
                key,
                format!("`{name}` is a built-in profile; give your policy another name and `extends = \"{name}\"`"),
            ));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(self.error(
                key,
                "a policy name may hold only letters, digits, `-` and `_`",
            ));
        }
        if self.visiting.iter().any(|n| n == name) {
            let mut chain = self.visiting.clone();
            chain.push(name.to_owned());
            return Err(self.error(
                format!("{key}.extends"),
                format!("`extends` goes round in a circle: {}", chain.join(" -> ")),
            ));
        }
        let Some(spec) = self.specs.get(name) else {
            return Err(self.error(key, "no such policy"));
        };
        let parent_name = spec.extends.as_deref().unwrap_or("standard");
        let parent = if let Some(builtin) = profiles::builtin(parent_name) {
            builtin
        } else if self.specs.contains_key(parent_name) {
            self.visiting.push(name.to_owned());
            let parent = self.resolve(parent_name);
            self.visiting.pop();
            parent?
        } else {
            return Err(self.error(
                format!("{key}.extends"),
                format!(
                    "`{parent_name}` is neither a built-in profile ({}) nor a policy of this file",
                    profiles::NAMES.join(", ")
                ),
            ));
        };
        let policy = self.apply(name, parent_name, parent, spec)?;
        self.done.insert(name.to_owned(), policy.clone());
        Ok(policy)
    }

    fn apply(
        &self,
        name: &str,
        parent_name: &str,
        mut p: Policy,
        s: &PolicySpec,
    ) -> Result<Policy, TomlError> {
        let key = |k: &str| format!("policies.{name}.{k}");
        p.name = name.to_owned();
        p.description = match &s.description {
            Some(d) => Cow::Owned(d.clone()),
            None => Cow::Owned(format!("extends {parent_name}")),
        };
        if let Some(n) = s.max_attempts {
            if n == 0 || n > MAX_ATTEMPTS_LIMIT {
                return Err(self.error(
                    key("max_attempts"),
                    format!("must be between 1 and {MAX_ATTEMPTS_LIMIT} (the first attempt counts), not {n}"),
                ));
            }
            p.max_attempts = n;
        }
        if let Some(schedule) = &s.schedule {
            p.schedule = self.schedule(&key("schedule"), schedule)?;
            p.notes.schedule = Cow::Owned(format!("set by {}", key("schedule")));
        }
        let rules = |list: &[ConditionSpec], k: &str| -> Vec<Rule> {
            list.iter()
                .flat_map(|c| c.0.iter().cloned())
                .map(|c| Rule::new(c, key(k)))
                .collect()
        };
        if let Some(list) = &s.retry_on {
            p.retry_on = rules(list, "retry_on");
        }
        if let Some(list) = &s.never_retry {
            p.never_retry = rules(list, "never_retry");
        }
        let statuses = |list: &[StatusSpec], k: &str| -> Vec<Rule> {
            list.iter().map(|r| Rule::statuses(r.0, key(k))).collect()
        };
        if let Some(list) = &s.success {
            if list.is_empty() {
                return Err(self.error(key("success"), "is empty; nothing could ever be delivered"));
            }
            p.success = statuses(list, "success");
        }
        if let Some(list) = &s.indeterminate_statuses {
            p.indeterminate_statuses = statuses(list, "indeterminate_statuses");
        }
        if let Some(ra) = &s.retry_after {
            if let Some(honour) = ra.honour {
                p.retry_after.honour = honour;
            }
            if let Some(cap) = ra.cap {
                if cap.0.is_zero() {
                    return Err(self.error(key("retry_after.cap"), "must be above 0s"));
                }
                p.retry_after.cap = cap.0;
            }
        }
        if let Some(i) = &s.indeterminate {
            p.indeterminate = match i {
                IndeterminateSpec::Park => IndeterminateAction::Park,
                IndeterminateSpec::Retry => IndeterminateAction::Retry,
            };
        }
        if let Some(methods) = &s.idempotent_methods {
            p.idempotent_methods = Vec::with_capacity(methods.len());
            for m in methods {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(self.error(
                        key("idempotent_methods"),
                        format!("`{m}` is not an HTTP method"),
                    ));
                }
                p.idempotent_methods.push(m.to_ascii_uppercase());
            }
            p.notes.idempotency = Cow::Owned(format!("set by {}", key("idempotent_methods")));
        }
        if let Some(h) = &s.idempotency_header {
            p.idempotency_header = h.0.clone();
            p.notes.idempotency = Cow::Owned(format!("set by {}", key("idempotency_header")));
        }
        if let Some(t) = s.attempt_timeout {
            if t.0.is_zero() {
                return Err(self.error(key("attempt_timeout"), "must be above 0s"));
            }
            p.attempt_timeout = t.0;
        }
        if let Some(d) = s.deadline {
            if d.0.is_zero() {
                return Err(self.error(key("deadline"), "must be above 0s"));
            }
            p.deadline = Some(d.0);
        }
        if let Some(a) = s.alert_on_park {
            p.alert_on_park = a;
        }
        Ok(p)
    }

    fn schedule(&self, key: &str, spec: &ScheduleSpec) -> Result<Schedule, TomlError> {
        let jitter = |j: JitterSpec| match j {
            JitterSpec::None => Jitter::None,
            JitterSpec::Full => Jitter::Full,
        };
        let positive = |what: &str, d: DurationSpec| {
            if d.0.is_zero() {
                Err(self.error(format!("{key}.{what}"), "must be above 0s"))
            } else {
                Ok(d.0)
            }
        };
        let cap_not_below = |base: Duration, cap: Duration| {
            if cap < base {
                Err(self.error(
                    format!("{key}.cap"),
                    format!(
                        "the cap ({}) is below the base ({}); raise the cap or lower the base",
                        HumanDuration(cap),
                        HumanDuration(base)
                    ),
                ))
            } else {
                Ok(())
            }
        };
        match spec {
            ScheduleSpec::Fixed(list) => {
                if list.is_empty() {
                    return Err(self.error(
                        key.to_owned(),
                        "the schedule is empty; give at least one delay, for example schedule = [\"1m\"]",
                    ));
                }
                Ok(Schedule::Fixed(list.iter().map(|d| d.0).collect()))
            }
            ScheduleSpec::Offsets(list) => {
                let offsets: Vec<Duration> = list.iter().map(|d| d.0).collect();
                Schedule::from_offsets(&offsets).ok_or_else(|| {
                    self.error(
                        format!("{key}.offsets"),
                        "offsets must be a non-empty list that increases, for example [\"1m\", \"10m\", \"1h\"]",
                    )
                })
            }
            ScheduleSpec::Exponential(e) => {
                let base = positive("base", e.base)?;
                cap_not_below(base, e.cap.0)?;
                if !(e.factor.is_finite() && e.factor >= 1.0) {
                    return Err(self.error(
                        format!("{key}.factor"),
                        format!("must be a number of at least 1, not {}", e.factor),
                    ));
                }
                Ok(Schedule::Exponential {
                    base,
                    factor: e.factor,
                    cap: e.cap.0,
                    jitter: jitter(e.jitter),
                })
            }
            ScheduleSpec::Linear(l) => {
                let base = positive("base", l.base)?;
                cap_not_below(base, l.cap.0)?;
                Ok(Schedule::Linear {
                    base,
                    step: l.step.0,
                    cap: l.cap.0,
                    jitter: jitter(l.jitter),
                })
            }
        }
    }
}
