//! Operator-driven authority operations against a real SQLite datastore and disk key
//! manager, with an injected clock: prepare, activate, taint, revoke, their refusals, the
//! bundle each publishes, the audit record each commits, and a restart between steps.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use trustdeck_datastore::{CaKind, CaStatus, Datastore};
use trustdeck_pki::KeyManager;
use trustdeck_pki::keys::DiskKeyManager;
use trustdeck_proto::admin::{AuthorityRefusal, EventKind};
use trustdeck_server::ca::CaManager;
use trustdeck_server::ca::operations::{AuthorityOp, OpRequest};
use trustdeck_server::ca::ops::OpError;
use trustdeck_server::ca::taint::record_key_id;

const ACTOR: &str = "uid:1000";

mod common;
use common::{settings, t};

async fn open(dir: &std::path::Path, now: DateTime<Utc>) -> (Arc<CaManager>, Datastore) {
    let ds = Datastore::open(&format!("sqlite://{}", dir.join("ds.sqlite3").display()))
        .await
        .expect("datastore");
    let km: Arc<dyn KeyManager> = Arc::new(DiskKeyManager::new(&dir.join("keys")).expect("km"));
    let m = CaManager::load(settings(), ds.clone(), km, now)
        .await
        .expect("load")
        .0;
    (m, ds)
}

fn req(kind: CaKind, op: AuthorityOp, id: &str) -> OpRequest {
    OpRequest {
        kind,
        op,
        id: id.into(),
        force: false,
        census_complete: true,
        step: None,
    }
}

fn ids(m: &CaManager, kind: CaKind, status: CaStatus) -> Vec<String> {
    m.snapshot()
        .journal
        .iter()
        .filter(|r| r.kind == kind && r.status == status)
        .map(record_key_id)
        .collect()
}

fn one(m: &CaManager, kind: CaKind, status: CaStatus) -> String {
    let v = ids(m, kind, status);
    assert_eq!(v.len(), 1, "{kind} {status}: {v:?}");
    v[0].clone()
}

const NOBODY: &(dyn Fn(&str) -> u32 + Send + Sync) = &|_| 0;

