//! Writes the fuzz seeds and fixtures that are made by the project's own code (an SVID, a CSR,
//! a bundle, a JWT-SVID, x509pop and DevID evidence) under `fuzz/seeds/<target>/` and
//! `fuzz/data/`, and checks that each verifies, so the fuzzers start from inputs that reach
//! the end of their parser:
//!     cargo run -p trustdeck-e2e --example fuzz_seeds -- fuzz
//! Keys are fresh on every run: rerunning rewrites every file (and the fixtures the targets
//! embed, so rebuild them).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, SanType};
use trustdeck_pki::keys::{KeyStorage, RcgenKey, SigningKey, SoftwareKey};
use trustdeck_pki::{X509Authority, csr, x509pop};
use trustdeck_spiffe::{Bundle, JwtAuthority, JwtClaims, SpiffeId, TrustDomain, jwt, pem};
use trustdeck_tpm::public::{self, attr};
use trustdeck_tpm::verify;

#[path = "../../fuzz/src/frame.rs"]
mod frame;

/// Frames evidence parts the way the targets split them, checking the round trip.
fn framed(parts: &[&[u8]]) -> Vec<u8> {
    let bytes = frame::frame(parts);
    assert_eq!(frame::parts(&bytes, 16), parts);
    bytes
}

struct Out(PathBuf);

