//! `redrive mock` scenarios: any text loads or is refused. No base
//! directory, so `body_file` resolves nothing outside what the text names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("body_file") {
        return;
    }
    if let Err(e) = redrive_mock::Scenario::from_toml("fuzz.toml", text, None) {
        let _ = e.to_string();
    }
});
