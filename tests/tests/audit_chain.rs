//! End-to-end: the audit log is a hash chain that `trustdeck-server audit verify` checks
//! (issue 13): records edited, reordered, deleted or cut off by SQL are named, on SQLite and
//! on PostgreSQL; an untouched log verifies. Signed checkpoints catch a log cut off with its
//! head moved back, and a forged checkpoint signature.

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

/// Checkpoints signed often, so a test sees one soon.
const CHECKPOINTS_OFTEN: &str = "audit_checkpoint_interval = \"200ms\"";

fn one_int(db: &TestDb, sql: &str) -> Option<i64> {
    db.query(sql).trim().parse().ok()
}

fn checkpoints_and_verify(server: &mut ServerProc, db: &TestDb) {
    let parent = "spiffe://example.org/agent/a1";
    for name in ["one", "two", "three"] {
        server.create_entry(parent, &format!("spiffe://example.org/w/{name}"));
    }
    let s3 = *entry_seqs(server).last().expect("three entries");
    wait_for(30, "a checkpoint of the last entry", || {
        one_int(db, "SELECT MAX(seq) FROM audit_checkpoints").filter(|&cp| cp >= s3)
    });
    server.stop();
    let (ok, text) = verify(server);
    assert!(ok && text.contains("signed checkpoints hold"), "{text}");
    let first = one_int(
        db,
        &format!("SELECT MIN(seq) FROM audit_checkpoints WHERE seq >= {s3}"),
    )
    .expect("a checkpoint at or after the last entry");

    // A forged signature (a valid DER ECDSA-Sig-Value, r = s = 1).
    let sig = db.query(&format!(
        "SELECT signature FROM audit_checkpoints WHERE seq = {first}"
    ));
    db.query(&format!(
        "UPDATE audit_checkpoints SET signature = '3006020101020101' WHERE seq = {first}"
    ));
    assert_broken(server, &format!("checkpoint {first} has a bad signature"));
    db.query(&format!(
        "UPDATE audit_checkpoints SET signature = '{}' WHERE seq = {first}",
        sig.trim()
    ));
    assert_intact(server);

    // Cut off from the last entry on, with the head moved back: the chain alone is fooled.
    let prev = db.query(&format!("SELECT prev_hash FROM audit_log WHERE seq = {s3}"));
    db.query(&format!("DELETE FROM audit_log WHERE seq >= {s3}"));
    db.query(&format!(
        "UPDATE audit_head SET seq = {}, hash = '{}' WHERE id = 'audit'",
        s3 - 1,
        prev.trim()
    ));
    assert_broken(server, &format!("truncated after checkpoint {first}"));
}

#[tokio::test]
async fn sqlite_checkpoints_catch_a_cut_log_and_a_forged_signature() {
    let mut server = ServerProc::start(CHECKPOINTS_OFTEN);
    let db = TestDb::Sqlite(server.data_dir.join("datastore.sqlite3"));
    checkpoints_and_verify(&mut server, &db);
}

#[tokio::test]
async fn postgresql_checkpoints_catch_a_cut_log_and_a_forged_signature() {
    let Some(pg) = PgDatabase::create("audit_cp") else {
        return;
    };
    let mut server = ServerProc::start(&format!("{}\n{CHECKPOINTS_OFTEN}", pg.config_line()));
    let db = TestDb::Postgres(pg.url.clone());
    checkpoints_and_verify(&mut server, &db);
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

#[tokio::test]
async fn a_downstream_signs_its_checkpoints_with_its_intermediate() {
    let root = ServerProc::start("");
    let seg = Downstream::start(&root, "seg", CHECKPOINTS_OFTEN);
    seg.server.create_entry(
        "spiffe://example.org/agent/a1",
        "spiffe://example.org/prod/seg/seg-one",
    );
    let db = TestDb::Sqlite(seg.server.data_dir.join("datastore.sqlite3"));
    let s1 = *entry_seqs(&seg.server).last().expect("an entry");
    wait_for(30, "a checkpoint of the downstream's entry", || {
        one_int(&db, "SELECT MAX(seq) FROM audit_checkpoints").filter(|&cp| cp >= s1)
    });
    // Only the downstream's own CAs (its intermediates) are in its CA journal.
    let (ok, text) = verify(&seg.server);
    assert!(ok && text.contains("signed checkpoints hold"), "{text}");
}
