//! The server's claim on the CA journal: its instance id (kept in the data directory), the
//! owner record in the datastore and its lease. The decisions are [`crate::ca::owner`]'s.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use trustdeck_datastore::{CaOwner, Datastore};
use trustdeck_pki::KeyManager;
use trustdeck_process::clock::Clock;

use super::{RunError, io};
use crate::ca::owner::{Claimant, Decision, LEASE, decide, describe};
use crate::config::{Config, KeyManagerConfig};

/// The file in the data directory holding the server's instance id.
const INSTANCE_FILE: &str = "instance-id";

/// What the claim gave this process.
pub(super) struct Claimed {
    /// This process's session: only its CA commits are accepted.
    pub session: String,
    /// The journal was taken over from another server.
    pub took_over: bool,
}

fn instance_path(data_dir: &Path) -> PathBuf {
    data_dir.join(INSTANCE_FILE)
}

/// The instance id in `data_dir`, if one was written.
fn read_instance_id(data_dir: &Path) -> Result<Option<String>, RunError> {
    let path = instance_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("read {}", path.display()))(e)),
    }
}

/// The instance id in the data directory, written on the first start.
fn instance_id(data_dir: &Path) -> Result<String, RunError> {
    if let Some(id) = read_instance_id(data_dir)? {
        return Ok(id);
    }
    let id = trustdeck_datastore::random_id::<16>();
    let path = instance_path(data_dir);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io(format!("create {}", path.display())))?;
    writeln!(f, "{id}").map_err(io(format!("write {}", path.display())))?;
    Ok(id)
}

/// The key manager as the owner record names it.
fn key_manager_text(config: &Config) -> String {
    if let Some(dir) = config.key_dir() {
        return format!("disk {}", dir.display());
    }
    match &config.key_manager {
        KeyManagerConfig::Memory | KeyManagerConfig::Disk { .. } => "memory".into(),
        KeyManagerConfig::Pkcs11 {
            token_label, slot, ..
        } => match (token_label, slot) {
            (Some(label), _) => format!("pkcs11 token {label}"),
            (None, Some(slot)) => format!("pkcs11 slot {slot}"),
            (None, None) => "pkcs11".into(),
        },
    }
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The owner record names this host and data directory, and no server answers on the admin
/// socket there: its process is gone (a crash, `kill -9`).
fn gone_from_here(owner: &CaOwner, config: &Config) -> bool {
    owner.host == host()
        && owner.data_dir == config.data_dir.display().to_string()
        && trustdeck_admin::socket::probe(&config.admin_socket).is_err()
}

/// Whether a persistent `km` holds every live key of the journal, each with the public key
/// the journal records: the owner's key set, whatever the data directory.
async fn holds_owner_keys(ds: &Datastore, km: &Arc<dyn KeyManager>) -> Result<bool, RunError> {
    if !km.persistent() {
        return Ok(false);
    }
    let journal = ds.list_ca_journal().await.map_err(ds_err(ds))?;
    let live: Vec<_> = journal.iter().filter(|r| r.status.is_live()).collect();
    Ok(!live.is_empty()
        && live.iter().all(|r| {
            km.load(&r.key_ref).is_ok_and(|k| {
                r.public_key_der_b64.as_deref() == Some(&B64.encode(k.public_key_spki()))
            })
        }))
}

fn ds_err(ds: &Datastore) -> impl Fn(trustdeck_datastore::DatastoreError) -> RunError + '_ {
    move |source| RunError::Datastore {
        url: ds.shown_url().to_owned(),
        source,
    }
}

