//! The server's claim on the CA journal: its instance id (kept in the data directory), the
//! owner record in the datastore and its lease. The decisions are [`crate::ca::owner`]'s.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use trustdeck_datastore::{CaJournalRecord, CaOwner, Datastore, DatastoreError};
use trustdeck_pki::KeyManager;
use trustdeck_process::clock::Clock;

use super::{RunError, io};
use crate::ca::owner::{Claimant, Decision, LEASE, decide, describe};
use crate::config::{Config, KeyManagerConfig};

/// The file in the data directory holding the server's instance id.
const INSTANCE_FILE: &str = "instance-id";

/// What the claim gave this process.
#[derive(Debug)]
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
pub(super) fn key_manager_text(config: &Config) -> String {
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

/// Whether a persistent `km` holds every key of `live` (the journal's live authorities), each
/// with the public key the journal records: the owner's key set, whatever the data directory.
/// `run` and `check-config` both decide by this.
fn holds_keys(km: &dyn KeyManager, live: &[CaJournalRecord]) -> bool {
    km.persistent()
        && !live.is_empty()
        && live.iter().all(|r| {
            km.load(&r.key_ref).is_ok_and(|k| {
                r.public_key_der_b64.as_deref() == Some(&B64.encode(k.public_key_spki()))
            })
        })
}

/// Whether this server holds the keys of an owner of another instance (`false` when the
/// owner is this instance, or there is none: then it does not matter).
async fn holds_foreign_keys(
    ds: &Datastore,
    km: &Arc<dyn KeyManager>,
    me: &str,
) -> Result<bool, RunError> {
    let owner = ds.ca_owner().await.map_err(ds_err(ds))?;
    if owner.is_none_or(|o| o.instance_id == me) {
        return Ok(false);
    }
    let journal = ds.list_ca_journal().await.map_err(ds_err(ds))?;
    let live: Vec<_> = journal.into_iter().filter(|r| r.status.is_live()).collect();
    Ok(holds_keys(km.as_ref(), &live))
}

fn ds_err(ds: &Datastore) -> impl Fn(DatastoreError) -> RunError + '_ {
    move |source| RunError::Datastore {
        url: ds.shown_url().to_owned(),
        source,
    }
}

/// Claims the CA journal for this process, or refuses (audited) when another server owns
/// it. Waits once for the lease of a process that may have just died, and decides once more
/// after losing a race with another claim.
pub(super) async fn claim(
    config: &Config,
    ds: &Datastore,
    km: &Arc<dyn KeyManager>,
    clock: &dyn Clock,
) -> Result<Claimed, RunError> {
    let me = instance_id(&config.data_dir)?;
    let claimer = Claimer {
        holds: holds_foreign_keys(ds, km, &me).await?,
        me,
        session: trustdeck_datastore::random_id::<16>(),
        config,
        ds,
        clock,
    };
    let mut tries = Tries::default();
    loop {
        let owner = ds.ca_owner().await.map_err(ds_err(ds))?;
        if let Some(claimed) = claimer.attempt(owner.as_ref(), &mut tries).await? {
            return Ok(claimed);
        }
    }
}

/// What stays the same through one claim.
struct Claimer<'a> {
    config: &'a Config,
    ds: &'a Datastore,
    clock: &'a dyn Clock,
    /// This server's instance id.
    me: String,
    /// This process's session.
    session: String,
    /// It holds the keys of an owner of another instance.
    holds: bool,
}

/// What a claim went through so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tries {
    /// It waited once for a lease to run out.
    waited: bool,
    /// Its write lost once to another claim.
    raced: bool,
}

