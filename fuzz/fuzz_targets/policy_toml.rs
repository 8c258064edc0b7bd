//! Policy files: any text loads or is refused with an error naming the key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = redrive_core::PolicySet::from_toml("fuzz.toml", text) {
        let _ = e.to_string();
    }
});
