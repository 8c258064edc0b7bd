//! `Retry-After` (delta-seconds or an HTTP-date, RFC 9110 §10.2.3): any text
//! gives a delay or none, never a panic, and never a delay before "now".
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_765_000_000);
    let _ = redrive_core::retry_after::parse_retry_after(text, now);
});
