//! X.509 certificates checked against the SPIFFE profiles (`trustdeck_spiffe::x509`): SVIDs
//! and CA certificates from servers, upstreams and federation peers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustdeck_spiffe::x509;

fuzz_target!(|data: &[u8]| {
    let _ = x509::check_leaf(data);
    let _ = x509::check_ca(data);
    let _ = x509::cert_validity(data);
    let _ = x509::spiffe_id_of(data);
    let _ = x509::describe(data);
    let _ = x509::public_key_of(data);
});
