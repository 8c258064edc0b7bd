//! `redrive.toml`: any text (with `${VAR}` from a small environment) loads or
//! is refused with one line naming the key.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: HashMap<String, String> = [
        ("TOKEN".to_owned(), "t0k3n-0123456789abcdef".to_owned()),
        ("REDRIVE__SERVER__RETENTION".to_owned(), "1d".to_owned()),
    ]
    .into();
    if let Err(e) = redrive_server::Config::from_toml("fuzz.toml", text, &env) {
        let _ = e.to_string();
    }
});
