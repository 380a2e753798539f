//! The data directory and the datastore.

use std::os::unix::fs::PermissionsExt;

use std::path::PathBuf;

use trustdeck_datastore::{AuditRecord, Contents, Datastore};
use trustdeck_process::clock::Clock;

use super::{RunError, io};
use crate::config::Config;

/// What shows that a server was initialised before, besides its datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierState {
    /// CA key files left in the disk key manager's directory.
    pub key_files: Vec<PathBuf>,
}

impl std::fmt::Display for EarlierState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files: Vec<String> = self
            .key_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        write!(
            f,
            "{} CA key file(s) in keys: {}",
            files.len(),
            files.join(", ")
        )
    }
}

/// Refuses an empty datastore when keys show the server was initialised: a lost or emptied
/// database must not silently become a new installation with a new trust anchor. With
/// `--reinitialize` it returns what was found, to be audited. PKCS#11 tokens are not searched
/// (the key manager cannot list objects); an in-memory datastore is always new.
pub async fn check_earlier_state(config: &Config) -> Result<Option<EarlierState>, RunError> {
    let url = || trustdeck_datastore::redact_url(&config.datastore);
    let contents = Datastore::inspect(&config.datastore)
        .await
        .map_err(|source| RunError::Datastore { url: url(), source })?;
    if contents != Contents::Empty {
        return Ok(None);
    }
    let found = EarlierState {
        key_files: key_files(config),
    };
    if found.key_files.is_empty() {
        return Ok(None);
    }
    if !config.reinitialize {
        return Err(RunError::EmptiedDatastore {
            url: url(),
            found: found.to_string(),
        });
    }
    tracing::warn!(%found, "--reinitialize: the datastore is empty; a new CA and trust anchor are minted");
    Ok(Some(found))
}

/// The `*.key.pem` files of a disk key manager.
fn key_files(config: &Config) -> Vec<PathBuf> {
    let Some(dir) = config.key_dir() else {
        return Vec::new();
    };
    let Ok(read) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".key.pem"))
        .collect();
    files.sort();
    files
}

/// Records in the audit log that the operator re-initialised the server.
pub(super) async fn audit_reinitialize(
    ds: &Datastore,
    config: &Config,
    found: &EarlierState,
    clock: &dyn Clock,
) -> Result<(), RunError> {
    let detail = format!("datastore was empty; found {found}");
    audit_start(ds, config, clock, "server.reinitialize", &detail, "ok").await?;
    tracing::warn!(%found, "server re-initialised on an empty datastore (audited)");
    Ok(())
}

/// Appends an audit record of the starting server (`action` on its own SPIFFE ID).
pub(super) async fn audit_start(
    ds: &Datastore,
    config: &Config,
    clock: &dyn Clock,
    action: &str,
    detail: &str,
    outcome: &str,
) -> Result<(), RunError> {
    let rec = start_record(config, clock, action, detail, outcome);
    ds.append_audit(&rec)
        .await
        .map_err(|source| RunError::Datastore {
            url: trustdeck_datastore::redact_url(&config.datastore),
            source,
        })
}

/// An audit record of the starting server: the operator who ran it did `action` to it.
pub(super) fn start_record(
    config: &Config,
    clock: &dyn Clock,
    action: &str,
    detail: &str,
    outcome: &str,
) -> AuditRecord {
    AuditRecord {
        id: trustdeck_datastore::random_id::<12>(),
        at: clock.now().timestamp(),
        actor: operator(config),
        action: action.into(),
        target: config.server_spiffe_id.to_string(),
        detail: detail.into(),
        outcome: outcome.into(),
    }
}

/// The operator who ran `trustdeck-server run`, as audit records name them.
pub(super) fn operator(config: &Config) -> String {
    format!(
        "operator (trustdeck-server run, data_dir {})",
        config.data_dir.display()
    )
}

/// Creates the data directory, readable by the server's user only.
pub(super) fn prepare_data_dir(config: &Config) -> Result<(), RunError> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(io(format!("create data_dir {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod data_dir {}", dir.display())))
}

/// Opens the configured datastore, bringing its schema up to date.
pub(super) async fn open_datastore(config: &Config) -> Result<Datastore, RunError> {
    Datastore::open_with(&config.datastore, config.datastore_timeout)
        .await
        .map_err(|source| RunError::Datastore {
            url: trustdeck_datastore::redact_url(&config.datastore),
            source,
        })
}
