//! Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`), so receivers can verify a delivery came from us and is
//! fresh. <https://www.standardwebhooks.com/>: the signed content is
//! `{id}.{timestamp}.{body}`, HMAC-SHA256 with the secret's bytes (the base64
//! after `whsec_`), sent as `v1,{base64}`.
//!
//! The same secret verifies what a platform sends to an inbound source
//! ([`SigningSecret::verify`]): one module for both directions, so the signed
//! content cannot differ between them. No crate: the `standardwebhooks` crate
//! would bring a second HMAC implementation, an older `base64` and `time` for
//! the twenty lines below, and the tests check both directions against the
//! specification's vector and the Python reference package.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A signing secret, decoded.
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// It does not start with `whsec_`.
    #[error("a signing secret starts with `whsec_` followed by base64")]
    Prefix,
    /// The part after `whsec_` is not base64.
    #[error("the part after `whsec_` is not valid base64")]
    Base64,
    /// It decodes to too few bytes to be a secret.
    #[error("the secret is too short: use at least 24 random bytes")]
    TooShort,
}

impl SigningSecret {
    /// Reads `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let b64 = text.strip_prefix("whsec_").ok_or(SecretError::Prefix)?;
        Self::from_base64(b64)
    }

    /// Reads a secret given as `whsec_<base64>` or as bare base64 (the
    /// reference libraries take both).
    pub fn parse_lenient(text: &str) -> Result<Self, SecretError> {
        Self::from_base64(text.strip_prefix("whsec_").unwrap_or(text))
    }

    fn from_base64(b64: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD.decode(b64).map_err(|_| SecretError::Base64)?;
        if bytes.len() < 24 {
            return Err(SecretError::TooShort);
        }
        Ok(SigningSecret(bytes))
    }

    /// The `webhook-signature` value for this id, timestamp (Unix seconds) and body.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        match self.mac(id, &timestamp.to_string(), body) {
            Some(mac) => format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())),
            None => String::new(),
        }
    }

    /// Whether `signatures` (a `webhook-signature` header: space-separated
    /// `v1,{base64}` entries, one per secret the sender holds) has one made
    /// with this secret over `id`, `timestamp` (the header's text, as signed)
    /// and `body`. Each comparison takes constant time. Entries of another
    /// version (`v1a,` is asymmetric) are skipped, as the specification asks.
    pub fn verify(&self, id: &str, timestamp: &str, body: &[u8], signatures: &str) -> bool {
        let Some(mac) = self.mac(id, timestamp, body) else {
            return false;
        };
        signatures.split(' ').any(|entry| {
            let Some(b64) = entry.strip_prefix("v1,") else {
                return false;
            };
            match STANDARD.decode(b64) {
                Ok(given) => mac.clone().verify_slice(&given).is_ok(),
                Err(_) => false,
            }
        })
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Option<Hmac<Sha256>> {
        // HMAC accepts keys of any length; new_from_slice cannot fail for it.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).ok()?;
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        Some(mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        // The example of the Standard Webhooks specification.
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn verifies_the_standard_webhooks_test_vector_and_nothing_else() {
        let secret = SigningSecret::parse_lenient("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#.as_slice(),
        );
        let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert!(secret.verify(id, ts, body, good));
        // One of several entries (a sender rotating its secret).
        assert!(secret.verify(id, ts, body, &format!("v1,bm9wZQ== v1a,xyz {good}")));
        assert!(!secret.verify(id, ts, b"{\"test\": 2432232315}", good));
        assert!(!secret.verify(id, "1614265331", body, good));
        assert!(!secret.verify("msg_other", ts, body, good));
        assert!(!secret.verify(
            id,
            ts,
            body,
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        ));
        assert!(!secret.verify(id, ts, body, "v1,not base64!"));
        assert!(!secret.verify(id, ts, body, ""));
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert_eq!(
            SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(),
            SecretError::Prefix
        );
        assert_eq!(
            SigningSecret::parse("whsec_!!!").unwrap_err(),
            SecretError::Base64
        );
        assert_eq!(
            SigningSecret::parse("whsec_c2hvcnQ=").unwrap_err(),
            SecretError::TooShort
        );
        assert_eq!(
            format!(
                "{:?}",
                SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
            ),
            "SigningSecret([redacted])"
        );
    }
}
