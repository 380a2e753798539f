//! End-to-end: a server whose datastore is lost or unreachable says so instead of carrying on
//! as if nothing happened (issue 12, defects 3 and 13).

use std::path::{Path, PathBuf};

use trustdeck_e2e::*;

/// The default SQLite file of a test server and its WAL companions.
fn sqlite_files(data_dir: &Path) -> [PathBuf; 3] {
    [
        "datastore.sqlite3",
        "datastore.sqlite3-wal",
        "datastore.sqlite3-shm",
    ]
    .map(|f| data_dir.join(f))
}

fn audit_actions(db: &Path) -> String {
    TestDb::Sqlite(db.to_path_buf()).query("SELECT action || ' ' || detail FROM audit_log")
}

#[tokio::test]
async fn an_emptied_datastore_with_keys_left_is_refused_until_reinitialize() {
    let mut server = ServerProc::start("");
    let old_roots = server.bundle_roots();
    server.stop();
    let [db, wal, shm] = sqlite_files(&server.data_dir);
    std::fs::write(&db, b"").expect("truncate the datastore");
    let _ = std::fs::remove_file(wal);
    let _ = std::fs::remove_file(shm);

    server.spawn_expect_failure();
    let log = server.log();
    assert!(
        log.contains("is empty, but this server was initialised before"),
        "{log}"
    );
    assert!(log.contains("keys"), "names the key directory: {log}");
    assert!(log.contains("--reinitialize"), "says how to recover: {log}");
    assert_eq!(
        std::fs::metadata(&db).expect("db").len(),
        0,
        "nothing re-created"
    );

    // check-config tells the same before any start.
    let out = server.cli(&["check-config"]);
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "check-config must fail: {text}");
    assert!(
        text.contains("is empty, but this server was initialised before"),
        "{text}"
    );

    server.run_args = vec!["--reinitialize".into()];
    server.spawn();
    assert!(server.log().contains("re-initialised"), "{}", server.log());
    assert_ne!(
        server.bundle_roots(),
        old_roots,
        "a new root, as the operator asked"
    );
    server.stop();
    let audit = audit_actions(&db);
    assert!(audit.contains("server.reinitialize"), "audited: {audit}");
}

#[tokio::test]
async fn a_fresh_data_dir_starts_without_reinitialize() {
    let server = ServerProc::start("");
    assert!(server.cli_ok(&["healthcheck"]).contains("healthy"));
}

#[tokio::test]
async fn healthcheck_fails_when_the_sqlite_file_is_gone() {
    let server = ServerProc::start("");
    assert!(server.cli_ok(&["healthcheck"]).contains("healthy"));
    for f in sqlite_files(&server.data_dir) {
        let _ = std::fs::remove_file(f);
    }
    let out = server.cli(&["healthcheck"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "not healthy: {stderr}");
    assert!(
        stderr.contains("not healthy: datastore unreachable"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Server is healthy"));
}

#[tokio::test]
async fn healthcheck_fails_when_postgresql_is_down() {
    let Some(db) = PgDatabase::create("health") else {
        return;
    };
    let server = ServerProc::start(&db.config_line());
    assert!(server.cli_ok(&["healthcheck"]).contains("healthy"));
    db.drop_connections_and_block();
    let out = server.cli(&["healthcheck"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "not healthy: {stderr}");
    assert!(
        stderr.contains("not healthy: datastore unreachable"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_emptied_postgresql_datastore_with_keys_left_is_refused() {
    let Some(db) = PgDatabase::create("emptied") else {
        return;
    };
    let mut server = ServerProc::start(&db.config_line());
    server.stop();
    TestDb::Postgres(db.url.clone()).query("DELETE FROM ca_journal; DELETE FROM bundles");
    server.spawn_expect_failure();
    let log = server.log();
    assert!(
        log.contains("is empty, but this server was initialised before"),
        "{log}"
    );
}
