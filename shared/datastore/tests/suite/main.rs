//! One behavioural suite, run against SQLite and (when available) PostgreSQL.
//! Each part of the datastore has its module; `run_suite` runs them all on one database.

mod audit;
mod ca;
mod chain;
mod common;
mod entries;
mod federation;
mod foreign;
mod nodes;
mod open;
mod rows;
mod runbooks;

use sqlx::{AssertSqlSafe, Connection};
use trustdeck_datastore::{Datastore, DatastoreError};

use crate::common::{expected_backend, snapshot};

/// Exercises every datastore method against the database at `url`, which
/// must be empty, then reopens it and checks that everything persisted.
async fn run_suite(url: &str) {
    let ds = Datastore::open(url).await.expect("open datastore");
    assert_eq!(ds.backend(), expected_backend(url));
    assert!(ds.list_entries().await.unwrap().is_empty());

    entries::entries(&ds).await;
    nodes::nodes(&ds).await;
    nodes::join_tokens(&ds).await;
    ca::ca_state(&ds).await;
    audit::audit_log(&ds).await;
    audit::audited_changes(&ds).await;
    chain::concurrent_appends(&ds).await;
    ca::audited_ca_state(&ds).await;
    runbooks::runbooks(&ds).await;
    runbooks::concurrent_begins(&ds).await;
    foreign::foreign_bundles(&ds).await;
    federation::federations(&ds).await;

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

    rows::corrupt_rows(&ds, url).await;
    rows::stored_names(&ds, url).await;
    runbooks::corrupt_runbooks(&ds, url).await;
    foreign::corrupt_foreign(&ds, url).await;
    federation::corrupt_federations(&ds, url).await;
    chain::tampered_chain(&ds, url).await;
    chain::checkpoints(&ds, url).await;
    ds.close().await;
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
        if std::env::var_os("TRUSTDECK_REQUIRE_POSTGRES").is_some() {
            panic!(
                "TRUSTDECK_REQUIRE_POSTGRES is set but TRUSTDECK_TEST_POSTGRES_URL is not set; \
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
