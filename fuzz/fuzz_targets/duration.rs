//! Durations written as text in configs (`trustdeck_pki::rotation::parse_duration`: `"90s"`,
//! `"1h30m"`, `"500ms"`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = trustdeck_pki::rotation::parse_duration(text);
    }
});
