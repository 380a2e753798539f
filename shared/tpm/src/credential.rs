//! `TPM2_MakeCredential` in software (TPM 2.0 Part 1 §24 "Credential Protection"), so a
//! server can challenge a node's TPM without having one.
//!
//! For an RSA-2048 EK with name algorithm SHA-256 and symmetric AES-128-CFB (the default EK
//! template, which is what EK certificates certify):
//! - `seed`: 32 random bytes, encrypted to the EK with RSA-OAEP(SHA-256, label `"IDENTITY\0"`):
//!   the `TPM2B_ENCRYPTED_SECRET`;
//! - `symKey = KDFa(SHA-256, seed, "STORAGE", name, "", 128)`;
//! - `encIdentity = AES-128-CFB(symKey, IV = 0, TPM2B(credential))`;
//! - `hmacKey = KDFa(SHA-256, seed, "INTEGRITY", "", "", 256)`;
//! - `outerHMAC = HMAC-SHA-256(hmacKey, encIdentity || name)`;
//! - `TPM2B_ID_OBJECT = TPM2B(TPM2B(outerHMAC) || encIdentity)`.
//!
//! Only the TPM holding the EK's private key, with the object named `name` loaded, releases
//! the credential (`TPM2_ActivateCredential`).

use aes::Aes128;
use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use rsa::{BigUint, Oaep, RsaPublicKey};

use crate::public::{ALG_AES, ALG_CFB, ALG_RSA, ALG_SHA256, PublicArea, PublicKey, attr, tpm2b};

/// Why a credential could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The EK is not one this implementation handles.
    #[error("unsupported endorsement key for credential activation: {0}")]
    UnsupportedEk(String),
    /// The object name is not a SHA-256 name.
    #[error("object name must be a SHA-256 TPM name (34 bytes), got {0} bytes")]
    BadName(usize),
    /// The credential is longer than a TPM digest.
    #[error("credential must be 1..=64 bytes, got {0}")]
    BadCredential(usize),
    /// Randomness or RSA encryption failed.
    #[error("credential encryption failed: {0}")]
    Crypto(String),
}

/// The challenge a node's TPM answers with `TPM2_ActivateCredential`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Marshalled `TPM2B_ID_OBJECT`.
    pub id_object: Vec<u8>,
    /// Marshalled `TPM2B_ENCRYPTED_SECRET`.
    pub encrypted_secret: Vec<u8>,
}

/// `KDFa` (Part 1 §11.4.10.2) with HMAC-SHA-256: counter mode,
/// `HMAC(key, i || label || 0x00 || context_u || context_v || bits)`, truncated to `bits`.
pub fn kdfa(key: &[u8], label: &str, context_u: &[u8], context_v: &[u8], bits: u32) -> Vec<u8> {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut ctx = hmac::Context::with_key(&k);
        ctx.update(&counter.to_be_bytes());
        ctx.update(label.as_bytes());
        ctx.update(&[0]);
        ctx.update(context_u);
        ctx.update(context_v);
        ctx.update(&bits.to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// The EK parameters credential protection needs, checked.
fn ek_rsa_key(ek: &PublicArea) -> Result<RsaPublicKey, CredentialError> {
    let unsupported = |m: String| Err(CredentialError::UnsupportedEk(m));
    let PublicKey::Rsa {
        key_bits,
        exponent,
        modulus,
    } = &ek.key
    else {
        return unsupported("only RSA-2048 EKs are supported (got an ECC EK)".into());
    };
    if *key_bits != 2048 || modulus.len() != 256 {
        return unsupported(format!(
            "only RSA-2048 EKs are supported (got {key_bits} bits, modulus {} bytes)",
            modulus.len()
        ));
    }
    if ek.name_alg != ALG_SHA256 {
        return unsupported(format!(
            "EK nameAlg must be SHA-256 (0x000b), got 0x{:04x}",
            ek.name_alg
        ));
    }
    let s = ek.symmetric;
    if (s.algorithm, s.key_bits, s.mode) != (ALG_AES, 128, ALG_CFB) {
        return unsupported(format!(
            "EK symmetric algorithm must be AES-128-CFB, got alg 0x{:04x} {} bits mode 0x{:04x}",
            s.algorithm, s.key_bits, s.mode
        ));
    }
    if !ek.has(attr::RESTRICTED | attr::DECRYPT) || ek.has(attr::SIGN) {
        return unsupported(format!(
            "EK must be a restricted decryption key, attributes {}",
            attr::describe(ek.attributes)
        ));
    }
    debug_assert_eq!(ALG_RSA, 1);
    RsaPublicKey::new(
        BigUint::from_bytes_be(modulus),
        BigUint::from(u64::from(*exponent)),
    )
    .map_err(|e| CredentialError::UnsupportedEk(format!("EK RSA key: {e}")))
}

/// Encrypts `credential` to `ek` for the object named `name` (`TPM2_MakeCredential`).
pub fn make_credential(
    ek: &PublicArea,
    name: &[u8],
    credential: &[u8],
) -> Result<Credential, CredentialError> {
    let key = ek_rsa_key(ek)?;
    if name.len() != 34 || name[..2] != ALG_SHA256.to_be_bytes() {
        return Err(CredentialError::BadName(name.len()));
    }
    if credential.is_empty() || credential.len() > 64 {
        return Err(CredentialError::BadCredential(credential.len()));
    }
    let mut seed = [0u8; 32];
    SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| CredentialError::Crypto("random number generator failed".into()))?;
    let encrypted_seed = key
        .encrypt(
            &mut rsa::rand_core::OsRng,
            Oaep::new_with_label::<sha2::Sha256, _>("IDENTITY\0"),
            &seed,
        )
        .map_err(|e| CredentialError::Crypto(format!("RSA-OAEP: {e}")))?;
    let id_object = wrap_credential(&seed, name, credential)?;
    Ok(Credential {
        id_object,
        encrypted_secret: tpm2b(&encrypted_seed)
            .ok_or_else(|| CredentialError::Crypto("encrypted seed too long".into()))?,
    })
}

/// `TPM2B_ID_OBJECT` for a given seed (the deterministic half of [`make_credential`]).
fn wrap_credential(
    seed: &[u8],
    name: &[u8],
    credential: &[u8],
) -> Result<Vec<u8>, CredentialError> {
    let too_long = || CredentialError::BadCredential(credential.len());
    let sym_key = kdfa(seed, "STORAGE", name, &[], 128);
    let mut enc_identity = tpm2b(credential).ok_or_else(too_long)?;
    Aes128CfbEnc::new_from_slices(&sym_key, &[0u8; 16])
        .map_err(|e| CredentialError::Crypto(format!("AES-128-CFB: {e}")))?
        .encrypt(&mut enc_identity);
    let hmac_key = kdfa(seed, "INTEGRITY", &[], &[], 256);
    let mut mac = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, &hmac_key));
    mac.update(&enc_identity);
    mac.update(name);
    let mut body = tpm2b(mac.sign().as_ref()).ok_or_else(too_long)?;
    body.extend_from_slice(&enc_identity);
    tpm2b(&body).ok_or_else(too_long)
}

