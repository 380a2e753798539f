//! What a certificate says, for people: [`summarize`] reads the fields an operator looks at
//! (no profile check: a foreign or broken chain is still shown), [`key_type`] names the key.

use chrono::{DateTime, Utc};
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::OID_X509_EXT_KEY_USAGE;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::build::hex;
use super::check::{authority_key_id, find_ext, sans, subject_key_id, validity_of};
use super::*;

/// A certificate's key, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// RSA with this modulus size in bits.
    Rsa(usize),
    /// EdDSA on Curve25519.
    Ed25519,
    /// An algorithm (or curve) this build does not name: its dotted OID.
    Unknown(String),
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EcdsaP256 => f.write_str("ECDSA P-256"),
            Self::EcdsaP384 => f.write_str("ECDSA P-384"),
            Self::Rsa(bits) => write!(f, "RSA {bits}"),
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::Unknown(oid) => write!(f, "unknown (OID {oid})"),
        }
    }
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";

/// Names a key from its SubjectPublicKeyInfo: the algorithm OID, the curve OID of an EC key
/// (its parameters) and the modulus size of an RSA key.
pub fn key_type(algorithm: &str, curve: Option<&str>, rsa_bits: Option<usize>) -> KeyType {
    match (algorithm, curve, rsa_bits) {
        (OID_EC_PUBLIC_KEY, Some(OID_P256), _) => KeyType::EcdsaP256,
        (OID_EC_PUBLIC_KEY, Some(OID_P384), _) => KeyType::EcdsaP384,
        (OID_EC_PUBLIC_KEY, Some(c), _) => KeyType::Unknown(format!("{algorithm} curve {c}")),
        (OID_RSA, _, Some(bits)) => KeyType::Rsa(bits),
        (OID_ED25519, _, _) => KeyType::Ed25519,
        _ => KeyType::Unknown(algorithm.to_string()),
    }
}

/// [`key_type`] of a parsed SubjectPublicKeyInfo.
fn key_type_of(spki: &SubjectPublicKeyInfo<'_>) -> KeyType {
    let alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    let rsa_bits = match spki.parsed() {
        Ok(PublicKey::RSA(k)) => Some(bits(k.modulus)),
        _ => None,
    };
    key_type(&alg, curve.as_deref(), rsa_bits)
}

/// Bits of a big-endian unsigned integer.
fn bits(n: &[u8]) -> usize {
    let n = crate::der::strip_leading_zeros(n);
    match n.first() {
        Some(b) => (n.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
        None => 0,
    }
}

/// The fields of a certificate an operator reads. Key ids and the serial are lowercase hex
/// without separators, as in node ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Subject distinguished name as text.
    pub subject: String,
    /// Issuer distinguished name as text.
    pub issuer: String,
    /// Serial number, without leading zeros.
    pub serial_hex: String,
    /// notBefore.
    pub not_before: DateTime<Utc>,
    /// notAfter.
    pub not_after: DateTime<Utc>,
    /// The subject's key.
    pub key_type: KeyType,
    /// Subject Key Identifier, when present.
    pub subject_key_id: Option<String>,
    /// keyIdentifier of the Authority Key Identifier, when present.
    pub authority_key_id: Option<String>,
    /// URI SANs, in certificate order.
    pub uri_sans: Vec<String>,
    /// DNS SANs, in certificate order.
    pub dns_sans: Vec<String>,
    /// basicConstraints cA, and its pathLenConstraint.
    pub ca: Option<(bool, Option<u32>)>,
    /// keyUsage bits as x509-parser names them (`Digital Signature, Key Cert Sign`).
    pub key_usage: Option<String>,
}

/// Reads the fields of a DER certificate.
pub fn summarize(der: &[u8]) -> Result<CertSummary, ProfileError> {
    let cert = super::check::parse_prefix(der)?;
    let (not_before, not_after) = validity_of(&cert)?;
    let san = sans(&cert).ok().flatten();
    let ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .map(|bc| (bc.value.ca, bc.value.path_len_constraint));
    let key_usage =
        find_ext(&cert, &OID_X509_EXT_KEY_USAGE).and_then(|e| match e.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => Some(ku.to_string()),
            _ => None,
        });
    Ok(CertSummary {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial_hex: serial_to_hex(cert.raw_serial()),
        not_before,
        not_after,
        key_type: key_type_of(cert.public_key()),
        subject_key_id: subject_key_id(&cert).ok().flatten().map(|k| hex(&k)),
        authority_key_id: authority_key_id(&cert).ok().flatten().map(|k| hex(&k)),
        uri_sans: san.as_ref().map(|s| s.uris.clone()).unwrap_or_default(),
        dns_sans: san.map(|s| s.dns).unwrap_or_default(),
        ca,
        key_usage,
    })
}

