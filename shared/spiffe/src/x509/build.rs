//! Building X509-SVID leaf and signing-certificate parameters for rcgen.

use chrono::{DateTime, Utc};
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyIdMethod, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

use super::*;
use crate::id::{SpiffeId, TrustDomain};

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

/// Lowercase hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
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
