//! x509pop node attestation: a node proves possession of the key of a certificate that chains
//! to a configured CA. Pure: the caller supplies `now` and the nonce.

use chrono::{DateTime, Utc};
use ring::digest::{SHA256, digest};
use ring::signature::{self, UnparsedPublicKey};
use x509_parser::prelude::*;

/// Domain separation prefix of the signed challenge.
pub const CHALLENGE_CONTEXT: &[u8] = b"trustdeck x509pop challenge v1\0";

/// The bytes a node signs for a nonce.
pub fn challenge_message(nonce: &[u8]) -> Vec<u8> {
    let mut m = CHALLENGE_CONTEXT.to_vec();
    m.extend_from_slice(nonce);
    m
}

/// Why x509pop attestation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum X509PopError {
    /// No certificate was presented.
    #[error("x509pop: no certificate presented")]
    Empty,
    /// A certificate could not be parsed.
    #[error("x509pop: certificate {index} is not valid DER: {reason}")]
    Malformed {
        /// Position in the presented chain.
        index: usize,
        reason: String,
    },
    /// A certificate is outside its validity window.
    #[error("x509pop: certificate {index} ({subject}) is not valid at {now}")]
    Expired {
        index: usize,
        subject: String,
        now: DateTime<Utc>,
    },
    /// The chain does not verify up to a configured CA.
    #[error("x509pop: certificate chain of {subject} does not chain to a configured CA: {reason}")]
    Untrusted { subject: String, reason: String },
    /// The challenge signature is wrong.
    #[error("x509pop: proof of possession failed: {0}")]
    BadProof(String),
}

/// A verified x509pop node certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509PopNode {
    /// SHA-256 of the leaf certificate, hex (the agent ID's last segment).
    pub fingerprint: String,
    /// Selectors: `x509pop:subject:cn:<cn>`, `x509pop:ca:fingerprint:<sha256>`,
    /// `x509pop:san:dns:<name>`.
    pub selectors: Vec<String>,
    /// The leaf's SubjectPublicKeyInfo DER.
    pub leaf_spki: Vec<u8>,
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(digest(&SHA256, b).as_ref())
}

/// Verifies `chain` (DER, leaf first) against trusted CA certificates at `now`.
pub fn verify_chain(
    chain: &[Vec<u8>],
    trusted: &[Vec<u8>],
    now: DateTime<Utc>,
) -> Result<X509PopNode, X509PopError> {
    if chain.is_empty() {
        return Err(X509PopError::Empty);
    }
    fn parse(i: usize, der: &[u8]) -> Result<X509Certificate<'_>, X509PopError> {
        let (rest, c) = parse_x509_certificate(der).map_err(|e| X509PopError::Malformed {
            index: i,
            reason: e.to_string(),
        })?;
        if !rest.is_empty() {
            return Err(X509PopError::Malformed {
                index: i,
                reason: "trailing bytes".into(),
            });
        }
        Ok(c)
    }
    let certs: Vec<X509Certificate<'_>> = chain
        .iter()
        .enumerate()
        .map(|(i, d)| parse(i, d))
        .collect::<Result<_, _>>()?;
    let asn1_now =
        ASN1Time::from_timestamp(now.timestamp()).map_err(|e| X509PopError::Malformed {
            index: 0,
            reason: e.to_string(),
        })?;
    let leaf = &certs[0];
    let subject = leaf.subject().to_string();
    for (i, c) in certs.iter().enumerate() {
        if !c.validity().is_valid_at(asn1_now) {
            return Err(X509PopError::Expired {
                index: i,
                subject: c.subject().to_string(),
                now,
            });
        }
        if i > 0 && !c.is_ca() {
            return Err(X509PopError::Untrusted {
                subject: subject.clone(),
                reason: format!("intermediate {} is not a CA", c.subject()),
            });
        }
    }
    for pair in certs.windows(2) {
        pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .map_err(|e| X509PopError::Untrusted {
                subject: subject.clone(),
                reason: format!(
                    "{} is not signed by {}: {e}",
                    pair[0].subject(),
                    pair[1].subject()
                ),
            })?;
    }
    let top = certs.last().ok_or(X509PopError::Empty)?;
    let mut anchor = None;
    for der in trusted {
        let Ok((_, ca)) = parse_x509_certificate(der) else {
            continue;
        };
        if !ca.validity().is_valid_at(asn1_now) {
            continue;
        }
        let same = der.as_slice() == chain[chain.len() - 1].as_slice();
        if same
            || (ca.subject() == top.issuer() && top.verify_signature(Some(ca.public_key())).is_ok())
        {
            anchor = Some(der);
            break;
        }
    }
    let anchor = anchor.ok_or_else(|| X509PopError::Untrusted {
        subject: subject.clone(),
        reason: format!("issuer {} is not a configured x509pop CA", top.issuer()),
    })?;
    let mut selectors = Vec::new();
    for cn in leaf.subject().iter_common_name() {
        if let Ok(cn) = cn.as_str() {
            selectors.push(format!("x509pop:subject:cn:{cn}"));
        }
    }
    selectors.push(format!("x509pop:ca:fingerprint:{}", sha256_hex(anchor)));
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                selectors.push(format!("x509pop:san:dns:{d}"));
            }
        }
    }
    Ok(X509PopNode {
        fingerprint: sha256_hex(&chain[0]),
        selectors,
        leaf_spki: leaf.public_key().raw.to_vec(),
    })
}

