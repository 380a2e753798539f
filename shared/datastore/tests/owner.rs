//! The CA journal's owner on SQLite: claims are compare-and-set, only the owner's session
//! commits CA state, and the owner is readable without writing.

use trustdeck_datastore::{AuditRecord, BundleRecord, CaOwner, Datastore, DatastoreError};

fn owner(instance: &str, session: &str) -> CaOwner {
    CaOwner {
        instance_id: instance.into(),
        session: session.into(),
        server_id: "spiffe://td.example/trustdeck/server".into(),
        host: "h".into(),
        data_dir: "/d".into(),
        key_manager: "memory".into(),
        claimed_at: 1,
        renewed_at: 1,
        lease_until: 16,
    }
}

fn bundle(sequence: i64) -> BundleRecord {
    BundleRecord {
        trust_domain: "td.example".to_owned(),
        sequence,
        document: format!(r#"{{"keys":[],"spiffe_sequence":{sequence}}}"#),
        updated_at: 1_700_000_000,
    }
}

#[tokio::test]
async fn only_the_owners_session_commits_and_claims_are_compare_and_set() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ds.db").display());
    let ds = Datastore::open(&url).await.unwrap();
    assert_eq!(Datastore::inspect_ca_owner(&url).await.unwrap(), None);

    ds.claim_ca_owner(&owner("a", "s1"), None).await.unwrap();
    let again = ds.claim_ca_owner(&owner("b", "s2"), None).await;
    assert!(
        matches!(again, Err(DatastoreError::Conflict { .. })),
        "{again:?}"
    );
    assert_eq!(ds.ca_owner().await.unwrap(), Some(owner("a", "s1")));
    assert_eq!(
        Datastore::inspect_ca_owner(&url).await.unwrap(),
        Some((owner("a", "s1"), Vec::new()))
    );

    let refused = ds
        .commit_ca_state("s2", &[], &[], &bundle(1), None, &[])
        .await;
    assert!(
        matches!(refused, Err(DatastoreError::NotCaOwner)),
        "{refused:?}"
    );
    assert_eq!(
        ds.get_bundle("td.example").await.unwrap(),
        None,
        "nothing written"
    );
    ds.commit_ca_state("s1", &[], &[], &bundle(1), None, &[])
        .await
        .unwrap();

    assert!(ds.renew_ca_lease("s1", 5, 20).await.unwrap());
    assert!(!ds.renew_ca_lease("s2", 5, 20).await.unwrap());
    ds.release_ca_lease("s1").await.unwrap();
    assert_eq!(ds.ca_owner().await.unwrap().unwrap().lease_until, 0);

    ds.claim_ca_owner(&owner("b", "s3"), Some("s1"))
        .await
        .unwrap();
    let stale = ds.claim_ca_owner(&owner("c", "s4"), Some("s1")).await;
    assert!(
        matches!(stale, Err(DatastoreError::Conflict { .. })),
        "{stale:?}"
    );
}

fn record(id: &str) -> AuditRecord {
    AuditRecord {
        id: id.into(),
        at: 1,
        actor: "operator".into(),
        action: "server.ca_take_over".into(),
        target: "spiffe://td.example/trustdeck/server".into(),
        detail: String::new(),
        outcome: "ok".into(),
    }
}

#[tokio::test]
async fn a_claim_and_its_audit_record_commit_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ds.db").display());
    let ds = Datastore::open(&url).await.unwrap();
    ds.claim_ca_owner(&owner("a", "s1"), None).await.unwrap();

    // The record cannot be written (its id exists): the claim is rolled back with it.
    ds.append_audit(&record("r1")).await.unwrap();
    let mut tx = ds.begin_audited().await.unwrap();
    tx.claim_ca_owner(&owner("b", "s2"), Some("s1"))
        .await
        .unwrap();
    assert!(tx.commit(&record("r1")).await.is_err());
    assert_eq!(ds.ca_owner().await.unwrap(), Some(owner("a", "s1")));

    // A stale claim writes nothing.
    let mut tx = ds.begin_audited().await.unwrap();
    let stale = tx.claim_ca_owner(&owner("b", "s2"), Some("s0")).await;
    assert!(
        matches!(stale, Err(DatastoreError::Conflict { .. })),
        "{stale:?}"
    );
    drop(tx);

    let mut tx = ds.begin_audited().await.unwrap();
    tx.claim_ca_owner(&owner("b", "s2"), Some("s1"))
        .await
        .unwrap();
    tx.commit(&record("r2")).await.unwrap();
    assert_eq!(ds.ca_owner().await.unwrap(), Some(owner("b", "s2")));
    assert_eq!(ds.list_audit(10).await.unwrap().len(), 2);
}
