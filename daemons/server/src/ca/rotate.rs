//! One rotation round: each slot takes its next lifecycle step (minting where needed),
//! expired authorities are pruned, and the result is committed (journal and bundle in one
//! transaction) before it becomes current.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use trustdeck_datastore::CaJournalRecord;
use trustdeck_pki::X509Authority;
use trustdeck_pki::rotation::Decision;

use super::CaManager;
use super::authority::{CaState, JwtKey, Stored};
use super::bundle::{build_bundle, refresh_hint};
use super::error::CaManagerError;
use super::events::CaEvent;
use super::journal::{demote_orphans, prune, pruned_event};
use super::slot::{Slot, Transition};

/// A round's working copy of the CA state: both slots and the journal change together.
pub(super) struct Round {
    pub(super) x509: Slot<X509Authority>,
    pub(super) jwt: Slot<JwtKey>,
    pub(super) journal: Vec<CaJournalRecord>,
    pub(super) events: Vec<CaEvent>,
    /// Records demoted because their authority is not in memory (for the audit log).
    demoted: Vec<String>,
    /// `--replace-lost-keys`: the operator and the lost keys, for the round's one
    /// `server.replace_lost_keys` record ([`super::replace`]).
    pub(super) replacing: Option<(String, Vec<super::replace::LostKey>)>,
}

impl Round {
    /// Starts from the current state, demoting journal records whose authority is not in
    /// memory.
    pub(super) fn begin(cur: &CaState) -> Round {
        let mut journal = cur.journal.clone();
        demote_orphans(&mut journal, cur.x509.key_refs().chain(cur.jwt.key_refs()));
        let demoted = super::changes::diff(&cur.journal, &journal)
            .into_iter()
            .map(|c| c.record_id)
            .collect();
        Round {
            x509: cur.x509.clone(),
            jwt: cur.jwt.clone(),
            journal,
            events: Vec::new(),
            demoted,
            replacing: None,
        }
    }
}

impl CaManager {
    /// Brings both authorities up to date for `now`: prepares, activates, prunes expired
    /// ones, and publishes a new bundle (sequence + 1) when the set of authorities changed.
    /// On failure nothing changes, and keys minted by the round are deleted.
    pub async fn rotate(&self, now: DateTime<Utc>) -> Result<Vec<CaEvent>, CaManagerError> {
        let _guard = self.rotate_lock.lock().await;
        let cur = self.snapshot();
        let mut round = Round::begin(&cur);
        let mut minted = Vec::new();
        let result = match self.advance_slots(&mut round, now, &mut minted).await {
            Ok(()) => self.publish(&cur, round, now).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.discard(&minted);
        }
        result
    }

    pub(super) async fn advance_slots(
        &self,
        round: &mut Round,
        now: DateTime<Utc>,
        minted: &mut Vec<String>,
    ) -> Result<(), CaManagerError> {
        let Round {
            x509,
            jwt,
            journal,
            events,
            ..
        } = round;
        events.extend(self.advance(x509, journal, now, minted).await?);
        // JWT keys live only on the root: downstream servers forward JWT-SVIDs upstream.
        if !self.is_downstream() {
            events.extend(self.advance(jwt, journal, now, minted).await?);
        }
        Ok(())
    }

    /// Takes `slot` one lifecycle step: decides (pure), mints if the step needs a new
    /// authority (the I/O), and applies the step to the slot and the journal (pure).
    async fn advance<A: Stored>(
        &self,
        slot: &mut Slot<A>,
        journal: &mut Vec<CaJournalRecord>,
        now: DateTime<Utc>,
        minted: &mut Vec<String>,
    ) -> Result<Option<CaEvent>, CaManagerError> {
        let transition = match slot.decide(now) {
            Decision::Idle { .. } => return Ok(None),
            Decision::Activate => Transition::Activate,
            Decision::Prepare => Transition::Prepare(self.mint(now, minted).await?),
            Decision::MintAndActivate => Transition::Replace(self.mint(now, minted).await?),
        };
        Ok(Some(slot.apply(journal, transition)))
    }

    /// Prunes expired authorities, then commits the round and makes it current if anything
    /// changed. Returns the round's events.
    pub(super) async fn publish(
        &self,
        cur: &CaState,
        mut round: Round,
        now: DateTime<Utc>,
    ) -> Result<Vec<CaEvent>, CaManagerError> {
        let pruned = prune(&mut round.journal, now);
        round.events.extend(pruned.iter().map(pruned_event));
        // A downstream server's bundle is its upstream's, adopted as is.
        let mut bundle = if self.is_downstream() {
            (*cur.bundle).clone()
        } else {
            build_bundle(
                &self.settings.trust_domain,
                &round.journal,
                refresh_hint(self.settings.ca_ttl),
            )?
        };
        let authorities_changed = !super::bundle::same_authorities(&bundle, &cur.bundle);
        if round.journal == cur.journal && !authorities_changed {
            return Ok(round.events);
        }
        if authorities_changed {
            bundle.sequence = cur.bundle.sequence + 1;
        } else {
            bundle.sequence = cur.bundle.sequence;
        }
        let upserts: Vec<CaJournalRecord> = round
            .journal
            .iter()
            .filter(|r| !cur.journal.contains(r))
            .cloned()
            .collect();
        let deletes: Vec<String> = pruned.iter().map(|r| r.id.clone()).collect();
        // Every change of the journal is an audit record, committed with it.
        let changes = super::changes::diff(&cur.journal, &round.journal);
        let sequence = (cur.bundle.sequence, bundle.sequence);
        let mut audit = super::changes::scheduled(
            &self.settings.actor,
            &changes,
            &round.demoted,
            sequence,
            now,
        );
        if let Some((operator, lost)) = &round.replacing {
            let target = self.settings.actor.trim_start_matches("server:");
            audit.push(super::replace::audit_record(
                operator, target, lost, &changes, sequence, now,
            ));
        }
        self.commit(&upserts, &deletes, &bundle, now, &audit)
            .await?;
        self.delete_keys(&pruned);
        let bundle = Arc::new(bundle);
        self.set_state(CaState {
            x509: round.x509,
            jwt: round.jwt,
            journal: round.journal,
            bundle: bundle.clone(),
        });
        if authorities_changed {
            self.bundle_tx.send_replace(bundle);
        }
        Ok(round.events)
    }
}
