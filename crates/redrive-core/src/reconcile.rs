//! Reconciliation probes: how to ask a destination whether an indeterminate
//! request took effect (seed 000: "Clients need a way of reconciling failed
//! requests with a server"), and what its answer means.
//!
//! A probe is a request built from a template over the message
//! (`/v1/users?email={body.email}`) and two lists of statuses. Building and
//! judging it is pure; the engine sends it.

use std::fmt;
use std::time::Duration;

use crate::decide::Probed;
use crate::outcome::Outcome;
use crate::policy::StatusRange;

/// A destination's probe (DESIGN.md, "Reconciliation of indeterminate
/// outcomes").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconcileProbe {
    /// The probe's method (`GET` by default).
    pub method: String,
    /// The path and query, with placeholders.
    pub path: PathTemplate,
    /// Statuses that mean the request took effect.
    pub applied: Vec<StatusRange>,
    /// Statuses that mean it did not.
    pub not_applied: Vec<StatusRange>,
    /// How long to wait after the indeterminate outcome before asking.
    pub after: Duration,
}

impl ReconcileProbe {
    /// What the probe's outcome says.
    pub fn judge(&self, outcome: &Outcome<'_>) -> Probed {
        match outcome {
            Outcome::Response(r) => {
                if self.applied.iter().any(|s| s.contains(r.status)) {
                    Probed::Applied
                } else if self.not_applied.iter().any(|s| s.contains(r.status)) {
                    Probed::NotApplied
                } else {
                    Probed::Unknown(format!(
                        "the probe answered {}, which is neither applied ({}) nor not_applied ({})",
                        r.status,
                        list(&self.applied),
                        list(&self.not_applied)
                    ))
                }
            }
            Outcome::Transport(kind) => Probed::Unknown(format!("the probe failed: {kind}")),
        }
    }
}

fn list(statuses: &[StatusRange]) -> String {
    if statuses.is_empty() {
        return "none".to_owned();
    }
    statuses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A path with placeholders: `{id}`, `{key}`, `{path}`, `{body.a.b}`,
/// `{header.Name}`. Values are percent-encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Id,
    Key,
    Path,
    Body(Vec<String>),
    Header(String),
}

/// Why a template could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` without its `}`.
    #[error("an unclosed `{{` at byte {0}")]
    Unclosed(usize),
    /// A placeholder that names nothing a message has.
    #[error("`{{{0}}}` names nothing in a message; use {{id}}, {{key}}, {{path}}, {{body.FIELD}} or {{header.NAME}}")]
    Unknown(String),
    /// Not a path.
    #[error("a probe's path starts with `/`")]
    NotAPath,
}

/// What a template reads from a message.
#[derive(Clone, Copy, Debug)]
pub struct MessageFacts<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its idempotency key.
    pub key: &'a str,
    /// Its path.
    pub path: &'a str,
    /// Its headers.
    pub headers: &'a [(String, String)],
    /// Its body.
    pub body: &'a [u8],
}

/// Why a probe could not be built for a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the probe's `{{{placeholder}}}` has no value in this message ({why})")]
pub struct Unfilled {
    /// The placeholder.
    pub placeholder: String,
    /// Why it has none.
    pub why: &'static str,
}

