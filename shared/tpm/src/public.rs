//! TPM 2.0 public areas (`TPM2B_PUBLIC` / `TPMT_PUBLIC`, TPM 2.0 Part 2 §12.2) and object
//! names. Pure: parses untrusted bytes from the network and never panics on them.

use ring::digest::{SHA256, digest};

/// `TPM_ALG_RSA`.
pub const ALG_RSA: u16 = 0x0001;
/// `TPM_ALG_SHA256`.
pub const ALG_SHA256: u16 = 0x000B;
/// `TPM_ALG_AES`.
pub const ALG_AES: u16 = 0x0006;
/// `TPM_ALG_NULL`.
pub const ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_CFB`.
pub const ALG_CFB: u16 = 0x0043;
/// `TPM_ALG_ECC`.
pub const ALG_ECC: u16 = 0x0023;
/// `TPM_ALG_ECDAA` (the only ECC scheme with two detail fields).
const ALG_ECDAA: u16 = 0x001A;
/// `TPM_ALG_RSAES` (an RSA scheme with no details).
const ALG_RSAES: u16 = 0x0015;
/// `TPM_ECC_NIST_P256`.
pub const ECC_NIST_P256: u16 = 0x0003;

/// `TPMA_OBJECT` bits (Part 2 §8.3).
pub mod attr {
    /// The object cannot be duplicated out of its TPM.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// The object's parent cannot change.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// The TPM generated the sensitive part (the private key never existed outside it).
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// User role authorisation with the auth value.
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    /// Operations on TPM-generated data only.
    pub const RESTRICTED: u32 = 1 << 16;
    /// A decryption key.
    pub const DECRYPT: u32 = 1 << 17;
    /// A signing key.
    pub const SIGN: u32 = 1 << 18;

    /// Names of the set bits this module knows, for messages.
    pub fn describe(bits: u32) -> String {
        let names = [
            (FIXED_TPM, "fixedTPM"),
            (FIXED_PARENT, "fixedParent"),
            (SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
            (USER_WITH_AUTH, "userWithAuth"),
            (RESTRICTED, "restricted"),
            (DECRYPT, "decrypt"),
            (SIGN, "sign"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(b, _)| bits & b != 0)
            .map(|(_, n)| *n)
            .collect();
        format!("0x{bits:08x} [{}]", set.join(" "))
    }
}

/// Why a public area could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublicError {
    /// The bytes end before the structure does.
    #[error("TPM2B_PUBLIC truncated while reading {0}")]
    Truncated(&'static str),
    /// Bytes left over after the structure.
    #[error("TPM2B_PUBLIC has {0} trailing bytes")]
    Trailing(usize),
    /// The declared TPM2B size disagrees with the data.
    #[error("TPM2B_PUBLIC size field says {declared} bytes but {actual} follow")]
    SizeMismatch {
        /// The size field.
        declared: usize,
        actual: usize,
    },
    /// A key type this crate does not handle.
    #[error("unsupported public key type 0x{0:04x} (only RSA and ECC keys are supported)")]
    UnsupportedType(u16),
}

/// The symmetric algorithm of a storage or endorsement key (`TPMT_SYM_DEF_OBJECT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymDef {
    /// Algorithm (`TPM_ALG_NULL` when none).
    pub algorithm: u16,
    /// Key size in bits (0 when none).
    pub key_bits: u16,
    /// Mode (0 when none).
    pub mode: u16,
}

/// The public key of a parsed area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Rsa {
        /// Key size in bits.
        key_bits: u16,
        /// Public exponent (0 in the area means 65537; normalised here).
        exponent: u32,
        /// Modulus, big-endian, without leading zeros.
        modulus: Vec<u8>,
    },
    Ecc {
        /// `TPM_ECC_CURVE`.
        curve: u16,
        /// X coordinate, big-endian.
        x: Vec<u8>,
        /// Y coordinate, big-endian.
        y: Vec<u8>,
    },
}

