//! `Datastore::inspect` and `ping` on SQLite: what a lost or emptied file looks like.

use trustdeck_datastore::{BundleRecord, Contents, Datastore, DatastoreError};

fn bundle() -> BundleRecord {
    BundleRecord {
        trust_domain: "td.example".to_owned(),
        sequence: 1,
        document: r#"{"keys":[],"spiffe_sequence":1}"#.to_owned(),
        updated_at: 1_700_000_000,
    }
}

#[tokio::test]
async fn inspect_tells_empty_from_initialised_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("datastore.db");
    let url = format!("sqlite://{}", path.display());

    assert_eq!(Datastore::inspect(&url).await.unwrap(), Contents::Empty);
    assert!(!path.exists(), "inspect creates nothing");
    std::fs::write(&path, b"").unwrap();
    assert_eq!(Datastore::inspect(&url).await.unwrap(), Contents::Empty);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left empty");

    let ds = Datastore::open(&url).await.unwrap();
    assert_eq!(ds.contents().await.unwrap(), Contents::Empty);
    assert_eq!(Datastore::inspect(&url).await.unwrap(), Contents::Empty);
    ds.commit_ca_state("test", &[], &[], &bundle(), None, &[])
        .await
        .unwrap();
    assert_eq!(ds.contents().await.unwrap(), Contents::Initialised);
    assert_eq!(
        Datastore::inspect(&url).await.unwrap(),
        Contents::Initialised
    );
    assert_eq!(
        Datastore::inspect("sqlite::memory:").await.unwrap(),
        Contents::InMemory
    );
}

#[tokio::test]
async fn ping_fails_once_the_sqlite_file_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("datastore.db");
    let ds = Datastore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    ds.ping().await.unwrap();
    std::fs::remove_file(&path).unwrap();
    let err = ds.ping().await.unwrap_err();
    assert!(matches!(err, DatastoreError::Unreachable { .. }), "{err}");
}