impl Out {
    fn seed(&self, target: &str, name: &str, bytes: &[u8]) {
        write(&self.0.join("seeds").join(target), name, bytes);
    }
    fn data(&self, name: &str, bytes: &[u8]) {
        write(&self.0.join("data"), name, bytes);
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create the seed directory");
    std::fs::write(dir.join(name), bytes).expect("write a seed");
}

fn key(id: &str) -> Arc<dyn SigningKey> {
    Arc::new(
        SoftwareKey::generate(id, KeyStorage::Memory)
            .expect("key")
            .0,
    )
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
        .single()
        .expect("date")
}

/// A CA certificate (CN `cn`) for `key`, signed by `parent` or self-signed.
fn ca(
    cn: &str,
    key: &Arc<dyn SigningKey>,
    parent: Option<&Issuer<'static, RcgenKey>>,
) -> (Vec<u8>, Issuer<'static, RcgenKey>) {
    let mut p = CertificateParams::new(vec![]).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    let signer = RcgenKey(key.clone());
    let cert = match parent {
        Some(parent) => p.signed_by(&signer, parent),
        None => p.self_signed(&signer),
    }
    .expect("sign a CA");
    (cert.der().to_vec(), Issuer::new(p, signer))
}

fn leaf(
    cn: &str,
    dns: Option<&str>,
    key: &Arc<dyn SigningKey>,
    by: &Issuer<'_, RcgenKey>,
) -> Vec<u8> {
    let mut p = CertificateParams::new(vec![]).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    if let Some(d) = dns {
        p.subject_alt_names
            .push(SanType::DnsName(d.try_into().expect("DNS name")));
    }
    p.signed_by(&RcgenKey(key.clone()), by)
        .expect("sign a leaf")
        .der()
        .to_vec()
}

/// A `TPM2B_PUBLIC` ECC P-256 area for `key`: a DevID signing key, or (`ek`) a restricted
/// decryption key like an EK.
fn ecc_area(key: &Arc<dyn SigningKey>, ek: bool) -> Vec<u8> {
    let point = key.public_point();
    let u16s =
        |t: &mut Vec<u8>, v: &[u16]| v.iter().for_each(|x| t.extend_from_slice(&x.to_be_bytes()));
    let mut t = Vec::new();
    u16s(&mut t, &[public::ALG_ECC, public::ALG_SHA256]);
    let attributes = if ek {
        attr::FIXED_TPM
            | attr::FIXED_PARENT
            | attr::SENSITIVE_DATA_ORIGIN
            | attr::RESTRICTED
            | attr::DECRYPT
            | (1 << 7)
    } else {
        verify::DEVID_REQUIRED | attr::USER_WITH_AUTH
    };
    t.extend_from_slice(&attributes.to_be_bytes());
    if ek {
        t.extend_from_slice(&public::tpm2b(&[0x83; 32]).expect("policy"));
        u16s(
            &mut t,
            &[public::ALG_AES, 128, public::ALG_CFB, public::ALG_NULL],
        );
    } else {
        t.extend_from_slice(&public::tpm2b(&[]).expect("policy"));
        u16s(&mut t, &[public::ALG_NULL, 0x0018, public::ALG_SHA256]); // ECDSA-SHA256
    }
    u16s(&mut t, &[public::ECC_NIST_P256, public::ALG_NULL]);
    t.extend_from_slice(&public::tpm2b(&point[1..33]).expect("x"));
    t.extend_from_slice(&public::tpm2b(&point[33..65]).expect("y"));
    public::tpm2b(&t).expect("area")
}

/// An RSA-2048 EK-shaped area (modulus made up: parses, matches no certificate).
fn rsa_ek_area() -> Vec<u8> {
    let mut t = Vec::new();
    for v in [public::ALG_RSA, public::ALG_SHA256] {
        t.extend_from_slice(&v.to_be_bytes());
    }
    let a = attr::FIXED_TPM
        | attr::FIXED_PARENT
        | attr::SENSITIVE_DATA_ORIGIN
        | attr::RESTRICTED
        | attr::DECRYPT;
    t.extend_from_slice(&a.to_be_bytes());
    t.extend_from_slice(&public::tpm2b(&[0x83; 32]).expect("policy"));
    for v in [
        public::ALG_AES,
        128,
        public::ALG_CFB,
        public::ALG_NULL,
        2048,
    ] {
        t.extend_from_slice(&v.to_be_bytes());
    }
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(&public::tpm2b(&[0xc5; 256]).expect("modulus"));
    public::tpm2b(&t).expect("area")
}

fn svid_seeds(out: &Out, td: &TrustDomain, t0: DateTime<Utc>) -> Vec<u8> {
    let ca = X509Authority::self_signed(td, key("ca"), "fuzz CA", t0, Duration::days(3650))
        .expect("root CA");
    let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/web").expect("id");
    let workload = key("workload");
    let csr_with_id = csr::make_csr(&workload, Some(&id)).expect("CSR");
    let csr_without = csr::make_csr(&key("agent"), None).expect("CSR");
    out.seed("csr", "with_id.der", &csr_with_id);
    out.seed("csr", "without_id.der", &csr_without);
    let verified = csr::verify_csr(&csr_with_id).expect("own CSR verifies");
    let svid = ca
        .issue_x509_svid(
            &verified,
            &id,
            &["web.example.org".into()],
            Duration::days(365),
            t0,
        )
        .expect("SVID");
    let inter = ca
        .sign_intermediate(
            &csr::verify_csr(&csr_without).expect("CSR"),
            "fuzz downstream",
            Duration::days(365),
            t0,
        )
        .expect("intermediate");
    out.seed("x509_svid", "leaf.der", &svid.chain[0]);
    out.seed("x509_svid", "root.der", ca.cert_der());
    out.seed("x509_svid", "intermediate.der", &inter.chain[0]);
    let mut chain = svid.chain.clone();
    chain.push(ca.cert_der().to_vec());
    out.seed("pem", "chain.pem", pem::encode_certs(&chain).as_bytes());
    out.seed("pem", "chain.der", &chain.concat());
    let (_, pkcs8) = SoftwareKey::generate("pem", KeyStorage::Memory).expect("key");
    out.seed(
        "pem",
        "key.pem",
        pem::encode("PRIVATE KEY", &pkcs8).as_bytes(),
    );
    ca.cert_der().to_vec()
}

fn jwt_seeds(out: &Out, td: &TrustDomain, root: Vec<u8>) {
    let signer = key("jwt");
    let mut bundle = Bundle::new(td.clone());
    bundle.add_x509_authority(root);
    bundle.set_jwt_authority(JwtAuthority {
        key_id: "fuzz".into(),
        public_key_spki_der: signer.public_key_spki(),
        expires_at: None,
    });
    bundle.sequence = 7;
    bundle.refresh_hint_secs = Some(300);
    let json = bundle.to_json();
    out.data("jwt_bundle.json", json.as_bytes());
    out.seed("bundle_json", "bundle.json", json.as_bytes());
    out.seed("pem", "bundle.pem", bundle.to_pem().as_bytes());
    let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/web").expect("id");
    let mut claims = JwtClaims::new(id, vec!["fuzz".into()], at(2030, 1, 1));
    let sign =
        |claims: &JwtClaims, kid: &str| jwt::mint(claims, kid, |m| signer.sign(m)).expect("mint");
    let token = sign(&claims, "fuzz");
    jwt::validate(&token, "fuzz", &bundle.jwt_authorities, at(2026, 6, 1))
        .expect("own JWT validates");
    out.seed("jwt", "valid.jwt", token.as_bytes());
    claims.aud.push("other".into());
    claims.iat = Some(at(2026, 1, 1).timestamp());
    claims
        .extra
        .insert("nbf".into(), at(2026, 1, 1).timestamp().into());
    out.seed("jwt", "two_audiences.jwt", sign(&claims, "fuzz").as_bytes());
    out.seed("jwt", "unknown_kid.jwt", sign(&claims, "other").as_bytes());
}

fn x509pop_seeds(out: &Out, t0: DateTime<Utc>) {
    let (root, root_issuer) = ca("x509pop CA", &key("root"), None);
    let (inter, inter_issuer) = ca("x509pop intermediate", &key("inter"), Some(&root_issuer));
    out.data("x509pop_ca.der", &root);
    let nonce = [7u8; 32];
    let msg = x509pop::challenge_message(&nonce);
    for (name, chain_above, issuer) in [
        ("direct", vec![], &root_issuer),
        ("intermediate", vec![inter], &inter_issuer),
    ] {
        let node = key("node");
        let mut chain = vec![leaf("node-1", Some("node-1.example.org"), &node, issuer)];
        chain.extend(chain_above);
        let verified = x509pop::verify_chain(
            &chain,
            std::slice::from_ref(&root),
            t0 + Duration::days(150),
        )
        .expect("own x509pop chain verifies");
        let sig = node.sign(&msg).expect("sign");
        x509pop::verify_proof(&verified.leaf_spki, &nonce, &sig).expect("own proof verifies");
        let mut parts: Vec<&[u8]> = vec![&nonce, &sig];
        parts.extend(chain.iter().map(Vec::as_slice));
        out.seed("x509pop", name, &framed(&parts));
    }
}

fn tpm_seeds(out: &Out, t0: DateTime<Utc>) {
    let (devid_ca, devid_issuer) = ca("DevID CA", &key("devid-ca"), None);
    let (ek_ca, ek_issuer) = ca("EK CA", &key("ek-ca"), None);
    out.data("devid_ca.der", &devid_ca);
    out.data("ek_ca.der", &ek_ca);
    let devid = key("devid");
    let ek = key("ek");
    let devid_cert = leaf("node-7", None, &devid, &devid_issuer);
    let ek_cert = leaf("ek", None, &ek, &ek_issuer);
    let devid_public = ecc_area(&devid, false);
    let ek_public = ecc_area(&ek, true);
    let chain = [devid_cert.clone()];
    let device = verify::verify_evidence(
        verify::Evidence {
            devid_chain: &chain,
            ek_cert: &ek_cert,
            ek_public: &ek_public,
            devid_public: &devid_public,
        },
        verify::Bundle {
            name: "devid",
            certs: &[devid_ca],
        },
        verify::Bundle {
            name: "ek",
            certs: &[ek_ca],
        },
        t0 + Duration::days(150),
    )
    .expect("own evidence verifies");
    let nonce = [9u8; 32];
    let sig = devid
        .sign(&verify::challenge_message(&nonce))
        .expect("sign");
    verify::verify_proof(&device.devid_spki, &nonce, &sig).expect("own proof verifies");
    let rsa_ek = rsa_ek_area();
    out.seed(
        "tpm_devid",
        "ecc_ek",
        &framed(&[
            &ek_cert,
            &ek_public,
            &devid_public,
            &nonce,
            &sig,
            &devid_cert,
        ]),
    );
    out.seed(
        "tpm_devid",
        "rsa_ek",
        &framed(&[&ek_cert, &rsa_ek, &devid_public, &nonce, &sig, &devid_cert]),
    );
    for (name, area) in [
        ("devid", &devid_public),
        ("ecc_ek", &ek_public),
        ("rsa_ek", &rsa_ek),
    ] {
        out.seed("tpm_public", &format!("{name}.tpm2b"), area);
        out.seed("tpm_public", &format!("{name}.tpmt"), &area[2..]);
    }
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "fuzz".into());
    let out = Out(PathBuf::from(dir));
    let td = TrustDomain::parse("example.org").expect("trust domain");
    let t0 = at(2026, 1, 1);
    let root = svid_seeds(&out, &td, t0);
    jwt_seeds(&out, &td, root);
    x509pop_seeds(&out, t0);
    tpm_seeds(&out, t0);
}
