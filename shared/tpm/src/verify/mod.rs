//! Verification of `tpm_devid` evidence, pure: the caller supplies `now`, the trust bundles
//! and the random challenge.
//!
//! Evidence: the DevID certificate chain (leaf first), the EK certificate, and the marshalled
//! `TPM2B_PUBLIC` areas of the EK and the DevID key. [`verify_evidence`] checks that
//! - the DevID chain verifies up to a certificate of the DevID CA bundle;
//! - the DevID public area holds the certificate's key and describes a TPM-generated,
//!   non-duplicable signing key (`fixedTPM`, `fixedParent`, `sensitiveDataOrigin`, `sign`);
//! - the EK certificate is issued by a certificate of the endorsement CA bundle and holds the
//!   key of the EK public area.
//!
//! The server then challenges the node ([`crate::credential::make_credential`] and a nonce)
//! and checks the answer with [`verify_proof`] and [`verify_secret`].

use chrono::{DateTime, Utc};
use ring::digest::{SHA256, digest};
use ring::signature::{self, UnparsedPublicKey};
use x509_parser::prelude::*;

use crate::public::{ECC_NIST_P256, PublicArea, PublicKey, attr};

mod chain;
mod keys;

use chain::*;
use keys::*;
pub use keys::{der_prefix, ecdsa_der};

/// Domain separation prefix of the signed nonce.
pub const CHALLENGE_CONTEXT: &[u8] = b"trustdeck tpm_devid challenge v1\0";

/// The bytes a node signs with its DevID key for a nonce.
pub fn challenge_message(nonce: &[u8]) -> Vec<u8> {
    let mut m = CHALLENGE_CONTEXT.to_vec();
    m.extend_from_slice(nonce);
    m
}

/// Attributes a DevID key must have.
pub const DEVID_REQUIRED: u32 =
    attr::FIXED_TPM | attr::FIXED_PARENT | attr::SENSITIVE_DATA_ORIGIN | attr::SIGN;

/// Why `tpm_devid` attestation failed. Every message starts with `tpm_devid:` and names the
/// problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TpmDevIdError {
    /// A piece of evidence is missing.
    #[error("tpm_devid: no {0} presented")]
    Missing(&'static str),
    /// A certificate or public area could not be parsed.
    #[error("tpm_devid: {what} is malformed: {reason}")]
    Malformed { what: String, reason: String },
    /// A certificate is outside its validity window.
    #[error("tpm_devid: {what} ({subject}) is not valid at {now}")]
    Expired {
        what: String,
        subject: String,
        now: DateTime<Utc>,
    },
    /// The DevID chain does not verify up to the DevID CA bundle.
    #[error(
        "tpm_devid: DevID certificate {subject} does not chain to the DevID CA bundle {bundle}: {reason}"
    )]
    DevIdUntrusted {
        subject: String,
        /// The bundle's path (or name).
        bundle: String,
        reason: String,
    },
    /// The EK certificate is not issued by the endorsement CA bundle.
    #[error(
        "tpm_devid: EK certificate {subject} does not chain to the endorsement CA bundle {bundle}: {reason}"
    )]
    EkUntrusted {
        /// EK certificate issuer and subject.
        subject: String,
        /// The bundle's path (or name).
        bundle: String,
        reason: String,
    },
    /// The EK public area does not hold the EK certificate's key, or is no EK.
    #[error("tpm_devid: EK public area does not match the EK certificate: {0}")]
    EkMismatch(String),
    /// The DevID public area does not hold the DevID certificate's key.
    #[error("tpm_devid: DevID public area does not match the DevID certificate: {0}")]
    DevIdMismatch(String),
    /// The DevID key is not a TPM-resident signing key.
    #[error("tpm_devid: DevID key is not a TPM-resident signing key: {0}")]
    DevIdAttributes(String),
    /// The nonce signature does not verify.
    #[error("tpm_devid: proof of possession failed: {0}")]
    BadProof(String),
    /// The activated secret is wrong.
    #[error(
        "tpm_devid: credential activation failed: the returned secret does not match this dialogue's (the DevID key is not resident in the TPM of this EK, or the response was replayed)"
    )]
    BadSecret,
}

