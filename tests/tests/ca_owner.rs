//! End-to-end: a second server on the same datastore does not take over the first one's CA
//! (issue 12, defect 12), on SQLite and on PostgreSQL.

use std::path::Path;

use trustdeck_e2e::*;

fn instance_id(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("instance-id"))
        .expect("instance-id")
        .trim()
        .to_owned()
}

fn output_text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

/// Server A runs with disk keys; server B, on the same datastore with memory keys and another
/// data dir, is refused (audited), `check-config` says so too, and A's CA is untouched; A
/// restarts fine. Returns B for the takeover steps.
fn second_server_is_refused(a: &mut ServerProc, b_datastore_line: &str, ds: &TestDb) -> ServerProc {
    let roots = a.bundle_roots();
    let journal = ds.query("SELECT id, status FROM ca_journal ORDER BY id");
    let sequence = ds.query("SELECT sequence FROM bundles");

    let mut b = ServerProc::prepare(
        &format!("{b_datastore_line}[key_manager]\ntype = \"memory\"\n"),
        &[],
        &[],
    );
    b.spawn_expect_failure();
    let log = b.log();
    assert!(log.contains("belongs to another server"), "{log}");
    assert!(
        log.contains(&instance_id(&a.data_dir)),
        "names the owner: {log}"
    );
    assert!(log.contains("--take-over-ca"), "says the way out: {log}");

    let out = b.cli(&["check-config"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "check-config must fail: {text}");
    assert!(text.contains("belongs to another server"), "{text}");
    // With disk keys of its own, too.
    let e = ServerProc::prepare(b_datastore_line, &[], &[]);
    let out = e.cli(&["check-config"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "check-config must fail: {text}");
    assert!(text.contains("belongs to another server"), "{text}");

    assert_eq!(
        ds.query("SELECT id, status FROM ca_journal ORDER BY id"),
        journal,
        "A's CA journal untouched"
    );
    assert_eq!(ds.query("SELECT sequence FROM bundles"), sequence);
    assert_eq!(a.bundle_roots(), roots);
    assert!(a.cli_ok(&["healthcheck"]).contains("healthy"));
    let audit = ds.query("SELECT action, outcome FROM audit_log");
    assert!(
        audit.contains("server.ca_claim|refused"),
        "audited: {audit}"
    );

    a.stop();
    a.spawn();
    assert_eq!(a.bundle_roots(), roots, "A restarts on its own CA");
    assert!(a.cli_ok(&["healthcheck"]).contains("healthy"));

    // Killed, A comes back at once: its own crashed process is not waited for.
    signal(a.child.as_ref().expect("running").id(), "KILL");
    let _ = a.child.take().expect("child").wait();
    a.spawn();
    assert!(!a.log().contains("waiting for its lease"), "{}", a.log());
    assert_eq!(a.bundle_roots(), roots);
    b
}

/// A server with another data dir that holds the owner's keys (the same key directory) is
/// the owner: it starts on the same CA, and the change of owner is audited.
fn the_owners_keys_make_the_owner(a: &mut ServerProc, datastore_line: &str, ds: &TestDb) {
    let roots = a.bundle_roots();
    a.stop();
    let keys = a.data_dir.join("keys");
    let mut d = ServerProc::prepare(
        &format!(
            "{datastore_line}[key_manager]\ntype = \"disk\"\ndir = \"{}\"\n",
            keys.display()
        ),
        &[],
        &[],
    );
    d.cli_ok(&["check-config"]);
    d.spawn();
    assert_eq!(d.bundle_roots(), roots, "same CA, same bundle");
    let audit = ds.query("SELECT action, outcome FROM audit_log");
    assert!(audit.contains("server.ca_claim|ok"), "audited: {audit}");
    d.stop();
    a.spawn();
    assert_eq!(a.bundle_roots(), roots);
}

/// Once A is stopped, B takes over only when told to (audited), and A is then refused.
fn take_over_when_told(a: &mut ServerProc, b: &mut ServerProc, ds: &TestDb) {
    let roots = a.bundle_roots();
    a.stop();
    b.run_args = vec!["--take-over-ca".into()];
    b.spawn();
    let b_roots = b.bundle_roots();
    assert!(
        roots.iter().all(|r| b_roots.contains(r)),
        "A's CA stays trusted until it expires"
    );
    assert!(b_roots.len() > roots.len(), "B minted its own CA");
    let audit = ds.query("SELECT action, outcome FROM audit_log");
    assert!(audit.contains("server.ca_take_over|ok"), "audited: {audit}");
    b.stop();
    a.spawn_expect_failure();
    assert!(a.log().contains("belongs to another server"), "{}", a.log());
}

#[tokio::test]
async fn a_second_server_on_the_same_sqlite_file_is_refused() {
    let mut a = ServerProc::start("");
    let db = a.data_dir.join("datastore.sqlite3");
    let ds = TestDb::Sqlite(db.clone());
    let line = format!("datastore = \"sqlite://{}\"\n", db.display());
    let mut b = second_server_is_refused(&mut a, &line, &ds);
    the_owners_keys_make_the_owner(&mut a, &line, &ds);
    take_over_when_told(&mut a, &mut b, &ds);
}

#[tokio::test]
async fn a_second_server_on_the_same_postgresql_database_is_refused() {
    let Some(db) = PgDatabase::create("owner") else {
        return;
    };
    let ds = TestDb::Postgres(db.url.clone());
    let mut a = ServerProc::start(&db.config_line());
    let mut b = second_server_is_refused(&mut a, &db.config_line(), &ds);

    // A copy of A (same instance id, same keys) is refused while A runs: one live owner.
    let mut c = ServerProc::prepare(&db.config_line(), &[], &[]);
    std::fs::create_dir_all(&c.data_dir).expect("data dir");
    std::fs::copy(
        a.data_dir.join("instance-id"),
        c.data_dir.join("instance-id"),
    )
    .expect("copy");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(a.data_dir.join("keys"))
        .arg(&c.data_dir)
        .status()
        .expect("cp");
    assert!(copied.success());
    c.spawn_expect_failure();
    assert!(
        c.log()
            .contains("another running server holds the CA journal"),
        "{}",
        c.log()
    );

    take_over_when_told(&mut a, &mut b, &ds);
}

/// An owner that stopped answering (here: SIGSTOP) past its lease can be taken over; when it
/// comes back it finds the journal gone and stops instead of signing on.
#[tokio::test]
async fn an_owner_whose_journal_was_taken_over_stops() {
    let mut a = ServerProc::start("");
    let db = a.data_dir.join("datastore.sqlite3");
    let pid = a.child.as_ref().expect("running").id();
    signal(pid, "STOP");
    let mut b = ServerProc::prepare(
        &format!(
            "datastore = \"sqlite://{}\"\n[key_manager]\ntype = \"memory\"\n",
            db.display()
        ),
        &[],
        &[],
    );
    b.run_args = vec!["--take-over-ca".into()];
    b.spawn();
    assert!(b.log().contains("waiting for its lease"), "{}", b.log());
    signal(pid, "CONT");
    let status = wait_for(20, "A to stop", || {
        a.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    });
    assert!(
        !status.success(),
        "a server that lost its CA fails: {status}"
    );
    assert!(
        a.log()
            .contains("error: another server took over this server's CA journal"),
        "{}",
        a.log()
    );
    assert!(b.cli_ok(&["healthcheck"]).contains("healthy"));
}
