//! x509pop node evidence (`trustdeck_pki::x509pop`): a certificate chain verified against a
//! fixed CA, then a proof signature over a nonce. Input: framed parts (see
//! `trustdeck_fuzz::parts`): nonce, signature, then the chain, leaf first.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustdeck_pki::x509pop;

fuzz_target!(|data: &[u8]| {
    let p = trustdeck_fuzz::parts(data, 8);
    let (nonce, sig, chain) = match p.as_slice() {
        [nonce, sig, chain @ ..] => (*nonce, *sig, chain),
        _ => return,
    };
    let chain: Vec<Vec<u8>> = chain.iter().map(|c| c.to_vec()).collect();
    let trusted = [trustdeck_fuzz::X509POP_CA.to_vec()];
    if let Ok(node) = x509pop::verify_chain(&chain, &trusted, trustdeck_fuzz::now()) {
        let _ = x509pop::verify_proof(&node.leaf_spki, nonce, sig);
    }
    if let Some(first) = chain.first() {
        let _ = x509pop::verify_proof(first, nonce, sig);
    }
});
