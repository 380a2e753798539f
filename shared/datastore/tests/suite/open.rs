//! Opening datastores: in memory, not a database, unreachable or unsupported.

use std::time::Instant;

use trustdeck_datastore::{Backend, Datastore, DatastoreError};

use crate::common::*;

#[tokio::test]
pub async fn sqlite_memory_works() {
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
pub async fn sqlite_not_a_database_is_left_untouched() {
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
pub async fn open_errors_are_clear() {
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
