//! Certificate signing requests (`trustdeck_pki::csr::verify_csr`): DER from agents and
//! downstream servers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = trustdeck_pki::csr::verify_csr(data);
});
