//! The agent's persisted state in `data_dir`: its SVID chain, its key (mode 0600) and the last
//! bundle, so a restart does not need a new attestation.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use trustdeck_spiffe::{Bundle, TrustDomain, pem};

/// Errors reading or writing agent state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// File I/O failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A stored certificate or key file does not decode.
    #[error("{} is corrupt: {source}", path.display())]
    CorruptPem {
        path: PathBuf,
        source: pem::PemError,
    },
    /// The stored bundle does not parse.
    #[error("{} is corrupt: {source}", path.display())]
    CorruptBundle {
        path: PathBuf,
        source: trustdeck_spiffe::BundleError,
    },
}

/// The agent's stored identity.
pub struct StoredSvid {
    /// DER chain, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The key, PKCS#8 DER.
    pub key_pkcs8: Vec<u8>,
}

const SVID: &str = "agent_svid.pem";
const KEY: &str = "agent_key.pem";
const BUNDLE: &str = "bundle.json";

fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Creates `dir` with mode 0700.
pub fn ensure_dir(dir: &Path) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// Where the agent key is stored (0600).
pub fn key_path(dir: &Path) -> std::path::PathBuf {
    dir.join(KEY)
}

/// Persists the agent SVID and its key (key first; both by rename).
pub fn save_svid(dir: &Path, chain: &[Vec<u8>], key_pkcs8: &[u8]) -> Result<(), StateError> {
    write_private(
        &dir.join(KEY),
        pem::encode("PRIVATE KEY", key_pkcs8).as_bytes(),
        0o600,
    )?;
    write_private(&dir.join(SVID), pem::encode_certs(chain).as_bytes(), 0o644)
}

/// Loads the agent SVID and key, if both are there.
pub fn load_svid(dir: &Path) -> Result<Option<StoredSvid>, StateError> {
    let (svid, key) = (dir.join(SVID), dir.join(KEY));
    if !svid.exists() || !key.exists() {
        return Ok(None);
    }
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| StateError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    let chain = pem::decode_certs(&read(&svid)?).map_err(|source| StateError::CorruptPem {
        path: svid.clone(),
        source,
    })?;
    let key_pkcs8 =
        pem::decode_private_key(&read(&key)?).map_err(|source| StateError::CorruptPem {
            path: key.clone(),
            source,
        })?;
    Ok(Some(StoredSvid { chain, key_pkcs8 }))
}

/// Removes the stored SVID (after eviction).
pub fn clear_svid(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(SVID));
    let _ = std::fs::remove_file(dir.join(KEY));
}

/// Persists the bundle (0644, by rename).
pub fn save_bundle(dir: &Path, b: &Bundle) -> Result<(), StateError> {
    write_private(&dir.join(BUNDLE), b.to_json().as_bytes(), 0o644)
}

/// Loads the stored bundle, if any.
pub fn load_bundle(dir: &Path, td: &TrustDomain) -> Result<Option<Bundle>, StateError> {
    let path = dir.join(BUNDLE);
    match std::fs::read(&path) {
        Ok(b) => Bundle::from_json(td, &b)
            .map(Some)
            .map_err(|source| StateError::CorruptBundle { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io { path, source }),
    }
}
