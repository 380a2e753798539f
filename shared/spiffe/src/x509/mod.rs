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

mod build;
mod check;
mod summary;

pub use build::*;
pub use check::*;
pub use summary::{CertSummary, KeyType, describe, key_type, summarize};

use chrono::{DateTime, Utc};

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
