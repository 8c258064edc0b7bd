//! The body probe and the classification of a response: any status, any
//! headers the classification reads, any body bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redrive_core::{classify, Outcome, Response};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = 100 + u16::from_be_bytes([data[0], data[1]]) % 500;
    let content_type = match data[2] % 4 {
        0 => "application/json",
        1 => "application/problem+json",
        2 => "text/plain",
        _ => "application/json; charset=utf-8",
    };
    let (head, body) = data[3..].split_at(data[3..].iter().position(|b| *b == 0).unwrap_or(0));
    let header = std::str::from_utf8(head).unwrap_or("");
    let headers = [
        ("content-type", content_type),
        ("www-authenticate", header),
        ("retry-after", header),
    ];
    let outcome = Outcome::Response(Response {
        status,
        headers: &headers,
        body,
    });
    let _ = classify(&outcome, &[]);
    let _ = redrive_core::bodies::oauth::bearer_challenge_error(header);
});
