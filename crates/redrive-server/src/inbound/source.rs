//! `[sources.NAME]` (DESIGN.md, "Inbound sources"): read, checked against
//! the destinations, and turned into what the inbound routes use. Every error
//! names its key under the table (`.verify.hmac_sha256.encoding`), which the
//! caller prefixes.

use std::time::Duration;

use base64::Engine as _;
use redrive_core::duration::DurationText;
use redrive_engine::SigningSecret;
use serde::Deserialize;

/// The largest body a source accepts unless it says otherwise.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// How long a sender may take to send its body unless the source says
/// otherwise.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How far a Standard Webhooks timestamp may be from now (the
/// specification's tolerance).
pub const TIMESTAMP_TOLERANCE_S: i64 = 5 * 60;

/// A source as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceSpec {
    path: Option<String>,
    destination: String,
    verify: Option<VerifySpec>,
    dedupe: Option<DedupeSpec>,
    respond: Option<RespondSpec>,
    max_body_bytes: Option<usize>,
    read_timeout: Option<DurationText>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum VerifySpec {
    None(String),
    Table(VerifyTable),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum VerifyTable {
    StandardWebhooks(String),
    HmacSha256(HmacSpec),
    Bearer(String),
    Basic(BasicSpec),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HmacSpec {
    secret: String,
    header: String,
    encoding: Option<String>,
    prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BasicSpec {
    user: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum DedupeSpec {
    Header(String),
    Json(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RespondSpec {
    Accepted(String),
    Synchive(SynchiveSpec),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SynchiveSpec {
    synchive: String,
}

/// A checked source.
#[derive(Clone, Debug)]
pub struct Source {
    /// Its name (`[sources.NAME]`).
    pub name: String,
    /// Its path: requests to it and below it are its own.
    pub path: String,
    /// The destination each request becomes a message to.
    pub destination: String,
    /// How a request proves it comes from the platform.
    pub verify: Verify,
    /// What identifies an event sent twice.
    pub dedupe: Option<Dedupe>,
    /// How it answers.
    pub respond: Respond,
    /// The largest body.
    pub max_body: usize,
    /// How long a sender may take to send the body.
    pub read_timeout: Duration,
}

/// How a request proves it comes from the platform.
#[derive(Clone)]
pub enum Verify {
    /// Nothing is checked.
    None,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`
    /// (<https://www.standardwebhooks.com/>).
    StandardWebhooks(SigningSecret),
    /// An HMAC-SHA256 of the body in a header.
    HmacSha256 {
        /// The secret's bytes, as written.
        secret: Vec<u8>,
        /// The header holding the signature.
        header: http::HeaderName,
        /// Hex or base64.
        encoding: Encoding,
        /// Text before the signature (`sha256=`).
        prefix: String,
    },
    /// `Authorization: Bearer TOKEN`.
    Bearer(String),
    /// `Authorization: Basic ...`: the expected `user:password`.
    Basic(String),
}

impl std::fmt::Debug for Verify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl Verify {
    /// What it is called in the configuration (never its secret).
    pub fn kind(&self) -> &'static str {
        match self {
            Verify::None => "none",
            Verify::StandardWebhooks(_) => "standard_webhooks",
            Verify::HmacSha256 { .. } => "hmac_sha256",
            Verify::Bearer(_) => "bearer",
            Verify::Basic(_) => "basic",
        }
    }
}

/// How an HMAC signature is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Lower- or upper-case hexadecimal.
    Hex,
    /// Standard base64.
    Base64,
}

/// What identifies an event sent twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dedupe {
    /// A header's value.
    Header(http::HeaderName),
    /// A JSON pointer into the body (`/event/id`).
    Json(String),
}

/// How a source answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Respond {
    /// 202 `{"id": ...}`; errors are problem+json.
    Accepted,
    /// Seed 002: errors are HTTP 500 with a `publish-error` body.
    SynchivePublish,
    /// Seed 002: errors are HTTP 500 with a `process-error` body.
    SynchiveProcess,
}

/// Checks `[sources.*]`: names, paths (under `/in/`, neither equal nor one
/// below another), destinations that exist. Errors are `(key, message)`.
pub(crate) fn sources(
    specs: &std::collections::BTreeMap<String, SourceSpec>,
    destinations: &[&str],
) -> Result<Vec<Source>, (String, String)> {
    let mut out: Vec<Source> = Vec::with_capacity(specs.len());
    for (name, spec) in specs {
        let key = |k: &str| {
            if k.is_empty() {
                format!("sources.{name}")
            } else {
                format!("sources.{name}.{k}")
            }
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err((
                key(""),
                "a source name may hold only letters, digits, `-` and `_`".to_owned(),
            ));
        }
        let source = one(name, spec, destinations).map_err(|(k, m)| (key(&k), m))?;
        if let Some(other) = out.iter().find(|o| nested(&o.path, &source.path)) {
            return Err((
                key("path"),
                format!(
                    "`{}` overlaps source `{}` (`{}`): a request must belong to one source",
                    source.path, other.name, other.path
                ),
            ));
        }
        out.push(source);
    }
    Ok(out)
}

/// Whether one path is the other or lies below it.
fn nested(a: &str, b: &str) -> bool {
    let below = |x: &str, y: &str| x == y || x.strip_prefix(y).is_some_and(|r| r.starts_with('/'));
    below(a, b) || below(b, a)
}

fn one(name: &str, spec: &SourceSpec, destinations: &[&str]) -> Result<Source, (String, String)> {
    let e = |k: &str, m: String| (k.to_owned(), m);
    let path = spec.path.clone().unwrap_or_else(|| format!("/in/{name}"));
    if !path.starts_with("/in/")
        || path.ends_with('/')
        || !path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
    {
        return Err(e(
            "path",
            format!("`{path}` must start with `/in/`, not end with `/`, and hold only letters, digits and `/-_.~`"),
        ));
    }
    if !destinations.contains(&spec.destination.as_str()) {
        return Err(e(
            "destination",
            format!(
                "`{}` is not a [destinations.*] table; configured: {}",
                spec.destination,
                if destinations.is_empty() {
                    "none".to_owned()
                } else {
                    destinations.join(", ")
                }
            ),
        ));
    }
    let verify = match &spec.verify {
        None => return Err(e("verify", "is required: say how a request proves it comes from the platform (standard_webhooks, hmac_sha256, bearer, basic), or write verify = \"none\"".to_owned())),
        Some(VerifySpec::None(s)) if s == "none" => Verify::None,
        Some(VerifySpec::None(s)) => return Err(e("verify", format!("`{s}` is not a verification; write \"none\" or a table such as {{ standard_webhooks = \"whsec_...\" }}"))),
        Some(VerifySpec::Table(t)) => verify(t).map_err(|(k, m)| (format!("verify.{k}"), m))?,
    };
    let dedupe = match &spec.dedupe {
        Some(DedupeSpec::Header(h)) => Some(Dedupe::Header(
            http::HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| e("dedupe.header", format!("`{h}` is not a header name")))?,
        )),
        Some(DedupeSpec::Json(p)) => {
            if !p.starts_with('/') {
                return Err(e(
                    "dedupe.json",
                    format!("`{p}` is not a JSON pointer; write one such as `/event/id`"),
                ));
            }
            Some(Dedupe::Json(p.clone()))
        }
        None if matches!(verify, Verify::StandardWebhooks(_)) => {
            Some(Dedupe::Header(http::HeaderName::from_static("webhook-id")))
        }
        None => None,
    };
    let respond = match &spec.respond {
        None => Respond::Accepted,
        Some(RespondSpec::Accepted(s)) if s == "accepted" => Respond::Accepted,
        Some(RespondSpec::Accepted(s)) => {
            return Err(e(
                "respond",
                format!("`{s}` is not an answer; write \"accepted\" or {{ synchive = \"publish\" | \"process\" }}"),
            ))
        }
        Some(RespondSpec::Synchive(s)) => match s.synchive.as_str() {
            "publish" => Respond::SynchivePublish,
            "process" => Respond::SynchiveProcess,
            other => {
                return Err(e(
                    "respond.synchive",
                    format!("`{other}` is neither \"publish\" (PUT /v1/data) nor \"process\" (PUT /v1/process)"),
                ))
            }
        },
    };
    let max_body = spec.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if max_body == 0 {
        return Err(e("max_body_bytes", "must be at least 1".to_owned()));
    }
    let read_timeout = spec.read_timeout.map_or(DEFAULT_READ_TIMEOUT, |d| d.0);
    if read_timeout.is_zero() {
        return Err(e("read_timeout", "must be above 0s".to_owned()));
    }
    Ok(Source {
        name: name.to_owned(),
        path,
        destination: spec.destination.clone(),
        verify,
        dedupe,
        respond,
        max_body,
        read_timeout,
    })
}

fn verify(t: &VerifyTable) -> Result<Verify, (String, String)> {
    let e = |k: &str, m: &str| (k.to_owned(), m.to_owned());
    Ok(match t {
        VerifyTable::StandardWebhooks(s) => Verify::StandardWebhooks(
            SigningSecret::parse_lenient(s)
                .map_err(|err| ("standard_webhooks".to_owned(), err.to_string()))?,
        ),
        VerifyTable::HmacSha256(h) => {
            if h.secret.is_empty() {
                return Err(e("hmac_sha256.secret", "is empty"));
            }
            let header = http::HeaderName::from_bytes(h.header.as_bytes())
                .map_err(|_| e("hmac_sha256.header", "is not a header name"))?;
            let encoding = match h.encoding.as_deref().unwrap_or("hex") {
                "hex" => Encoding::Hex,
                "base64" => Encoding::Base64,
                _ => {
                    return Err(e(
                        "hmac_sha256.encoding",
                        "is neither \"hex\" nor \"base64\"",
                    ))
                }
            };
            Verify::HmacSha256 {
                secret: h.secret.as_bytes().to_vec(),
                header,
                encoding,
                prefix: h.prefix.clone().unwrap_or_default(),
            }
        }
        VerifyTable::Bearer(t) => {
            if t.is_empty() {
                return Err(e("bearer", "is empty"));
            }
            Verify::Bearer(t.clone())
        }
        VerifyTable::Basic(b) => {
            if b.user.contains(':') {
                return Err(e("basic.user", "may not hold `:`"));
            }
            Verify::Basic(
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", b.user, b.password)),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Source>, (String, String)> {
        let specs: std::collections::BTreeMap<String, SourceSpec> =
            toml::from_str(text).map_err(|e| (String::new(), e.to_string()))?;
        sources(&specs, &["handler", "other"])
    }

    #[test]
    fn a_source_takes_its_defaults_from_its_name_and_verification() {
        let s = parse(
            "[privo]\ndestination = \"handler\"\nverify = { standard_webhooks = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }\n",
        )
        .unwrap();
        assert_eq!(s[0].path, "/in/privo");
        assert_eq!(
            s[0].dedupe,
            Some(Dedupe::Header(http::HeaderName::from_static("webhook-id")))
        );
        assert_eq!(s[0].respond, Respond::Accepted);
        assert_eq!(s[0].max_body, DEFAULT_MAX_BODY);
        assert_eq!(format!("{:?}", s[0].verify), "standard_webhooks");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[a]\ndestination = \"nope\"\nverify = \"none\"\n", "sources.a.destination", "`nope` is not a [destinations.*] table; configured: handler, other"),
            ("[a]\ndestination = \"handler\"\n", "sources.a.verify", "is required"),
            ("[a]\ndestination = \"handler\"\nverify = \"nome\"\n", "sources.a.verify", "`nome` is not a verification"),
            ("[a]\ndestination = \"handler\"\nverify = { standard_webhooks = \"!!\" }\n", "sources.a.verify.standard_webhooks", "base64"),
            ("[a]\ndestination = \"handler\"\nverify = { hmac_sha256 = { secret = \"s\", header = \"X-Sig\", encoding = \"b32\" } }\n", "sources.a.verify.hmac_sha256.encoding", "neither"),
            ("[a]\npath = \"/hooks/a\"\ndestination = \"handler\"\nverify = \"none\"\n", "sources.a.path", "must start with `/in/`"),
            ("[a]\ndestination = \"handler\"\nverify = \"none\"\n[b]\npath = \"/in/a/b\"\ndestination = \"handler\"\nverify = \"none\"\n", "sources.b.path", "overlaps source `a`"),
            ("[a]\ndestination = \"handler\"\nverify = \"none\"\nrespond = { synchive = \"push\" }\n", "sources.a.respond.synchive", "neither \"publish\""),
            ("[a]\ndestination = \"handler\"\nverify = \"none\"\ndedupe = { json = \"event.id\" }\n", "sources.a.dedupe.json", "not a JSON pointer"),
            ("[\"a b\"]\ndestination = \"handler\"\nverify = \"none\"\n", "sources.a b", "only letters"),
        ];
        for (text, key, words) in cases {
            let (k, m) = parse(text).unwrap_err();
            assert_eq!(k, key, "{text}: {m}");
            assert!(m.contains(words), "{text}: {m}");
        }
    }

    #[test]
    fn paths_that_only_share_a_prefix_do_not_overlap() {
        let s = parse(
            "[a]\ndestination = \"handler\"\nverify = \"none\"\n[ab]\npath = \"/in/ab\"\ndestination = \"handler\"\nverify = \"none\"\n",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert!(nested("/in/a", "/in/a/b"));
        assert!(!nested("/in/a", "/in/ab"));
    }
}
