//! What is stored: undecodable rows and stored names.

use sqlx::{AssertSqlSafe, Connection};
use trustdeck_datastore::{CaKind, CaStatus, Datastore, DatastoreError};

use crate::common::*;

/// Rows holding bad data are reported as `Corrupt`, never panic.
pub async fn corrupt_rows(ds: &Datastore, url: &str) {
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
    // A pending new certificate is a serial and an expiry, never one without the other.
    sqlx::query(
        "UPDATE attested_nodes SET selectors = '[]', new_cert_serial = '0a' \
         WHERE spiffe_id = 'spiffe://td.example/agent/bad'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    match ds.get_node("spiffe://td.example/agent/bad").await {
        Err(DatastoreError::Corrupt { what }) => {
            assert!(what.contains("set together"), "{what}")
        }
        other => panic!("half a new certificate: {other:?}"),
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
pub async fn stored_names(ds: &Datastore, url: &str) {
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
