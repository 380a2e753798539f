//! A TPM in software, for tests (feature `soft`): a DevID key and an RSA-2048 EK certified by
//! their own CAs, the public areas a real TPM would report, and the answer to a `tpm_devid`
//! challenge (`TPM2_ActivateCredential` done with the EK's private key in memory). Nothing
//! here is resident anywhere: it only lets both sides of the dialogue run without a device.

use aes::Aes128;
use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData};
use ring::hmac;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey};

use crate::credential::kdfa;
use crate::public::{
    ALG_AES, ALG_CFB, ALG_ECC, ALG_NULL, ALG_RSA, ALG_SHA256, ECC_NIST_P256, PublicArea, attr,
    tpm2b, tpm2b_contents,
};
use crate::verify::{DEVID_REQUIRED, challenge_message};

/// A marshalled `TPM2B_PUBLIC` of an ECC P-256 ECDSA-SHA256 signing key with `attributes`.
pub fn ecc_signing(x: &[u8; 32], y: &[u8; 32], attributes: u32) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&ALG_ECC.to_be_bytes());
    t.extend_from_slice(&ALG_SHA256.to_be_bytes());
    t.extend_from_slice(&attributes.to_be_bytes());
    t.extend_from_slice(&0u16.to_be_bytes()); // authPolicy
    t.extend_from_slice(&ALG_NULL.to_be_bytes()); // symmetric
    t.extend_from_slice(&0x0018u16.to_be_bytes()); // ECDSA
    t.extend_from_slice(&ALG_SHA256.to_be_bytes());
    t.extend_from_slice(&ECC_NIST_P256.to_be_bytes());
    t.extend_from_slice(&ALG_NULL.to_be_bytes()); // kdf
    t.extend_from_slice(&tpm2b(x).expect("32 bytes"));
    t.extend_from_slice(&tpm2b(y).expect("32 bytes"));
    tpm2b(&t).expect("short area")
}

/// A marshalled `TPM2B_PUBLIC` of an RSA-2048 restricted decryption key (the default EK
/// template's shape) with `modulus`.
pub fn rsa_ek(modulus: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&ALG_RSA.to_be_bytes());
    t.extend_from_slice(&ALG_SHA256.to_be_bytes());
    let a = attr::FIXED_TPM
        | attr::FIXED_PARENT
        | attr::SENSITIVE_DATA_ORIGIN
        | attr::RESTRICTED
        | attr::DECRYPT
        | (1 << 7);
    t.extend_from_slice(&a.to_be_bytes());
    t.extend_from_slice(&tpm2b(&[0x83; 32]).expect("32 bytes"));
    t.extend_from_slice(&ALG_AES.to_be_bytes());
    t.extend_from_slice(&128u16.to_be_bytes());
    t.extend_from_slice(&ALG_CFB.to_be_bytes());
    t.extend_from_slice(&ALG_NULL.to_be_bytes()); // scheme
    t.extend_from_slice(&2048u16.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(&tpm2b(modulus).expect("modulus fits"));
    tpm2b(&t).expect("short area")
}

/// `TPM2_ActivateCredential` for the EK `ek`: the credential in `id_object` /
/// `encrypted_secret`, or `None` when it was not made for this EK and object `name`.
pub fn activate(
    ek: &RsaPrivateKey,
    name: &[u8],
    id_object: &[u8],
    encrypted_secret: &[u8],
) -> Option<Vec<u8>> {
    let enc_seed = tpm2b_contents(encrypted_secret)?;
    let seed = ek
        .decrypt(
            Oaep::new_with_label::<sha2::Sha256, _>("IDENTITY\0"),
            enc_seed,
        )
        .ok()?;
    let body = tpm2b_contents(id_object)?;
    let (hsize, rest) = body.split_first_chunk::<2>()?;
    let hsize = u16::from_be_bytes(*hsize) as usize;
    let (outer, enc_identity) = rest.split_at_checked(hsize)?;
    let hmac_key = kdfa(&seed, "INTEGRITY", &[], &[], 256);
    let mut data = enc_identity.to_vec();
    data.extend_from_slice(name);
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, &hmac_key), &data, outer).ok()?;
    let sym = kdfa(&seed, "STORAGE", name, &[], 128);
    let mut plain = enc_identity.to_vec();
    cfb_mode::Decryptor::<Aes128>::new_from_slices(&sym, &[0u8; 16])
        .ok()?
        .decrypt(&mut plain);
    tpm2b_contents(&plain).map(<[u8]>::to_vec)
}