impl PathTemplate {
    /// Reads a template, refusing placeholders that can never have a value.
    pub fn parse(text: &str) -> Result<PathTemplate, TemplateError> {
        if !text.starts_with('/') {
            return Err(TemplateError::NotAPath);
        }
        let mut parts = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let Some(len) = rest[open..].find('}') else {
                return Err(TemplateError::Unclosed(offset + open));
            };
            let name = &rest[open + 1..open + len];
            parts.push(match name {
                "id" => Part::Id,
                "key" => Part::Key,
                "path" => Part::Path,
                _ => match name.split_once('.') {
                    Some(("body", fields))
                        if !fields.is_empty() && fields.split('.').all(|f| !f.is_empty()) =>
                    {
                        Part::Body(fields.split('.').map(str::to_owned).collect())
                    }
                    Some(("header", h))
                        if !h.is_empty()
                            && h.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
                    {
                        Part::Header(h.to_owned())
                    }
                    _ => return Err(TemplateError::Unknown(name.to_owned())),
                },
            });
            offset += open + len + 1;
            rest = &rest[open + len + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(PathTemplate {
            text: text.to_owned(),
            parts,
        })
    }

    /// The path for `m`, each value percent-encoded.
    pub fn render(&self, m: &MessageFacts<'_>) -> Result<String, Unfilled> {
        let mut out = String::with_capacity(self.text.len() + 32);
        let mut body: Option<Option<serde_json::Value>> = None;
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Id => encode_into(&mut out, m.id),
                Part::Key => encode_into(&mut out, m.key),
                Part::Path => encode_into(&mut out, m.path),
                Part::Header(h) => {
                    let v = m
                        .headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(h))
                        .map(|(_, v)| v.as_str())
                        .ok_or_else(|| Unfilled {
                            placeholder: format!("header.{h}"),
                            why: "the message has no such header",
                        })?;
                    encode_into(&mut out, v);
                }
                Part::Body(fields) => {
                    let parsed = body.get_or_insert_with(|| serde_json::from_slice(m.body).ok());
                    let placeholder = || format!("body.{}", fields.join("."));
                    let Some(root) = parsed else {
                        return Err(Unfilled {
                            placeholder: placeholder(),
                            why: "the body is not JSON",
                        });
                    };
                    let mut v = &*root;
                    for f in fields {
                        v = match v {
                            serde_json::Value::Object(o) => o.get(f),
                            serde_json::Value::Array(a) => {
                                f.parse::<usize>().ok().and_then(|i| a.get(i))
                            }
                            _ => None,
                        }
                        .ok_or_else(|| Unfilled {
                            placeholder: placeholder(),
                            why: "the body has no such member",
                        })?;
                    }
                    match v {
                        serde_json::Value::String(s) => encode_into(&mut out, s),
                        serde_json::Value::Number(n) => encode_into(&mut out, &n.to_string()),
                        serde_json::Value::Bool(b) => encode_into(&mut out, &b.to_string()),
                        _ => {
                            return Err(Unfilled {
                                placeholder: placeholder(),
                                why: "the member is not a string, a number or a boolean",
                            })
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_into(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Response, TransportFailure};

    fn facts<'a>(body: &'a [u8], headers: &'a [(String, String)]) -> MessageFacts<'a> {
        MessageFacts {
            id: "01J",
            key: "k 1",
            path: "/v1/users",
            headers,
            body,
        }
    }

    #[test]
    fn placeholders_are_filled_and_encoded() {
        let headers = vec![("X-Ref".to_owned(), "a/b".to_owned())];
        let t = PathTemplate::parse(
            "/v1/users?email={body.email}&n={body.a.0}&r={header.x-ref}&k={key}&id={id}&p={path}",
        )
        .unwrap();
        let body = br#"{"email":"ann+1@example.com","a":[7]}"#;
        assert_eq!(
            t.render(&facts(body, &headers)).unwrap(),
            "/v1/users?email=ann%2B1%40example.com&n=7&r=a%2Fb&k=k%201&id=01J&p=%2Fv1%2Fusers"
        );
    }

    #[test]
    fn a_placeholder_that_names_nothing_is_refused_at_parse() {
        assert_eq!(
            PathTemplate::parse("/x/{nope}").unwrap_err(),
            TemplateError::Unknown("nope".into())
        );
        assert!(PathTemplate::parse("/x/{body.}").is_err());
        assert!(PathTemplate::parse("/x/{header.}").is_err());
        assert_eq!(
            PathTemplate::parse("/x/{id").unwrap_err(),
            TemplateError::Unclosed(3)
        );
        assert_eq!(
            PathTemplate::parse("x").unwrap_err(),
            TemplateError::NotAPath
        );
    }

    #[test]
    fn a_value_missing_from_the_message_is_named() {
        let t = PathTemplate::parse("/u?e={body.nope}").unwrap();
        let e = t.render(&facts(br#"{"email":"x"}"#, &[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the probe's `{body.nope}` has no value in this message (the body has no such member)"
        );
        assert!(t.render(&facts(b"not json", &[])).is_err());
        let t = PathTemplate::parse("/u/{header.X-Ref}").unwrap();
        assert!(t.render(&facts(b"{}", &[])).is_err());
        let t = PathTemplate::parse("/u/{body.o}").unwrap();
        assert!(t.render(&facts(br#"{"o":{}}"#, &[])).is_err());
    }

    #[test]
    fn the_probe_is_judged_by_its_status_lists() {
        let probe = ReconcileProbe {
            method: "GET".into(),
            path: PathTemplate::parse("/x").unwrap(),
            applied: vec![StatusRange::hundreds(2)],
            not_applied: vec![StatusRange::one(404)],
            after: Duration::from_secs(5),
        };
        let at = |status| {
            probe.judge(&Outcome::Response(Response {
                status,
                headers: &[],
                body: b"",
            }))
        };
        assert_eq!(at(200), Probed::Applied);
        assert_eq!(at(404), Probed::NotApplied);
        assert_eq!(
            at(500),
            Probed::Unknown(
                "the probe answered 500, which is neither applied (2xx) nor not_applied (404)"
                    .into()
            )
        );
        assert_eq!(
            probe.judge(&Outcome::Transport(TransportFailure::Timeout)),
            Probed::Unknown("the probe failed: timeout".into())
        );
    }
}
