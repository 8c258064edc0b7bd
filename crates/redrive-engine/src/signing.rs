//! Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`), so receivers can verify a delivery came from us and is
//! fresh. <https://www.standardwebhooks.com/>: the signed content is
//! `{id}.{timestamp}.{body}`, HMAC-SHA256 with the secret's bytes (the base64
//! after `whsec_`), sent as `v1,{base64}`.

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
        let bytes = STANDARD.decode(b64).map_err(|_| SecretError::Base64)?;
        if bytes.len() < 24 {
            return Err(SecretError::TooShort);
        }
        Ok(SigningSecret(bytes))
    }

    /// The `webhook-signature` value for this id, timestamp (Unix seconds) and body.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC accepts keys of any length; new_from_slice cannot fail for it.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
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