/// Verifies the node's signature over [`challenge_message`]`(nonce)` with the leaf's key
/// (ECDSA P-256/P-384 with SHA-256/384, or RSA PKCS#1 v1.5 SHA-256).
pub fn verify_proof(leaf_spki: &[u8], nonce: &[u8], sig: &[u8]) -> Result<(), X509PopError> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(leaf_spki)
        .map_err(|e| X509PopError::BadProof(format!("leaf key: {e}")))?;
    let msg = challenge_message(nonce);
    let key = spki.subject_public_key.data.as_ref();
    let algs: &[&'static dyn signature::VerificationAlgorithm] =
        match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.10045.2.1" => &[
                &signature::ECDSA_P256_SHA256_ASN1,
                &signature::ECDSA_P384_SHA384_ASN1,
            ],
            "1.2.840.113549.1.1.1" => &[&signature::RSA_PKCS1_2048_8192_SHA256],
            other => {
                return Err(X509PopError::BadProof(format!(
                    "unsupported key algorithm {other}"
                )));
            }
        };
    if algs
        .iter()
        .any(|a| UnparsedPublicKey::new(*a, key).verify(&msg, sig).is_ok())
    {
        Ok(())
    } else {
        Err(X509PopError::BadProof(
            "signature over the challenge does not verify with the certificate's key".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn ca(cn: &str) -> (Vec<u8>, Issuer<'static, KeyPair>) {
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let k = KeyPair::generate().unwrap();
        let c = p.self_signed(&k).unwrap();
        (c.der().to_vec(), Issuer::new(p, k))
    }

    fn node(issuer: &Issuer<'static, KeyPair>, cn: &str, valid: bool) -> (Vec<u8>, KeyPair) {
        let mut p = CertificateParams::new(vec![format!("{cn}.example.org")]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        if !valid {
            let past = ::time::OffsetDateTime::now_utc() - ::time::Duration::days(2);
            p.not_before = past;
            p.not_after = past + ::time::Duration::days(1);
        }
        let k = KeyPair::generate().unwrap();
        let c = p.signed_by(&k, issuer).unwrap();
        (c.der().to_vec(), k)
    }

    #[test]
    fn accepts_chain_and_proof() {
        let (ca_der, ca_issuer) = ca("node CA");
        let (leaf, key) = node(&ca_issuer, "node-1", true);
        let n = verify_chain(
            std::slice::from_ref(&leaf),
            std::slice::from_ref(&ca_der),
            now(),
        )
        .unwrap();
        assert!(
            n.selectors
                .contains(&"x509pop:subject:cn:node-1".to_string())
        );
        assert!(
            n.selectors
                .contains(&"x509pop:san:dns:node-1.example.org".to_string())
        );
        assert_eq!(n.fingerprint.len(), 64);
        let nonce = [7u8; 32];
        let sig = rcgen::SigningKey::sign(&key, &challenge_message(&nonce)).unwrap();
        verify_proof(&n.leaf_spki, &nonce, &sig).unwrap();
        // A signature over another nonce fails.
        assert!(matches!(
            verify_proof(&n.leaf_spki, &[8u8; 32], &sig),
            Err(X509PopError::BadProof(_))
        ));
    }

    #[test]
    fn rejects_other_ca_expired_and_garbage() {
        let (ca_der, ca_issuer) = ca("node CA");
        let (_, other_issuer) = ca("other CA");
        let (leaf, _) = node(&other_issuer, "node-1", true);
        assert!(matches!(
            verify_chain(&[leaf], std::slice::from_ref(&ca_der), now()),
            Err(X509PopError::Untrusted { .. })
        ));
        let (old, _) = node(&ca_issuer, "node-2", false);
        assert!(matches!(
            verify_chain(&[old], std::slice::from_ref(&ca_der), now()),
            Err(X509PopError::Expired { .. })
        ));
        assert!(matches!(
            verify_chain(&[b"junk".to_vec()], &[ca_der], now()),
            Err(X509PopError::Malformed { index: 0, .. })
        ));
    }
}