/// A node whose evidence verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDevice {
    /// SHA-256 of the DevID certificate, hex (the agent ID's last segment).
    pub fingerprint: String,
    /// SHA-256 of the EK certificate, hex.
    pub ek_fingerprint: String,
    /// Selectors: `tpm_devid:subject:cn:<cn>`, `tpm_devid:issuer:cn:<cn>`,
    /// `tpm_devid:fingerprint:<sha256>`, `tpm_devid:ek:fingerprint:<sha256>`.
    pub selectors: Vec<String>,
    /// The DevID certificate's SubjectPublicKeyInfo DER (verifies the nonce signature).
    pub devid_spki: Vec<u8>,
    /// The DevID key's TPM name (bound into the credential).
    pub devid_name: Vec<u8>,
    /// The EK public area (the credential is encrypted to it).
    pub ek: PublicArea,
}

/// The evidence a node presents.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// DevID certificate chain, DER, leaf first.
    pub devid_chain: &'a [Vec<u8>],
    /// EK certificate, DER.
    pub ek_cert: &'a [u8],
    /// EK `TPM2B_PUBLIC`.
    pub ek_public: &'a [u8],
    /// DevID key `TPM2B_PUBLIC`.
    pub devid_public: &'a [u8],
}

/// A named set of trusted CA certificates (DER); the name appears in errors.
#[derive(Debug, Clone, Copy)]
pub struct Bundle<'a> {
    /// Where it came from (a path).
    pub name: &'a str,
    pub certs: &'a [Vec<u8>],
}

/// SHA-256 of bytes, hex.
pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(digest(&SHA256, b).as_ref())
}

