//! PEM text and concatenated DER (`trustdeck_spiffe::pem`, `Bundle::from_pem_x509`): trust
//! bundle files, key files and chains from the Workload API.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustdeck_spiffe::{Bundle, TrustDomain, pem};

fuzz_target!(|data: &[u8]| {
    let _ = pem::split_der(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(blocks) = pem::decode(text) {
        for b in &blocks {
            let _ = pem::encode(&b.label, &b.der);
        }
    }
    let _ = pem::decode_certs(text);
    let _ = pem::decode_private_key(text);
    if let Ok(td) = TrustDomain::parse("example.org") {
        let _ = Bundle::from_pem_x509(&td, text);
    }
});
