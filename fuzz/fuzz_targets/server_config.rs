//! The server's TOML config (`trustdeck_server::config::Config::parse`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = trustdeck_server::config::Config::parse(text, "fuzz.toml");
    }
});
