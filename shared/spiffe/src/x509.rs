//! X509-SVID leaf and signing (CA) certificate profiles.
//!
//! [`leaf_params`] and [`ca_params`] build `rcgen` parameters that follow
//! the X509-SVID standard; [`check_leaf`] and [`check_ca`] parse a DER
//! certificate with `x509-parser` and check it against the same rules.
//!
//! Rules checked by [`check_leaf`] (X509-SVID §4 and §5):
//! * exactly one URI SAN, a SPIFFE ID with a non-empty path;
//! * basicConstraints present, critical, cA false;
//! * keyUsage present, critical, digitalSignature set, keyCertSign and
//!   cRLSign not set;
//! * extendedKeyUsage, when present, includes serverAuth and clientAuth;
//! * if the subject is empty, the SAN extension is critical;
//! * no unknown critical extension, no duplicate extension, version 3,
//!   notBefore < notAfter.
//!
//! Rules checked by [`check_ca`]:
//! * basicConstraints present, critical, cA true;
//! * keyUsage present, critical, keyCertSign set;
//! * a URI SAN, when present, is the single URI and is a trust domain ID
//!   (`spiffe://td`, no path);
//! * same generic rules as above.

use chrono::{DateTime, Utc};
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyIdMethod, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension, X509Extension};
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_CERTIFICATE_POLICIES, OID_X509_EXT_EXTENDED_KEY_USAGE,
    OID_X509_EXT_INHIBIT_ANY_POLICY, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_NAME_CONSTRAINTS,
    OID_X509_EXT_POLICY_CONSTRAINTS, OID_X509_EXT_POLICY_MAPPINGS, OID_X509_EXT_SUBJECT_ALT_NAME,
    OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};

use crate::id::{IdError, SpiffeId, TrustDomain};

/// Organization (O) written in the subject of every certificate we build.
pub const SUBJECT_ORGANIZATION: &str = "SPIFFE";
/// Maximum length of a certificate serial number, in bytes (RFC 5280).
pub const MAX_SERIAL_LEN: usize = 20;