/// Verifies the evidence against the DevID and endorsement CA bundles at `now`.
pub fn verify_evidence(
    ev: Evidence<'_>,
    devid_cas: Bundle<'_>,
    endorsement_cas: Bundle<'_>,
    now: DateTime<Utc>,
) -> Result<VerifiedDevice, TpmDevIdError> {
    if ev.devid_chain.is_empty() {
        return Err(TpmDevIdError::Missing("DevID certificate"));
    }
    if ev.ek_cert.is_empty() {
        return Err(TpmDevIdError::Missing("EK certificate"));
    }
    if ev.ek_public.is_empty() {
        return Err(TpmDevIdError::Missing("EK public area"));
    }
    if ev.devid_public.is_empty() {
        return Err(TpmDevIdError::Missing("DevID public area"));
    }
    let asn1_now =
        ASN1Time::from_timestamp(now.timestamp()).map_err(|e| TpmDevIdError::Malformed {
            what: "the current time".into(),
            reason: e.to_string(),
        })?;

    // DevID chain.
    let certs: Vec<X509Certificate<'_>> = ev
        .devid_chain
        .iter()
        .enumerate()
        .map(|(i, d)| parse(&format!("DevID certificate {i}"), d))
        .collect::<Result<_, _>>()?;
    let leaf = &certs[0];
    let subject = leaf.subject().to_string();
    for (i, c) in certs.iter().enumerate() {
        if !c.validity().is_valid_at(asn1_now) {
            return Err(TpmDevIdError::Expired {
                what: format!("DevID certificate {i}"),
                subject: c.subject().to_string(),
                now,
            });
        }
    }
    let ders: Vec<&[u8]> = ev.devid_chain.iter().map(Vec::as_slice).collect();
    chain_to(&certs, &ders, devid_cas.certs, asn1_now).map_err(|reason| {
        TpmDevIdError::DevIdUntrusted {
            subject: subject.clone(),
            bundle: devid_cas.name.to_string(),
            reason,
        }
    })?;

    // DevID public area against the certificate.
    let devid = PublicArea::from_tpm2b(ev.devid_public).map_err(|e| TpmDevIdError::Malformed {
        what: "DevID public area".into(),
        reason: e.to_string(),
    })?;
    let devid_spki = leaf.public_key();
    match_key(&devid, devid_spki).map_err(TpmDevIdError::DevIdMismatch)?;
    if !devid.has(DEVID_REQUIRED) {
        return Err(TpmDevIdError::DevIdAttributes(format!(
            "attributes {} lack {}",
            attr::describe(devid.attributes),
            attr::describe(DEVID_REQUIRED & !devid.attributes)
        )));
    }
    let devid_name = devid.name().ok_or_else(|| {
        TpmDevIdError::DevIdAttributes(format!(
            "name algorithm 0x{:04x} is not SHA-256",
            devid.name_alg
        ))
    })?;

    // EK certificate and public area.
    let ek_cert = parse("EK certificate", ev.ek_cert)?;
    let ek_label = format!("(issuer {})", ek_cert.issuer());
    if !ek_cert.validity().is_valid_at(asn1_now) {
        return Err(TpmDevIdError::Expired {
            what: "EK certificate".into(),
            subject: ek_label,
            now,
        });
    }
    chain_to(
        std::slice::from_ref(&ek_cert),
        &[ev.ek_cert],
        endorsement_cas.certs,
        asn1_now,
    )
    .map_err(|reason| TpmDevIdError::EkUntrusted {
        subject: ek_label.clone(),
        bundle: endorsement_cas.name.to_string(),
        reason,
    })?;
    let ek = PublicArea::from_tpm2b(ev.ek_public).map_err(|e| TpmDevIdError::Malformed {
        what: "EK public area".into(),
        reason: e.to_string(),
    })?;
    match_key(&ek, ek_cert.public_key()).map_err(TpmDevIdError::EkMismatch)?;
    if !ek.has(attr::FIXED_TPM | attr::FIXED_PARENT | attr::RESTRICTED | attr::DECRYPT)
        || ek.has(attr::SIGN)
    {
        return Err(TpmDevIdError::EkMismatch(format!(
            "not a restricted decryption key fixed to its TPM: attributes {}",
            attr::describe(ek.attributes)
        )));
    }

    let fingerprint = sha256_hex(&ev.devid_chain[0]);
    let ek_fingerprint = sha256_hex(ev.ek_cert);
    let mut selectors = Vec::new();
    for cn in common_names(leaf.subject()) {
        selectors.push(format!("tpm_devid:subject:cn:{cn}"));
    }
    for cn in common_names(leaf.issuer()) {
        selectors.push(format!("tpm_devid:issuer:cn:{cn}"));
    }
    selectors.push(format!("tpm_devid:fingerprint:{fingerprint}"));
    selectors.push(format!("tpm_devid:ek:fingerprint:{ek_fingerprint}"));
    Ok(VerifiedDevice {
        fingerprint,
        ek_fingerprint,
        selectors,
        devid_spki: devid_spki.raw.to_vec(),
        devid_name,
        ek,
    })
}

/// Verifies the node's signature (DER ECDSA or RSA PKCS#1 v1.5, SHA-256) over
/// [`challenge_message`]`(nonce)` with the DevID certificate's key.
pub fn verify_proof(devid_spki: &[u8], nonce: &[u8], sig: &[u8]) -> Result<(), TpmDevIdError> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(devid_spki)
        .map_err(|e| TpmDevIdError::BadProof(format!("DevID key: {e}")))?;
    let msg = challenge_message(nonce);
    let key = spki.subject_public_key.data.as_ref();
    let alg: &'static dyn signature::VerificationAlgorithm =
        match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.10045.2.1" => &signature::ECDSA_P256_SHA256_ASN1,
            "1.2.840.113549.1.1.1" => &signature::RSA_PKCS1_2048_8192_SHA256,
            other => {
                return Err(TpmDevIdError::BadProof(format!(
                    "unsupported DevID key algorithm {other}"
                )));
            }
        };
    UnparsedPublicKey::new(alg, key)
        .verify(&msg, sig)
        .map_err(|_| {
            TpmDevIdError::BadProof(
                "the signature over this dialogue's nonce does not verify with the DevID key (wrong key, or a response replayed from another dialogue)".into(),
            )
        })
}

