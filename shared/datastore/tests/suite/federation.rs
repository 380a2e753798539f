//! Federation relationships: created, changed and deleted with their audit record; the
//! refresh state recorded with or without one; corrupt rows.

use sqlx::Connection;
use trustdeck_datastore::{
    Datastore, DatastoreError, FederationProfile, FederationRelationship, RefreshState,
};

use crate::common::*;

fn relationship(td: &str, profile: FederationProfile) -> FederationRelationship {
    FederationRelationship {
        trust_domain: td.into(),
        endpoint_url: format!("https://{td}:8443/bundle"),
        profile,
        endpoint_spiffe_id: (profile == FederationProfile::HttpsSpiffe)
            .then(|| format!("spiffe://{td}/spire/server")),
        ca_file: None,
        created_at: NOW,
        updated_at: NOW,
        refresh: RefreshState::default(),
    }
}

pub async fn federations(ds: &Datastore) {
    assert!(ds.list_federations().await.unwrap().is_empty());
    assert_eq!(ds.get_federation("b.test").await.unwrap(), None);
    let b = relationship("b.test", FederationProfile::HttpsSpiffe);
    let mut tx = ds.begin_audited().await.unwrap();
    tx.create_federation(&b).await.unwrap();
    tx.commit(&audit("fed-audit-1", NOW)).await.unwrap();
    assert_eq!(ds.get_federation("b.test").await.unwrap(), Some(b.clone()));

    let mut tx = ds.begin_audited().await.unwrap();
    let again = tx.create_federation(&b).await;
    assert!(
        matches!(again, Err(DatastoreError::AlreadyExists { .. })),
        "{again:?}"
    );
    drop(tx);

    // A web relationship with a CA file; an update changes the settings only.
    let mut w = relationship("w.test", FederationProfile::HttpsWeb);
    w.ca_file = Some("/etc/ca.pem".into());
    let mut tx = ds.begin_audited().await.unwrap();
    tx.create_federation(&w).await.unwrap();
    tx.commit(&audit("fed-audit-2", NOW)).await.unwrap();
    let failed = RefreshState {
        last_attempt_at: Some(NOW + 5),
        last_success_at: None,
        last_error: Some("connection refused".into()),
        failures: 2,
    };
    assert!(
        ds.record_federation_refresh("w.test", &failed)
            .await
            .unwrap()
    );
    assert!(!ds.record_federation_refresh("nope", &failed).await.unwrap());
    let mut changed = w.clone();
    changed.endpoint_url = "https://w.test/other".into();
    changed.ca_file = None;
    changed.updated_at = NOW + 10;
    changed.refresh = RefreshState::default();
    let mut tx = ds.begin_audited().await.unwrap();
    assert!(tx.update_federation(&changed).await.unwrap());
    let mut missing = changed.clone();
    missing.trust_domain = "nope".into();
    assert!(!tx.update_federation(&missing).await.unwrap());
    tx.commit(&audit("fed-audit-3", NOW)).await.unwrap();
    changed.refresh = failed;
    assert_eq!(
        ds.get_federation("w.test").await.unwrap(),
        Some(changed.clone())
    );

    // The refresh state with a change: dropped, nothing is stored.
    let ok = RefreshState {
        last_attempt_at: Some(NOW + 20),
        last_success_at: Some(NOW + 20),
        last_error: None,
        failures: 0,
    };
    {
        let mut tx = ds.begin_audited().await.unwrap();
        assert!(tx.record_federation_refresh("b.test", &ok).await.unwrap());
    }
    assert_eq!(ds.get_federation("b.test").await.unwrap(), Some(b.clone()));
    let mut tx = ds.begin_audited().await.unwrap();
    assert!(tx.record_federation_refresh("b.test", &ok).await.unwrap());
    tx.commit(&audit("fed-audit-4", NOW)).await.unwrap();
    let mut b_ok = b.clone();
    b_ok.refresh = ok;
    assert_eq!(
        ds.list_federations().await.unwrap(),
        vec![b_ok.clone(), changed.clone()]
    );

    let mut tx = ds.begin_audited().await.unwrap();
    assert_eq!(tx.delete_federation("nope").await.unwrap(), None);
    assert_eq!(tx.delete_federation("w.test").await.unwrap(), Some(changed));
    tx.commit(&audit("fed-audit-5", NOW)).await.unwrap();
    assert_eq!(ds.list_federations().await.unwrap(), vec![b_ok]);

    let audited = ds
        .list_audit_links(200)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.record.id.starts_with("fed-audit"))
        .count();
    assert_eq!(audited, 5, "each change with its record");
}

pub async fn corrupt_federations(ds: &Datastore, url: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    for sql in [
        "INSERT INTO federation_relationships (trust_domain, endpoint_url, profile, created_at, \
         updated_at) VALUES ('bad-profile.test', 'https://x', 'carrier-pigeon', 0, 0)",
        "INSERT INTO federation_relationships (trust_domain, endpoint_url, profile, created_at, \
         updated_at, failures) VALUES ('bad-failures.test', 'https://x', 'https_web', 0, 0, -1)",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    assert!(matches!(
        ds.get_federation("bad-profile.test").await,
        Err(DatastoreError::UnknownValue {
            column: "profile",
            ..
        })
    ));
    match ds.get_federation("bad-failures.test").await {
        Err(DatastoreError::Corrupt { what }) => {
            assert!(
                what.contains("bad-failures.test") && what.contains("failures"),
                "{what}"
            )
        }
        other => panic!("negative failures: {other:?}"),
    }
    assert!(ds.list_federations().await.is_err());
    sqlx::query("DELETE FROM federation_relationships WHERE trust_domain LIKE 'bad-%'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}