/// A certificate or certificate request violates the X509-SVID profile, or
/// the inputs to build one are invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The SPIFFE ID was invalid for this use (e.g. a leaf without path).
    #[error("X509-SVID profile: {0}")]
    Id(#[from] IdError),
    /// not_after was not strictly after not_before.
    #[error(
        "X509-SVID profile: validity is empty or inverted: not_after {not_after} must be after not_before {not_before}"
    )]
    InvalidValidity {
        /// The requested notBefore.
        not_before: DateTime<Utc>,
        /// The requested notAfter.
        not_after: DateTime<Utc>,
    },
    /// A time cannot be written in a certificate (year outside 1..=9999).
    #[error(
        "X509-SVID profile: time {time} cannot be encoded in a certificate (year must be 1..=9999)"
    )]
    TimeOutOfRange {
        /// The offending time, as text.
        time: String,
    },
    /// The serial number was empty, zero or longer than 20 bytes.
    #[error("X509-SVID profile: serial number {serial_hex:?} is invalid: {reason}")]
    InvalidSerial {
        /// The serial as hex.
        serial_hex: String,
        /// Which rule was broken.
        reason: &'static str,
    },
    /// A DNS SAN was not a valid DNS name.
    #[error("X509-SVID profile: DNS name {name:?} is invalid: {reason}")]
    InvalidDnsName {
        /// The offending name.
        name: String,
        /// Which rule was broken.
        reason: String,
    },
    /// The CA common name was empty or had control characters.
    #[error("X509-SVID profile: CA common name {name:?} is invalid: {reason}")]
    InvalidCommonName {
        /// The offending common name.
        name: String,
        /// Which rule was broken.
        reason: &'static str,
    },
    /// The DER could not be parsed as an X.509 certificate.
    #[error("X509-SVID profile: certificate does not parse as X.509 DER: {reason}")]
    Parse {
        /// Parser message.
        reason: String,
    },
    /// Bytes followed the certificate in the DER input.
    #[error("X509-SVID profile: {count} unexpected bytes after the certificate DER")]
    TrailingData {
        /// Number of trailing bytes.
        count: usize,
    },
    /// The certificate is not X.509 version 3.
    #[error("X509-SVID profile: certificate must be X.509 v3, found v{version}")]
    NotV3 {
        /// Version found (1-based, as people write it).
        version: u32,
    },
    /// An extension appears more than once.
    #[error("X509-SVID profile: extension {oid} appears more than once")]
    DuplicateExtension {
        /// OID of the extension.
        oid: String,
    },
    /// A known extension could not be decoded.
    #[error("X509-SVID profile: extension {name} is malformed: {reason}")]
    MalformedExtension {
        /// Name of the extension.
        name: &'static str,
        /// Parser message.
        reason: String,
    },
    /// A critical extension that this profile does not know.
    #[error("X509-SVID profile: unsupported critical extension {oid}")]
    UnsupportedCriticalExtension {
        /// OID of the extension.
        oid: String,
    },
    /// basicConstraints is missing.
    #[error("X509-SVID profile: basicConstraints extension is missing")]
    MissingBasicConstraints,
    /// basicConstraints is not marked critical.
    #[error("X509-SVID profile: basicConstraints extension must be critical")]
    BasicConstraintsNotCritical,
    /// A leaf certificate has cA=true.
    #[error(
        "X509-SVID profile: leaf certificate must have basicConstraints cA=false, found cA=true"
    )]
    LeafIsCa,
    /// A signing certificate has cA=false.
    #[error(
        "X509-SVID profile: signing certificate must have basicConstraints cA=true, found cA=false"
    )]
    CaNotCa,
    /// keyUsage is missing.
    #[error("X509-SVID profile: keyUsage extension is missing")]
    MissingKeyUsage,
    /// keyUsage is not marked critical.
    #[error("X509-SVID profile: keyUsage extension must be critical")]
    KeyUsageNotCritical,
    /// A leaf's keyUsage lacks digitalSignature.
    #[error("X509-SVID profile: leaf keyUsage must include digitalSignature")]
    MissingDigitalSignature,
    /// A leaf's keyUsage has a bit reserved to CAs.
    #[error("X509-SVID profile: leaf keyUsage must not include {usage}")]
    ForbiddenKeyUsage {
        /// The forbidden usage (keyCertSign or cRLSign).
        usage: &'static str,
    },
    /// A signing certificate's keyUsage lacks keyCertSign.
    #[error("X509-SVID profile: signing certificate keyUsage must include keyCertSign")]
    MissingKeyCertSign,
    /// extendedKeyUsage is present but lacks a required purpose.
    #[error("X509-SVID profile: extendedKeyUsage must include {purpose}")]
    MissingExtendedKeyUsage {
        /// The missing purpose (serverAuth or clientAuth).
        purpose: &'static str,
    },
    /// The SAN extension is missing on a leaf.
    #[error("X509-SVID profile: subjectAltName extension with a SPIFFE ID URI is missing")]
    MissingSan,
    /// The number of URI SANs is not exactly one.
    #[error("X509-SVID profile: exactly one URI SAN is required, found {count}: {uris:?}")]
    UriSanCount {
        /// How many URI SANs were found.
        count: usize,
        /// The URIs found.
        uris: Vec<String>,
    },
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("X509-SVID profile: URI SAN {uri:?} is not a valid SPIFFE ID: {source}")]
    InvalidUriSan {
        /// The offending URI.
        uri: String,
        /// Why it is invalid.
        source: IdError,
    },
    /// A leaf's SPIFFE ID has no path.
    #[error(
        "X509-SVID profile: leaf URI SAN {uri:?} must be a workload SPIFFE ID with a non-empty path"
    )]
    LeafIdWithoutPath {
        /// The offending URI.
        uri: String,
    },
    /// A signing certificate's SPIFFE ID has a path.
    #[error(
        "X509-SVID profile: signing certificate URI SAN {uri:?} must be a trust domain ID without path"
    )]
    CaIdWithPath {
        /// The offending URI.
        uri: String,
    },
    /// The subject is empty but the SAN extension is not critical.
    #[error(
        "X509-SVID profile: subject is empty, so the subjectAltName extension must be critical"
    )]
    SanNotCriticalWithEmptySubject,
    /// The certificate's validity period is empty or inverted.
    #[error(
        "X509-SVID profile: certificate notAfter {not_after} is not after notBefore {not_before}"
    )]
    CertValidityInverted {
        /// notBefore found.
        not_before: String,
        /// notAfter found.
        not_after: String,
    },
}

