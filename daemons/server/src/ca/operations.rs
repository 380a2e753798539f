//! Operator-driven authority operations, pure: which journal change `prepare`, `activate`,
//! `taint` and `revoke` make, or which rule ([`AuthorityRefusal`]) refuses them. SPIRE's
//! semantics: `prepare` needs an active authority and replaces a prepared one (it becomes
//! old); `activate` takes only the prepared one (the active one becomes old); `taint` never
//! takes the active one (a tainted prepared one leaves its slot, and the schedule prepares a
//! fresh one); `revoke` takes only a tainted one, and not while live SVIDs still chain to it
//! unless forced. Nothing here does I/O; the census count is a parameter.
//!
//! Authorities are named as `TaintedKeys` and the census name them: an X.509 authority by
//! its subject key id (hex), a JWT key by its kid ([`record_key_id`]).

use trustdeck_datastore::{CaJournalRecord, CaKind, CaStatus};
use trustdeck_proto::admin::{AuthorityRefusal, EventKind};

use super::error::noun;
use super::events::{CaEvent, record_node_id};
use super::slot::{Authority, Slot};
use super::taint::record_key_id;

/// An authority operation that changes state (`show` changes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityOp {
    Prepare,
    Activate,
    Taint,
    Revoke,
}

impl AuthorityOp {
    /// As the CLI and the audit log name it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorityOp::Prepare => "prepare",
            AuthorityOp::Activate => "activate",
            AuthorityOp::Taint => "taint",
            AuthorityOp::Revoke => "revoke",
        }
    }
}

/// What an operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRequest {
    pub kind: CaKind,
    pub op: AuthorityOp,
    /// The authority's key id (unused by `prepare`).
    pub id: String,
    /// `revoke` only: even while live SVIDs chain to it.
    pub force: bool,
    /// Whether the census has heard from the fleet since this server started: a census that
    /// counts no live SVID allows a revoke only then.
    pub census_complete: bool,
    /// The runbook step the operation is made for (`runbook X step Y (execution Z)`),
    /// added to its audit record's detail.
    pub step: Option<String>,
}

/// An operation refused by a rule: nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub refusal: AuthorityRefusal,
    /// The rule in words, naming the authority.
    pub message: String,
}

fn refuse(refusal: AuthorityRefusal, message: impl Into<String>) -> Refused {
    Refused {
        refusal,
        message: message.into(),
    }
}

/// The change an allowed operation makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Mint a new authority into the prepared slot (a prepared one becomes old).
    Prepare,
    /// Sign with the prepared record `record_id`; the active one becomes old.
    Activate { record_id: String },
    /// Distrust record `record_id` (prepared or old): it stays in the bundle, never signs.
    Taint { record_id: String },
    /// Remove the tainted record `record_id` from the bundle.
    Revoke { record_id: String },
}

impl Plan {
    /// The journal record the plan acts on (`None` for `prepare`: it is minted).
    pub fn record_id(&self) -> Option<&str> {
        match self {
            Plan::Prepare => None,
            Plan::Activate { record_id }
            | Plan::Taint { record_id }
            | Plan::Revoke { record_id } => Some(record_id),
        }
    }
}

/// The key ids of the `kind` records of `journal`, as `--id` takes them.
pub fn known_ids(journal: &[CaJournalRecord], kind: CaKind) -> Vec<String> {
    journal
        .iter()
        .filter(|r| r.kind == kind)
        .map(record_key_id)
        .filter(|id| !id.is_empty())
        .collect()
}

/// Whether this server holds authorities of `kind`: a downstream's JWT-SVIDs are signed by
/// its upstream, so it has no JWT keys.
pub fn kind_here(kind: CaKind, downstream: bool) -> Result<(), Refused> {
    if downstream && kind == CaKind::Jwt {
        return Err(refuse(
            AuthorityRefusal::KindNotHere,
            "this downstream server has no JWT keys: its upstream signs its JWT-SVIDs \
             (run the operation on the upstream)",
        ));
    }
    Ok(())
}

