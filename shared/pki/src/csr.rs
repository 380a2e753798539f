//! PKCS#10 CSRs: verification (signature, key type, requested SPIFFE ID) and creation.

use trustdeck_spiffe::SpiffeId;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::keys::{RcgenKey, SigningKey};
use std::sync::Arc;

/// Why a CSR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// The bytes are not a DER PKCS#10 request.
    #[error("CSR is not a valid DER PKCS#10 request: {0}")]
    Malformed(String),
    /// The self-signature does not verify against the CSR's public key.
    #[error("CSR signature does not verify against its public key")]
    BadSignature,
    /// Only ECDSA P-256 keys are accepted.
    #[error("CSR public key is not an ECDSA P-256 key")]
    UnsupportedKey,
    /// The CSR asks for more than one URI SAN.
    #[error("CSR must carry at most one URI SAN (a SPIFFE ID), found {0}")]
    UriSanCount(usize),
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("CSR URI SAN is not a valid SPIFFE ID: {0}")]
    BadSpiffeId(String),
    /// Building the CSR failed.
    #[error("could not build CSR: {0}")]
    Build(String),
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

/// A CSR whose signature verified: its key and the SPIFFE ID it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCsr {
    /// SEC1 uncompressed P-256 point.
    pub public_point: Vec<u8>,
    /// The SPIFFE ID in the CSR's URI SAN, if it has one (agent CSRs need none: the server
    /// decides the agent's ID).
    pub spiffe_id: Option<SpiffeId>,
}

impl rcgen::PublicKeyData for VerifiedCsr {
    fn der_bytes(&self) -> &[u8] {
        &self.public_point
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// Parses a CSR, checks its key is P-256, verifies its self-signature and extracts the
/// SPIFFE ID it requests, if any.
pub fn verify_csr(der: &[u8]) -> Result<VerifiedCsr, CsrError> {
    let (rest, csr) =
        X509CertificationRequest::from_der(der).map_err(|e| CsrError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed(format!(
            "{} trailing bytes after the request",
            rest.len()
        )));
    }
    let spki = &csr.certification_request_info.subject_pki;
    let alg_ok = spki.algorithm.algorithm.to_id_string() == OID_EC_PUBLIC_KEY
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string() == OID_P256)
            .unwrap_or(false);
    if !alg_ok {
        return Err(CsrError::UnsupportedKey);
    }
    csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
    let mut uris = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    if let GeneralName::URI(u) = name {
                        uris.push(u.to_string());
                    }
                }
            }
        }
    }
    if uris.len() > 1 {
        return Err(CsrError::UriSanCount(uris.len()));
    }
    let spiffe_id = match uris.first() {
        Some(u) => Some(SpiffeId::parse(u).map_err(|e| CsrError::BadSpiffeId(e.to_string()))?),
        None => None,
    };
    Ok(VerifiedCsr {
        public_point: spki.subject_public_key.data.to_vec(),
        spiffe_id,
    })
}

/// Builds a DER CSR signed by `key`, asking for `id` when given (agent CSRs ask for none: the
/// server decides the agent's ID).
pub fn make_csr(key: &Arc<dyn SigningKey>, id: Option<&SpiffeId>) -> Result<Vec<u8>, CsrError> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(id) = id {
        let uri = rcgen::string::Ia5String::try_from(id.to_string())
            .map_err(|e| CsrError::Build(e.to_string()))?;
        params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
    }
    let csr = params
        .serialize_request(&RcgenKey(key.clone()))
        .map_err(|e| CsrError::Build(e.to_string()))?;
    Ok(csr.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SoftwareKey;

    fn key() -> Arc<dyn SigningKey> {
        Arc::new(SoftwareKey::ephemeral().unwrap().0)
    }

    #[test]
    fn verifies_own_csr() {
        let k = key();
        let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
        let der = make_csr(&k, Some(&id)).unwrap();
        let v = verify_csr(&der).unwrap();
        assert_eq!(v.spiffe_id, Some(id));
        assert_eq!(v.public_point, k.public_point());
    }

    #[test]
    fn rejects_garbage_and_bad_signature() {
        assert!(matches!(
            verify_csr(b"not a csr"),
            Err(CsrError::Malformed(_))
        ));
        let k = key();
        let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
        let mut der = make_csr(&k, Some(&id)).unwrap();
        // The signature BIT STRING is at the end: flip a bit inside it.
        let n = der.len();
        der[n - 5] ^= 0x01;
        assert_eq!(verify_csr(&der), Err(CsrError::BadSignature));
    }

    #[test]
    fn csr_without_spiffe_id_has_none_and_two_are_refused() {
        let k = key();
        let params = rcgen::CertificateParams::new(vec!["host.example.org".to_string()]).unwrap();
        let der = params
            .serialize_request(&RcgenKey(k.clone()))
            .unwrap()
            .der()
            .to_vec();
        assert_eq!(verify_csr(&der).unwrap().spiffe_id, None);
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![
            rcgen::SanType::URI("spiffe://example.org/a".try_into().unwrap()),
            rcgen::SanType::URI("spiffe://example.org/b".try_into().unwrap()),
        ];
        let der = params
            .serialize_request(&RcgenKey(k))
            .unwrap()
            .der()
            .to_vec();
        assert_eq!(verify_csr(&der), Err(CsrError::UriSanCount(2)));
    }
}
