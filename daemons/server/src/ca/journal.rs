//! Operations on the CA journal as a whole, pure: status changes, demotion of authorities
//! whose key is gone, and pruning of expired ones.

use chrono::{DateTime, Utc};
use trustdeck_datastore::{CaJournalRecord, CaKind, CaStatus};
use trustdeck_proto::admin::EventKind;

use super::events::CaEvent;

/// Moves every `kind` record in status `from` to `to`.
pub fn set_status(journal: &mut [CaJournalRecord], kind: CaKind, from: CaStatus, to: CaStatus) {
    for r in journal
        .iter_mut()
        .filter(|r| r.kind == kind && r.status == from)
    {
        r.status = to;
    }
}

/// Records that claim a slot but whose authority is not in memory (its key was lost, or it
/// could not be rebuilt) become old: trusted until they expire, never used to sign.
pub fn demote_orphans<'a>(
    journal: &mut [CaJournalRecord],
    live_key_refs: impl IntoIterator<Item = &'a str>,
) {
    let live: Vec<&str> = live_key_refs.into_iter().collect();
    for r in journal.iter_mut() {
        if r.status.is_live() && !live.contains(&r.key_ref.as_str()) {
            r.status = CaStatus::Old;
        }
    }
}

/// Removes the records that expired by `now`; returns them.
pub fn prune(journal: &mut Vec<CaJournalRecord>, now: DateTime<Utc>) -> Vec<CaJournalRecord> {
    let (expired, kept) = std::mem::take(journal)
        .into_iter()
        .partition(|r| r.not_after <= now.timestamp());
    *journal = kept;
    expired
}

/// The event for a pruned record.
pub fn pruned_event(r: &CaJournalRecord) -> CaEvent {
    CaEvent::new(
        EventKind::Pruned,
        format!(
            "expired {} authority {} removed from the bundle",
            r.kind, r.id
        ),
        super::events::record_node_id(r),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::slot::tests::{record, t};
    use trustdeck_pki::rotation::Window;

    fn with(id: &str, kind: CaKind, status: CaStatus, not_after: i64) -> CaJournalRecord {
        CaJournalRecord {
            status,
            ..record(id, kind, Window::new(t(0), t(not_after)))
        }
    }

    #[test]
    fn orphans_are_demoted_other_statuses_kept() {
        let mut journal = vec![
            with("a", CaKind::X509, CaStatus::Active, 600),
            with("p", CaKind::X509, CaStatus::Prepared, 600),
            with("lost", CaKind::Jwt, CaStatus::Active, 600),
            with("tainted", CaKind::X509, CaStatus::Tainted, 600),
        ];
        demote_orphans(&mut journal, ["a", "p"]);
        let st: Vec<_> = journal.iter().map(|r| r.status).collect();
        assert_eq!(
            st,
            vec![
                CaStatus::Active,
                CaStatus::Prepared,
                CaStatus::Old,
                CaStatus::Tainted
            ]
        );
    }

    #[test]
    fn prune_removes_what_expired_by_now() {
        let mut journal = vec![
            with("gone", CaKind::X509, CaStatus::Old, 100),
            with("edge", CaKind::Jwt, CaStatus::Old, 200),
            with("kept", CaKind::X509, CaStatus::Active, 201),
        ];
        let pruned = prune(&mut journal, t(200));
        let ids = |v: &[CaJournalRecord]| v.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&pruned), vec!["gone", "edge"]);
        assert_eq!(ids(&journal), vec!["kept"]);
        assert_eq!(
            pruned_event(&pruned[1]).message,
            "expired jwt authority edge removed from the bundle"
        );
    }

    #[test]
    fn set_status_touches_one_kind_and_status() {
        let mut journal = vec![
            with("x", CaKind::X509, CaStatus::Prepared, 600),
            with("j", CaKind::Jwt, CaStatus::Prepared, 600),
        ];
        set_status(
            &mut journal,
            CaKind::Jwt,
            CaStatus::Prepared,
            CaStatus::Active,
        );
        assert_eq!(journal[0].status, CaStatus::Prepared);
        assert_eq!(journal[1].status, CaStatus::Active);
    }
}
