//! Checking DER certificates against the X509-SVID profiles, and reading their fields.

use chrono::{DateTime, Utc};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension, X509Extension};
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_CERTIFICATE_POLICIES, OID_X509_EXT_EXTENDED_KEY_USAGE,
    OID_X509_EXT_INHIBIT_ANY_POLICY, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_NAME_CONSTRAINTS,
    OID_X509_EXT_POLICY_CONSTRAINTS, OID_X509_EXT_POLICY_MAPPINGS, OID_X509_EXT_SUBJECT_ALT_NAME,
    OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};

use super::*;
use crate::id::SpiffeId;

/// Parses the DER certificate at the start of `der` (bytes after it are ignored).
pub(super) fn parse_prefix(der: &[u8]) -> Result<X509Certificate<'_>, ProfileError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| ProfileError::Parse {
            reason: e.to_string(),
        })
}

/// Parses `der` as exactly one DER certificate.
fn parse_exact(der: &[u8]) -> Result<X509Certificate<'_>, ProfileError> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| ProfileError::Parse {
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(ProfileError::TrailingData { count: rest.len() });
    }
    Ok(cert)
}

/// Parses DER and checks the generic rules (single certificate, v3, no
/// duplicate extensions, no unknown critical extension, valid period).
fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, ProfileError> {
    let cert = parse_exact(der)?;
    if cert.version().0 != 2 {
        return Err(ProfileError::NotV3 {
            version: cert.version().0 + 1,
        });
    }
    let known = [
        &OID_X509_EXT_BASIC_CONSTRAINTS,
        &OID_X509_EXT_KEY_USAGE,
        &OID_X509_EXT_EXTENDED_KEY_USAGE,
        &OID_X509_EXT_SUBJECT_ALT_NAME,
        &OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
        &OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
        &OID_X509_EXT_NAME_CONSTRAINTS,
        &OID_X509_EXT_CERTIFICATE_POLICIES,
        &OID_X509_EXT_POLICY_CONSTRAINTS,
        &OID_X509_EXT_POLICY_MAPPINGS,
        &OID_X509_EXT_INHIBIT_ANY_POLICY,
    ];
    let exts = cert.extensions();
    for (i, ext) in exts.iter().enumerate() {
        if exts[..i].iter().any(|other| other.oid == ext.oid) {
            return Err(ProfileError::DuplicateExtension {
                oid: ext.oid.to_id_string(),
            });
        }
        if ext.critical && !known.contains(&&ext.oid) {
            return Err(ProfileError::UnsupportedCriticalExtension {
                oid: ext.oid.to_id_string(),
            });
        }
        if let ParsedExtension::ParseError { error } = ext.parsed_extension() {
            return Err(ProfileError::MalformedExtension {
                name: extension_name(ext),
                reason: error.to_string(),
            });
        }
    }
    let validity = cert.validity();
    if validity.not_after <= validity.not_before {
        return Err(ProfileError::CertValidityInverted {
            not_before: validity.not_before.to_string(),
            not_after: validity.not_after.to_string(),
        });
    }
    Ok(cert)
}

fn extension_name(ext: &X509Extension<'_>) -> &'static str {
    let oid = &ext.oid;
    if *oid == OID_X509_EXT_BASIC_CONSTRAINTS {
        "basicConstraints"
    } else if *oid == OID_X509_EXT_KEY_USAGE {
        "keyUsage"
    } else if *oid == OID_X509_EXT_EXTENDED_KEY_USAGE {
        "extendedKeyUsage"
    } else if *oid == OID_X509_EXT_SUBJECT_ALT_NAME {
        "subjectAltName"
    } else if *oid == OID_X509_EXT_SUBJECT_KEY_IDENTIFIER {
        "subjectKeyIdentifier"
    } else if *oid == OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER {
        "authorityKeyIdentifier"
    } else {
        "extension"
    }
}

pub(super) fn find_ext<'a, 'b>(
    cert: &'b X509Certificate<'a>,
    oid: &x509_parser::der_parser::Oid<'_>,
) -> Option<&'b X509Extension<'a>> {
    cert.extensions().iter().find(|e| e.oid == *oid)
}

fn malformed(name: &'static str) -> ProfileError {
    ProfileError::MalformedExtension {
        name,
        reason: "unexpected content".to_string(),
    }
}

/// (cA, pathLen) after checking presence and criticality.
fn basic_constraints(cert: &X509Certificate<'_>) -> Result<(bool, Option<u32>), ProfileError> {
    let ext = find_ext(cert, &OID_X509_EXT_BASIC_CONSTRAINTS)
        .ok_or(ProfileError::MissingBasicConstraints)?;
    let ParsedExtension::BasicConstraints(bc) = ext.parsed_extension() else {
        return Err(malformed("basicConstraints"));
    };
    if !ext.critical {
        return Err(ProfileError::BasicConstraintsNotCritical);
    }
    Ok((bc.ca, bc.path_len_constraint))
}

fn key_usage<'a>(
    cert: &'a X509Certificate<'_>,
) -> Result<&'a x509_parser::extensions::KeyUsage, ProfileError> {
    let ext = find_ext(cert, &OID_X509_EXT_KEY_USAGE).ok_or(ProfileError::MissingKeyUsage)?;
    let ParsedExtension::KeyUsage(ku) = ext.parsed_extension() else {
        return Err(malformed("keyUsage"));
    };
    if !ext.critical {
        return Err(ProfileError::KeyUsageNotCritical);
    }
    Ok(ku)
}

