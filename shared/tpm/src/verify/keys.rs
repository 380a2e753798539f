//! Keys and signatures: a public area against a certificate key, and DER helpers for the
//! signatures a TPM returns raw.

use x509_parser::prelude::*;

use super::*;

pub(super) fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[i..]
}

pub(super) fn pad32(b: &[u8]) -> Option<[u8; 32]> {
    let b = strip_zeros(b);
    let mut out = [0u8; 32];
    out.get_mut(32usize.checked_sub(b.len())?..)?
        .copy_from_slice(b);
    Some(out)
}

/// Checks that a public area holds the same key as a certificate's SubjectPublicKeyInfo.
pub(super) fn match_key(area: &PublicArea, spki: &SubjectPublicKeyInfo<'_>) -> Result<(), String> {
    let parsed = spki
        .parsed()
        .map_err(|e| format!("certificate key unreadable: {e}"))?;
    match (&area.key, parsed) {
        (
            PublicKey::Rsa {
                exponent, modulus, ..
            },
            x509_parser::public_key::PublicKey::RSA(rsa),
        ) => {
            let cert_e = strip_zeros(rsa.exponent);
            let area_e = exponent.to_be_bytes();
            if strip_zeros(rsa.modulus) != modulus.as_slice() || cert_e != strip_zeros(&area_e) {
                return Err(
                    "RSA modulus or exponent differs from the certificate's key".to_string()
                );
            }
            Ok(())
        }
        (PublicKey::Ecc { curve, x, y }, x509_parser::public_key::PublicKey::EC(point)) => {
            if *curve != ECC_NIST_P256 {
                return Err(format!(
                    "ECC curve 0x{curve:04x} is not supported (only NIST P-256)"
                ));
            }
            let curve_oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            if curve_oid.as_deref() != Some("1.2.840.10045.3.1.7") {
                return Err(format!(
                    "the certificate's key is not on P-256 (curve {curve_oid:?})"
                ));
            }
            let (Some(x), Some(y)) = (pad32(x), pad32(y)) else {
                return Err("ECC point coordinates longer than 32 bytes".into());
            };
            let mut uncompressed = vec![0x04];
            uncompressed.extend_from_slice(&x);
            uncompressed.extend_from_slice(&y);
            if point.data() != uncompressed.as_slice() {
                return Err("ECC point differs from the certificate's key".into());
            }
            Ok(())
        }
        (PublicKey::Rsa { .. }, _) => Err("the area holds an RSA key, the certificate not".into()),
        (PublicKey::Ecc { .. }, _) => Err("the area holds an ECC key, the certificate not".into()),
    }
}

/// DER `ECDSA-Sig-Value` from raw big-endian `r` and `s` (as a TPM returns them).
pub fn ecdsa_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn int(v: &[u8]) -> Vec<u8> {
        let v = strip_zeros(v);
        let mut body = Vec::with_capacity(v.len() + 1);
        if v.is_empty() || v[0] & 0x80 != 0 {
            body.push(0);
        }
        body.extend_from_slice(v);
        let mut out = vec![0x02];
        der_len(&mut out, body.len());
        out.extend_from_slice(&body);
        out
    }
    let mut body = int(r);
    body.extend_from_slice(&int(s));
    let mut out = vec![0x30];
    der_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

pub(super) fn der_len(out: &mut Vec<u8>, n: usize) {
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
}

/// The DER object at the start of `bytes` (a TPM NV index may pad the certificate).
pub fn der_prefix(bytes: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = bytes.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, 2 + n)
    };
    bytes.get(..header.checked_add(len)?)
}