/// A self-signed CA certificate (DER) named `cn`, and its issuer.
pub fn ca(cn: &str) -> (Vec<u8>, Issuer<'static, KeyPair>) {
    let mut p = CertificateParams::new(vec![]).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    let k = KeyPair::generate().expect("key");
    let c = p.self_signed(&k).expect("self-signed");
    (c.der().to_vec(), Issuer::new(p, k))
}

/// A leaf certificate (DER) for `key`, named `cn`, signed by `issuer`.
pub fn leaf(issuer: &Issuer<'static, KeyPair>, cn: &str, key: &impl PublicKeyData) -> Vec<u8> {
    let mut p = CertificateParams::new(vec![]).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.signed_by(key, issuer).expect("signed").der().to_vec()
}

/// The affine coordinates of a P-256 key.
pub fn xy(key: &KeyPair) -> ([u8; 32], [u8; 32]) {
    let pt = key.der_bytes();
    let mut x = [0u8; 32];
    let mut y = [0u8; 32];
    x.copy_from_slice(&pt[1..33]);
    y.copy_from_slice(&pt[33..65]);
    (x, y)
}

/// A node's TPM with a certified DevID key (CN `node-7`) and EK, and the two CAs that
/// certify them. Every field can be replaced to build bad evidence.
pub struct Lab {
    /// The DevID CA certificate (DER).
    pub devid_ca: Vec<u8>,
    /// The endorsement CA certificate (DER).
    pub ek_ca: Vec<u8>,
    /// The DevID certificate (DER).
    pub devid_cert: Vec<u8>,
    /// The DevID key.
    pub devid_key: KeyPair,
    /// The DevID key's `TPM2B_PUBLIC`.
    pub devid_public: Vec<u8>,
    /// The EK certificate (DER).
    pub ek_cert: Vec<u8>,
    /// The EK's `TPM2B_PUBLIC`.
    pub ek_public: Vec<u8>,
    /// The EK's private key.
    pub ek_key: RsaPrivateKey,
}

impl Lab {
    /// A fresh TPM and CAs (generates an RSA-2048 key: takes a moment).
    pub fn new() -> Self {
        let (devid_ca, devid_issuer) = ca("DevID CA");
        let (ek_ca, ek_issuer) = ca("EK CA");
        let devid_key = KeyPair::generate().expect("key");
        let devid_cert = leaf(&devid_issuer, "node-7", &devid_key);
        let (x, y) = xy(&devid_key);
        let devid_public = ecc_signing(&x, &y, DEVID_REQUIRED | attr::USER_WITH_AUTH);
        let ek_key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
        let ek_cert = {
            use rsa::pkcs8::EncodePublicKey;
            let spki = ek_key.to_public_key().to_public_key_der().expect("SPKI");
            let pk = rcgen::SubjectPublicKeyInfo::from_der(spki.as_bytes()).expect("SPKI");
            leaf(&ek_issuer, "ek", &pk)
        };
        let ek_public = rsa_ek(&ek_key.n().to_bytes_be());
        Lab {
            devid_ca,
            ek_ca,
            devid_cert,
            devid_key,
            devid_public,
            ek_cert,
            ek_public,
            ek_key,
        }
    }

    /// What the TPM answers to a challenge: the DevID signature over the nonce and the
    /// activated secret (`None` when the credential is not for this TPM and DevID key).
    pub fn answer(
        &self,
        nonce: &[u8],
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Option<(Vec<u8>, Vec<u8>)> {
        let name = PublicArea::from_tpm2b(&self.devid_public).ok()?.name()?;
        let signature = rcgen::SigningKey::sign(&self.devid_key, &challenge_message(nonce)).ok()?;
        let secret = activate(&self.ek_key, &name, id_object, encrypted_secret)?;
        Some((signature, secret))
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}
