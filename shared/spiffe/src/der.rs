//! Minimal DER reading/writing used for SubjectPublicKeyInfo and ECDSA
//! signature handling. Internal to the crate.

/// DER tag of SEQUENCE.
pub(crate) const TAG_SEQUENCE: u8 = 0x30;
/// DER tag of INTEGER.
pub(crate) const TAG_INTEGER: u8 = 0x02;
/// DER tag of BIT STRING.
const TAG_BIT_STRING: u8 = 0x03;
/// DER tag of OBJECT IDENTIFIER.
const TAG_OID: u8 = 0x06;
/// DER tag of NULL.
const TAG_NULL: u8 = 0x05;

/// OID 1.2.840.10045.2.1 (id-ecPublicKey), content bytes.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// OID 1.2.840.10045.3.1.7 (prime256v1 / P-256), content bytes.
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// OID 1.3.132.0.34 (secp384r1 / P-384), content bytes.
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// OID 1.2.840.113549.1.1.1 (rsaEncryption), content bytes.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// Reads one DER TLV with the expected tag; returns (content, rest).
pub(crate) fn read_tlv(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), String> {
    let (&found, rest) = input
        .split_first()
        .ok_or_else(|| format!("expected DER tag 0x{tag:02x}, found end of data"))?;
    if found != tag {
        return Err(format!("expected DER tag 0x{tag:02x}, found 0x{found:02x}"));
    }
    let (&first, mut rest) = rest
        .split_first()
        .ok_or_else(|| "DER length missing".to_string())?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err(format!("unsupported DER length encoding 0x{first:02x}"));
        }
        if rest.len() < n {
            return Err("DER length truncated".to_string());
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | b as usize;
        }
        if len < 0x80 || (n > 1 && rest[0] == 0) {
            return Err("non-minimal DER length".to_string());
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(format!(
            "DER value truncated: {len} bytes announced, {} available",
            rest.len()
        ));
    }
    Ok((&rest[..len], &rest[len..]))
}

/// Encodes a DER length.
fn write_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Encodes one DER TLV.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    write_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// Strips leading zero bytes of an unsigned big-endian integer (keeps one byte).
pub(crate) fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    if skip == bytes.len() {
        &bytes[bytes.len().saturating_sub(1)..]
    } else {
        &bytes[skip..]
    }
}

/// Encodes an unsigned big-endian integer as a positive DER INTEGER.
pub(crate) fn unsigned_integer(bytes: &[u8]) -> Vec<u8> {
    let stripped = strip_leading_zeros(bytes);
    let mut content = Vec::with_capacity(stripped.len() + 1);
    if stripped.is_empty() || stripped[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(stripped);
    tlv(TAG_INTEGER, &content)
}

/// The elliptic curves the crate understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
}

impl Curve {
    /// Size of one coordinate / scalar in bytes.
    pub(crate) fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    /// JOSE curve name.
    pub(crate) fn jwk_name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }

    fn oid(self) -> &'static [u8] {
        match self {
            Curve::P256 => OID_P256,
            Curve::P384 => OID_P384,
        }
    }
}

/// A parsed public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// An EC key with its uncompressed SEC1 point (`04 || x || y`).
    Ec {
        /// The curve.
        curve: Curve,
        /// Uncompressed SEC1 point.
        point: Vec<u8>,
    },
    /// An RSA key.
    Rsa {
        /// Modulus, unsigned big-endian without leading zeros.
        n: Vec<u8>,
        /// Public exponent, unsigned big-endian without leading zeros.
        e: Vec<u8>,
        /// The DER `RSAPublicKey` (what ring verifies with).
        der: Vec<u8>,
    },
}

