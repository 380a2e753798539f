//! JWT-SVIDs (`trustdeck_spiffe::jwt`): tokens from workloads, decoded and validated against
//! a bundle's JWT authorities.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use trustdeck_spiffe::{Bundle, JwtAuthority, TrustDomain, jwt};

static AUTHORITIES: LazyLock<Vec<JwtAuthority>> = LazyLock::new(|| {
    let td = TrustDomain::parse("example.org").expect("trust domain");
    Bundle::from_json(&td, trustdeck_fuzz::JWT_BUNDLE)
        .expect("fixture bundle")
        .jwt_authorities
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = jwt::decode_unverified(token);
    let _ = jwt::validate(token, "fuzz", &AUTHORITIES, trustdeck_fuzz::now());
});