/// What [`check_leaf`] found in a valid X509-SVID leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafInfo {
    /// The SPIFFE ID (the single URI SAN).
    pub spiffe_id: SpiffeId,
    /// DNS SANs, in certificate order.
    pub dns_names: Vec<String>,
    /// notBefore.
    pub not_before: DateTime<Utc>,
    /// notAfter.
    pub not_after: DateTime<Utc>,
    /// Serial number as lowercase hex without separators or leading zeros.
    pub serial_hex: String,
    /// DER SubjectPublicKeyInfo of the certificate's key.
    pub public_key_spki_der: Vec<u8>,
    /// Subject Key Identifier, when present.
    pub subject_key_id: Option<Vec<u8>>,
    /// keyIdentifier of the Authority Key Identifier, when present.
    pub authority_key_id: Option<Vec<u8>>,
}

/// What [`check_ca`] found in a valid signing certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaInfo {
    /// Trust domain from the URI SAN, when the certificate has one.
    pub trust_domain: Option<TrustDomain>,
    /// Subject distinguished name as text (e.g. `O=SPIFFE, CN=...`).
    pub subject: String,
    /// notBefore.
    pub not_before: DateTime<Utc>,
    /// notAfter.
    pub not_after: DateTime<Utc>,
    /// Serial number as lowercase hex without separators or leading zeros.
    pub serial_hex: String,
    /// DER SubjectPublicKeyInfo of the certificate's key.
    pub public_key_spki_der: Vec<u8>,
    /// Subject Key Identifier, when present.
    pub subject_key_id: Option<Vec<u8>>,
    /// keyIdentifier of the Authority Key Identifier, when present.
    pub authority_key_id: Option<Vec<u8>>,
    /// pathLenConstraint, when present.
    pub path_len: Option<u32>,
}

/// Converts a chrono time to a `time::OffsetDateTime` (whole seconds; the
/// sub-second part is dropped) suitable for rcgen.
pub fn to_offset_datetime(dt: DateTime<Utc>) -> Result<OffsetDateTime, ProfileError> {
    let out = OffsetDateTime::from_unix_timestamp(dt.timestamp()).map_err(|_| {
        ProfileError::TimeOutOfRange {
            time: dt.to_rfc3339(),
        }
    })?;
    if !(1..=9999).contains(&out.year()) {
        return Err(ProfileError::TimeOutOfRange {
            time: dt.to_rfc3339(),
        });
    }
    Ok(out)
}

