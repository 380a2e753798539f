//! TPM DevID node evidence (`trustdeck_tpm::verify`): DevID chain, EK certificate and both
//! public areas verified against fixed CAs, then the proof and the activated secret. Input:
//! framed parts (see `trustdeck_fuzz::parts`): EK certificate, EK public, DevID public,
//! nonce, signature, then the DevID chain, leaf first.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustdeck_tpm::verify::{self, Bundle, Evidence};

fuzz_target!(|data: &[u8]| {
    let p = trustdeck_fuzz::parts(data, 11);
    let [ek_cert, ek_public, devid_public, nonce, sig, chain @ ..] = p.as_slice() else {
        return;
    };
    let chain: Vec<Vec<u8>> = chain.iter().map(|c| c.to_vec()).collect();
    let devid_cas = [trustdeck_fuzz::DEVID_CA.to_vec()];
    let ek_cas = [trustdeck_fuzz::EK_CA.to_vec()];
    let evidence = Evidence {
        devid_chain: &chain,
        ek_cert,
        ek_public,
        devid_public,
    };
    let verified = verify::verify_evidence(
        evidence,
        Bundle {
            name: "devid",
            certs: &devid_cas,
        },
        Bundle {
            name: "ek",
            certs: &ek_cas,
        },
        trustdeck_fuzz::now(),
    );
    if let Ok(device) = verified {
        let _ = verify::verify_proof(&device.devid_spki, nonce, sig);
    }
    let _ = verify::verify_proof(ek_cert, nonce, sig);
    let _ = verify::verify_secret(nonce, sig);
    let _ = verify::der_prefix(ek_cert);
});