/// Decides `req` against `journal` (orphans already demoted). `live(key_id)` is how many
/// live SVIDs the fleet reported chaining to that authority.
pub fn plan(
    journal: &[CaJournalRecord],
    downstream: bool,
    req: &OpRequest,
    live: impl Fn(&str) -> u32,
) -> Result<Plan, Refused> {
    kind_here(req.kind, downstream)?;
    let kind = req.kind;
    let k = noun(kind);
    if req.op == AuthorityOp::Prepare {
        if !journal
            .iter()
            .any(|r| r.kind == kind && r.status == CaStatus::Active)
        {
            return Err(refuse(
                AuthorityRefusal::NoActive,
                format!("prepare needs an active {k} authority; there is none"),
            ));
        }
        return Ok(Plan::Prepare);
    }
    if req.id.is_empty() {
        return Err(refuse(
            AuthorityRefusal::IdRequired,
            format!("{} needs --id (see `show`)", req.op.as_str()),
        ));
    }
    let Some(r) = journal
        .iter()
        .find(|r| r.kind == kind && record_key_id(r) == req.id)
    else {
        let known = known_ids(journal, kind);
        return Err(refuse(
            AuthorityRefusal::UnknownId,
            format!(
                "no {k} authority has id {:?}; known: {}",
                req.id,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    let id = &req.id;
    let record_id = r.id.clone();
    match (req.op, r.status) {
        (AuthorityOp::Activate, CaStatus::Prepared) => Ok(Plan::Activate { record_id }),
        (AuthorityOp::Activate, st) => Err(refuse(
            AuthorityRefusal::NotPrepared,
            format!("activate takes only the prepared {k} authority; {id} is {st}"),
        )),
        (AuthorityOp::Taint, CaStatus::Active) => Err(refuse(
            AuthorityRefusal::IsActive,
            format!(
                "taint never takes the active {k} authority ({id}): prepare and activate a \
                 successor first"
            ),
        )),
        (AuthorityOp::Taint, CaStatus::Tainted | CaStatus::Revoked) => Err(refuse(
            AuthorityRefusal::Already,
            format!("{k} authority {id} is already {}", r.status),
        )),
        (AuthorityOp::Taint, CaStatus::Prepared | CaStatus::Old) => Ok(Plan::Taint { record_id }),
        (AuthorityOp::Revoke, CaStatus::Revoked) => Err(refuse(
            AuthorityRefusal::Already,
            format!("{k} authority {id} is already revoked"),
        )),
        (AuthorityOp::Revoke, CaStatus::Tainted) => match live(id) {
            n if n > 0 && !req.force => Err(refuse(
                AuthorityRefusal::InUse,
                format!(
                    "{n} live SVID(s) the fleet reported still chain to {k} authority {id}; \
                     wait for them to be re-issued, or --force"
                ),
            )),
            0 if !req.force && !req.census_complete => Err(refuse(
                AuthorityRefusal::CensusIncomplete,
                format!(
                    "this server started too recently to know whether live SVIDs chain to \
                     {k} authority {id} (agents and downstreams report every few seconds); \
                     retry shortly, or --force"
                ),
            )),
            _ => Ok(Plan::Revoke { record_id }),
        },
        (AuthorityOp::Revoke, st) => Err(refuse(
            AuthorityRefusal::NotTainted,
            format!("revoke takes only a tainted {k} authority; {id} is {st} (taint it first)"),
        )),
        (AuthorityOp::Prepare, _) => Ok(Plan::Prepare),
    }
}

/// Applies an `activate`, `taint` or `revoke` plan to `kind`'s slot and the journal; returns
/// what happened. (`prepare` goes through [`Slot::apply`] with the minted authority.)
pub fn apply<A: Authority>(
    slot: &mut Slot<A>,
    journal: &mut Vec<CaJournalRecord>,
    plan: &Plan,
) -> Option<CaEvent> {
    let record_id = plan.record_id()?;
    let r = journal.iter().find(|r| r.id == record_id)?;
    let (node, key_id, k) = (record_node_id(r), record_key_id(r), noun(r.kind));
    let key_ref = r.key_ref.clone();
    let mut set = |status: CaStatus| {
        for r in journal.iter_mut().filter(|r| r.id == record_id) {
            r.status = status;
        }
    };
    match plan {
        Plan::Prepare => None,
        Plan::Activate { .. } => Some(slot.apply(journal, super::slot::Transition::Activate)),
        Plan::Taint { .. } => {
            if slot.prepared.as_ref().map(|a| a.key_ref()) == Some(key_ref.as_str()) {
                slot.prepared = None;
            }
            set(CaStatus::Tainted);
            Some(CaEvent::new(
                EventKind::AuthorityTainted,
                format!(
                    "{k} authority {key_id} tainted: still in the bundle, never signs; what \
                     chains to it is re-issued"
                ),
                node,
            ))
        }
        Plan::Revoke { .. } => {
            set(CaStatus::Revoked);
            Some(CaEvent::new(
                EventKind::AuthorityRevoked,
                format!("{k} authority {key_id} revoked: removed from the bundle"),
                node,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::slot::tests::{Fake, record, t};
    use std::sync::Arc;
    use trustdeck_pki::rotation::Window;

    fn jwt(id: &str, status: CaStatus) -> CaJournalRecord {
        CaJournalRecord {
            status,
            kid: Some(format!("kid-{id}")),
            ..record(id, CaKind::Jwt, Window::new(t(0), t(600)))
        }
    }

    fn journal() -> Vec<CaJournalRecord> {
        vec![
            jwt("a", CaStatus::Active),
            jwt("p", CaStatus::Prepared),
            jwt("o", CaStatus::Old),
            jwt("t", CaStatus::Tainted),
            jwt("r", CaStatus::Revoked),
        ]
    }

    fn req(op: AuthorityOp, id: &str) -> OpRequest {
        OpRequest {
            kind: CaKind::Jwt,
            op,
            id: id.into(),
            force: false,
            census_complete: true,
            step: None,
        }
    }

    fn refusal(r: Result<Plan, Refused>) -> AuthorityRefusal {
        r.expect_err("refused").refusal
    }

    const NONE: fn(&str) -> u32 = |_| 0;

    #[test]
    fn prepare_needs_an_active_authority() {
        assert_eq!(
            plan(&journal(), false, &req(AuthorityOp::Prepare, ""), NONE),
            Ok(Plan::Prepare)
        );
        let no_active: Vec<_> = journal()
            .into_iter()
            .filter(|r| r.status != CaStatus::Active)
            .collect();
        let r = plan(&no_active, false, &req(AuthorityOp::Prepare, ""), NONE);
        assert_eq!(refusal(r), AuthorityRefusal::NoActive);
    }

    #[test]
    fn activate_takes_only_the_prepared_one() {
        let j = journal();
        assert_eq!(
            plan(&j, false, &req(AuthorityOp::Activate, "kid-p"), NONE),
            Ok(Plan::Activate {
                record_id: "p".into()
            })
        );
        for id in ["kid-a", "kid-o", "kid-t", "kid-r"] {
            let r = plan(&j, false, &req(AuthorityOp::Activate, id), NONE);
            assert_eq!(refusal(r), AuthorityRefusal::NotPrepared, "{id}");
        }
    }

    #[test]
    fn taint_never_the_active_one_and_never_twice() {
        let j = journal();
        let r = plan(&j, false, &req(AuthorityOp::Taint, "kid-a"), NONE);
        let e = r.expect_err("active");
        assert_eq!(e.refusal, AuthorityRefusal::IsActive);
        assert!(
            e.message.contains("prepare and activate a successor"),
            "{e}"
        );
        for id in ["kid-p", "kid-o"] {
            assert!(plan(&j, false, &req(AuthorityOp::Taint, id), NONE).is_ok());
        }
        for id in ["kid-t", "kid-r"] {
            let r = plan(&j, false, &req(AuthorityOp::Taint, id), NONE);
            assert_eq!(refusal(r), AuthorityRefusal::Already, "{id}");
        }
    }

    #[test]
    fn revoke_right_after_start_waits_for_the_census_unless_forced() {
        let j = journal();
        let early = OpRequest {
            census_complete: false,
            step: None,
            ..req(AuthorityOp::Revoke, "kid-t")
        };
        let e = plan(&j, false, &early, NONE).expect_err("census incomplete");
        assert_eq!(e.refusal, AuthorityRefusal::CensusIncomplete);
        // What the census already knows still refuses as such.
        let in_use = |k: &str| if k == "kid-t" { 2 } else { 0 };
        let e = plan(&j, false, &early, in_use).expect_err("in use");
        assert_eq!(e.refusal, AuthorityRefusal::InUse);
        let forced = OpRequest {
            force: true,
            ..early
        };
        assert!(plan(&j, false, &forced, NONE).is_ok());
    }

    #[test]
    fn revoke_takes_only_a_tainted_one_not_in_use_unless_forced() {
        let j = journal();
        for id in ["kid-a", "kid-p", "kid-o"] {
            let r = plan(&j, false, &req(AuthorityOp::Revoke, id), NONE);
            assert_eq!(refusal(r), AuthorityRefusal::NotTainted, "{id}");
        }
        let r = plan(&j, false, &req(AuthorityOp::Revoke, "kid-r"), NONE);
        assert_eq!(refusal(r), AuthorityRefusal::Already);
        let in_use = |k: &str| if k == "kid-t" { 3 } else { 0 };
        let e = plan(&j, false, &req(AuthorityOp::Revoke, "kid-t"), in_use).expect_err("in use");
        assert_eq!(e.refusal, AuthorityRefusal::InUse);
        assert!(e.message.starts_with("3 live SVID(s)"), "{e}");
        let forced = OpRequest {
            force: true,
            ..req(AuthorityOp::Revoke, "kid-t")
        };
        assert_eq!(
            plan(&j, false, &forced, in_use),
            Ok(Plan::Revoke {
                record_id: "t".into()
            })
        );
        assert!(plan(&j, false, &req(AuthorityOp::Revoke, "kid-t"), NONE).is_ok());
    }

    #[test]
    fn ids_are_required_and_unknown_ones_list_the_known() {
        let j = journal();
        for op in [
            AuthorityOp::Activate,
            AuthorityOp::Taint,
            AuthorityOp::Revoke,
        ] {
            let r = plan(&j, false, &req(op, ""), NONE);
            assert_eq!(refusal(r), AuthorityRefusal::IdRequired);
        }
        let e = plan(&j, false, &req(AuthorityOp::Taint, "nope"), NONE).expect_err("unknown");
        assert_eq!(e.refusal, AuthorityRefusal::UnknownId);
        assert!(
            e.message
                .ends_with("known: kid-a, kid-p, kid-o, kid-t, kid-r"),
            "{e}"
        );
        // The id of another kind's record is unknown for this kind.
        let x = OpRequest {
            kind: CaKind::X509,
            ..req(AuthorityOp::Taint, "kid-o")
        };
        let e = plan(&j, false, &x, NONE).expect_err("other kind");
        assert_eq!(e.refusal, AuthorityRefusal::UnknownId);
        assert!(e.message.ends_with("known: none"), "{e}");
    }

    #[test]
    fn a_downstream_has_no_jwt_keys() {
        for op in [
            AuthorityOp::Prepare,
            AuthorityOp::Activate,
            AuthorityOp::Taint,
            AuthorityOp::Revoke,
        ] {
            let r = plan(&journal(), true, &req(op, "kid-p"), NONE);
            assert_eq!(refusal(r), AuthorityRefusal::KindNotHere, "{op:?}");
        }
        assert!(kind_here(CaKind::X509, true).is_ok());
        assert!(kind_here(CaKind::Jwt, false).is_ok());
    }

    fn fake(id: &str) -> Arc<Fake> {
        Arc::new(Fake {
            id: id.into(),
            window: Window::new(t(0), t(600)),
        })
    }

    fn x509(id: &str, status: CaStatus) -> CaJournalRecord {
        CaJournalRecord {
            status,
            ..record(id, CaKind::X509, Window::new(t(0), t(600)))
        }
    }

    fn statuses(j: &[CaJournalRecord]) -> Vec<CaStatus> {
        j.iter().map(|r| r.status).collect()
    }

    #[test]
    fn tainting_the_prepared_one_empties_the_slot() {
        let mut slot = Slot::<Fake>::default();
        slot.restore(CaStatus::Active, fake("a"));
        slot.restore(CaStatus::Prepared, fake("p"));
        let mut j = vec![x509("a", CaStatus::Active), x509("p", CaStatus::Prepared)];
        let ev = apply(
            &mut slot,
            &mut j,
            &Plan::Taint {
                record_id: "p".into(),
            },
        )
        .expect("event");
        assert_eq!(ev.kind, EventKind::AuthorityTainted);
        assert!(slot.prepared.is_none());
        assert_eq!(slot.active.as_ref().map(|a| a.id.as_str()), Some("a"));
        assert_eq!(statuses(&j), vec![CaStatus::Active, CaStatus::Tainted]);
        // The schedule prepares a fresh successor at half-life, as without the taint.
        assert_eq!(
            slot.decide(t(300)),
            trustdeck_pki::rotation::Decision::Prepare
        );

        let ev = apply(
            &mut slot,
            &mut j,
            &Plan::Revoke {
                record_id: "p".into(),
            },
        )
        .expect("event");
        assert_eq!(ev.kind, EventKind::AuthorityRevoked);
        assert_eq!(statuses(&j), vec![CaStatus::Active, CaStatus::Revoked]);
    }

    #[test]
    fn activating_retires_the_active_one() {
        let mut slot = Slot::<Fake>::default();
        slot.restore(CaStatus::Active, fake("a"));
        slot.restore(CaStatus::Prepared, fake("p"));
        let mut j = vec![
            x509("a", CaStatus::Active),
            x509("p", CaStatus::Prepared),
            x509("o", CaStatus::Old),
        ];
        let ev = apply(
            &mut slot,
            &mut j,
            &Plan::Activate {
                record_id: "p".into(),
            },
        )
        .expect("event");
        assert_eq!(ev.kind, EventKind::X509Activated);
        assert_eq!(
            statuses(&j),
            vec![CaStatus::Old, CaStatus::Active, CaStatus::Old]
        );
        assert_eq!(slot.active.as_ref().map(|a| a.id.as_str()), Some("p"));
        assert!(slot.prepared.is_none());
        // Tainting an old one leaves the slot alone.
        apply(
            &mut slot,
            &mut j,
            &Plan::Taint {
                record_id: "a".into(),
            },
        );
        assert_eq!(
            statuses(&j),
            vec![CaStatus::Tainted, CaStatus::Active, CaStatus::Old]
        );
        assert_eq!(slot.active.as_ref().map(|a| a.id.as_str()), Some("p"));
        assert!(apply(&mut slot, &mut j, &Plan::Prepare).is_none());
    }
}
