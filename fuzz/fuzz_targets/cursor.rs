//! Listing cursors: any text is a cursor of one order or refused; a cursor
//! read back prints as it was read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redrive_store::{Cursor, ListOrder};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for order in [ListOrder::Id, ListOrder::Due, ListOrder::Delivered] {
        if let Ok(c) = Cursor::parse(text, order) {
            let again = Cursor::parse(&c.to_string(), order).expect("a printed cursor parses");
            assert_eq!(again, c);
        }
    }
});
