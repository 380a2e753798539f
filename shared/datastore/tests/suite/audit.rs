//! The audit log, and changes that commit with their record.

use trustdeck_datastore::{AuditRecord, Datastore, DatastoreError};

use crate::common::*;

pub async fn audit_log(ds: &Datastore) {
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
pub async fn audited_changes(ds: &Datastore) {
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
