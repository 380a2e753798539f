//! One behavioural suite, run against SQLite and (when available) PostgreSQL.

use std::time::Instant;

use sqlx::{AssertSqlSafe, Connection};
use trustdeck_datastore::{
    AttestedNode, AuditRecord, Backend, BundleRecord, CaJournalRecord, CaKind, CaStatus, Datastore,
    DatastoreError, Entry, NewEntry,
};

const NOW: i64 = 1_700_000_000;

fn new_entry(spiffe_id: &str, parent_id: &str, selectors: &[&str]) -> NewEntry {
    NewEntry {
        spiffe_id: spiffe_id.to_owned(),
        parent_id: parent_id.to_owned(),
        selectors: selectors.iter().map(|s| (*s).to_owned()).collect(),
        x509_ttl_secs: 3600,
        jwt_ttl_secs: 300,
        downstream: false,
        dns_names: vec!["b.example".to_owned(), "a.example".to_owned()],
    }
}

fn node(spiffe_id: &str, created_at: i64) -> AttestedNode {
    AttestedNode {
        spiffe_id: spiffe_id.to_owned(),
        attestation_type: "join_token".to_owned(),
        cert_serial: "01".to_owned(),
        cert_not_after: created_at + 3600,
        banned: false,
        selectors: vec!["join_token:abc".to_owned()],
        created_at,
        updated_at: created_at,
    }
}

