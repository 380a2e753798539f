//! The console's fleet file (`trustdeck_console::fleetfile`): JSON written by the demo or by
//! hand, read by `trustdeck console|status|watch`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use trustdeck_console::fleetfile::FleetFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(fleet) = FleetFile::parse(text, Path::new("fleet.json"))
    {
        assert!(fleet.targets().is_ok());
    }
});
