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

/// For `check-config --replace-lost-keys`: what `run --replace-lost-keys` would do, read from
/// the CA journal (read-only) and the key manager (keys loaded, nothing created); refused as
/// `run` refuses when nothing is lost.
pub async fn check_lost_keys(config: &Config) -> Result<Vec<String>, RunError> {
    use crate::ca::CaManagerError;
    use crate::ca::replace::{LostKey, check};
    let url = || trustdeck_datastore::redact_url(&config.datastore);
    let found = trustdeck_datastore::Datastore::inspect_ca_owner(&config.datastore)
        .await
        .map_err(|source| RunError::Datastore { url: url(), source })?;
    let Some((_, live)) = found else {
        return Err(
            CaManagerError::NothingToReplace(format!("{} holds no CA journal yet", url())).into(),
        );
    };
    let km = key_manager(config)?;
    let mut lost = Vec::new();
    let mut lines = Vec::new();
    for r in &live {
        match km.load(&r.key_ref) {
            Ok(_) => {}
            Err(e @ trustdeck_pki::KeyError::NotFound { .. }) => {
                lines.push(format!(
                    "would taint {} authority {} ({}): {e}",
                    r.kind,
                    crate::ca::taint::record_key_id(r),
                    r.status
                ));
                lost.push((
                    r.kind,
                    LostKey {
                        record_id: r.id.clone(),
                        why: e.to_string(),
                    },
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let only: Vec<LostKey> = lost.iter().map(|(_, l)| l.clone()).collect();
    check(km.persistent(), &only)?;
    let mut kinds = Vec::new();
    for (k, _) in &lost {
        if !kinds.contains(k) {
            kinds.push(*k);
        }
    }
    let place = super::owner::key_manager_text(config);
    for k in kinds {
        lines.push(format!(
            "would mint a new {k} authority in {place} and activate it{}",
            if config.upstream.is_some() {
                " (signed by the upstream)"
            } else {
                ""
            }
        ));
    }
    lines.push(
        "would publish the bundle with the tainted authorities still in it (sequence + 1) and \
         record it all as server.replace_lost_keys; revoke them once nothing chains to them"
            .into(),
    );
    Ok(lines)
}
