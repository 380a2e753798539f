//! The bundle and the CA journal.

use trustdeck_datastore::{
    AuditRecord, CaJournalRecord, CaKind, CaStatus, Datastore, DatastoreError,
};

use crate::common::*;

pub async fn ca_state(ds: &Datastore) {
    assert_eq!(ds.get_bundle("td.example").await.unwrap(), None);
    assert!(ds.list_ca_journal().await.unwrap().is_empty());

    // First commit: no bundle yet.
    let x1 = journal("x509-1", CaKind::X509, CaStatus::Active, NOW);
    let j1 = journal("jwt-1", CaKind::Jwt, CaStatus::Prepared, NOW);
    let b1 = bundle("td.example", 1);
    ds.commit_ca_state("test", &[x1.clone(), j1.clone()], &[], &b1, None, &[])
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
            &[],
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
        &[],
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
            &[],
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
        .commit_ca_state("test", &[], &[], &bundle("other.example", 5), Some(4), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, DatastoreError::Conflict { .. }), "{err:?}");
    assert_eq!(snapshot(ds).await, before);

    // Bundles are per trust domain.
    let other = bundle("other.example", 7);
    ds.commit_ca_state("test", &[], &[], &other, None, &[])
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
            ds.commit_ca_state(
                "test",
                &[record],
                &[],
                &bundle("race.example", 1),
                None,
                &[],
            )
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

/// A CA change and its audit records commit together, or neither does.
pub async fn audited_ca_state(ds: &Datastore) {
    let td = "audited.example";
    let rec = |id: &str, action: &str| AuditRecord {
        action: action.to_owned(),
        actor: "server:spiffe://td.example/server".to_owned(),
        ..audit(id, NOW + 500)
    };
    let x = journal("audited-x509", CaKind::X509, CaStatus::Prepared, NOW + 500);
    let head = ds.audit_head().await.unwrap();
    ds.commit_ca_state(
        "test",
        std::slice::from_ref(&x),
        &[],
        &bundle(td, 1),
        None,
        &[rec("ca-audit-1", "authority.x509.prepare")],
    )
    .await
    .unwrap();
    assert_eq!(ds.audit_head().await.unwrap().seq, head.seq + 1);
    let listed = ds.list_audit(1000).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|r| r.id == "ca-audit-1" && r.action == "authority.x509.prepare"),
        "{listed:?}"
    );
    assert_eq!(ds.verify_audit().await.unwrap(), Ok(head.seq + 1));

    // A stale sequence: neither the journal change nor its record.
    let before = snapshot(ds).await;
    let tainted = CaJournalRecord {
        status: CaStatus::Tainted,
        ..x.clone()
    };
    let err = ds
        .commit_ca_state(
            "test",
            std::slice::from_ref(&tainted),
            &[],
            &bundle(td, 3),
            Some(7),
            &[rec("ca-audit-2", "authority.x509.taint")],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DatastoreError::Conflict { .. }), "{err:?}");
    assert_eq!(snapshot(ds).await, before);
    assert_eq!(ds.get_bundle(td).await.unwrap().unwrap().sequence, 1);

    // The record cannot be written (its id is taken): the CA change is not stored either.
    let err = ds
        .commit_ca_state(
            "test",
            std::slice::from_ref(&tainted),
            &[],
            &bundle(td, 2),
            Some(1),
            &[rec("ca-audit-1", "authority.x509.taint")],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DatastoreError::AlreadyExists { .. }),
        "{err:?}"
    );
    assert_eq!(snapshot(ds).await, before);
    assert_eq!(ds.get_bundle(td).await.unwrap().unwrap().sequence, 1);
    let stored = ds.list_ca_journal().await.unwrap();
    assert!(stored.contains(&x), "journal unchanged");
    assert_eq!(ds.verify_audit().await.unwrap(), Ok(head.seq + 1));
}
