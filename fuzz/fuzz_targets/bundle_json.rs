//! SPIFFE bundle JSON (`trustdeck_spiffe::bundle`): from federation peers, upstream servers and
//! files. A parsed bundle must serialise and parse back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustdeck_spiffe::{Bundle, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(td) = TrustDomain::parse("example.org") else {
        return;
    };
    if let Ok(bundle) = Bundle::from_json(&td, data) {
        let _ = bundle.jwks_json();
        let _ = bundle.to_pem();
        if let Ok(json) = bundle.try_to_json() {
            let again = Bundle::from_json(&td, json.as_bytes()).expect("own JSON re-parses");
            assert_eq!(again, bundle);
        }
    }
});
