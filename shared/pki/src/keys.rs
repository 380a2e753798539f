//! Key managers: where private keys live and how they sign.
//!
//! All keys are ECDSA P-256; `sign` hashes with SHA-256 and returns a DER ECDSA-Sig-Value.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

/// DER prefix of a P-256 SubjectPublicKeyInfo; the 65-byte SEC1 point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// SubjectPublicKeyInfo DER for a P-256 SEC1 uncompressed point.
pub fn p256_spki_from_point(point: &[u8]) -> Vec<u8> {
    let mut spki = Vec::with_capacity(P256_SPKI_PREFIX.len() + point.len());
    spki.extend_from_slice(&P256_SPKI_PREFIX);
    spki.extend_from_slice(point);
    spki
}

/// Errors of key managers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key id contains characters that are not allowed.
    #[error("invalid key id {0:?}: only letters, digits, '-' and '_' are allowed")]
    InvalidKeyId(String),
    /// No key with this id exists in the key manager.
    #[error("key {key_id:?} not found in the {backend} key manager")]
    NotFound {
        /// The requested key id.
        key_id: String,
        /// The key manager.
        backend: String,
    },
    /// A key with this id already exists.
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    /// Reading or writing key material failed.
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Stored key material could not be parsed.
    #[error("key {key_id:?} is not a valid P-256 PKCS#8 key: {reason}")]
    BadKey {
        /// The key id.
        key_id: String,
        reason: String,
    },
    /// A key file is readable by others than its owner.
    #[error(
        "key file {path} has mode {mode:o}; refusing to use a private key readable by group or others (chmod 600)"
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    /// The signing operation failed.
    #[error("signing with key {key_id:?} failed: {reason}")]
    Sign {
        /// The key id.
        key_id: String,
        reason: String,
    },
    /// A hardware or external backend failed.
    #[error("{backend}: {reason}")]
    Backend { backend: String, reason: String },
}

/// Where a key lives: shown to operators per tier.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyStorage {
    /// Process memory; lost on restart.
    Memory,
    /// A PKCS#8 file on disk (mode 0600).
    Disk {
        /// The key file.
        path: PathBuf,
    },
    /// A PKCS#11 token.
    Pkcs11 { token: String, label: String },
    /// A TPM 2.0.
    Tpm {
        /// Key handle or name.
        handle: String,
    },
}

impl KeyStorage {
    /// Short backend name: `memory`, `disk`, `pkcs11`, `tpm`.
    pub fn backend(&self) -> &'static str {
        match self {
            KeyStorage::Memory => "memory",
            KeyStorage::Disk { .. } => "disk",
            KeyStorage::Pkcs11 { .. } => "pkcs11",
            KeyStorage::Tpm { .. } => "tpm",
        }
    }
}

impl fmt::Display for KeyStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyStorage::Memory => write!(f, "memory"),
            KeyStorage::Disk { path } => write!(f, "disk:{}", path.display()),
            KeyStorage::Pkcs11 { token, label } => write!(f, "pkcs11:token={token};label={label}"),
            KeyStorage::Tpm { handle } => write!(f, "tpm:{handle}"),
        }
    }
}

/// A private key that signs but never hands out its bytes.
pub trait SigningKey: Send + Sync + fmt::Debug {
    /// The key manager's id for this key.
    fn key_id(&self) -> &str;
    /// The SEC1 uncompressed public point (65 bytes for P-256).
    fn public_point(&self) -> &[u8];
    /// The public key as SubjectPublicKeyInfo DER.
    fn public_key_spki(&self) -> Vec<u8> {
        p256_spki_from_point(self.public_point())
    }
    /// ECDSA P-256 over SHA-256(msg), DER ECDSA-Sig-Value.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError>;
    /// Where the key lives.
    fn storage(&self) -> KeyStorage;
}