/// A certificate as "name: value" lines, for a reader with no parser of its own.
pub fn describe(der: &[u8]) -> Result<Vec<String>, ProfileError> {
    let s = summarize(der)?;
    let mut out = vec![
        format!("subject: {}", s.subject),
        format!("issuer: {}", s.issuer),
        format!("serial: {}", s.serial_hex),
        format!("not before: {}", s.not_before.to_rfc3339()),
        format!("not after: {}", s.not_after.to_rfc3339()),
        format!("key type: {}", s.key_type),
    ];
    out.extend(s.uri_sans.iter().map(|u| format!("URI SAN: {u}")));
    out.extend(s.dns_sans.iter().map(|d| format!("DNS SAN: {d}")));
    if let Some((ca, path_len)) = s.ca {
        let p = path_len.map(|p| format!(" (path length {p})"));
        out.push(format!("CA: {ca}{}", p.unwrap_or_default()));
    }
    out.extend(s.key_usage.map(|k| format!("key usage: {k}")));
    out.extend(s.subject_key_id.map(|k| format!("subject key id: {k}")));
    out.extend(s.authority_key_id.map(|k| format!("authority key id: {k}")));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_from_algorithm_and_parameters() {
        let cases = [
            (OID_EC_PUBLIC_KEY, Some(OID_P256), None, "ECDSA P-256"),
            (OID_EC_PUBLIC_KEY, Some(OID_P384), None, "ECDSA P-384"),
            (OID_RSA, None, Some(2048), "RSA 2048"),
            (OID_RSA, None, Some(3072), "RSA 3072"),
            (OID_RSA, None, Some(4096), "RSA 4096"),
            (OID_ED25519, None, None, "Ed25519"),
            (
                OID_EC_PUBLIC_KEY,
                Some("1.3.132.0.35"),
                None,
                "unknown (OID 1.2.840.10045.2.1 curve 1.3.132.0.35)",
            ),
            (OID_RSA, None, None, "unknown (OID 1.2.840.113549.1.1.1)"),
            ("1.3.101.113", None, None, "unknown (OID 1.3.101.113)"),
        ];
        for (alg, curve, rsa, want) in cases {
            assert_eq!(
                key_type(alg, curve, rsa).to_string(),
                want,
                "{alg} {curve:?}"
            );
        }
    }

    #[test]
    fn modulus_bits_ignore_the_sign_byte() {
        assert_eq!(bits(&[0x00, 0x80, 0, 0]), 24);
        assert_eq!(bits(&[0x01, 0xff]), 9);
        assert_eq!(bits(&[]), 0);
    }

    fn self_signed(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        let mut p = rcgen::CertificateParams::new(vec!["a.test".to_string()]).expect("params");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(1));
        p.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn certificates_name_their_keys() {
        for (alg, want) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, KeyType::EcdsaP256),
            (&rcgen::PKCS_ECDSA_P384_SHA384, KeyType::EcdsaP384),
            (&rcgen::PKCS_ED25519, KeyType::Ed25519),
        ] {
            let s = summarize(&self_signed(alg)).expect("summary");
            assert_eq!(s.key_type, want);
            assert_eq!(s.ca, Some((true, Some(1))));
            assert_eq!(s.dns_sans, vec!["a.test".to_string()]);
        }
    }

    #[test]
    fn describe_names_the_key_and_says_each_field_once() {
        let lines = describe(&self_signed(&rcgen::PKCS_ECDSA_P256_SHA256)).expect("lines");
        assert!(
            lines.contains(&"key type: ECDSA P-256".to_string()),
            "{lines:?}"
        );
        for name in ["serial", "not before", "not after", "subject key id"] {
            let n = lines
                .iter()
                .filter(|l| l.starts_with(&format!("{name}:")))
                .count();
            assert!(n <= 1, "{name} {lines:?}");
        }
    }
}
