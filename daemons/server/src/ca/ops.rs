//! Running an operator's authority operation ([`operations`](super::operations) decides):
//! `prepare` mints through the key manager (a downstream's intermediate from its upstream),
//! and every operation commits the journal, the bundle and its audit record in one
//! transaction under the rotation lock, then makes the result current.
//!
//! The bundle: on the root every operation publishes a new bundle, sequence + 1 (tainted
//! authorities stay in it, revoked ones leave it), so downstreams and agents fetch it and the
//! tainted set with it at once. On a downstream the bundle is the upstream's, adopted as is:
//! operations on its intermediates change no trust domain root, so its bundle and sequence
//! stay the upstream's; its agents learn of a taint from the tainted keys of every node-API
//! answer.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use trustdeck_datastore::{CaJournalRecord, CaKind};

use super::CaManager;
use super::authority::{CaState, Stored};
use super::bundle::{build_bundle, refresh_hint};
use super::changes::{Change, diff, record};
use super::error::CaManagerError;
use super::events::CaEvent;
use super::journal::demote_orphans;
use super::operations::{self, OpRequest, Plan, Refused};
use super::slot::{Slot, Transition};

/// Why an operation did not happen: nothing changed either way.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A rule refused it.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// Minting, the upstream or the datastore failed.
    #[error(transparent)]
    Failed(#[from] CaManagerError),
}

/// What an operation did.
#[derive(Debug)]
pub struct OpOutcome {
    /// The journal record acted on, as it is now.
    pub record: CaJournalRecord,
    /// What happened, for the log and the admin stream.
    pub events: Vec<CaEvent>,
    /// Every journal record it changed.
    pub changes: Vec<Change>,
    /// The bundle sequence before and after.
    pub sequence: (u64, u64),
}

impl CaManager {
    /// Runs `req` for `actor` at `now`. `live(key_id)` counts the live SVIDs the fleet reported
    /// chaining to an authority (`revoke` refuses while any do, unless forced).
    pub async fn operate(
        &self,
        req: &OpRequest,
        actor: &str,
        live: &(dyn Fn(&str) -> u32 + Send + Sync),
        now: DateTime<Utc>,
    ) -> Result<OpOutcome, OpError> {
        let _guard = self.rotate_lock.lock().await;
        let cur = self.snapshot();
        let mut journal = cur.journal.clone();
        demote_orphans(&mut journal, cur.x509.key_refs().chain(cur.jwt.key_refs()));
        let plan = operations::plan(&journal, self.is_downstream(), req, live)?;
        let (mut x509, mut jwt) = (cur.x509.clone(), cur.jwt.clone());
        let mut minted = Vec::new();
        let (event, record_id) = match &plan {
            Plan::Prepare => match req.kind {
                CaKind::X509 => {
                    self.prepare(&mut x509, &mut journal, now, &mut minted)
                        .await?
                }
                CaKind::Jwt => {
                    self.prepare(&mut jwt, &mut journal, now, &mut minted)
                        .await?
                }
            },
            other => {
                let ev = match req.kind {
                    CaKind::X509 => operations::apply(&mut x509, &mut journal, other),
                    CaKind::Jwt => operations::apply(&mut jwt, &mut journal, other),
                };
                let id = other.record_id().unwrap_or_default().to_string();
                (ev.ok_or(CaManagerError::NoAuthority(req.kind))?, id)
            }
        };
        let next = CaState {
            x509,
            jwt,
            journal,
            bundle: cur.bundle.clone(),
        };
        match self
            .commit_op(&cur, next, req, actor, &record_id, now)
            .await
        {
            Ok((changes, sequence, rec)) => {
                if matches!(plan, Plan::Revoke { .. }) {
                    // Nothing trusts it any more.
                    self.delete_keys(std::slice::from_ref(&rec));
                }
                Ok(OpOutcome {
                    record: rec,
                    events: vec![event],
                    changes,
                    sequence,
                })
            }
            Err(e) => {
                self.discard(&minted);
                Err(OpError::Failed(e))
            }
        }
    }

    /// Mints an authority into `slot`'s prepared place (a prepared one becomes old).
    async fn prepare<A: Stored>(
        &self,
        slot: &mut Slot<A>,
        journal: &mut Vec<CaJournalRecord>,
        now: DateTime<Utc>,
        minted: &mut Vec<String>,
    ) -> Result<(CaEvent, String), CaManagerError> {
        let m = self.mint::<A>(now, minted).await?;
        let id = m.record.id.clone();
        Ok((slot.apply(journal, Transition::Prepare(m)), id))
    }

    /// Commits `next` (bundle rebuilt on the root, sequence + 1) with the operator's audit
    /// record, and makes it current. Returns the changes, the sequences and the record.
    async fn commit_op(
        &self,
        cur: &CaState,
        mut next: CaState,
        req: &OpRequest,
        actor: &str,
        record_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Change>, (u64, u64), CaJournalRecord), CaManagerError> {
        let bundle = if self.is_downstream() {
            (*cur.bundle).clone()
        } else {
            let mut b = build_bundle(
                &self.settings.trust_domain,
                &next.journal,
                refresh_hint(self.settings.ca_ttl),
            )?;
            b.sequence = cur.bundle.sequence + 1;
            b
        };
        let changes = diff(&cur.journal, &next.journal);
        let rec = next
            .journal
            .iter()
            .find(|r| r.id == record_id)
            .cloned()
            .ok_or(CaManagerError::NoAuthority(req.kind))?;
        let key_id = super::taint::record_key_id(&rec);
        let detail = format!(
            "{}{}; bundle sequence {} -> {}{}",
            changes
                .iter()
                .map(Change::describe)
                .collect::<Vec<_>>()
                .join("; "),
            if req.force { "; forced" } else { "" },
            cur.bundle.sequence,
            bundle.sequence,
            req.step
                .as_deref()
                .map(|s| format!("; {s}"))
                .unwrap_or_default()
        );
        let audit = record(
            actor,
            format!("authority.{}.{}", req.kind, req.op.as_str()),
            key_id,
            detail,
            now,
        );
        let upserts: Vec<CaJournalRecord> = next
            .journal
            .iter()
            .filter(|r| !cur.journal.contains(r))
            .cloned()
            .collect();
        self.commit(&upserts, &[], &bundle, now, std::slice::from_ref(&audit))
            .await?;
        let sequence = (cur.bundle.sequence, bundle.sequence);
        let bundle = Arc::new(bundle);
        next.bundle = bundle.clone();
        self.set_state(next);
        if !self.is_downstream() {
            self.bundle_tx.send_replace(bundle);
        }
        Ok((changes, sequence, rec))
    }
}
