//! Certificates and bundles for the unit tests.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rcgen::{Issuer, KeyPair};
use trustdeck_spiffe::x509::{ca_params, leaf_params};
use trustdeck_spiffe::{Bundle, SpiffeId, TrustDomain};

/// A fixed instant.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("t0")
}

pub fn td(name: &str) -> TrustDomain {
    TrustDomain::parse(name).expect("trust domain")
}

pub fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).expect("spiffe id")
}

/// A root CA of `td` valid from `t0` for `lifetime`: its DER and its issuer.
pub fn root(td: &TrustDomain, lifetime: Duration) -> (Vec<u8>, Issuer<'static, KeyPair>) {
    let serial = rand_serial();
    let p = ca_params(td, "test root", &serial, t0(), t0() + lifetime, None).expect("params");
    let k = KeyPair::generate().expect("key");
    let der = p.self_signed(&k).expect("self-signed").der().to_vec();
    (der, Issuer::new(p, k))
}

/// A leaf X509-SVID for `id` signed by `issuer`.
pub fn leaf(issuer: &Issuer<'static, KeyPair>, id: &SpiffeId) -> Vec<u8> {
    let p = leaf_params(id, &[], &rand_serial(), t0(), t0() + Duration::hours(1)).expect("params");
    let k = KeyPair::generate().expect("key");
    p.signed_by(&k, issuer).expect("signed").der().to_vec()
}

fn rand_serial() -> Vec<u8> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed).to_be_bytes().to_vec()
}

/// A bundle of `td` with these roots, sequence and hint.
pub fn bundle(td: &TrustDomain, roots: &[&[u8]], sequence: u64, hint: Option<u64>) -> Bundle {
    let mut b = Bundle::new(td.clone());
    for r in roots {
        b.add_x509_authority(r.to_vec());
    }
    b.sequence = sequence;
    b.refresh_hint_secs = hint;
    b
}