type Aes128CfbEnc = cfb_mode::Encryptor<Aes128>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soft::rsa_ek;
    use rsa::RsaPrivateKey;
    use rsa::traits::PublicKeyParts;

    fn activate(sk: &RsaPrivateKey, name: &[u8], c: &Credential) -> Option<Vec<u8>> {
        crate::soft::activate(sk, name, &c.id_object, &c.encrypted_secret)
    }

    #[test]
    fn kdfa_matches_known_shape() {
        // Deterministic, label-separated, truncated to the requested bits.
        let a = kdfa(b"seed", "STORAGE", b"name", &[], 128);
        assert_eq!(a.len(), 16);
        assert_eq!(a, kdfa(b"seed", "STORAGE", b"name", &[], 128));
        assert_ne!(a, kdfa(b"seed", "INTEGRITY", b"name", &[], 128));
        let long = kdfa(b"seed", "X", &[], &[], 512);
        assert_eq!(long.len(), 64);
        // First block: HMAC(seed, 00000001 || "X" 00 || 00000200).
        let mut m = vec![0, 0, 0, 1, b'X', 0];
        m.extend_from_slice(&512u32.to_be_bytes());
        let b1 = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"seed"), &m);
        assert_eq!(&long[..32], b1.as_ref());
    }

    #[test]
    fn round_trips_with_the_private_key_and_binds_the_name() {
        let mut rng = rsa::rand_core::OsRng;
        let sk = RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let ek = PublicArea::from_tpm2b(&rsa_ek(&sk.n().to_bytes_be())).unwrap();
        let mut name = vec![0x00, 0x0B];
        name.extend_from_slice(&[0x42; 32]);
        let c = make_credential(&ek, &name, b"0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            activate(&sk, &name, &c).as_deref(),
            Some(&b"0123456789abcdef0123456789abcdef"[..])
        );
        let mut other = name.clone();
        other[5] ^= 1;
        assert_eq!(activate(&sk, &other, &c), None, "name is bound by the HMAC");
        // Fresh seed every time.
        let c2 = make_credential(&ek, &name, b"0123456789abcdef0123456789abcdef").unwrap();
        assert_ne!(c.id_object, c2.id_object);
    }

    #[test]
    fn refuses_unsupported_eks_and_names() {
        let mut m = vec![0u8; 256];
        m[0] = 0xC1;
        m[255] = 1;
        let ek = PublicArea::from_tpm2b(&rsa_ek(&m)).unwrap();
        assert!(matches!(
            make_credential(&ek, &[0; 10], b"x"),
            Err(CredentialError::BadName(10))
        ));
        let mut weak = ek.clone();
        weak.symmetric.key_bits = 256;
        let e = make_credential(&weak, &[0; 34], b"x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("AES-128-CFB"), "{e}");
        let mut signing = ek;
        signing.attributes |= attr::SIGN;
        let e = make_credential(&signing, &[0; 34], b"x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("restricted decryption"), "{e}");
    }
}
