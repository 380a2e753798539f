//! `sqlite://relative.db` resolves against the working directory. Alone in
//! its own test binary (process) because it changes the working directory.

use trustdeck_datastore::{Backend, Datastore};

#[tokio::test]
async fn sqlite_relative_url_uses_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("State")).unwrap();
    std::env::set_current_dir(dir.path()).unwrap();

    let ds = Datastore::open("sqlite://State/DataStore.db")
        .await
        .unwrap();
    assert_eq!(ds.backend(), Backend::Sqlite);
    ds.create_join_token("t", 10, 0).await.unwrap();
    ds.close().await;
    assert!(dir.path().join("State").join("DataStore.db").is_file());

    let ds = Datastore::open("sqlite://State/DataStore.db")
        .await
        .unwrap();
    assert_eq!(ds.list_join_tokens().await.unwrap().len(), 1);
    ds.close().await;
}