/// Claims the CA journal for this process, or refuses (audited) when another server owns
/// it. Waits once for the lease of a process that may have just died.
pub(super) async fn claim(
    config: &Config,
    ds: &Datastore,
    km: &Arc<dyn KeyManager>,
    clock: &dyn Clock,
) -> Result<Claimed, RunError> {
    let me = instance_id(&config.data_dir)?;
    // Whether this server holds another instance's keys matters only then.
    let foreign = ds
        .ca_owner()
        .await
        .map_err(ds_err(ds))?
        .is_some_and(|o| o.instance_id != me);
    let holds = foreign && holds_owner_keys(ds, km).await?;
    let session = trustdeck_datastore::random_id::<16>();
    let mut waited = false;
    loop {
        let owner = ds.ca_owner().await.map_err(ds_err(ds))?;
        let now = clock.now();
        let claimant = Claimant {
            instance_id: &me,
            holds_owner_keys: holds,
            owner_gone: owner.as_ref().is_some_and(|o| gone_from_here(o, config)),
            take_over: config.take_over_ca,
            waited,
        };
        let decision = decide(owner.as_ref(), claimant, now);
        let shown = owner.as_ref().map(|o| describe(o, now)).unwrap_or_default();
        match decision {
            Decision::Claim => {
                write_claim(config, ds, &me, &session, owner.as_ref(), clock).await?;
                return Ok(Claimed {
                    session,
                    took_over: false,
                });
            }
            Decision::WaitForLease { until } => {
                tracing::warn!(owner = %shown, "the CA journal's owner may still run; waiting for its lease to run out");
                let secs = (until - now.timestamp()).clamp(0, LEASE.as_secs() as i64) + 1;
                tokio::time::sleep(std::time::Duration::from_secs(secs as u64)).await;
                waited = true;
            }
            Decision::TakeOver => {
                write_claim(config, ds, &me, &session, owner.as_ref(), clock).await?;
                let detail = format!("took over the CA journal from {shown}");
                super::storage::audit_start(
                    ds,
                    config,
                    clock,
                    "server.ca_take_over",
                    &detail,
                    "ok",
                )
                .await?;
                tracing::warn!("{detail} (run --take-over-ca, audited)");
                return Ok(Claimed {
                    session,
                    took_over: true,
                });
            }
            Decision::RefuseLive | Decision::RefuseForeign => {
                let err = refusal(config, &me, &shown, decision == Decision::RefuseLive);
                let _ = super::storage::audit_start(
                    ds,
                    config,
                    clock,
                    "server.ca_claim",
                    &format!("instance {me}: {err}"),
                    "refused",
                )
                .await;
                return Err(err);
            }
        }
    }
}

fn refusal(config: &Config, me: &str, owner: &str, live: bool) -> RunError {
    let url = trustdeck_datastore::redact_url(&config.datastore);
    if live {
        RunError::CaLeaseHeld {
            url,
            owner: owner.to_owned(),
        }
    } else {
        RunError::CaOwnedByAnother {
            url,
            owner: owner.to_owned(),
            me: format!("instance {me}, data_dir {}", config.data_dir.display()),
        }
    }
}

async fn write_claim(
    config: &Config,
    ds: &Datastore,
    me: &str,
    session: &str,
    previous: Option<&CaOwner>,
    clock: &dyn Clock,
) -> Result<(), RunError> {
    let now = clock.now().timestamp();
    let rec = CaOwner {
        instance_id: me.to_owned(),
        session: session.to_owned(),
        server_id: config.server_spiffe_id.to_string(),
        host: host(),
        data_dir: config.data_dir.display().to_string(),
        key_manager: key_manager_text(config),
        claimed_at: previous
            .filter(|p| p.instance_id == me)
            .map_or(now, |p| p.claimed_at),
        renewed_at: now,
        lease_until: now + LEASE.as_secs() as i64,
    };
    ds.claim_ca_owner(&rec, previous.map(|p| p.session.as_str()))
        .await
        .map_err(ds_err(ds))
}

/// For `check-config`: refuses, without writing anything, a datastore whose CA journal another
/// server owns, when this server cannot hold that server's keys (memory keys, or a disk key
/// directory without the live authorities' key files). A PKCS#11 token is not searched: `run`
/// decides, by loading the keys; the answer is then a warning.
pub async fn check_ca_owner(config: &Config) -> Result<Option<String>, RunError> {
    let url = || trustdeck_datastore::redact_url(&config.datastore);
    let found = Datastore::inspect_ca_owner(&config.datastore)
        .await
        .map_err(|source| RunError::Datastore { url: url(), source })?;
    let Some((owner, live_key_refs)) = found else {
        return Ok(None);
    };
    let me = read_instance_id(&config.data_dir)?;
    if me.as_deref() == Some(owner.instance_id.as_str()) {
        return Ok(None);
    }
    let holds = match &config.key_manager {
        KeyManagerConfig::Memory => Some(false),
        KeyManagerConfig::Disk { .. } => {
            let dir = config
                .key_dir()
                .unwrap_or_else(|| config.data_dir.join("keys"));
            Some(
                !live_key_refs.is_empty()
                    && live_key_refs
                        .iter()
                        .all(|k| dir.join(format!("{k}.key.pem")).exists()),
            )
        }
        KeyManagerConfig::Pkcs11 { .. } => None,
    };
    let shown = describe(&owner, trustdeck_process::clock::SystemClock.now());
    match holds {
        Some(true) => Ok(None),
        Some(false) => Err(refusal(
            config,
            me.as_deref().unwrap_or("(none yet)"),
            &shown,
            false,
        )),
        None => Ok(Some(format!(
            "the CA journal in {} belongs to {shown}; `run` refuses unless this server's \
             PKCS#11 token holds that server's CA keys",
            url()
        ))),
    }
}