/// The parts of a SAN extension this profile looks at.
pub(super) struct SanInfo {
    critical: bool,
    pub(super) uris: Vec<String>,
    pub(super) dns: Vec<String>,
}

/// The SAN extension, if present.
pub(super) fn sans(cert: &X509Certificate<'_>) -> Result<Option<SanInfo>, ProfileError> {
    let Some(ext) = find_ext(cert, &OID_X509_EXT_SUBJECT_ALT_NAME) else {
        return Ok(None);
    };
    let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() else {
        return Err(malformed("subjectAltName"));
    };
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    for name in &san.general_names {
        match name {
            GeneralName::URI(u) => uris.push((*u).to_string()),
            GeneralName::DNSName(d) => dns.push((*d).to_string()),
            _ => {}
        }
    }
    Ok(Some(SanInfo {
        critical: ext.critical,
        uris,
        dns,
    }))
}

pub(super) fn subject_key_id(cert: &X509Certificate<'_>) -> Result<Option<Vec<u8>>, ProfileError> {
    match find_ext(cert, &OID_X509_EXT_SUBJECT_KEY_IDENTIFIER) {
        None => Ok(None),
        Some(ext) => match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(kid) => Ok(Some(kid.0.to_vec())),
            _ => Err(malformed("subjectKeyIdentifier")),
        },
    }
}

pub(super) fn authority_key_id(
    cert: &X509Certificate<'_>,
) -> Result<Option<Vec<u8>>, ProfileError> {
    match find_ext(cert, &OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER) {
        None => Ok(None),
        Some(ext) => match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                Ok(aki.key_identifier.as_ref().map(|k| k.0.to_vec()))
            }
            _ => Err(malformed("authorityKeyIdentifier")),
        },
    }
}

pub(super) fn validity_of(
    cert: &X509Certificate<'_>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ProfileError> {
    let v = cert.validity();
    Ok((
        from_offset_datetime(v.not_before.to_datetime())?,
        from_offset_datetime(v.not_after.to_datetime())?,
    ))
}

fn subject_is_empty(cert: &X509Certificate<'_>) -> bool {
    cert.subject().iter_attributes().next().is_none()
}

fn single_uri(uris: &[String]) -> Result<SpiffeId, ProfileError> {
    if uris.len() != 1 {
        return Err(ProfileError::UriSanCount {
            count: uris.len(),
            uris: uris.to_vec(),
        });
    }
    let uri = &uris[0];
    SpiffeId::parse(uri).map_err(|source| ProfileError::InvalidUriSan {
        uri: uri.clone(),
        source,
    })
}

