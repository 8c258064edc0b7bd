//! Standard Webhooks verification of what a sender claims: any id,
//! timestamp, body and `webhook-signature` header; a signature we make
//! verifies, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redrive_engine::SigningSecret;

fuzz_target!(|data: &[u8]| {
    let Ok(secret) = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") else {
        return;
    };
    let mut parts = data.splitn(4, |b| *b == b'\n');
    let id = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or("");
    let ts = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or("");
    let header = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or("");
    let body = parts.next().unwrap_or_default();
    let _ = secret.verify(id, ts, body, header);
    if let Ok(t) = ts.parse::<i64>() {
        let made = secret.sign(id, t, body);
        assert!(secret.verify(id, &t.to_string(), body, &made));
    }
    let _ = SigningSecret::parse_lenient(header);
});
