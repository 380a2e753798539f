//! SPIFFE IDs and trust domain names (`trustdeck_spiffe::id`): any text an agent, a workload,
//! a CSR or a config file can present. A parsed ID must re-parse to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustdeck_spiffe::{SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(td) = TrustDomain::parse(s) {
        let again = TrustDomain::parse(td.as_str()).expect("a parsed trust domain re-parses");
        assert_eq!(again, td);
        let _ = td.id();
    }
    if let Ok(id) = SpiffeId::parse(s) {
        let again = SpiffeId::parse(id.as_str()).expect("a parsed ID re-parses");
        assert_eq!(again, id);
        let _ = id.segments();
        let _ = id.require_path();
        assert!(id.is_member_of(id.trust_domain()));
    }
    if let Ok(td) = TrustDomain::parse("example.org")
        && let Ok(id) = SpiffeId::new(&td, s)
    {
        assert_eq!(SpiffeId::parse(id.as_str()).ok(), Some(id));
        let _ = SpiffeId::from_segments(&td, &s.split('/').collect::<Vec<_>>());
    }
});
