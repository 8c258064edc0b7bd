//! What a token endpoint answers (RFC 6749 §5.1, §5.2): any status and body
//! is a token or a refusal, and neither shows the token in its words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redrive_core::bodies::oauth::read_token_response;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let status = 100 + u16::from_be_bytes([data[0], data[1]]) % 500;
    match read_token_response(status, &data[2..]) {
        Ok(t) => {
            let _ = format!("{t:?}");
        }
        Err(e) => {
            let _ = (e.to_string(), e.is_temporary());
        }
    }
});