/// A place that creates and finds private keys.
pub trait KeyManager: Send + Sync {
    /// Backend name for logs and the CA journal.
    fn backend(&self) -> &'static str;
    /// Whether keys survive a restart (disk, HSM). A key such a manager cannot load is an
    /// error to stop on, never a reason to mint a replacement.
    fn persistent(&self) -> bool {
        false
    }
    /// Generates a new P-256 key under `key_id`.
    fn generate(&self, key_id: &str) -> Result<Arc<dyn SigningKey>, KeyError>;
    /// Loads an existing key.
    fn load(&self, key_id: &str) -> Result<Arc<dyn SigningKey>, KeyError>;
    /// Deletes a key; deleting a missing key is not an error.
    fn delete(&self, key_id: &str) -> Result<(), KeyError>;
}

pub(crate) fn check_key_id(key_id: &str) -> Result<(), KeyError> {
    let ok = !key_id.is_empty()
        && key_id.len() <= 128
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(KeyError::InvalidKeyId(key_id.to_string()))
    }
}

/// A software P-256 key (ring).
pub struct SoftwareKey {
    key_id: String,
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    storage: KeyStorage,
}

impl fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SoftwareKey")
            .field("key_id", &self.key_id)
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

impl SoftwareKey {
    /// Generates a fresh key; returns it with its PKCS#8 DER (for persisting backends).
    pub fn generate(key_id: &str, storage: KeyStorage) -> Result<(Self, Vec<u8>), KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).map_err(|_| {
                KeyError::Sign {
                    key_id: key_id.to_string(),
                    reason: "key generation failed".into(),
                }
            })?;
        let key = Self::from_pkcs8(key_id, pkcs8.as_ref(), storage)?;
        Ok((key, pkcs8.as_ref().to_vec()))
    }

    /// A key from PKCS#8 DER.
    pub fn from_pkcs8(key_id: &str, pkcs8: &[u8], storage: KeyStorage) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng).map_err(
            |e| KeyError::BadKey {
                key_id: key_id.to_string(),
                reason: e.to_string(),
            },
        )?;
        Ok(Self {
            key_id: key_id.to_string(),
            pair,
            rng,
            storage,
        })
    }

    /// A fresh in-memory key not registered anywhere (agents' workload keys).
    pub fn ephemeral() -> Result<(Self, Vec<u8>), KeyError> {
        Self::generate("ephemeral", KeyStorage::Memory)
    }
}

impl SigningKey for SoftwareKey {
    fn key_id(&self) -> &str {
        &self.key_id
    }
    fn public_point(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.pair
            .sign(&self.rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| KeyError::Sign {
                key_id: self.key_id.clone(),
                reason: "ECDSA signing failed".into(),
            })
    }
    fn storage(&self) -> KeyStorage {
        self.storage.clone()
    }
}

/// Keys in process memory only: a restart loses them (and so rotates the CA).
#[derive(Default)]
pub struct MemoryKeyManager {
    keys: Mutex<HashMap<String, Arc<SoftwareKey>>>,
}

impl MemoryKeyManager {
    /// An empty manager.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KeyManager for MemoryKeyManager {
    fn backend(&self) -> &'static str {
        "memory"
    }
    fn generate(&self, key_id: &str) -> Result<Arc<dyn SigningKey>, KeyError> {
        check_key_id(key_id)?;
        let (key, _) = SoftwareKey::generate(key_id, KeyStorage::Memory)?;
        let key = Arc::new(key);
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.contains_key(key_id) {
            return Err(KeyError::AlreadyExists(key_id.to_string()));
        }
        keys.insert(key_id.to_string(), key.clone());
        Ok(key)
    }
    fn load(&self, key_id: &str) -> Result<Arc<dyn SigningKey>, KeyError> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.get(key_id)
            .cloned()
            .map(|k| k as Arc<dyn SigningKey>)
            .ok_or_else(|| KeyError::NotFound {
                key_id: key_id.to_string(),
                backend: "memory".into(),
            })
    }
    fn delete(&self, key_id: &str) -> Result<(), KeyError> {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key_id);
        Ok(())
    }
}

/// Keys as PKCS#8 PEM files (mode 0600) in a directory (mode 0700).
pub struct DiskKeyManager {
    dir: PathBuf,
}

impl DiskKeyManager {
    /// Uses (and creates) `dir`, tightening its mode to 0700.
    pub fn new(dir: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, key_id: &str) -> PathBuf {
        self.dir.join(format!("{key_id}.key.pem"))
    }
}