fn journal(id: &str, kind: CaKind, status: CaStatus, created_at: i64) -> CaJournalRecord {
    let x509 = kind == CaKind::X509;
    CaJournalRecord {
        id: id.to_owned(),
        kind,
        status,
        key_backend: "disk".to_owned(),
        key_ref: format!("keys/{id}"),
        certificate_chain_pem: x509
            .then(|| "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_owned()),
        public_key_der_b64: (!x509).then(|| "MFkwEwYHKoZIzj0CAQ==".to_owned()),
        kid: (!x509).then(|| format!("kid-{id}")),
        not_before: created_at,
        not_after: created_at + 86_400,
        created_at,
    }
}

fn bundle(trust_domain: &str, sequence: i64) -> BundleRecord {
    BundleRecord {
        trust_domain: trust_domain.to_owned(),
        sequence,
        document: format!(r#"{{"keys":[],"spiffe_sequence":{sequence}}}"#),
        updated_at: NOW + sequence,
    }
}

fn audit(id: &str, at: i64) -> AuditRecord {
    AuditRecord {
        id: id.to_owned(),
        at,
        actor: "spiffe://td.example/admin".to_owned(),
        action: "entry.create".to_owned(),
        target: format!("entry/{id}"),
        detail: "{\"note\":\"it's \\\"quoted\\\"\"}".to_owned(),
        outcome: "ok".to_owned(),
    }
}

fn expected_backend(url: &str) -> Backend {
    if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    }
}

/// Everything the datastore holds, for before/after comparisons.
#[derive(Debug, PartialEq)]
struct Snapshot {
    entries: Vec<Entry>,
    nodes: Vec<AttestedNode>,
    tokens: Vec<trustdeck_datastore::JoinToken>,
    journal: Vec<CaJournalRecord>,
    bundle: Option<BundleRecord>,
    other_bundle: Option<BundleRecord>,
    audit: Vec<AuditRecord>,
}

async fn snapshot(ds: &Datastore) -> Snapshot {
    Snapshot {
        entries: ds.list_entries().await.unwrap(),
        nodes: ds.list_nodes().await.unwrap(),
        tokens: ds.list_join_tokens().await.unwrap(),
        journal: ds.list_ca_journal().await.unwrap(),
        bundle: ds.get_bundle("td.example").await.unwrap(),
        other_bundle: ds.get_bundle("other.example").await.unwrap(),
        audit: ds.list_audit(1000).await.unwrap(),
    }
}

/// Exercises every datastore method against the database at `url`, which
/// must be empty, then reopens it and checks that everything persisted.
async fn run_suite(url: &str) {
    let ds = Datastore::open(url).await.expect("open datastore");
    assert_eq!(ds.backend(), expected_backend(url));
    assert!(ds.list_entries().await.unwrap().is_empty());

    entries(&ds).await;
    nodes(&ds).await;
    join_tokens(&ds).await;
    ca_state(&ds).await;
    audit_log(&ds).await;
    audited_changes(&ds).await;

    // Persistence: a fresh open sees exactly the same data; migrations are
    // idempotent.
    let before = snapshot(&ds).await;
    assert!(!before.entries.is_empty() && !before.journal.is_empty());
    ds.close().await;
    assert!(matches!(
        ds.list_entries().await,
        Err(DatastoreError::Query { .. })
    ));
    let ds = Datastore::open(url).await.expect("reopen datastore");
    assert_eq!(snapshot(&ds).await, before);

    corrupt_rows(&ds, url).await;
    stored_names(&ds, url).await;
    ds.close().await;
}

async fn entries(ds: &Datastore) {
    let web = ds
        .create_entry(
            &new_entry(
                "spiffe://td.example/web",
                "spiffe://td.example/node/a",
                &["unix:uid:1000", "k8s:ns:prod", "unix:uid:1000"],
            ),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(web.id.len(), 32);
    assert!(web.id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(web.selectors, vec!["k8s:ns:prod", "unix:uid:1000"]);
    assert_eq!(web.dns_names, vec!["b.example", "a.example"]);
    assert_eq!(web.created_at, NOW);
    assert_eq!(ds.get_entry(&web.id).await.unwrap(), Some(web.clone()));

    let mut db = new_entry(
        "spiffe://td.example/db",
        "spiffe://td.example/node/b",
        &["unix:uid:70"],
    );
    db.downstream = true;
    db.dns_names.clear();
    db.x509_ttl_secs = i64::MAX;
    db.jwt_ttl_secs = -1;
    let db = ds.create_entry(&db, NOW + 1).await.unwrap();
    assert!(db.downstream);
    assert_eq!(db.x509_ttl_secs, i64::MAX);
    assert_eq!(ds.get_entry(&db.id).await.unwrap(), Some(db.clone()));

    // Same SPIFFE ID and parent, different selectors: a different entry.
    let web2 = ds
        .create_entry(
            &new_entry(
                "spiffe://td.example/web",
                "spiffe://td.example/node/a",
                &["k8s:ns:staging"],
            ),
            NOW + 2,
        )
        .await
        .unwrap();
    let temp = ds
        .create_entry(
            &new_entry(
                "spiffe://td.example/zz-temp",
                "spiffe://td.example/node/c",
                &[],
            ),
            NOW + 3,
        )
        .await
        .unwrap();
    assert!(temp.selectors.is_empty());

    // Duplicate: same SPIFFE ID, parent and selector set (in another order).
    let before = ds.list_entries().await.unwrap();
    let err = ds
        .create_entry(
            &new_entry(
                "spiffe://td.example/web",
                "spiffe://td.example/node/a",
                &["unix:uid:1000", "k8s:ns:prod"],
            ),
            NOW + 10,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DatastoreError::AlreadyExists { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("spiffe://td.example/web"), "{err}");
    assert_eq!(ds.list_entries().await.unwrap(), before);

    // Ordered by SPIFFE ID, then id.
    let mut webs = vec![web.clone(), web2.clone()];
    webs.sort_by(|a, b| a.id.cmp(&b.id));
    let expected = vec![db.clone(), webs[0].clone(), webs[1].clone(), temp.clone()];
    assert_eq!(before, expected);

    let by_a = ds
        .list_entries_by_parent(&["spiffe://td.example/node/a".to_owned()])
        .await
        .unwrap();
    assert_eq!(by_a, webs);
    let by_ab = ds
        .list_entries_by_parent(&[
            "spiffe://td.example/node/b".to_owned(),
            "spiffe://td.example/node/a".to_owned(),
            "spiffe://td.example/node/a".to_owned(),
            "spiffe://td.example/nobody".to_owned(),
        ])
        .await
        .unwrap();
    assert_eq!(by_ab, vec![db.clone(), webs[0].clone(), webs[1].clone()]);
    assert!(ds.list_entries_by_parent(&[]).await.unwrap().is_empty());
    assert!(
        ds.list_entries_by_parent(&["spiffe://td.example/nobody".to_owned()])
            .await
            .unwrap()
            .is_empty()
    );
    // More parents than fit in one IN list.
    let many: Vec<String> = (0..1203)
        .map(|i| format!("spiffe://td.example/node/x{i}"))
        .chain(["spiffe://td.example/node/c".to_owned()])
        .collect();
    assert_eq!(
        ds.list_entries_by_parent(&many).await.unwrap(),
        vec![temp.clone()]
    );

    assert!(ds.delete_entry(&temp.id).await.unwrap());
    assert!(!ds.delete_entry(&temp.id).await.unwrap());
    assert_eq!(ds.get_entry(&temp.id).await.unwrap(), None);
    assert_eq!(ds.get_entry("no-such-id").await.unwrap(), None);
    assert_eq!(ds.list_entries().await.unwrap().len(), 3);

    // A deleted entry's identity can be registered again.
    let again = ds
        .create_entry(
            &new_entry(
                "spiffe://td.example/zz-temp",
                "spiffe://td.example/node/c",
                &[],
            ),
            NOW + 4,
        )
        .await
        .unwrap();
    assert_ne!(again.id, temp.id);
    assert!(ds.delete_entry(&again.id).await.unwrap());
}

async fn nodes(ds: &Datastore) {
    assert_eq!(
        ds.get_node("spiffe://td.example/agent/1").await.unwrap(),
        None
    );
    let n1 = node("spiffe://td.example/agent/1", NOW);
    ds.upsert_node(&n1).await.unwrap();
    assert_eq!(ds.get_node(&n1.spiffe_id).await.unwrap(), Some(n1.clone()));

    // Re-attestation: everything but created_at is replaced.
    let mut n1b = node("spiffe://td.example/agent/1", NOW + 100);
    n1b.attestation_type = "x509pop".to_owned();
    n1b.selectors = vec!["x509pop:cn:agent1".to_owned(), "x509pop:ca:root".to_owned()];
    n1b.banned = true;
    ds.upsert_node(&n1b).await.unwrap();
    let stored = ds.get_node(&n1.spiffe_id).await.unwrap().unwrap();
    assert_eq!(
        stored,
        AttestedNode {
            created_at: NOW,
            ..n1b.clone()
        }
    );
    n1b.banned = false;
    ds.upsert_node(&n1b).await.unwrap();

    let n0 = node("spiffe://td.example/agent/0", NOW + 5);
    ds.upsert_node(&n0).await.unwrap();

    assert!(
        ds.update_node_cert(&n1.spiffe_id, "0abc", NOW + 7200, NOW + 200)
            .await
            .unwrap()
    );
    assert!(
        !ds.update_node_cert("spiffe://td.example/agent/none", "01", NOW, NOW)
            .await
            .unwrap()
    );
    let stored = ds.get_node(&n1.spiffe_id).await.unwrap().unwrap();
    assert_eq!(stored.cert_serial, "0abc");
    assert_eq!(stored.cert_not_after, NOW + 7200);
    assert_eq!(stored.updated_at, NOW + 200);
    assert!(!stored.banned);

    assert!(
        ds.set_node_banned(&n1.spiffe_id, true, NOW + 300)
            .await
            .unwrap()
    );
    let banned = ds.get_node(&n1.spiffe_id).await.unwrap().unwrap();
    assert!(banned.banned);
    assert_eq!(banned.updated_at, NOW + 300);
    assert!(
        !ds.set_node_banned("spiffe://td.example/agent/none", true, NOW)
            .await
            .unwrap()
    );

    let listed = ds.list_nodes().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|n| n.spiffe_id.as_str())
            .collect::<Vec<_>>(),
        vec!["spiffe://td.example/agent/0", "spiffe://td.example/agent/1"]
    );
    assert_eq!(listed[0], n0);
    assert_eq!(listed[1], banned);

    // Evict.
    assert!(ds.delete_node(&n0.spiffe_id).await.unwrap());
    assert!(!ds.delete_node(&n0.spiffe_id).await.unwrap());
    assert_eq!(ds.get_node(&n0.spiffe_id).await.unwrap(), None);
    assert_eq!(ds.list_nodes().await.unwrap(), vec![banned]);
}

async fn join_tokens(ds: &Datastore) {
    ds.create_join_token("tok-once", NOW + 600, NOW)
        .await
        .unwrap();
    ds.create_join_token("tok-short", NOW + 10, NOW + 1)
        .await
        .unwrap();
    assert!(matches!(
        ds.create_join_token("tok-once", NOW + 900, NOW + 2).await,
        Err(DatastoreError::AlreadyExists { .. })
    ));

    ds.consume_join_token("tok-once", NOW + 5).await.unwrap();
    match ds.consume_join_token("tok-once", NOW + 6).await {
        Err(DatastoreError::TokenUsed { used_at }) => assert_eq!(used_at, NOW + 5),
        other => panic!("second consumption: {other:?}"),
    }

    // Valid while now < expires_at.
    match ds.consume_join_token("tok-short", NOW + 10).await {
        Err(DatastoreError::TokenExpired { expired_at }) => assert_eq!(expired_at, NOW + 10),
        other => panic!("expired token: {other:?}"),
    }
    match ds.consume_join_token("no-such-token", NOW).await {
        Err(DatastoreError::TokenNotFound) => {}
        other => panic!("unknown token: {other:?}"),
    }
    // An expired, unconsumed token stays unconsumed; a used token reports
    // TokenUsed even after expiry.
    assert!(matches!(
        ds.consume_join_token("tok-once", NOW + 10_000).await,
        Err(DatastoreError::TokenUsed { .. })
    ));

    // Concurrent consumption: exactly one winner.
    ds.create_join_token("tok-race", NOW + 600, NOW + 3)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let ds = ds.clone();
        tasks.push(tokio::spawn(async move {
            ds.consume_join_token("tok-race", NOW + 20 + i).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(DatastoreError::TokenUsed { .. }) => {}
            Err(e) => panic!("concurrent consumption: {e}"),
        }
    }
    assert_eq!(ok, 1);

    let tokens = ds.list_join_tokens().await.unwrap();
    let summary: Vec<_> = tokens
        .iter()
        .map(|t| {
            (
                t.token.as_str(),
                t.expires_at,
                t.used_at.is_some(),
                t.created_at,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("tok-once", NOW + 600, true, NOW),
            ("tok-short", NOW + 10, false, NOW + 1),
            ("tok-race", NOW + 600, true, NOW + 3),
        ]
    );
    assert_eq!(tokens[0].used_at, Some(NOW + 5));
    let race_used = tokens[2].used_at.unwrap();
    assert!((NOW + 20..NOW + 28).contains(&race_used));
}

async fn ca_state(ds: &Datastore) {
    assert_eq!(ds.get_bundle("td.example").await.unwrap(), None);
    assert!(ds.list_ca_journal().await.unwrap().is_empty());

    // First commit: no bundle yet.
    let x1 = journal("x509-1", CaKind::X509, CaStatus::Active, NOW);
    let j1 = journal("jwt-1", CaKind::Jwt, CaStatus::Prepared, NOW);
    let b1 = bundle("td.example", 1);
    ds.commit_ca_state("test", &[x1.clone(), j1.clone()], &[], &b1, None)
        .await
        .unwrap();
    assert_eq!(ds.get_bundle("td.example").await.unwrap(), Some(b1.clone()));
    // Ordered by created_at, then id.
    assert_eq!(
        ds.list_ca_journal().await.unwrap(),
        vec![j1.clone(), x1.clone()]
    );

    // "No row yet" is stale now.
    let before = snapshot(ds).await;
    let err = ds
        .commit_ca_state(
            "test",
            &[journal(
                "x509-zz",
                CaKind::X509,
                CaStatus::Prepared,
                NOW + 1,
            )],
            &["x509-1".to_owned()],
            &bundle("td.example", 2),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DatastoreError::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("sequence 1"), "{err}");
    assert_eq!(snapshot(ds).await, before);

    // Rotation: update one, delete one, add one, bump the bundle.
    let mut j1_active = j1.clone();
    j1_active.status = CaStatus::Active;
    j1_active.kid = None;
    let x2 = journal("x509-2", CaKind::X509, CaStatus::Prepared, NOW + 50);
    let b2 = bundle("td.example", 2);
    ds.commit_ca_state(
        "test",
        &[j1_active.clone(), x2.clone()],
        &["x509-1".to_owned(), "no-such-record".to_owned()],
        &b2,
        Some(1),
    )
    .await
    .unwrap();
    assert_eq!(ds.get_bundle("td.example").await.unwrap(), Some(b2.clone()));
    assert_eq!(
        ds.list_ca_journal().await.unwrap(),
        vec![j1_active.clone(), x2.clone()]
    );

    // Stale sequence: nothing changes, neither journal nor bundle.
    let before = snapshot(ds).await;
    let err = ds
        .commit_ca_state(
            "test",
            &[
                journal("x509-3", CaKind::X509, CaStatus::Prepared, NOW + 60),
                CaJournalRecord {
                    status: CaStatus::Old,
                    ..x2.clone()
                },
            ],
            &["jwt-1".to_owned()],
            &bundle("td.example", 3),
            Some(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DatastoreError::Conflict { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("expected sequence 1, found sequence 2"),
        "{err}"
    );
    assert_eq!(snapshot(ds).await, before);

    // Expecting a bundle where there is none is a conflict too.
    let err = ds
        .commit_ca_state("test", &[], &[], &bundle("other.example", 5), Some(4))
        .await
        .unwrap_err();
    assert!(matches!(err, DatastoreError::Conflict { .. }), "{err:?}");
    assert_eq!(snapshot(ds).await, before);

    // Bundles are per trust domain.
    let other = bundle("other.example", 7);
    ds.commit_ca_state("test", &[], &[], &other, None)
        .await
        .unwrap();
    assert_eq!(ds.get_bundle("other.example").await.unwrap(), Some(other));
    assert_eq!(ds.get_bundle("td.example").await.unwrap(), Some(b2));

    // Concurrent writers with the same expected sequence: one wins.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let ds = ds.clone();
        tasks.push(tokio::spawn(async move {
            let record = journal(
                &format!("race-{i}"),
                CaKind::Jwt,
                CaStatus::Prepared,
                NOW + 100,
            );
            ds.commit_ca_state("test", &[record], &[], &bundle("race.example", 1), None)
                .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(DatastoreError::Conflict { .. }) => {}
            Err(e) => panic!("concurrent commit: {e}"),
        }
    }
    assert_eq!(ok, 1);
    let race_records: Vec<_> = ds
        .list_ca_journal()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.id.starts_with("race-"))
        .collect();
    assert_eq!(race_records.len(), 1);
}

async fn audit_log(ds: &Datastore) {
    assert!(ds.list_audit(10).await.unwrap().is_empty());
    let a1 = audit("a1", NOW + 100);
    let a2 = audit("b2", NOW + 200);
    let a3 = audit("c3", NOW + 150);
    let a4 = audit("d4", NOW + 200);
    for a in [&a1, &a2, &a3, &a4] {
        ds.append_audit(a).await.unwrap();
    }
    assert!(matches!(
        ds.append_audit(&audit("a1", NOW)).await,
        Err(DatastoreError::AlreadyExists { .. })
    ));
    assert_eq!(
        ds.list_audit(10).await.unwrap(),
        vec![a4.clone(), a2.clone(), a3.clone(), a1.clone()]
    );
    assert_eq!(ds.list_audit(2).await.unwrap(), vec![a4, a2]);
    assert!(ds.list_audit(0).await.unwrap().is_empty());
    assert!(ds.list_audit(-1).await.unwrap().is_empty());
}

/// Issue 12, defect 5: an operator's change and its audit record commit together, or neither
/// does (the record's write fails: the change is rolled back); a deleted entry's record can
/// name what it was.
async fn audited_changes(ds: &Datastore) {
    let taken = audit("a1", NOW); // the id exists already: this record's write fails
    let rec = |id: &str| AuditRecord {
        action: "test.audited".to_owned(),
        ..audit(id, NOW + 300)
    };

    // Create: both stored, or neither.
    let mut change = ds.begin_audited().await.unwrap();
    let kept = change
        .create_entry(
            &new_entry(
                "spiffe://td.example/audited",
                "spiffe://td.example/n",
                &["a:1"],
            ),
            NOW,
        )
        .await
        .unwrap();
    change.commit(&rec("tx-create")).await.unwrap();
    assert_eq!(ds.get_entry(&kept.id).await.unwrap(), Some(kept.clone()));
    let mut change = ds.begin_audited().await.unwrap();
    let lost = change
        .create_entry(
            &new_entry(
                "spiffe://td.example/lost",
                "spiffe://td.example/n",
                &["a:1"],
            ),
            NOW,
        )
        .await
        .unwrap();
    assert!(matches!(
        change.commit(&taken).await,
        Err(DatastoreError::AlreadyExists { .. })
    ));
    assert_eq!(ds.get_entry(&lost.id).await.unwrap(), None);

    // Delete: returns what was deleted; a failed record keeps the entry.
    let mut change = ds.begin_audited().await.unwrap();
    assert_eq!(
        change.delete_entry(&kept.id).await.unwrap(),
        Some(kept.clone())
    );
    assert!(change.commit(&taken).await.is_err());
    assert_eq!(ds.get_entry(&kept.id).await.unwrap(), Some(kept.clone()));
    let mut change = ds.begin_audited().await.unwrap();
    assert_eq!(
        change.delete_entry(&kept.id).await.unwrap(),
        Some(kept.clone())
    );
    assert_eq!(change.delete_entry("no-such-entry").await.unwrap(), None);
    change.commit(&rec("tx-delete")).await.unwrap();
    assert_eq!(ds.get_entry(&kept.id).await.unwrap(), None);

    // Nodes: ban and evict, rolled back with a failed record; a dropped change is nothing.
    let n = node("spiffe://td.example/agent/audited", NOW);
    ds.upsert_node(&n).await.unwrap();
    let mut change = ds.begin_audited().await.unwrap();
    let banned = change
        .set_node_banned(&n.spiffe_id, true, NOW + 5)
        .await
        .unwrap();
    assert_eq!(
        banned.map(|b| (b.banned, b.updated_at)),
        Some((true, NOW + 5))
    );
    assert!(change.commit(&taken).await.is_err());
    let mut change = ds.begin_audited().await.unwrap();
    assert_eq!(
        change.delete_node(&n.spiffe_id).await.unwrap(),
        Some(n.clone())
    );
    drop(change);
    assert_eq!(ds.get_node(&n.spiffe_id).await.unwrap(), Some(n.clone()));
    let mut change = ds.begin_audited().await.unwrap();
    assert_eq!(
        change
            .set_node_banned("spiffe://td.example/none", true, NOW)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        change.delete_node(&n.spiffe_id).await.unwrap(),
        Some(n.clone())
    );
    change.commit(&rec("tx-evict")).await.unwrap();
    assert_eq!(ds.get_node(&n.spiffe_id).await.unwrap(), None);

    // Join tokens.
    let tokens = ds.list_join_tokens().await.unwrap().len();
    let mut change = ds.begin_audited().await.unwrap();
    change
        .create_join_token("tx-token", NOW + 60, NOW)
        .await
        .unwrap();
    assert!(change.commit(&taken).await.is_err());
    assert_eq!(ds.list_join_tokens().await.unwrap().len(), tokens);

    let ids: Vec<String> = ds
        .list_audit(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "test.audited")
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["tx-evict", "tx-delete", "tx-create"]);
}

/// Rows holding bad data are reported as `Corrupt`, never panic.
async fn corrupt_rows(ds: &Datastore, url: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::query(
        "INSERT INTO attested_nodes (spiffe_id, attestation_type, cert_serial, cert_not_after, \
         banned, selectors, created_at, updated_at) \
         VALUES ('spiffe://td.example/agent/bad', 'x', '01', 0, 7, '[]', 0, 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let err = ds
        .get_node("spiffe://td.example/agent/bad")
        .await
        .unwrap_err();
    match &err {
        DatastoreError::Corrupt { what } => {
            assert!(
                what.contains("agent/bad") && what.contains("banned"),
                "{what}"
            )
        }
        other => panic!("bad flag: {other:?}"),
    }
    assert!(matches!(
        ds.list_nodes().await,
        Err(DatastoreError::Corrupt { .. })
    ));
    sqlx::query(
        "UPDATE attested_nodes SET banned = 0, selectors = 'not json' \
         WHERE spiffe_id = 'spiffe://td.example/agent/bad'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    match ds.get_node("spiffe://td.example/agent/bad").await {
        Err(DatastoreError::Corrupt { what }) => assert!(what.contains("selectors"), "{what}"),
        other => panic!("bad JSON: {other:?}"),
    }
    sqlx::query("DELETE FROM attested_nodes WHERE spiffe_id = 'spiffe://td.example/agent/bad'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert_eq!(ds.list_nodes().await.unwrap().len(), 1);
}

/// CA kinds and statuses are stored as their stable names: rows written with
/// those strings (as every earlier version did) read back as the typed values,
/// and a name this version does not know is `UnknownValue`, naming it.
async fn stored_names(ds: &Datastore, url: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let mut journal_before = ds.list_ca_journal().await.unwrap();
    for (id, kind, status) in [
        ("names-1", "x509", "prepared"),
        ("names-2", "jwt", "active"),
        ("names-3", "x509", "old"),
    ] {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO ca_journal (id, kind, status, key_backend, key_ref, \
             certificate_chain_pem, public_key_der_b64, kid, not_before, not_after, created_at) \
             VALUES ('{id}', '{kind}', '{status}', 'disk', 'k', NULL, NULL, NULL, 0, 1, {NOW})"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let read: Vec<_> = ds
        .list_ca_journal()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.id.starts_with("names-"))
        .map(|r| (r.kind, r.status))
        .collect();
    assert_eq!(
        read,
        vec![
            (CaKind::X509, CaStatus::Prepared),
            (CaKind::Jwt, CaStatus::Active),
            (CaKind::X509, CaStatus::Old),
        ]
    );

    sqlx::query("UPDATE ca_journal SET status = 'quarantined' WHERE id = 'names-2'")
        .execute(&mut conn)
        .await
        .unwrap();
    match ds.list_ca_journal().await {
        Err(DatastoreError::UnknownValue {
            record,
            column,
            value,
        }) => {
            assert_eq!((column, value.as_str()), ("status", "quarantined"));
            assert!(record.contains("names-2"), "{record}");
        }
        other => panic!("unknown status: {other:?}"),
    }
    sqlx::query("DELETE FROM ca_journal WHERE id LIKE 'names-%'")
        .execute(&mut conn)
        .await
        .unwrap();
    journal_before.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    assert_eq!(ds.list_ca_journal().await.unwrap(), journal_before);

    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("datastore.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let url = format!("sqlite://{}", path.display());
    assert!(url.starts_with("sqlite:///"));
    run_suite(&url).await;
    assert!(path.exists());

    // The file was switched to WAL journaling (a persistent setting).
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn sqlite_memory_works() {
    let ds = Datastore::open("sqlite::memory:").await.unwrap();
    assert_eq!(ds.backend(), Backend::Sqlite);
    let e = ds
        .create_entry(&new_entry("spiffe://t/w", "spiffe://t/n", &["a:b"]), NOW)
        .await
        .unwrap();
    assert_eq!(ds.list_entries().await.unwrap(), vec![e]);
    // A second in-memory datastore is a separate database.
    let other = Datastore::open("sqlite::memory:").await.unwrap();
    assert!(other.list_entries().await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_not_a_database_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("datastore.db");
    let garbage: Vec<u8> = (0..64 * 1024).map(|_| rand::random::<u8>()).collect();
    std::fs::write(&path, &garbage).unwrap();
    let url = format!("sqlite://{}", path.display());

    let err = Datastore::open(&url).await.unwrap_err();
    assert!(
        matches!(err, DatastoreError::NotADatabase { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    let prefix = format!(
        "datastore \"{url}\" is not a readable SQLite database \
         (file is corrupt or not a database): "
    );
    assert!(message.starts_with(&prefix), "{message}");
    assert!(message.len() > prefix.len(), "{message}");
    eprintln!("{message}");

    assert_eq!(std::fs::read(&path).unwrap(), garbage, "file was modified");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("datastore.db")]);
}

#[tokio::test]
async fn open_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("datastore.db");
    let url = format!("sqlite://{}", missing.display());
    let err = Datastore::open(&url).await.unwrap_err();
    assert!(matches!(err, DatastoreError::Open { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot open datastore \"{url}\": ")),
        "{err}"
    );

    let err = Datastore::open("mysql://root:pw@localhost/x")
        .await
        .unwrap_err();
    assert!(
        matches!(err, DatastoreError::UnsupportedUrl { .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("pw@"), "{err}");

    // Nothing listens on port 1: the error names the URL, not the password.
    let started = Instant::now();
    let err = Datastore::open("postgres://trustdeck:hunter2@127.0.0.1:1/trustdeck")
        .await
        .unwrap_err();
    assert!(matches!(err, DatastoreError::Open { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("\"postgres://trustdeck:***@127.0.0.1:1/trustdeck\""),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    eprintln!(
        "unreachable PostgreSQL reported after {:?}: {message}",
        started.elapsed()
    );
}

/// `admin` with its database replaced by `database`.
fn with_database(admin: &str, database: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin, None),
    };
    let authority_start = base.find("://").expect("URL has a scheme") + 3;
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{database}", &base[..authority_start.max(authority_end)]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_suite() {
    let Ok(admin) = std::env::var("TRUSTDECK_TEST_POSTGRES_URL") else {
        if std::env::var("TRUSTDECK_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            panic!(
                "TRUSTDECK_REQUIRE_POSTGRES=1 but TRUSTDECK_TEST_POSTGRES_URL is not set; \
                 set it to an admin URL such as postgres://postgres@127.0.0.1:55432/postgres"
            );
        }
        eprintln!("SKIP postgres_suite: TRUSTDECK_TEST_POSTGRES_URL is not set");
        return;
    };
    sqlx::any::install_default_drivers();
    let name = format!("td_{}", hex::encode(rand::random::<[u8; 8]>()));
    let mut conn = sqlx::AnyConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("connect to TRUSTDECK_TEST_POSTGRES_URL: {e}"));
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();

    let url = with_database(&admin, &name);
    let outcome = tokio::spawn(async move { run_suite(&url).await }).await;

    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
