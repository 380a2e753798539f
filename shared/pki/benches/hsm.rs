//! Signatures per second through a PKCS#11 token (SoftHSM2) against software keys, in the same
//! run: the cost of keeping CA keys in an HSM.
//!
//! Run: `cargo bench -p trustdeck-pki --bench hsm [-- ITERATIONS]` (needs softhsm2; creates a
//! throwaway token and re-runs itself with `SOFTHSM2_CONF` pointing at it).

use std::process::Command;
use std::time::Instant;

use trustdeck_pki::keys::{KeyStorage, SoftwareKey};
use trustdeck_pki::pkcs11::{Pkcs11KeyManager, Pkcs11Settings};
use trustdeck_pki::{KeyManager, SigningKey};

const PIN: &str = "bench-pin";

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3000);
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        // Set up a private token, then run again with SOFTHSM2_CONF (the module reads it once).
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = trustdeck_lab::init_softhsm2_token(dir.path(), "bench", PIN, PIN)
            .expect("SoftHSM2 token");
        let status = Command::new(std::env::current_exe().expect("exe"))
            .arg(iterations.to_string())
            .env("SOFTHSM2_CONF", &conf)
            .status()
            .expect("re-run");
        std::process::exit(status.code().unwrap_or(1));
    }
    let km = Pkcs11KeyManager::open(&Pkcs11Settings {
        module: trustdeck_lab::SOFTHSM2_MODULE.into(),
        token_label: Some("bench".into()),
        slot: None,
        key_label_prefix: "bench-".into(),
        pin: trustdeck_pki::pkcs11::AuthPin::from(PIN),
    })
    .expect("open token");
    let hsm = km.generate("ca").expect("generate in token");
    let (soft, _) = SoftwareKey::generate("soft", KeyStorage::Memory).expect("software key");
    // About the size of an X509-SVID's TBSCertificate.
    let msg = vec![0x5au8; 600];
    let verify = |k: &dyn SigningKey, sig: &[u8]| {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            k.public_point(),
        )
        .verify(&msg, sig)
        .is_ok()
    };
    assert!(
        verify(hsm.as_ref(), &hsm.sign(&msg).expect("sign")),
        "token signature verifies"
    );
    let rate = |k: &dyn SigningKey| {
        let t = Instant::now();
        for _ in 0..iterations {
            k.sign(&msg).expect("sign");
        }
        iterations as f64 / t.elapsed().as_secs_f64()
    };
    let mut soft_rates = Vec::new();
    let mut hsm_rates = Vec::new();
    for _ in 0..3 {
        soft_rates.push(rate(&soft));
        hsm_rates.push(rate(hsm.as_ref()));
    }
    let fmt = |v: &[f64]| {
        let min = v.iter().cloned().fold(f64::MAX, f64::min);
        let max = v.iter().cloned().fold(0.0, f64::max);
        format!("{min:.0}–{max:.0}/s")
    };
    println!("P-256 signatures, {iterations} per round, 3 rounds alternating:");
    println!("  software key (ring):      {}", fmt(&soft_rates));
    println!("  PKCS#11 token (SoftHSM2): {}", fmt(&hsm_rates));
    let ratio: Vec<f64> = hsm_rates
        .iter()
        .zip(&soft_rates)
        .map(|(h, s)| h / s)
        .collect();
    let rmin = ratio.iter().cloned().fold(f64::MAX, f64::min);
    let rmax = ratio.iter().cloned().fold(0.0, f64::max);
    println!("  token / software:         {rmin:.2}–{rmax:.2}");
    km.delete("ca").expect("delete");
}
