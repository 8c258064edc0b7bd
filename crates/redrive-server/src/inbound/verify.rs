//! Does a request come from the platform? Each check compares in constant
//! time (`hmac`'s `verify_slice`, `subtle`), and its refusal says what was
//! missing or wrong without a byte of the secret or of what was expected.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::source::{Encoding, Verify, TIMESTAMP_TOLERANCE_S};

/// Checks `headers` and `body` against `verify` at `now_s` (Unix seconds).
/// `Err` says why, in words a sender's engineer can act on.
pub(crate) fn check(
    verify: &Verify,
    headers: &HeaderMap,
    body: &[u8],
    now_s: i64,
) -> Result<(), String> {
    match verify {
        Verify::None => Ok(()),
        Verify::StandardWebhooks(secret) => {
            let id = text(headers, "webhook-id")?;
            let ts_text = text(headers, "webhook-timestamp")?;
            let signatures = text(headers, "webhook-signature")?;
            let ts: i64 = ts_text.parse().map_err(|_| {
                format!("`webhook-timestamp` `{ts_text}` is not a number of seconds")
            })?;
            if (now_s - ts).abs() > TIMESTAMP_TOLERANCE_S {
                return Err(format!(
                    "`webhook-timestamp` is {} s from this server's clock; at most {TIMESTAMP_TOLERANCE_S} s are accepted (a replay, or a clock that is off)",
                    (now_s - ts).abs()
                ));
            }
            if secret.verify(id, ts_text, body, signatures) {
                Ok(())
            } else {
                Err("no `webhook-signature` entry matches this source's secret over the webhook-id, the timestamp and the body".to_owned())
            }
        }
        Verify::HmacSha256 {
            secret,
            header,
            encoding,
            prefix,
        } => {
            let name = header.as_str();
            let value = text(headers, name)?;
            let Some(sig) = value.strip_prefix(prefix.as_str()) else {
                return Err(format!("`{name}` does not start with `{prefix}`"));
            };
            let given = match encoding {
                Encoding::Hex => decode_hex(sig.trim()),
                Encoding::Base64 => base64::engine::general_purpose::STANDARD
                    .decode(sig.trim())
                    .ok(),
            }
            .ok_or_else(|| format!("`{name}` is not {}", encoding_name(*encoding)))?;
            let mut mac = Hmac::<Sha256>::new_from_slice(secret)
                .map_err(|_| "the source's secret is not usable".to_owned())?;
            mac.update(body);
            mac.verify_slice(&given).map_err(|_| {
                format!("`{name}` is not the HMAC-SHA256 of the body with this source's secret")
            })
        }
        Verify::Bearer(token) => {
            let given = authorization(headers, "Bearer ")?;
            if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
                Ok(())
            } else {
                Err("the bearer token is not this source's".to_owned())
            }
        }
        Verify::Basic(expected) => {
            let given = authorization(headers, "Basic ")?;
            if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                Ok(())
            } else {
                Err("the user or password is not this source's".to_owned())
            }
        }
    }
}

/// Whether the source's own credentials travel in `Authorization` (then the
/// header is not passed on to the destination).
pub(crate) fn uses_authorization(verify: &Verify) -> bool {
    matches!(verify, Verify::Bearer(_) | Verify::Basic(_))
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, String> {
    let v = headers
        .get(name)
        .ok_or_else(|| format!("the `{name}` header is missing"))?;
    v.to_str()
        .map_err(|_| format!("the `{name}` header is not text"))
}

fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Result<&'a str, String> {
    let v = text(headers, "authorization")?;
    match v.get(..scheme.len()) {
        Some(s) if s.eq_ignore_ascii_case(scheme) => Ok(v[scheme.len()..].trim()),
        _ => Err(format!("send `Authorization: {scheme}...`")),
    }
}

fn encoding_name(e: Encoding) -> &'static str {
    match e {
        Encoding::Hex => "hexadecimal",
        Encoding::Base64 => "base64",
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hmac_sha256_in_hex_with_a_prefix_as_github_sends_it() {
        // GitHub's documented example: secret "It's a Secret to Everybody",
        // body "Hello, World!".
        let v = Verify::HmacSha256 {
            secret: b"It's a Secret to Everybody".to_vec(),
            header: http::HeaderName::from_static("x-hub-signature-256"),
            encoding: Encoding::Hex,
            prefix: "sha256=".into(),
        };
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = headers(&[("x-hub-signature-256", good)]);
        assert_eq!(check(&v, &h, b"Hello, World!", 0), Ok(()));
        let err = check(&v, &h, b"Hello, World?", 0).unwrap_err();
        assert!(err.contains("not the HMAC-SHA256"), "{err}");
        let err = check(&v, &headers(&[("x-hub-signature-256", "757107ea")]), b"", 0).unwrap_err();
        assert!(err.contains("does not start with `sha256=`"), "{err}");
        let err = check(
            &v,
            &headers(&[("x-hub-signature-256", "sha256=zz")]),
            b"",
            0,
        )
        .unwrap_err();
        assert!(err.contains("not hexadecimal"), "{err}");
        let err = check(&v, &HeaderMap::new(), b"", 0).unwrap_err();
        assert_eq!(err, "the `x-hub-signature-256` header is missing");
    }

    #[test]
    fn bearer_and_basic_compare_the_whole_credential() {
        let v = Verify::Bearer("s3cret-token".into());
        assert_eq!(
            check(
                &v,
                &headers(&[("authorization", "Bearer s3cret-token")]),
                b"",
                0
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &v,
                &headers(&[("authorization", "bearer s3cret-token")]),
                b"",
                0
            ),
            Ok(())
        );
        for bad in [
            "Bearer s3cret",
            "Bearer s3cret-token2",
            "Basic s3cret-token",
        ] {
            let err = check(&v, &headers(&[("authorization", bad)]), b"", 0).unwrap_err();
            assert!(!err.contains("s3cret"), "{err}");
        }
        let v = Verify::Basic(base64::engine::general_purpose::STANDARD.encode("u:p"));
        assert_eq!(
            check(&v, &headers(&[("authorization", "Basic dTpw")]), b"", 0),
            Ok(())
        );
        assert!(check(&v, &headers(&[("authorization", "Basic dTpx")]), b"", 0).is_err());
    }

    #[test]
    fn standard_webhooks_checks_the_timestamp_window() {
        let secret =
            redrive_engine::SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = secret.sign("msg_1", 1_000_000, body);
        let v = Verify::StandardWebhooks(secret);
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "1000000"),
            ("webhook-signature", &sig),
        ]);
        assert_eq!(check(&v, &h, body, 1_000_000 + 300), Ok(()));
        assert_eq!(check(&v, &h, body, 1_000_000 - 300), Ok(()));
        let err = check(&v, &h, body, 1_000_000 + 301).unwrap_err();
        assert!(err.contains("301 s from this server's clock"), "{err}");
        let err = check(&v, &h, b"{}", 1_000_000).unwrap_err();
        assert!(
            err.contains("no `webhook-signature` entry matches"),
            "{err}"
        );
    }
}
