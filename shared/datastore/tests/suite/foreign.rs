//! Foreign bundles and bundle receipts: compare-and-set writes committed with their audit
//! record, listings, corrupt rows.

use sqlx::Connection;
use trustdeck_datastore::{BundleReceipt, Datastore, DatastoreError, ForeignBundle, ForeignSource};

use crate::common::*;

fn foreign(td: &str, sequence: u64, source: ForeignSource) -> ForeignBundle {
    ForeignBundle {
        trust_domain: td.into(),
        document: format!(r#"{{"keys":[],"spiffe_sequence":{sequence}}}"#),
        sequence,
        source,
        updated_at: NOW + i64::try_from(sequence).unwrap(),
    }
}

fn receipt(peer: &str, sequence: u64) -> BundleReceipt {
    BundleReceipt {
        peer_trust_domain: peer.into(),
        sequence,
        roots: vec!["ab".repeat(32), "cd".repeat(32)],
        received_at: NOW + 100,
    }
}

async fn put(
    ds: &Datastore,
    rec: &ForeignBundle,
    read: Option<u64>,
    audit_id: &str,
) -> Result<(), DatastoreError> {
    let mut tx = ds.begin_audited().await.unwrap();
    tx.put_foreign_bundle(rec, read).await?;
    tx.commit(&audit(audit_id, NOW)).await
}

pub async fn foreign_bundles(ds: &Datastore) {
    assert!(ds.list_foreign_bundles().await.unwrap().is_empty());
    assert_eq!(ds.get_foreign_bundle("a.test").await.unwrap(), None);
    let a1 = foreign("a.test", 1, ForeignSource::Import);
    put(ds, &a1, None, "fb-audit-1").await.unwrap();
    assert_eq!(
        ds.get_foreign_bundle("a.test").await.unwrap(),
        Some(a1.clone())
    );

    // Writers replace only the row they read.
    let a2 = foreign("a.test", 2, ForeignSource::Import);
    for read in [None, Some(0), Some(2)] {
        let r = put(ds, &a2, read, "unused").await;
        assert!(
            matches!(r, Err(DatastoreError::Conflict { .. })),
            "{read:?}: {r:?}"
        );
    }
    assert_eq!(
        ds.get_foreign_bundle("a.test").await.unwrap(),
        Some(a1.clone())
    );
    // A dropped change stores nothing.
    {
        let mut tx = ds.begin_audited().await.unwrap();
        tx.put_foreign_bundle(&a2, Some(1)).await.unwrap();
    }
    assert_eq!(
        ds.get_foreign_bundle("a.test").await.unwrap(),
        Some(a1.clone())
    );
    put(ds, &a2, Some(1), "fb-audit-2").await.unwrap();
    let f = foreign("f.test", 7, ForeignSource::Federation);
    put(ds, &f, None, "fb-audit-3").await.unwrap();
    assert_eq!(
        ds.list_foreign_bundles().await.unwrap(),
        vec![a2.clone(), f.clone()]
    );

    let mut tx = ds.begin_audited().await.unwrap();
    assert_eq!(tx.delete_foreign_bundle("nope").await.unwrap(), None);
    assert_eq!(tx.delete_foreign_bundle("f.test").await.unwrap(), Some(f));
    tx.commit(&audit("fb-audit-4", NOW)).await.unwrap();
    assert_eq!(ds.list_foreign_bundles().await.unwrap(), vec![a2]);

    // Receipts.
    assert_eq!(ds.get_bundle_receipt("b.test").await.unwrap(), None);
    let r1 = receipt("b.test", 3);
    let mut tx = ds.begin_audited().await.unwrap();
    tx.put_bundle_receipt(&r1, None).await.unwrap();
    tx.commit(&audit("fb-audit-5", NOW)).await.unwrap();
    let r2 = receipt("b.test", 4);
    let mut tx = ds.begin_audited().await.unwrap();
    let stale = tx.put_bundle_receipt(&r2, Some(2)).await;
    assert!(matches!(stale, Err(DatastoreError::Conflict { .. })));
    drop(tx);
    let mut tx = ds.begin_audited().await.unwrap();
    tx.put_bundle_receipt(&r2, Some(3)).await.unwrap();
    tx.commit(&audit("fb-audit-6", NOW)).await.unwrap();
    assert_eq!(
        ds.get_bundle_receipt("b.test").await.unwrap(),
        Some(r2.clone())
    );
    assert_eq!(ds.list_bundle_receipts().await.unwrap(), vec![r2.clone()]);
    let mut tx = ds.begin_audited().await.unwrap();
    assert_eq!(tx.delete_bundle_receipt("nope").await.unwrap(), None);
    assert_eq!(tx.delete_bundle_receipt("b.test").await.unwrap(), Some(r2));
    tx.commit(&audit("fb-audit-7", NOW)).await.unwrap();
    assert_eq!(ds.list_bundle_receipts().await.unwrap(), vec![]);

    let audited = ds
        .list_audit_links(200)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.record.id.starts_with("fb-audit"))
        .count();
    assert_eq!(audited, 7, "each change with its record");
}

pub async fn corrupt_foreign(ds: &Datastore, url: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    for sql in [
        "INSERT INTO foreign_bundles (trust_domain, document, sequence, source, updated_at) \
         VALUES ('bad-source.test', '{}', 1, 'carrier-pigeon', 0)",
        "INSERT INTO bundle_receipts (peer_trust_domain, sequence, roots, received_at) \
         VALUES ('bad-seq.test', -1, '[]', 0)",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    assert!(matches!(
        ds.get_foreign_bundle("bad-source.test").await,
        Err(DatastoreError::UnknownValue {
            column: "source",
            ..
        })
    ));
    match ds.get_bundle_receipt("bad-seq.test").await {
        Err(DatastoreError::Corrupt { what }) => {
            assert!(
                what.contains("bad-seq.test") && what.contains("sequence"),
                "{what}"
            )
        }
        other => panic!("negative sequence: {other:?}"),
    }
    assert!(ds.list_foreign_bundles().await.is_err());
    for sql in [
        "DELETE FROM foreign_bundles WHERE trust_domain = 'bad-source.test'",
        "DELETE FROM bundle_receipts WHERE peer_trust_domain = 'bad-seq.test'",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
}