/// Checks a DER certificate against the X509-SVID leaf profile and returns
/// what it holds. See the module documentation for the rules.
pub fn check_leaf(der: &[u8]) -> Result<LeafInfo, ProfileError> {
    let cert = parse_cert(der)?;
    let (ca, _) = basic_constraints(&cert)?;
    if ca {
        return Err(ProfileError::LeafIsCa);
    }
    let ku = key_usage(&cert)?;
    if ku.key_cert_sign() {
        return Err(ProfileError::ForbiddenKeyUsage {
            usage: "keyCertSign",
        });
    }
    if ku.crl_sign() {
        return Err(ProfileError::ForbiddenKeyUsage { usage: "cRLSign" });
    }
    if !ku.digital_signature() {
        return Err(ProfileError::MissingDigitalSignature);
    }
    if let Some(ext) = find_ext(&cert, &OID_X509_EXT_EXTENDED_KEY_USAGE) {
        let ParsedExtension::ExtendedKeyUsage(eku) = ext.parsed_extension() else {
            return Err(malformed("extendedKeyUsage"));
        };
        if !eku.server_auth {
            return Err(ProfileError::MissingExtendedKeyUsage {
                purpose: "serverAuth",
            });
        }
        if !eku.client_auth {
            return Err(ProfileError::MissingExtendedKeyUsage {
                purpose: "clientAuth",
            });
        }
    }
    let san = sans(&cert)?.ok_or(ProfileError::MissingSan)?;
    let spiffe_id = single_uri(&san.uris)?;
    if spiffe_id.is_trust_domain_id() {
        return Err(ProfileError::LeafIdWithoutPath {
            uri: spiffe_id.to_string(),
        });
    }
    if subject_is_empty(&cert) && !san.critical {
        return Err(ProfileError::SanNotCriticalWithEmptySubject);
    }
    let (not_before, not_after) = validity_of(&cert)?;
    Ok(LeafInfo {
        spiffe_id,
        dns_names: san.dns,
        not_before,
        not_after,
        serial_hex: serial_to_hex(cert.raw_serial()),
        public_key_spki_der: cert.public_key().raw.to_vec(),
        subject_key_id: subject_key_id(&cert)?,
        authority_key_id: authority_key_id(&cert)?,
    })
}

/// Checks a DER certificate against the SPIFFE signing-certificate profile
/// and returns what it holds. See the module documentation for the rules.
pub fn check_ca(der: &[u8]) -> Result<CaInfo, ProfileError> {
    let cert = parse_cert(der)?;
    let (ca, path_len) = basic_constraints(&cert)?;
    if !ca {
        return Err(ProfileError::CaNotCa);
    }
    let ku = key_usage(&cert)?;
    if !ku.key_cert_sign() {
        return Err(ProfileError::MissingKeyCertSign);
    }
    let mut trust_domain = None;
    if let Some(san) = sans(&cert)? {
        if !san.uris.is_empty() {
            let id = single_uri(&san.uris)?;
            if !id.is_trust_domain_id() {
                return Err(ProfileError::CaIdWithPath {
                    uri: id.to_string(),
                });
            }
            trust_domain = Some(id.trust_domain().clone());
        }
        if subject_is_empty(&cert) && !san.critical {
            return Err(ProfileError::SanNotCriticalWithEmptySubject);
        }
    }
    let (not_before, not_after) = validity_of(&cert)?;
    Ok(CaInfo {
        trust_domain,
        subject: cert.subject().to_string(),
        not_before,
        not_after,
        serial_hex: serial_to_hex(cert.raw_serial()),
        public_key_spki_der: cert.public_key().raw.to_vec(),
        subject_key_id: subject_key_id(&cert)?,
        authority_key_id: authority_key_id(&cert)?,
        path_len,
    })
}

/// The validity period (notBefore, notAfter) of a DER certificate.
pub fn cert_validity(der: &[u8]) -> Result<(DateTime<Utc>, DateTime<Utc>), ProfileError> {
    let cert = parse_exact(der)?;
    validity_of(&cert)
}

/// The SPIFFE ID held by a DER certificate: its single URI SAN (a leaf's
/// workload ID or a CA's trust domain ID).
pub fn spiffe_id_of(der: &[u8]) -> Result<SpiffeId, ProfileError> {
    let cert = parse_exact(der)?;
    let san = sans(&cert)?.ok_or(ProfileError::MissingSan)?;
    single_uri(&san.uris)
}

/// The DER SubjectPublicKeyInfo of a DER certificate.
pub fn public_key_of(der: &[u8]) -> Result<Vec<u8>, ProfileError> {
    let cert = parse_prefix(der)?;
    Ok(cert.public_key().raw.to_vec())
}

/// The keys a chain (DER, leaf first) depends on: the authority key id of every certificate
/// and the subject key id of every certificate but the leaf, as lowercase hex, each once, in
/// chain order. The last certificate's authority key id names the root that anchors the
/// chain, so "does this SVID chain to authority K?" is `chain_key_ids(chain)?.contains(K)`.
pub fn chain_key_ids(chain: &[Vec<u8>]) -> Result<Vec<String>, ProfileError> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |k: Option<Vec<u8>>| {
        if let Some(k) = k.map(|k| super::build::hex(&k))
            && !out.contains(&k)
        {
            out.push(k);
        }
    };
    for (i, der) in chain.iter().enumerate() {
        let cert = parse_exact(der)?;
        if i > 0 {
            add(subject_key_id(&cert)?);
        }
        add(authority_key_id(&cert)?);
    }
    Ok(out)
}
