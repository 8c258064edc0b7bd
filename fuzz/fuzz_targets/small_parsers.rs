//! The small parsers of configuration values: durations, sizes, rate
//! limits, reconciliation path templates.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = redrive_core::parse_duration(text) {
        let _ = redrive_core::format_duration(d);
    }
    if let Ok(n) = redrive_core::size::parse_size(text) {
        let _ = redrive_core::size::format_size(n);
    }
    let _ = text.parse::<redrive_engine::Rate>();
    let _ = redrive_core::reconcile::PathTemplate::parse(text);
});
