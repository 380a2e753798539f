//! `run --replace-lost-keys`: the way out, explicit and audited, for a server whose journal
//! names CA keys its (persistent) key manager no longer holds (an HSM token replaced or
//! wiped, a key directory lost). Without the flag such a server refuses to start: never
//! silently a new root.
//!
//! With it, every live authority whose key is not found is tainted (it stays in the bundle,
//! so what it signed keeps validating until re-issued; it never signs again), the rotation
//! round mints a new authority of that kind in the configured key manager and activates it
//! (bundle sequence + 1), and one audit record, `server.replace_lost_keys`, names every
//! replaced authority, committed in the same transaction as the journal change. Downstreams
//! and agents then replace what chains to the tainted keys (issue 13), after which the old
//! authority can be revoked (`authority x509|jwt revoke --id`). The decisions here are pure.

use chrono::{DateTime, Utc};
use trustdeck_datastore::{AuditRecord, CaJournalRecord, CaStatus};

use super::CaManager;
use super::changes::{Change, record};
use super::error::CaManagerError;
use super::events::CaEvent;
use super::rotate::Round;

/// The audit action of a replacement.
pub const ACTION: &str = "server.replace_lost_keys";

/// A live journal record whose key the key manager does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostKey {
    /// The journal record's id.
    pub record_id: String,
    /// What the key manager said.
    pub why: String,
}

/// Refuses a replacement that has nothing to replace: a key manager that keeps no keys
/// across restarts (memory), or no lost key.
pub fn check(persistent: bool, lost: &[LostKey]) -> Result<(), CaManagerError> {
    if !persistent {
        return Err(CaManagerError::NothingToReplace(
            "the memory key manager keeps no keys across restarts; nothing to replace".into(),
        ));
    }
    if lost.is_empty() {
        return Err(CaManagerError::NothingToReplace(
            "every CA key the journal names is in the key manager; no key is lost".into(),
        ));
    }
    Ok(())
}

/// Marks the records of `lost` tainted in `journal`.
pub fn taint_lost(journal: &mut [CaJournalRecord], lost: &[LostKey]) {
    for r in journal
        .iter_mut()
        .filter(|r| lost.iter().any(|l| l.record_id == r.id))
    {
        r.status = CaStatus::Tainted;
    }
}

/// The one audit record of a replacement by `operator` on `target`: every tainted authority
/// (with why its key is lost) and every new one, from the round's journal `changes`.
pub fn audit_record(
    operator: &str,
    target: &str,
    lost: &[LostKey],
    changes: &[Change],
    sequence: (u64, u64),
    now: DateTime<Utc>,
) -> AuditRecord {
    let tainted: Vec<String> = changes
        .iter()
        .filter(|c| c.to == Some(CaStatus::Tainted))
        .filter_map(|c| {
            let l = lost.iter().find(|l| l.record_id == c.record_id)?;
            Some(format!("{} ({})", c.describe(), l.why))
        })
        .collect();
    let minted: Vec<String> = changes
        .iter()
        .filter(|c| c.from.is_none() && c.to.is_some())
        .map(Change::describe)
        .collect();
    record(
        operator,
        ACTION.into(),
        target.into(),
        format!(
            "key lost, tainted: {}; new: {}; bundle sequence {} -> {}",
            tainted.join("; "),
            if minted.is_empty() {
                "none".to_string()
            } else {
                minted.join("; ")
            },
            sequence.0,
            sequence.1
        ),
        now,
    )
}

impl CaManager {
    /// Taints the authorities of `lost`, mints and activates their replacements, and commits
    /// it all with the audit record of `operator` (refused when nothing is lost).
    pub(super) async fn replace_lost(
        &self,
        operator: &str,
        lost: &[LostKey],
        now: DateTime<Utc>,
    ) -> Result<Vec<CaEvent>, CaManagerError> {
        check(self.km.persistent(), lost)?;
        let _guard = self.rotate_lock.lock().await;
        let cur = self.snapshot();
        let mut round = Round::begin(&cur);
        taint_lost(&mut round.journal, lost);
        round.replacing = Some((operator.to_string(), lost.to_vec()));
        for l in lost {
            tracing::warn!(record = %l.record_id, why = %l.why, "--replace-lost-keys: authority tainted, its key is lost");
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::changes::diff;
    use crate::ca::slot::tests::{record as rec, t};
    use trustdeck_datastore::CaKind;
    use trustdeck_pki::rotation::Window;

    fn jwt(id: &str, status: CaStatus) -> CaJournalRecord {
        CaJournalRecord {
            status,
            kid: Some(format!("kid-{id}")),
            ..rec(id, CaKind::Jwt, Window::new(t(0), t(600)))
        }
    }

    fn lost(id: &str) -> LostKey {
        LostKey {
            record_id: id.into(),
            why: format!("key {id:?} not found"),
        }
    }

    #[test]
    fn nothing_lost_or_a_memory_key_manager_is_refused() {
        let e = check(true, &[]).unwrap_err();
        assert!(matches!(e, CaManagerError::NothingToReplace(_)));
        assert!(e.to_string().contains("no key is lost"), "{e}");
        assert!(e.to_string().contains("start without it"), "{e}");
        let e = check(false, &[lost("a")]).unwrap_err();
        assert!(e.to_string().contains("memory key manager"), "{e}");
        assert!(check(true, &[lost("a")]).is_ok());
    }

    #[test]
    fn only_lost_records_are_tainted_and_the_record_names_old_and_new() {
        let before = vec![
            jwt("a", CaStatus::Active),
            jwt("p", CaStatus::Prepared),
            jwt("o", CaStatus::Old),
        ];
        let mut after = before.clone();
        taint_lost(&mut after, &[lost("a"), lost("p")]);
        after.push(jwt("n", CaStatus::Active));
        let st: Vec<_> = after.iter().map(|r| r.status).collect();
        assert_eq!(
            st,
            [
                CaStatus::Tainted,
                CaStatus::Tainted,
                CaStatus::Old,
                CaStatus::Active
            ]
        );
        let r = audit_record(
            "operator (x)",
            "spiffe://example.org/s",
            &[lost("a"), lost("p")],
            &diff(&before, &after),
            (3, 4),
            t(5),
        );
        assert_eq!(r.action, ACTION);
        assert_eq!(r.actor, "operator (x)");
        assert_eq!(r.target, "spiffe://example.org/s");
        assert_eq!(
            r.detail,
            "key lost, tainted: jwt kid-a: active -> tainted (key \"a\" not found); \
             jwt kid-p: prepared -> tainted (key \"p\" not found); \
             new: jwt kid-n: new -> active; bundle sequence 3 -> 4"
        );
    }
}
