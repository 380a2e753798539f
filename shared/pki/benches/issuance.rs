//! X.509-SVID issuance rate through the server's signing path (verify CSR, build, sign
//! through the key-manager trait) against the bare crypto cost (one P-256 verify plus one
//! P-256 sign with ring), measured in the same run.
//!
//! `cargo bench -p trustdeck-pki --bench issuance [-- ITERATIONS]`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use trustdeck_pki::csr::{make_csr, verify_csr};
use trustdeck_pki::keys::{KeyManager, MemoryKeyManager, SoftwareKey};
use trustdeck_pki::{SigningKey, X509Authority};
use trustdeck_spiffe::{SpiffeId, TrustDomain};

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    let td = TrustDomain::parse("example.org").expect("td");
    let km = MemoryKeyManager::new();
    let ca_key = km.generate("bench-ca").expect("ca key");
    let now = Utc::now();
    let ca = X509Authority::self_signed(&td, ca_key, "bench CA", now, chrono::Duration::days(1))
        .expect("ca");
    let id = SpiffeId::parse("spiffe://example.org/prod/gcp/payments/api").expect("id");
    let wk: Arc<dyn SigningKey> = Arc::new(SoftwareKey::ephemeral().expect("key").0);
    let csr = make_csr(&wk, Some(&id)).expect("csr");

    // Bare crypto: verify a signature over a CSR-sized message, sign a TBS-sized message.
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("k");
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).expect("k");
    let csr_info = vec![0x42u8; csr.len() - 72];
    let sig = pair.sign(&rng, &csr_info).expect("sign");
    let public = pair.public_key().as_ref().to_vec();
    let sample_svid = ca
        .issue_x509_svid(
            &verify_csr(&csr).expect("csr"),
            &id,
            &[],
            chrono::Duration::hours(1),
            now,
        )
        .expect("svid");
    let tbs = vec![0x24u8; sample_svid.chain[0].len() - 72];

    let bare = || {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &public)
            .verify(black_box(&csr_info), sig.as_ref())
            .expect("verify");
        black_box(pair.sign(&rng, black_box(&tbs)).expect("sign"));
    };
    let full = || {
        let v = verify_csr(black_box(&csr)).expect("csr");
        black_box(
            ca.issue_x509_svid(&v, &id, &[], chrono::Duration::hours(1), Utc::now())
                .expect("issue"),
        );
    };

    // Warm up, then alternate rounds so both see the same machine conditions.
    for _ in 0..200 {
        bare();
        full();
    }
    let rounds = 5;
    let per_round = iterations / rounds;
    let (mut t_bare, mut t_full) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let s = Instant::now();
        for _ in 0..per_round {
            bare();
        }
        t_bare += s.elapsed();
        let s = Instant::now();
        for _ in 0..per_round {
            full();
        }
        t_full += s.elapsed();
    }
    let n = (per_round * rounds) as f64;
    let bare_rate = n / t_bare.as_secs_f64();
    let full_rate = n / t_full.as_secs_f64();
    println!("iterations per path:            {}", per_round * rounds);
    println!(
        "bare P-256 verify+sign:         {bare_rate:>10.0} /s ({:.1} us each)",
        1e6 / bare_rate
    );
    println!(
        "SVID issuance (verify CSR, build, sign via trait): {full_rate:>10.0} /s ({:.1} us each)",
        1e6 / full_rate
    );
    println!(
        "ratio issuance/bare:            {:.3} (target >= 0.8)",
        full_rate / bare_rate
    );
}
