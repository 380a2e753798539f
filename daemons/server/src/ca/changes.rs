//! The audit records of CA state changes, pure: every change of the journal (a record
//! minted, its status changed, a record pruned) is named from the journal before and after,
//! so no commit path can change an authority without saying so.

use chrono::{DateTime, Utc};
use trustdeck_datastore::{AuditRecord, CaJournalRecord, CaKind, CaStatus};

use super::taint::record_key_id;

/// One journal record's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: CaKind,
    /// The journal record's id.
    pub record_id: String,
    /// Its key id (subject key id, kid), as `show` and `--id` name it.
    pub key_id: String,
    /// `None`: minted by this change.
    pub from: Option<CaStatus>,
    /// `None`: pruned by this change.
    pub to: Option<CaStatus>,
}

impl Change {
    /// The verb of a scheduled change: `demoted` when its key was lost.
    pub fn verb(&self, demoted: bool) -> &'static str {
        use CaStatus::*;
        match (self.from, self.to) {
            (_, None) => "prune",
            (None, Some(Prepared)) => "prepare",
            (None, Some(_)) => "replace",
            (Some(Prepared), Some(Active)) => "activate",
            (Some(_), Some(Old)) if demoted => "demote",
            (Some(Active), Some(Old)) => "retire",
            (Some(Prepared), Some(Old)) => "supersede",
            (Some(_), Some(Tainted)) => "taint",
            (Some(_), Some(Revoked)) => "revoke",
            (Some(_), Some(_)) => "change",
        }
    }

    /// `x509 ab12…: prepared → active`.
    pub fn describe(&self) -> String {
        let st = |s: Option<CaStatus>, none: &str| s.map_or(none.to_string(), |s| s.to_string());
        let name = if self.key_id.is_empty() {
            &self.record_id
        } else {
            &self.key_id
        };
        format!(
            "{} {name}: {} -> {}",
            self.kind,
            st(self.from, "new"),
            st(self.to, "pruned")
        )
    }
}

/// The changes from `before` to `after`, in `after`'s order, then the pruned ones.
pub fn diff(before: &[CaJournalRecord], after: &[CaJournalRecord]) -> Vec<Change> {
    let change = |r: &CaJournalRecord, from, to| Change {
        kind: r.kind,
        record_id: r.id.clone(),
        key_id: record_key_id(r),
        from,
        to,
    };
    let mut out = Vec::new();
    for r in after {
        let prev = before.iter().find(|b| b.id == r.id).map(|b| b.status);
        if prev != Some(r.status) {
            out.push(change(r, prev, Some(r.status)));
        }
    }
    for b in before
        .iter()
        .filter(|b| !after.iter().any(|r| r.id == b.id))
    {
        out.push(change(b, Some(b.status), None));
    }
    out
}

/// A record of a change committed at `now` by `actor`.
pub fn record(
    actor: &str,
    action: String,
    target: String,
    detail: String,
    now: DateTime<Utc>,
) -> AuditRecord {
    AuditRecord {
        id: trustdeck_datastore::random_id::<12>(),
        at: now.timestamp(),
        actor: actor.into(),
        action,
        target,
        detail,
        outcome: "ok".into(),
    }
}

/// The records of a scheduled round: one per change, `authority.<kind>.<verb>`, by `actor`
/// (the server itself). `demoted` are the record ids whose key was lost.
pub fn scheduled(
    actor: &str,
    changes: &[Change],
    demoted: &[String],
    sequence: (u64, u64),
    now: DateTime<Utc>,
) -> Vec<AuditRecord> {
    changes
        .iter()
        .map(|c| {
            let verb = c.verb(demoted.contains(&c.record_id));
            record(
                actor,
                format!("authority.{}.{verb}", c.kind),
                c.key_id.clone(),
                format!(
                    "scheduled: {}; bundle sequence {} -> {}",
                    c.describe(),
                    sequence.0,
                    sequence.1
                ),
                now,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::slot::tests::{record as rec, t};
    use trustdeck_pki::rotation::Window;

    fn jwt(id: &str, status: CaStatus) -> CaJournalRecord {
        CaJournalRecord {
            status,
            kid: Some(format!("kid-{id}")),
            ..rec(id, CaKind::Jwt, Window::new(t(0), t(600)))
        }
    }

    #[test]
    fn every_change_of_the_journal_is_named() {
        let before = [
            jwt("a", CaStatus::Active),
            jwt("p", CaStatus::Prepared),
            jwt("gone", CaStatus::Old),
            jwt("same", CaStatus::Old),
            jwt("lost", CaStatus::Prepared),
        ];
        let after = [
            jwt("a", CaStatus::Old),
            jwt("p", CaStatus::Active),
            jwt("same", CaStatus::Old),
            jwt("lost", CaStatus::Old),
            jwt("n", CaStatus::Prepared),
        ];
        let changes = diff(&before, &after);
        let recs = scheduled(
            "server:spiffe://td/s",
            &changes,
            &["lost".to_string()],
            (4, 5),
            t(9),
        );
        let actions: Vec<_> = recs.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(
            actions,
            vec![
                "authority.jwt.retire",
                "authority.jwt.activate",
                "authority.jwt.demote",
                "authority.jwt.prepare",
                "authority.jwt.prune",
            ]
        );
        assert_eq!(recs[1].target, "kid-p");
        assert_eq!(
            recs[1].detail,
            "scheduled: jwt kid-p: prepared -> active; bundle sequence 4 -> 5"
        );
        assert!(recs.iter().all(|r| r.actor == "server:spiffe://td/s"
            && r.outcome == "ok"
            && r.at == t(9).timestamp()));
        assert_ne!(recs[0].id, recs[1].id);
        assert!(diff(&after, &after).is_empty());
    }

    #[test]
    fn verbs_of_every_transition() {
        let c = |from, to| Change {
            kind: CaKind::X509,
            record_id: "r".into(),
            key_id: String::new(),
            from,
            to,
        };
        use CaStatus::*;
        assert_eq!(c(None, Some(Active)).verb(false), "replace");
        assert_eq!(c(Some(Prepared), Some(Old)).verb(false), "supersede");
        assert_eq!(c(Some(Active), Some(Old)).verb(true), "demote");
        assert_eq!(c(Some(Old), Some(Tainted)).verb(false), "taint");
        assert_eq!(c(Some(Tainted), Some(Revoked)).verb(false), "revoke");
        assert_eq!(c(Some(Tainted), None).verb(false), "prune");
        assert_eq!(
            c(None, Some(Prepared)).describe(),
            "x509 r: new -> prepared"
        );
    }
}
