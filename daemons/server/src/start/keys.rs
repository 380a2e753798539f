//! The key manager holding the CA keys: process memory, files, or a PKCS#11 token.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use trustdeck_pki::KeyManager;
use trustdeck_pki::keys::{DiskKeyManager, MemoryKeyManager};
use trustdeck_pki::pkcs11::{AuthPin, Pkcs11KeyManager, Pkcs11Settings};

use super::{RunError, io};
use crate::config::{Config, KeyManagerConfig};

/// Opens the configured key manager.
pub(super) fn key_manager(config: &Config) -> Result<Arc<dyn KeyManager>, RunError> {
    Ok(match &config.key_manager {
        KeyManagerConfig::Memory => Arc::new(MemoryKeyManager::new()),
        // `key_dir` is the configured directory or the default one.
        KeyManagerConfig::Disk { .. } => {
            Arc::new(DiskKeyManager::new(&config.key_dir().unwrap_or_default())?)
        }
        KeyManagerConfig::Pkcs11 {
            module,
            token_label,
            slot,
            key_label_prefix,
            pin_file,
            pin_env,
            ..
        } => {
            let pin = read_pin(pin_file.as_deref(), pin_env.as_deref())?;
            let km = Pkcs11KeyManager::open(&Pkcs11Settings {
                module: module.clone(),
                token_label: token_label.clone(),
                slot: *slot,
                key_label_prefix: key_label_prefix.clone(),
                pin: AuthPin::from(pin),
            })?;
            tracing::info!(token = km.token(), "CA keys in PKCS#11 token");
            Arc::new(km)
        }
    })
}

/// The token PIN: the first line of `pin_file` (which only the server's user may read), or
/// the value of the environment variable `pin_env`.
fn read_pin(pin_file: Option<&Path>, pin_env: Option<&str>) -> Result<String, RunError> {
    match (pin_file, pin_env) {
        (Some(f), _) => {
            let what = || format!("key_manager pin_file {}", f.display());
            let mode = std::fs::metadata(f)
                .map_err(io(what()))?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(RunError::PinFileMode {
                    path: f.to_path_buf(),
                    mode,
                });
            }
            let text = std::fs::read_to_string(f).map_err(io(what()))?;
            Ok(text.lines().next().unwrap_or_default().to_string())
        }
        (None, Some(var)) => std::env::var(var).map_err(|_| RunError::PinEnvUnset {
            var: var.to_string(),
        }),
        (None, None) => Err(RunError::NoPin),
    }
}
