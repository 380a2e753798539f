//! Registration selectors (`kind:value`, `trustdeck_spiffe::selector`): from the admin API and
//! from node attestation. A parsed selector must print back to its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustdeck_spiffe::Selector;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sel) = Selector::parse(s) {
        assert_eq!(sel.to_string(), s);
        assert_eq!(Selector::new(sel.kind(), sel.value()).ok(), Some(sel));
    }
});
