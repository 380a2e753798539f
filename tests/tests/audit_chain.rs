//! End-to-end: the audit log is a hash chain that `trustdeck-server audit verify` checks
//! (issue 13): records edited, reordered, deleted or cut off by SQL are named, on SQLite and
//! on PostgreSQL; an untouched log verifies.

use trustdeck_e2e::*;

/// Runs `audit verify` and returns (success, stdout + stderr).
fn verify(server: &ServerProc) -> (bool, String) {
    let out = server.cli(&["audit", "verify"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn assert_broken(server: &ServerProc, expected: &str) {
    let (ok, text) = verify(server);
    assert!(!ok, "audit verify passed a tampered log: {text}");
    assert!(text.contains(expected), "expected {expected:?} in: {text}");
}

fn assert_intact(server: &ServerProc) {
    let (ok, text) = verify(server);
    assert!(ok && text.contains("audit log intact"), "{text}");
}

/// The seq of every `entry.create` record, oldest first, read with `audit list`.
fn entry_seqs(server: &ServerProc) -> Vec<i64> {
    let out = server.cli_ok(&["audit", "list", "--limit", "1000", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("audit json");
    let records = v.as_array().expect("an array");
    for r in records {
        assert_eq!(r["hash"].as_str().map(str::len), Some(64), "{r}");
        assert_eq!(r["prev_hash"].as_str().map(str::len), Some(64), "{r}");
    }
    let mut seqs: Vec<i64> = records
        .iter()
        .filter(|r| r["action"] == "entry.create")
        .filter_map(|r| r["seq"].as_i64())
        .collect();
    seqs.sort();
    seqs
}

fn tamper_and_verify(server: &mut ServerProc, db: &TestDb) {
    let parent = format!("spiffe://example.org/agent/{}", "a1");
    for name in ["one", "two", "three"] {
        server.create_entry(&parent, &format!("spiffe://example.org/w/{name}"));
    }
    let seqs = entry_seqs(server);
    assert_eq!(seqs.len(), 3, "{seqs:?}");
    let [s1, s2, s3] = [seqs[0], seqs[1], seqs[2]];
    assert_intact(server);
    // Verified from the datastore alone: the server need not run.
    server.stop();
    assert_intact(server);

    // Edited.
    let actor = db.query(&format!("SELECT actor FROM audit_log WHERE seq = {s2}"));
    db.query(&format!(
        "UPDATE audit_log SET actor = 'uid:4242' WHERE seq = {s2}"
    ));
    assert_broken(server, &format!("record {s2} was edited"));
    db.query(&format!(
        "UPDATE audit_log SET actor = '{}' WHERE seq = {s2}",
        actor.trim()
    ));
    assert_intact(server);

    // Reordered.
    let swap = format!(
        "UPDATE audit_log SET seq = -1 WHERE seq = {s1}; \
         UPDATE audit_log SET seq = {s1} WHERE seq = {s3}; \
         UPDATE audit_log SET seq = {s3} WHERE seq = -1;"
    );
    db.query(&swap);
    assert_broken(server, &format!("record {s1} is out of order"));
    db.query(&swap);
    assert_intact(server);

    // Truncated: the newest record gone.
    db.query(&format!("DELETE FROM audit_log WHERE seq = {s3}"));
    assert_broken(server, &format!("it ends at record {s2}"));

    // Deleted from the middle: named before the truncation after it.
    db.query(&format!("DELETE FROM audit_log WHERE seq = {s1}"));
    assert_broken(server, &format!("record {s1} is missing"));
}

#[tokio::test]
async fn tampered_sqlite_audit_log_is_named() {
    let mut server = ServerProc::start("");
    let db = TestDb::Sqlite(server.data_dir.join("datastore.sqlite3"));
    tamper_and_verify(&mut server, &db);
}

#[tokio::test]
async fn tampered_postgresql_audit_log_is_named() {
    let Some(pg) = PgDatabase::create("audit") else {
        return;
    };
    let mut server = ServerProc::start(&pg.config_line());
    let db = TestDb::Postgres(pg.url.clone());
    tamper_and_verify(&mut server, &db);
}

#[tokio::test]
async fn a_missing_datastore_is_not_reported_intact_and_is_not_created() {
    let server = ServerProc::prepare("", &[], &[]);
    let (ok, text) = verify(&server);
    assert!(!ok, "audit verify passed without a datastore: {text}");
    assert!(text.contains("no audit log to verify"), "{text}");
    assert!(
        !server.data_dir.join("datastore.sqlite3").exists(),
        "audit verify created the datastore"
    );
}