/// A parsed `TPMT_PUBLIC`, with the bytes it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicArea {
    /// The marshalled `TPMT_PUBLIC` (what a name hashes).
    pub tpmt: Vec<u8>,
    /// `nameAlg`.
    pub name_alg: u16,
    /// `objectAttributes`.
    pub attributes: u32,
    /// `authPolicy`.
    pub auth_policy: Vec<u8>,
    /// Symmetric algorithm for children / credential protection.
    pub symmetric: SymDef,
    /// Signing or encryption scheme (`TPM_ALG_NULL` when the key has none).
    pub scheme: u16,
    pub key: PublicKey,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], PublicError> {
        if self.buf.len() < n {
            return Err(PublicError::Truncated(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, PublicError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, PublicError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn tpm2b(&mut self, what: &'static str) -> Result<&'a [u8], PublicError> {
        let n = self.u16(what)? as usize;
        self.take(n, what)
    }
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[i..].to_vec()
}

impl PublicArea {
    /// Parses a marshalled `TPM2B_PUBLIC` (size-prefixed `TPMT_PUBLIC`).
    pub fn from_tpm2b(bytes: &[u8]) -> Result<PublicArea, PublicError> {
        let mut r = Reader { buf: bytes };
        let declared = r.u16("size")? as usize;
        if declared != r.buf.len() {
            return Err(PublicError::SizeMismatch {
                declared,
                actual: r.buf.len(),
            });
        }
        Self::from_tpmt(r.buf)
    }

    /// Parses a marshalled `TPMT_PUBLIC`.
    pub fn from_tpmt(bytes: &[u8]) -> Result<PublicArea, PublicError> {
        let mut r = Reader { buf: bytes };
        let kind = r.u16("type")?;
        let name_alg = r.u16("nameAlg")?;
        let attributes = r.u32("objectAttributes")?;
        let auth_policy = r.tpm2b("authPolicy")?.to_vec();
        if kind != ALG_RSA && kind != ALG_ECC {
            return Err(PublicError::UnsupportedType(kind));
        }
        let algorithm = r.u16("symmetric.algorithm")?;
        let symmetric = if algorithm == ALG_NULL {
            SymDef {
                algorithm,
                key_bits: 0,
                mode: 0,
            }
        } else {
            SymDef {
                algorithm,
                key_bits: r.u16("symmetric.keyBits")?,
                mode: r.u16("symmetric.mode")?,
            }
        };
        let scheme = r.u16("scheme")?;
        let key = if kind == ALG_RSA {
            if scheme != ALG_NULL && scheme != ALG_RSAES {
                r.u16("scheme.hashAlg")?;
            }
            let key_bits = r.u16("keyBits")?;
            let exponent = match r.u32("exponent")? {
                0 => 65537,
                e => e,
            };
            let modulus = strip_zeros(r.tpm2b("unique.rsa")?);
            PublicKey::Rsa {
                key_bits,
                exponent,
                modulus,
            }
        } else {
            if scheme != ALG_NULL {
                r.u16("scheme.hashAlg")?;
                if scheme == ALG_ECDAA {
                    r.u16("scheme.count")?;
                }
            }
            let curve = r.u16("curveID")?;
            if r.u16("kdf.scheme")? != ALG_NULL {
                r.u16("kdf.hashAlg")?;
            }
            let x = r.tpm2b("unique.ecc.x")?.to_vec();
            let y = r.tpm2b("unique.ecc.y")?.to_vec();
            PublicKey::Ecc { curve, x, y }
        };
        if !r.buf.is_empty() {
            return Err(PublicError::Trailing(r.buf.len()));
        }
        Ok(PublicArea {
            tpmt: bytes.to_vec(),
            name_alg,
            attributes,
            auth_policy,
            symmetric,
            scheme,
            key,
        })
    }

    /// The object's TPM name: `nameAlg || H(TPMT_PUBLIC)`; `None` unless `nameAlg` is
    /// SHA-256 (the only one this crate computes).
    pub fn name(&self) -> Option<Vec<u8>> {
        if self.name_alg != ALG_SHA256 {
            return None;
        }
        let mut n = ALG_SHA256.to_be_bytes().to_vec();
        n.extend_from_slice(digest(&SHA256, &self.tpmt).as_ref());
        Some(n)
    }

    /// Whether every bit of `bits` is set.
    pub fn has(&self, bits: u32) -> bool {
        self.attributes & bits == bits
    }
}

/// Wraps bytes as a TPM2B (2-byte big-endian size, then the bytes); `None` above 65535 bytes.
pub fn tpm2b(bytes: &[u8]) -> Option<Vec<u8>> {
    let n = u16::try_from(bytes.len()).ok()?;
    let mut out = n.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    Some(out)
}

/// The contents of a TPM2B whose size field matches the data exactly.
pub fn tpm2b_contents(bytes: &[u8]) -> Option<&[u8]> {
    let (size, rest) = bytes.split_first_chunk::<2>()?;
    (u16::from_be_bytes(*size) as usize == rest.len()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soft::{ecc_signing, rsa_ek};

    #[test]
    fn parses_ecc_and_rsa_areas() {
        let a = PublicArea::from_tpm2b(&ecc_signing(
            &[1; 32],
            &[2; 32],
            attr::FIXED_TPM | attr::SIGN,
        ))
        .unwrap();
        assert_eq!(
            a.key,
            PublicKey::Ecc {
                curve: ECC_NIST_P256,
                x: vec![1; 32],
                y: vec![2; 32]
            }
        );
        assert!(a.has(attr::FIXED_TPM | attr::SIGN));
        assert!(!a.has(attr::FIXED_PARENT));
        let name = a.name().unwrap();
        assert_eq!(&name[..2], &[0x00, 0x0B]);
        assert_eq!(name.len(), 34);

        let mut m = vec![0u8; 256];
        m[0] = 0xC1;
        let e = PublicArea::from_tpm2b(&rsa_ek(&m)).unwrap();
        assert_eq!(
            e.symmetric,
            SymDef {
                algorithm: ALG_AES,
                key_bits: 128,
                mode: ALG_CFB
            }
        );
        let PublicKey::Rsa {
            exponent, modulus, ..
        } = &e.key
        else {
            panic!("rsa")
        };
        assert_eq!(*exponent, 65537);
        assert_eq!(modulus.len(), 256);
    }

    #[test]
    fn rejects_truncated_trailing_and_unknown() {
        let good = ecc_signing(&[1; 32], &[2; 32], attr::SIGN);
        for cut in [0, 1, 5, 20, good.len() - 1] {
            assert!(PublicArea::from_tpm2b(&good[..cut]).is_err(), "cut {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            PublicArea::from_tpm2b(&long),
            Err(PublicError::SizeMismatch { .. })
        ));
        let mut inner = good[2..].to_vec();
        inner.push(0);
        assert!(matches!(
            PublicArea::from_tpmt(&inner),
            Err(PublicError::Trailing(1))
        ));
        let mut kh = good[2..].to_vec();
        kh[1] = 0x08; // KEYEDHASH
        assert!(matches!(
            PublicArea::from_tpmt(&kh),
            Err(PublicError::UnsupportedType(0x0008))
        ));
        assert_eq!(tpm2b_contents(&[0, 2, 9, 9]), Some(&[9u8, 9][..]));
        assert_eq!(tpm2b_contents(&[0, 3, 9, 9]), None);
    }
}