impl KeyManager for DiskKeyManager {
    fn backend(&self) -> &'static str {
        "disk"
    }
    fn persistent(&self) -> bool {
        true
    }
    fn generate(&self, key_id: &str) -> Result<Arc<dyn SigningKey>, KeyError> {
        check_key_id(key_id)?;
        let path = self.path(key_id);
        let (key, pkcs8) = SoftwareKey::generate(key_id, KeyStorage::Disk { path: path.clone() })?;
        let pem = trustdeck_spiffe::pem::encode("PRIVATE KEY", &pkcs8);
        // Write a private temp file, fsync, then rename: never a half-written key.
        let tmp = self.dir.join(format!(".{key_id}.tmp"));
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(pem.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        if path.exists() {
            let _ = fs::remove_file(&tmp);
            return Err(KeyError::AlreadyExists(key_id.to_string()));
        }
        fs::rename(&tmp, &path).map_err(io)?;
        Ok(Arc::new(key))
    }
    fn load(&self, key_id: &str) -> Result<Arc<dyn SigningKey>, KeyError> {
        check_key_id(key_id)?;
        let path = self.path(key_id);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::NotFound {
                    key_id: key_id.to_string(),
                    backend: format!("disk ({})", self.dir.display()),
                });
            }
            Err(source) => return Err(KeyError::Io { path, source }),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::InsecurePermissions { path, mode });
        }
        let text = fs::read_to_string(&path).map_err(|source| KeyError::Io {
            path: path.clone(),
            source,
        })?;
        let der =
            trustdeck_spiffe::pem::decode_private_key(&text).map_err(|e| KeyError::BadKey {
                key_id: key_id.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Arc::new(SoftwareKey::from_pkcs8(
            key_id,
            &der,
            KeyStorage::Disk { path },
        )?))
    }
    fn delete(&self, key_id: &str) -> Result<(), KeyError> {
        check_key_id(key_id)?;
        match fs::remove_file(self.path(key_id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(KeyError::Io {
                path: self.path(key_id),
                source,
            }),
        }
    }
}

/// Adapts a [`SigningKey`] to rcgen's signing traits.
#[derive(Debug, Clone)]
pub struct RcgenKey(pub Arc<dyn SigningKey>);

impl rcgen::PublicKeyData for RcgenKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_point()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for RcgenKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg).map_err(|e| {
            tracing::error!(error = %e, "certificate signing failed");
            rcgen::Error::RemoteKeyError
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};

    fn roundtrip(km: &dyn KeyManager) {
        let k = km.generate("ca-x509-1").unwrap();
        let sig = k.sign(b"hello").unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, k.public_point())
            .verify(b"hello", &sig)
            .unwrap();
        let again = km.load("ca-x509-1").unwrap();
        assert_eq!(again.public_point(), k.public_point());
        assert!(matches!(
            km.generate("ca-x509-1"),
            Err(KeyError::AlreadyExists(_))
        ));
        km.delete("ca-x509-1").unwrap();
        assert!(matches!(
            km.load("ca-x509-1"),
            Err(KeyError::NotFound { .. })
        ));
        assert!(matches!(
            km.generate("../etc/passwd"),
            Err(KeyError::InvalidKeyId(_))
        ));
    }

    #[test]
    fn memory_key_manager() {
        roundtrip(&MemoryKeyManager::new());
    }

    #[test]
    fn disk_key_manager_writes_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let km = DiskKeyManager::new(&dir.path().join("keys")).unwrap();
        let k = km.generate("k1").unwrap();
        let path = dir.path().join("keys/k1.key.pem");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(dir.path().join("keys"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        // A second manager over the same dir (a restart) loads the same key.
        let km2 = DiskKeyManager::new(&dir.path().join("keys")).unwrap();
        assert_eq!(km2.load("k1").unwrap().public_point(), k.public_point());
        // A key file others can read is refused.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            km2.load("k1"),
            Err(KeyError::InsecurePermissions { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        roundtrip(&km2);
    }

    #[test]
    fn debug_never_prints_key_material() {
        let (k, pkcs8) = SoftwareKey::ephemeral().unwrap();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&hex::encode(&pkcs8[pkcs8.len() - 16..])));
        assert!(dbg.contains("SoftwareKey"));
    }
}