async fn refused(
    m: &CaManager,
    r: &OpRequest,
    live: &(dyn Fn(&str) -> u32 + Send + Sync),
) -> AuthorityRefusal {
    let before = (m.snapshot().journal.clone(), m.bundle().to_json());
    match m.operate(r, ACTOR, live, t(10)).await {
        Err(OpError::Refused(e)) => {
            assert_eq!(
                (m.snapshot().journal.clone(), m.bundle().to_json()),
                before,
                "nothing changed"
            );
            e.refusal
        }
        other => panic!("{r:?}: expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_forced_root_rotation_step_by_step_with_restarts() {
    let dir = tempfile::tempdir().expect("tmp");
    let (m, ds) = open(dir.path(), t(0)).await;
    let root0 = one(&m, CaKind::X509, CaStatus::Active);
    let seq0 = m.bundle().sequence;
    let head0 = ds.audit_head().await.expect("head").seq;
    assert!(
        head0 >= 2,
        "the first mint of each kind is audited: {head0}"
    );

    // Refusals before anything is prepared change nothing.
    let x = CaKind::X509;
    assert_eq!(
        refused(&m, &req(x, AuthorityOp::Taint, &root0), NOBODY).await,
        AuthorityRefusal::IsActive
    );
    assert_eq!(
        refused(&m, &req(x, AuthorityOp::Revoke, &root0), NOBODY).await,
        AuthorityRefusal::NotTainted
    );
    assert_eq!(
        refused(&m, &req(x, AuthorityOp::Activate, &root0), NOBODY).await,
        AuthorityRefusal::NotPrepared
    );
    assert_eq!(
        refused(&m, &req(x, AuthorityOp::Taint, "beef"), NOBODY).await,
        AuthorityRefusal::UnknownId
    );
    assert_eq!(
        refused(&m, &req(x, AuthorityOp::Taint, ""), NOBODY).await,
        AuthorityRefusal::IdRequired
    );
    assert_eq!(
        ds.audit_head().await.expect("head").seq,
        head0,
        "refusals commit nothing here"
    );

    // Prepare: published before it signs; sequence + 1; one audit record.
    let mut rx = m.subscribe_bundle();
    let done = m
        .operate(&req(x, AuthorityOp::Prepare, ""), ACTOR, NOBODY, t(10))
        .await
        .expect("prepare");
    assert_eq!(done.events[0].kind, EventKind::X509Prepared);
    assert_eq!(done.sequence, (seq0, seq0 + 1));
    assert!(rx.has_changed().expect("sender alive"));
    rx.mark_unchanged();
    let root1 = one(&m, x, CaStatus::Prepared);
    assert_eq!(record_key_id(&done.record), root1);
    assert_eq!(m.bundle().x509_authorities.len(), 2);
    assert_eq!(
        record_key_id_of_signer(&m),
        root0,
        "the active one still signs"
    );
    let audit = ds.list_audit(1).await.expect("audit");
    assert_eq!(audit[0].action, "authority.x509.prepare");
    assert_eq!(audit[0].actor, ACTOR);
    assert_eq!(audit[0].target, root1);
    assert!(
        audit[0].detail.contains("new -> prepared"),
        "{}",
        audit[0].detail
    );

    // kill between prepare and activate: the same state comes back.
    let journal = sorted(&m);
    let bundle = m.bundle().to_json();
    drop(m);
    let (m, _ds) = open(dir.path(), t(20)).await;
    assert_eq!(sorted(&m), journal);
    assert_eq!(m.bundle().to_json(), bundle);

    let done = m
        .operate(&req(x, AuthorityOp::Activate, &root1), ACTOR, NOBODY, t(20))
        .await
        .expect("activate");
    assert_eq!(done.events[0].kind, EventKind::X509Activated);
    assert_eq!(one(&m, x, CaStatus::Active), root1);
    assert_eq!(one(&m, x, CaStatus::Old), root0);
    assert_eq!(record_key_id_of_signer(&m), root1);
    assert_eq!(m.bundle().sequence, seq0 + 2);

    // Taint the old root: it stays in the bundle; the sequence still moves.
    let done = m
        .operate(&req(x, AuthorityOp::Taint, &root0), ACTOR, NOBODY, t(30))
        .await
        .expect("taint");
    assert_eq!(done.events[0].kind, EventKind::AuthorityTainted);
    assert_eq!(m.bundle().x509_authorities.len(), 2);
    assert_eq!(m.bundle().sequence, seq0 + 3);
    assert_eq!(m.tainted_keys().x509_key_ids, vec![root0.clone()]);
    assert_eq!(
        refused(&m, &req(x, AuthorityOp::Taint, &root0), NOBODY).await,
        AuthorityRefusal::Already
    );

    // kill between taint and revoke.
    let journal = sorted(&m);
    drop(m);
    let (m, ds) = open(dir.path(), t(40)).await;
    assert_eq!(sorted(&m), journal);
    assert_eq!(m.tainted_keys().x509_key_ids, vec![root0.clone()]);

    // Revoke while a live SVID chains to it: refused, unless forced.
    let root0_c = root0.clone();
    let in_use = move |k: &str| u32::from(k == root0_c);
    assert_eq!(
        refused(&m, &req(x, AuthorityOp::Revoke, &root0), &in_use).await,
        AuthorityRefusal::InUse
    );
    let forced = OpRequest {
        force: true,
        ..req(x, AuthorityOp::Revoke, &root0)
    };
    let done = m
        .operate(&forced, ACTOR, &in_use, t(40))
        .await
        .expect("revoke");
    assert_eq!(done.events[0].kind, EventKind::AuthorityRevoked);
    let b = m.bundle();
    assert_eq!(b.x509_authorities.len(), 1, "exactly the active root");
    assert_eq!(b.x509_authorities[0], m.x509_ca().expect("ca").cert_der());
    assert_eq!(b.sequence, seq0 + 4);
    assert_eq!(
        m.tainted_keys().x509_key_ids,
        vec![root0.clone()],
        "a revoked authority stays distrusted until it expires"
    );
    assert_eq!(
        refused(&m, &forced, NOBODY).await,
        AuthorityRefusal::Already
    );

    // Every step is an audit record, in order, and the chain verifies.
    let actions: Vec<String> = ds
        .list_audit(4)
        .await
        .expect("audit")
        .into_iter()
        .rev()
        .map(|r| r.action)
        .collect();
    assert_eq!(
        actions,
        [
            "authority.x509.prepare",
            "authority.x509.activate",
            "authority.x509.taint",
            "authority.x509.revoke"
        ]
    );
    assert!(
        ds.list_audit(1).await.expect("audit")[0]
            .detail
            .contains("forced")
    );
    assert!(ds.verify_audit().await.expect("verify").is_ok());
}

/// The journal in the order the datastore lists it.
fn sorted(m: &CaManager) -> Vec<trustdeck_datastore::CaJournalRecord> {
    let mut j = m.snapshot().journal.clone();
    j.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    j
}

fn record_key_id_of_signer(m: &CaManager) -> String {
    trustdeck_server::observe::key_id(&m.x509_ca().expect("ca"))
}

#[tokio::test]
async fn a_tainted_prepared_jwt_key_leaves_its_slot_and_the_schedule_prepares_another() {
    let dir = tempfile::tempdir().expect("tmp");
    let (m, ds) = open(dir.path(), t(0)).await;
    let j = CaKind::Jwt;
    assert_eq!(
        refused(&m, &req(j, AuthorityOp::Revoke, "nope"), NOBODY).await,
        AuthorityRefusal::UnknownId
    );
    m.operate(&req(j, AuthorityOp::Prepare, ""), ACTOR, NOBODY, t(10))
        .await
        .expect("prepare");
    let p1 = one(&m, j, CaStatus::Prepared);
    // Prepare again: the prepared one is superseded (SPIRE replaces it).
    m.operate(&req(j, AuthorityOp::Prepare, ""), ACTOR, NOBODY, t(11))
        .await
        .expect("prepare");
    let p2 = one(&m, j, CaStatus::Prepared);
    assert_ne!(p1, p2);
    assert!(ids(&m, j, CaStatus::Old).contains(&p1));
    m.operate(&req(j, AuthorityOp::Taint, &p2), ACTOR, NOBODY, t(12))
        .await
        .expect("taint");
    assert!(ids(&m, j, CaStatus::Prepared).is_empty());
    assert!(
        m.bundle().jwt_authorities.iter().any(|a| a.key_id == p2),
        "tainted stays in the bundle"
    );
    assert_eq!(m.tainted_keys().jwt_kids, vec![p2.clone()]);
    // The schedule prepares a fresh successor at half-life; its change is audited as the server's.
    let ev = m.rotate(t(300)).await.expect("rotate");
    assert!(
        ev.iter().any(|e| e.kind == EventKind::JwtPrepared),
        "{ev:?}"
    );
    let fresh = one(&m, j, CaStatus::Prepared);
    assert!(fresh != p1 && fresh != p2);
    let rec = ds
        .list_audit(10)
        .await
        .expect("audit")
        .into_iter()
        .find(|r| r.target == fresh)
        .expect("scheduled record");
    assert_eq!(rec.action, "authority.jwt.prepare");
    assert_eq!(rec.actor, "server:spiffe://example.org/trustdeck/server");
    assert!(rec.detail.starts_with("scheduled: "), "{}", rec.detail);
    assert!(ds.verify_audit().await.expect("verify").is_ok());
}