/// Converts a `time::OffsetDateTime` to a chrono UTC time (whole seconds).
pub fn from_offset_datetime(odt: OffsetDateTime) -> Result<DateTime<Utc>, ProfileError> {
    DateTime::<Utc>::from_timestamp(odt.unix_timestamp(), 0).ok_or_else(|| {
        ProfileError::TimeOutOfRange {
            time: odt.to_string(),
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Formats a serial number as lowercase hex without leading zero bytes.
pub fn serial_to_hex(raw: &[u8]) -> String {
    hex(crate::der::strip_leading_zeros(raw))
}

fn validate_serial(serial: &[u8]) -> Result<SerialNumber, ProfileError> {
    let stripped = crate::der::strip_leading_zeros(serial);
    let err = |reason| ProfileError::InvalidSerial {
        serial_hex: hex(serial),
        reason,
    };
    if serial.is_empty() {
        return Err(err("must not be empty"));
    }
    if stripped.iter().all(|&b| b == 0) {
        return Err(err("must be positive (non-zero)"));
    }
    // The DER INTEGER gets a 0x00 prefix when the high bit is set.
    let encoded_len = stripped.len() + usize::from(stripped[0] & 0x80 != 0);
    if encoded_len > MAX_SERIAL_LEN {
        return Err(err("must encode in at most 20 bytes"));
    }
    Ok(SerialNumber::from_slice(stripped))
}

fn validate_validity(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<(OffsetDateTime, OffsetDateTime), ProfileError> {
    let nb = to_offset_datetime(not_before)?;
    let na = to_offset_datetime(not_after)?;
    if na <= nb {
        return Err(ProfileError::InvalidValidity {
            not_before,
            not_after,
        });
    }
    Ok((nb, na))
}

/// Checks a DNS name for a certificate SAN: LDH labels of 1..=63 bytes, at
/// most 253 bytes in all, no leading/trailing '-', an optional `*` first
/// label, and not an IP address.
pub fn validate_dns_name(name: &str) -> Result<(), ProfileError> {
    let bad = |reason: &str| ProfileError::InvalidDnsName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(bad("must not be empty"));
    }
    if name.len() > 253 {
        return Err(bad("longer than 253 bytes"));
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(bad("is an IP address, not a DNS name"));
    }
    for (i, label) in name.split('.').enumerate() {
        if label.is_empty() {
            return Err(bad(&format!("label {i} is empty")));
        }
        if label == "*" && i == 0 {
            continue;
        }
        if label.len() > 63 {
            return Err(bad(&format!("label {i} is longer than 63 bytes")));
        }
        if let Some(ch) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(bad(&format!(
                "character {ch:?} in label {i} is not allowed (only a-z, A-Z, 0-9, '-')"
            )));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad(&format!("label {i} starts or ends with '-'")));
        }
    }
    Ok(())
}

/// Builds rcgen parameters for an X509-SVID leaf certificate.
///
/// Sets: subject `O=SPIFFE`; the URI SAN `id` followed by `dns_names`;
/// basicConstraints cA=false (critical); keyUsage digitalSignature
/// (critical); extendedKeyUsage serverAuth + clientAuth; Subject Key
/// Identifier (SHA-256 of the key); Authority Key Identifier; `serial`;
/// validity to the second.
pub fn leaf_params(
    id: &SpiffeId,
    dns_names: &[String],
    serial: &[u8],
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<CertificateParams, ProfileError> {
    id.require_path()?;
    let (nb, na) = validate_validity(not_before, not_after)?;
    let serial = validate_serial(serial)?;
    let mut sans = Vec::with_capacity(dns_names.len() + 1);
    sans.push(SanType::URI(uri_ia5(id)?));
    for name in dns_names {
        validate_dns_name(name)?;
        let ia5 = Ia5String::try_from(name.as_str()).map_err(|e| ProfileError::InvalidDnsName {
            name: name.clone(),
            reason: e.to_string(),
        })?;
        sans.push(SanType::DnsName(ia5));
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, SUBJECT_ORGANIZATION);

    let mut params = CertificateParams::default();
    params.not_before = nb;
    params.not_after = na;
    params.serial_number = Some(serial);
    params.subject_alt_names = sans;
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    Ok(params)
}

fn uri_ia5(id: &SpiffeId) -> Result<Ia5String, ProfileError> {
    // A validated SPIFFE ID is ASCII, so this cannot fail in practice; the
    // error path is kept so no input can cause a panic.
    Ia5String::try_from(id.as_str()).map_err(|_| ProfileError::InvalidUriSan {
        uri: id.to_string(),
        source: IdError::BadScheme {
            kind: crate::id::IdKind::SpiffeId,
            input: id.to_string(),
        },
    })
}

/// Builds rcgen parameters for a SPIFFE signing (CA) certificate.
///
/// Sets: subject `O=SPIFFE, CN=<common_name>`; the URI SAN `spiffe://<td>`;
/// basicConstraints cA=true (critical) with `path_len` as
/// pathLenConstraint when given; keyUsage keyCertSign + cRLSign (critical);
/// Subject Key Identifier; Authority Key Identifier; `serial`; validity.
pub fn ca_params(
    td: &TrustDomain,
    common_name: &str,
    serial: &[u8],
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    path_len: Option<u8>,
) -> Result<CertificateParams, ProfileError> {
    if common_name.trim().is_empty() {
        return Err(ProfileError::InvalidCommonName {
            name: common_name.to_string(),
            reason: "must not be empty or blank",
        });
    }
    if common_name.chars().any(char::is_control) {
        return Err(ProfileError::InvalidCommonName {
            name: common_name.to_string(),
            reason: "must not contain control characters",
        });
    }
    if common_name.len() > 64 {
        return Err(ProfileError::InvalidCommonName {
            name: common_name.to_string(),
            reason: "must be at most 64 bytes (RFC 5280 ub-common-name)",
        });
    }
    let (nb, na) = validate_validity(not_before, not_after)?;
    let serial = validate_serial(serial)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, SUBJECT_ORGANIZATION);
    dn.push(DnType::CommonName, common_name);

    let mut params = CertificateParams::default();
    params.not_before = nb;
    params.not_after = na;
    params.serial_number = Some(serial);
    params.subject_alt_names = vec![SanType::URI(uri_ia5(&td.id())?)];
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.extended_key_usages = Vec::new();
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    Ok(params)
}

/// Parses DER and checks the generic rules (single certificate, v3, no
/// duplicate extensions, no unknown critical extension, valid period).
fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, ProfileError> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| ProfileError::Parse {
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(ProfileError::TrailingData { count: rest.len() });
    }
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

fn find_ext<'a, 'b>(
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
struct SanInfo {
    critical: bool,
    uris: Vec<String>,
    dns: Vec<String>,
}

/// The SAN extension, if present.
fn sans(cert: &X509Certificate<'_>) -> Result<Option<SanInfo>, ProfileError> {
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

fn subject_key_id(cert: &X509Certificate<'_>) -> Result<Option<Vec<u8>>, ProfileError> {
    match find_ext(cert, &OID_X509_EXT_SUBJECT_KEY_IDENTIFIER) {
        None => Ok(None),
        Some(ext) => match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(kid) => Ok(Some(kid.0.to_vec())),
            _ => Err(malformed("subjectKeyIdentifier")),
        },
    }
}

fn authority_key_id(cert: &X509Certificate<'_>) -> Result<Option<Vec<u8>>, ProfileError> {
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

fn validity_of(cert: &X509Certificate<'_>) -> Result<(DateTime<Utc>, DateTime<Utc>), ProfileError> {
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
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| ProfileError::Parse {
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(ProfileError::TrailingData { count: rest.len() });
    }
    validity_of(&cert)
}

/// The SPIFFE ID held by a DER certificate: its single URI SAN (a leaf's
/// workload ID or a CA's trust domain ID).
pub fn spiffe_id_of(der: &[u8]) -> Result<SpiffeId, ProfileError> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| ProfileError::Parse {
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(ProfileError::TrailingData { count: rest.len() });
    }
    let san = sans(&cert)?.ok_or(ProfileError::MissingSan)?;
    single_uri(&san.uris)
}

/// A certificate as "name: value" lines for an operator (console detail pane): subject,
/// issuer, serial, validity, SANs, key identifiers, CA flag and key usage.
pub fn describe(der: &[u8]) -> Result<Vec<String>, ProfileError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| ProfileError::Parse {
        reason: e.to_string(),
    })?;
    let (nb, na) = validity_of(&cert)?;
    let hexs = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let mut out = vec![
        format!("subject: {}", cert.subject()),
        format!("issuer: {}", cert.issuer()),
        format!("serial: {}", serial_to_hex(cert.raw_serial())),
        format!("not before: {}", nb.to_rfc3339()),
        format!("not after: {}", na.to_rfc3339()),
    ];
    if let Ok(Some(san)) = sans(&cert) {
        for u in san.uris {
            out.push(format!("URI SAN: {u}"));
        }
        for d in san.dns {
            out.push(format!("DNS SAN: {d}"));
        }
    }
    if let Ok((ca, path_len)) = basic_constraints(&cert) {
        out.push(format!(
            "CA: {ca}{}",
            path_len
                .map(|p| format!(" (path length {p})"))
                .unwrap_or_default()
        ));
    }
    if let Some(ext) = find_ext(&cert, &OID_X509_EXT_KEY_USAGE)
        && let ParsedExtension::KeyUsage(ku) = ext.parsed_extension()
    {
        out.push(format!("key usage: {ku}"));
    }
    if let Ok(Some(k)) = subject_key_id(&cert) {
        out.push(format!("subject key id: {}", hexs(&k)));
    }
    if let Ok(Some(k)) = authority_key_id(&cert) {
        out.push(format!("authority key id: {}", hexs(&k)));
    }
    out.push(format!(
        "public key: {}",
        cert.public_key().algorithm.algorithm
    ));
    Ok(out)
}

/// The DER SubjectPublicKeyInfo of a DER certificate.
pub fn public_key_of(der: &[u8]) -> Result<Vec<u8>, ProfileError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| ProfileError::Parse {
        reason: e.to_string(),
    })?;
    Ok(cert.public_key().raw.to_vec())
}