/// Parses a DER SubjectPublicKeyInfo holding an EC (P-256/P-384, uncompressed)
/// or RSA key. Error strings describe the problem.
pub(crate) fn parse_spki(spki: &[u8]) -> Result<PublicKey, String> {
    let (body, rest) = read_tlv(spki, TAG_SEQUENCE)?;
    if !rest.is_empty() {
        return Err(format!(
            "{} trailing bytes after SubjectPublicKeyInfo",
            rest.len()
        ));
    }
    let (alg, body) = read_tlv(body, TAG_SEQUENCE)?;
    let (bits, rest) = read_tlv(body, TAG_BIT_STRING)?;
    if !rest.is_empty() {
        return Err("unexpected data after the public key BIT STRING".to_string());
    }
    let (&unused, key) = bits
        .split_first()
        .ok_or_else(|| "empty public key BIT STRING".to_string())?;
    if unused != 0 {
        return Err("public key BIT STRING has unused bits".to_string());
    }
    let (oid, params) = read_tlv(alg, TAG_OID)?;
    if oid == OID_EC_PUBLIC_KEY {
        let (curve_oid, rest) =
            read_tlv(params, TAG_OID).map_err(|e| format!("EC key without a named curve: {e}"))?;
        if !rest.is_empty() {
            return Err("unexpected data after the EC curve OID".to_string());
        }
        let curve = if curve_oid == OID_P256 {
            Curve::P256
        } else if curve_oid == OID_P384 {
            Curve::P384
        } else {
            return Err("unsupported EC curve (only P-256 and P-384)".to_string());
        };
        let n = curve.coordinate_len();
        if key.first() != Some(&0x04) || key.len() != 1 + 2 * n {
            return Err(format!(
                "EC point for {} must be uncompressed ({} bytes starting with 0x04), got {} bytes",
                curve.jwk_name(),
                1 + 2 * n,
                key.len()
            ));
        }
        Ok(PublicKey::Ec {
            curve,
            point: key.to_vec(),
        })
    } else if oid == OID_RSA {
        let (seq, rest) = read_tlv(key, TAG_SEQUENCE)?;
        if !rest.is_empty() {
            return Err("unexpected data after RSAPublicKey".to_string());
        }
        let (n, seq) = read_tlv(seq, TAG_INTEGER)?;
        let (e, seq) = read_tlv(seq, TAG_INTEGER)?;
        if !seq.is_empty() {
            return Err("unexpected data inside RSAPublicKey".to_string());
        }
        let n = strip_leading_zeros(n).to_vec();
        let e = strip_leading_zeros(e).to_vec();
        if n.iter().all(|&b| b == 0) || e.iter().all(|&b| b == 0) {
            return Err("RSA modulus and exponent must be positive".to_string());
        }
        Ok(PublicKey::Rsa {
            n,
            e,
            der: key.to_vec(),
        })
    } else {
        Err("unsupported public key algorithm (only EC P-256/P-384 and RSA)".to_string())
    }
}

/// Builds the DER SubjectPublicKeyInfo of an EC key from its uncompressed point.
pub(crate) fn ec_spki(curve: Curve, point: &[u8]) -> Vec<u8> {
    let mut alg = tlv(TAG_OID, OID_EC_PUBLIC_KEY);
    alg.extend(tlv(TAG_OID, curve.oid()));
    let mut bits = vec![0u8];
    bits.extend_from_slice(point);
    let mut body = tlv(TAG_SEQUENCE, &alg);
    body.extend(tlv(TAG_BIT_STRING, &bits));
    tlv(TAG_SEQUENCE, &body)
}

/// Builds the DER SubjectPublicKeyInfo of an RSA key from n and e.
pub(crate) fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut alg = tlv(TAG_OID, OID_RSA);
    alg.extend(tlv(TAG_NULL, &[]));
    let mut ints = unsigned_integer(n);
    ints.extend(unsigned_integer(e));
    let mut bits = vec![0u8];
    bits.extend(tlv(TAG_SEQUENCE, &ints));
    let mut body = tlv(TAG_SEQUENCE, &alg);
    body.extend(tlv(TAG_BIT_STRING, &bits));
    tlv(TAG_SEQUENCE, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_round_trip() {
        let content = vec![7u8; 300];
        let enc = tlv(TAG_SEQUENCE, &content);
        assert_eq!(&enc[..4], &[0x30, 0x82, 0x01, 0x2c]);
        let (c, rest) = read_tlv(&enc, TAG_SEQUENCE).unwrap();
        assert_eq!(c, &content[..]);
        assert!(rest.is_empty());
        assert!(read_tlv(&enc[..100], TAG_SEQUENCE).is_err());
        assert!(read_tlv(&enc, TAG_INTEGER).is_err());
        // Non-minimal long form for a short length.
        assert!(read_tlv(&[0x02, 0x81, 0x01, 0x00], TAG_INTEGER).is_err());
    }

    #[test]
    fn integers_are_positive_and_minimal() {
        assert_eq!(unsigned_integer(&[0, 0, 5]), vec![2, 1, 5]);
        assert_eq!(unsigned_integer(&[0x80]), vec![2, 2, 0, 0x80]);
        assert_eq!(unsigned_integer(&[0, 0]), vec![2, 1, 0]);
    }

    #[test]
    fn rsa_spki_round_trip() {
        let n = [0xc1u8; 256];
        let spki = rsa_spki(&n, &[1, 0, 1]);
        match parse_spki(&spki).unwrap() {
            PublicKey::Rsa { n: pn, e, .. } => {
                assert_eq!(pn, n.to_vec());
                assert_eq!(e, vec![1, 0, 1]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