impl Claimer<'_> {
    /// Decides on `owner` (as just read) and acts: `None` when it must read and decide again.
    async fn attempt(
        &self,
        owner: Option<&CaOwner>,
        tries: &mut Tries,
    ) -> Result<Option<Claimed>, RunError> {
        let now = self.clock.now();
        let claimant = Claimant {
            instance_id: &self.me,
            holds_owner_keys: self.holds,
            owner_gone: owner.is_some_and(|o| gone_from_here(o, self.config)),
            take_over: self.config.take_over_ca,
            waited: tries.waited,
        };
        let decision = decide(owner, claimant, now);
        let shown = owner.map(|o| describe(o, now)).unwrap_or_default();
        match decision {
            Decision::Claim | Decision::TakeOver => {
                let take_over = decision == Decision::TakeOver;
                match self.write(owner, take_over, &shown).await {
                    Ok(claimed) => Ok(Some(claimed)),
                    Err(DatastoreError::Conflict { .. }) if !tries.raced => {
                        tracing::warn!(
                            "another server claimed the CA journal at the same time; deciding again"
                        );
                        tries.raced = true;
                        Ok(None)
                    }
                    Err(e) => Err(ds_err(self.ds)(e)),
                }
            }
            Decision::WaitForLease { until } => {
                tracing::warn!(owner = %shown, "the CA journal's owner may still run; waiting for its lease to run out");
                let secs = (until - now.timestamp()).clamp(0, LEASE.as_secs() as i64) + 1;
                tokio::time::sleep(std::time::Duration::from_secs(secs as u64)).await;
                tries.waited = true;
                Ok(None)
            }
            Decision::RefuseLive | Decision::RefuseForeign => {
                Err(self.refuse(&shown, decision == Decision::RefuseLive).await)
            }
        }
    }

    /// Writes the claim over `previous`. Ownership passing from another instance commits
    /// together with its audit record (`server.ca_take_over`, or `server.ca_claim` by the
    /// holder of the owner's keys), or not at all.
    async fn write(
        &self,
        previous: Option<&CaOwner>,
        take_over: bool,
        shown: &str,
    ) -> Result<Claimed, DatastoreError> {
        let rec = self.record(previous);
        let session = previous.map(|p| p.session.as_str());
        let claimed = Claimed {
            session: self.session.clone(),
            took_over: take_over,
        };
        if previous.is_none_or(|p| p.instance_id == self.me) {
            self.ds.claim_ca_owner(&rec, session).await?;
            return Ok(claimed);
        }
        let (action, detail) = if take_over {
            (
                "server.ca_take_over",
                format!("took over the CA journal from {shown}"),
            )
        } else {
            (
                "server.ca_claim",
                format!("instance {} holds the CA keys of {shown}", self.me),
            )
        };
        let audit = super::storage::start_record(self.config, self.clock, action, &detail, "ok");
        let mut tx = self.ds.begin_audited().await?;
        tx.claim_ca_owner(&rec, session).await?;
        tx.commit(&audit).await?;
        tracing::warn!("{action}: {detail} (audited)");
        Ok(claimed)
    }

    /// The owner record this process writes over `previous`.
    fn record(&self, previous: Option<&CaOwner>) -> CaOwner {
        let now = self.clock.now().timestamp();
        CaOwner {
            instance_id: self.me.clone(),
            session: self.session.clone(),
            server_id: self.config.server_spiffe_id.to_string(),
            host: host(),
            data_dir: self.config.data_dir.display().to_string(),
            key_manager: key_manager_text(self.config),
            claimed_at: previous
                .filter(|p| p.instance_id == self.me)
                .map_or(now, |p| p.claimed_at),
            renewed_at: now,
            lease_until: now + LEASE.as_secs() as i64,
        }
    }

    /// The refusal, audited (best effort: the refusal stands either way).
    async fn refuse(&self, shown: &str, live: bool) -> RunError {
        let err = refusal(self.config, &self.me, shown, live);
        let detail = format!("instance {}: {err}", self.me);
        let audit = super::storage::audit_start(
            self.ds,
            self.config,
            self.clock,
            "server.ca_claim",
            &detail,
            "refused",
        );
        if let Err(e) = audit.await {
            tracing::error!(error = %e, "could not audit the refused CA claim");
        }
        err
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

/// For `check-config`: refuses, without writing anything, a datastore whose CA journal another
/// server owns, when this server does not hold that server's keys, decided as `run` decides
/// ([`holds_keys`]). A PKCS#11 token is not opened here: `run` decides, by loading the keys;
/// the answer is then a warning.
pub async fn check_ca_owner(config: &Config) -> Result<Option<String>, RunError> {
    let url = || trustdeck_datastore::redact_url(&config.datastore);
    let found = Datastore::inspect_ca_owner(&config.datastore)
        .await
        .map_err(|source| RunError::Datastore { url: url(), source })?;
    let Some((owner, live)) = found else {
        return Ok(None);
    };
    let me = read_instance_id(&config.data_dir)?;
    if me.as_deref() == Some(owner.instance_id.as_str()) {
        return Ok(None);
    }
    let shown = describe(&owner, trustdeck_process::clock::SystemClock.now());
    let holds = match config.key_dir() {
        // A missing directory holds nothing (and is not created here).
        Some(dir) if dir.is_dir() => holds_keys(super::keys::key_manager(config)?.as_ref(), &live),
        Some(_) => false,
        None if matches!(config.key_manager, KeyManagerConfig::Pkcs11 { .. }) => {
            return Ok(Some(format!(
                "the CA journal in {} belongs to {shown}; `run` refuses unless this server's \
                 PKCS#11 token holds that server's CA keys",
                url()
            )));
        }
        None => false,
    };
    if holds {
        return Ok(None);
    }
    Err(refusal(
        config,
        me.as_deref().unwrap_or("(none yet)"),
        &shown,
        false,
    ))
}

#[cfg(test)]
mod tests {
    use trustdeck_process::clock::SystemClock;

    use super::*;

    async fn setup(dir: &Path) -> (Config, Datastore) {
        let text = format!(
            "trust_domain = \"example.org\"\nbind_address = \"127.0.0.1:0\"\n\
             data_dir = \"{}\"\ndatastore = \"sqlite://{}\"\n[key_manager]\ntype = \"memory\"\n",
            dir.display(),
            dir.join("ds.db").display()
        );
        let config = Config::parse(&text, "t.toml").unwrap();
        let ds = Datastore::open(&config.datastore).await.unwrap();
        (config, ds)
    }

    fn other(lease_until: i64) -> CaOwner {
        CaOwner {
            instance_id: "a".into(),
            session: "s-a".into(),
            server_id: "spiffe://example.org/trustdeck/server".into(),
            host: "elsewhere".into(),
            data_dir: "/var/lib/a".into(),
            key_manager: "disk /var/lib/a/keys".into(),
            claimed_at: 1,
            renewed_at: 1,
            lease_until,
        }
    }

    fn claimer<'a>(config: &'a Config, ds: &'a Datastore, holds: bool) -> Claimer<'a> {
        Claimer {
            config,
            ds,
            clock: &SystemClock,
            me: "b".into(),
            session: "s-b".into(),
            holds,
        }
    }

    async fn actions(ds: &Datastore) -> Vec<String> {
        let records = ds.list_audit(10).await.unwrap();
        records
            .iter()
            .map(|r| format!("{} {}", r.action, r.outcome))
            .collect()
    }

    #[tokio::test]
    async fn the_loser_of_a_race_decides_again_and_is_refused_audited() {
        let dir = tempfile::tempdir().unwrap();
        let (config, ds) = setup(dir.path()).await;
        let lease = SystemClock.now().timestamp() + 15;
        ds.claim_ca_owner(&other(lease), None).await.unwrap();
        let c = claimer(&config, &ds, false);
        let mut tries = Tries::default();
        // It read the journal unowned, then "a" claimed it first.
        assert!(c.attempt(None, &mut tries).await.unwrap().is_none());
        assert!(tries.raced);
        let owner = ds.ca_owner().await.unwrap();
        let err = c.attempt(owner.as_ref(), &mut tries).await.unwrap_err();
        assert!(matches!(err, RunError::CaOwnedByAnother { .. }), "{err}");
        assert_eq!(actions(&ds).await, ["server.ca_claim refused"]);
        assert_eq!(ds.ca_owner().await.unwrap(), Some(other(lease)));
    }

    #[tokio::test]
    async fn a_claim_from_another_instance_is_audited_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let (config, ds) = setup(dir.path()).await;
        ds.claim_ca_owner(&other(0), None).await.unwrap();
        let c = claimer(&config, &ds, true);
        let owner = ds.ca_owner().await.unwrap();
        let claimed = c.attempt(owner.as_ref(), &mut Tries::default()).await;
        let claimed = claimed.unwrap().expect("claimed");
        assert!(!claimed.took_over);
        assert_eq!(ds.ca_owner().await.unwrap().unwrap().instance_id, "b");
        assert_eq!(actions(&ds).await, ["server.ca_claim ok"]);
    }
}