/// Compares the activated secret with the one this dialogue encrypted, in constant time.
pub fn verify_secret(expected: &[u8], returned: &[u8]) -> Result<(), TpmDevIdError> {
    let same = expected.len() == returned.len()
        && expected
            .iter()
            .zip(returned)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(TpmDevIdError::BadSecret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soft::{Lab as Fixture, ca, ecc_signing, leaf, rsa_ek, xy};
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    fn fixture() -> Fixture {
        Fixture::new()
    }

    fn run(f: &Fixture) -> Result<VerifiedDevice, TpmDevIdError> {
        verify_evidence(
            Evidence {
                devid_chain: std::slice::from_ref(&f.devid_cert),
                ek_cert: &f.ek_cert,
                ek_public: &f.ek_public,
                devid_public: &f.devid_public,
            },
            Bundle {
                name: "/etc/devid-ca.pem",
                certs: std::slice::from_ref(&f.devid_ca),
            },
            Bundle {
                name: "/etc/ek-ca.pem",
                certs: std::slice::from_ref(&f.ek_ca),
            },
            Utc::now(),
        )
    }

    #[test]
    fn accepts_good_evidence_with_selectors_and_proof() {
        let f = fixture();
        let d = run(&f).unwrap();
        assert_eq!(d.fingerprint, sha256_hex(&f.devid_cert));
        assert_eq!(
            d.selectors,
            vec![
                "tpm_devid:subject:cn:node-7".to_string(),
                "tpm_devid:issuer:cn:DevID CA".to_string(),
                format!("tpm_devid:fingerprint:{}", d.fingerprint),
                format!("tpm_devid:ek:fingerprint:{}", sha256_hex(&f.ek_cert)),
            ]
        );
        assert_eq!(d.devid_name.len(), 34);
        let nonce = [3u8; 32];
        let sig = rcgen::SigningKey::sign(&f.devid_key, &challenge_message(&nonce)).unwrap();
        verify_proof(&d.devid_spki, &nonce, &sig).unwrap();
        let e = verify_proof(&d.devid_spki, &[4u8; 32], &sig).unwrap_err();
        assert!(e.to_string().contains("replayed"), "{e}");
        verify_secret(b"abc", b"abc").unwrap();
        assert_eq!(verify_secret(b"abc", b"abd"), Err(TpmDevIdError::BadSecret));
        assert_eq!(verify_secret(b"abc", b"ab"), Err(TpmDevIdError::BadSecret));
    }

    #[test]
    fn rejects_foreign_cas_with_bundle_names() {
        let f = fixture();
        let (other, _) = ca("Other CA");
        let mut g = Fixture { ..fixture() };
        g.devid_ca = other.clone();
        let e = run(&g).unwrap_err().to_string();
        assert!(
            e.contains("DevID certificate")
                && e.contains("does not chain to the DevID CA bundle /etc/devid-ca.pem"),
            "{e}"
        );
        let mut h = f;
        h.ek_ca = other;
        let e = run(&h).unwrap_err().to_string();
        assert!(
            e.contains("EK certificate") && e.contains("endorsement CA bundle /etc/ek-ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn rejects_mismatched_or_weak_public_areas() {
        let f = fixture();
        // Another key's point.
        let other = KeyPair::generate().unwrap();
        let (x, y) = xy(&other);
        let g = Fixture {
            devid_public: ecc_signing(&x, &y, DEVID_REQUIRED),
            ..fixture()
        };
        assert!(matches!(run(&g), Err(TpmDevIdError::DevIdMismatch(_))));
        // A key that could leave the TPM.
        let (x, y) = xy(&f.devid_key);
        let weak = Fixture {
            devid_public: ecc_signing(&x, &y, attr::SIGN | attr::SENSITIVE_DATA_ORIGIN),
            ..f
        };
        let e = run(&weak).unwrap_err().to_string();
        assert!(e.contains("fixedTPM") && e.contains("fixedParent"), "{e}");
        // EK area of another key.
        let f = fixture();
        let mut m = vec![0xC5u8; 256];
        m[255] = 3;
        let bad = Fixture {
            ek_public: rsa_ek(&m),
            ..f
        };
        assert!(matches!(run(&bad), Err(TpmDevIdError::EkMismatch(_))));
        // Garbage.
        let f = fixture();
        let junk = Fixture {
            devid_public: vec![0, 1, 2],
            ..f
        };
        assert!(matches!(run(&junk), Err(TpmDevIdError::Malformed { .. })));
    }

    #[test]
    fn long_chains_and_non_signing_intermediates_are_refused() {
        let (root_der, root) = ca("root");
        let key = KeyPair::generate().unwrap();
        let leaf_der = leaf(&root, "node", &key);
        let (_, l) = parse_x509_certificate(&leaf_der).unwrap();
        let bundle = vec![root_der.clone()];
        let now = ASN1Time::now();
        assert!(
            chain_to(
                std::slice::from_ref(&l),
                &[leaf_der.as_slice()],
                &bundle,
                now
            )
            .is_ok()
        );
        let long: Vec<X509Certificate<'_>> =
            std::iter::repeat_n(l.clone(), MAX_CHAIN + 1).collect();
        let ders: Vec<&[u8]> = std::iter::repeat_n(leaf_der.as_slice(), MAX_CHAIN + 1).collect();
        let e = chain_to(&long, &ders, &bundle, now).unwrap_err();
        assert!(e.contains("longer than"), "{e}");
        // An intermediate whose key usage lacks keyCertSign cannot extend a chain.
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        p.distinguished_name.push(DnType::CommonName, "weak-int");
        let ik = KeyPair::generate().unwrap();
        let int_der = p.signed_by(&ik, &root).unwrap().der().to_vec();
        let int_issuer = Issuer::new(p, ik);
        let leaf2 = leaf(&int_issuer, "node2", &key);
        let (_, l2) = parse_x509_certificate(&leaf2).unwrap();
        let (_, i2) = parse_x509_certificate(&int_der).unwrap();
        let e = chain_to(
            &[l2, i2],
            &[leaf2.as_slice(), int_der.as_slice()],
            &bundle,
            now,
        )
        .unwrap_err();
        assert!(e.contains("keyCertSign"), "{e}");
    }

    #[test]
    fn der_helpers() {
        let d = ecdsa_der(&[0x80; 32], &[0, 0, 1]);
        assert_eq!(d[0], 0x30);
        assert_eq!(&d[2..5], &[0x02, 33, 0x00]);
        assert_eq!(&d[d.len() - 3..], &[0x02, 1, 1]);
        let (k, _) = (KeyPair::generate().unwrap(), ());
        let sig = rcgen::SigningKey::sign(&k, b"m").unwrap();
        // r and s parsed back from a real signature re-encode identically.
        let r_len = sig[3] as usize;
        let r = &sig[4..4 + r_len];
        let s = &sig[4 + r_len + 2..];
        assert_eq!(ecdsa_der(r, s), sig);
        let mut padded = sig.clone();
        padded.extend_from_slice(&[0xff; 10]);
        assert_eq!(der_prefix(&padded), Some(sig.as_slice()));
        assert_eq!(der_prefix(&[0x31, 0]), None);
    }
}
