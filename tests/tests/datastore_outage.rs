//! End-to-end: while PostgreSQL is down a server's calls fail within a few seconds instead of
//! hanging, and it serves again as soon as the database is back, the first call included
//! (issue 12, defect 14). The test owns its PostgreSQL cluster: it stops and restarts it.

use std::time::{Duration, Instant};

use trustdeck_e2e::*;

/// Generous: proves "a few seconds", not the 30 s of before; the default wait is 5 s.
const FAILS_WITHIN: Duration = Duration::from_secs(10);

fn entry_show(server: &ServerProc) -> (std::process::Output, Duration) {
    let t = Instant::now();
    let out = server.cli(&["entry", "show"]);
    (out, t.elapsed())
}

#[tokio::test]
async fn calls_fail_fast_while_postgresql_is_down_and_recover_after() {
    let Some(pg) = OwnPostgres::start() else {
        eprintln!("SKIP: TRUSTDECK_TEST_POSTGRES_URL not set");
        return;
    };
    let server = ServerProc::start(&pg.config_line());
    server.create_entry(&server.server_spiffe_id(), "spiffe://example.org/w");
    server.cli_ok(&["entry", "show"]);

    pg.down();
    let (out, took) = entry_show(&server);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("entry show while PostgreSQL is down failed after {took:?}: {stderr}");
    assert!(
        !out.status.success(),
        "must fail while the database is down"
    );
    assert!(stderr.contains("datastore"), "says why: {stderr}");
    assert!(took < FAILS_WITHIN, "failed after {took:?}");

    // Back up: the first call succeeds although every pooled connection was killed.
    pg.up();
    let (out, took) = entry_show(&server);
    eprintln!("first entry show after the restart: {took:?}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("spiffe://example.org/w"));

    // A restart between two calls (no call while down): the first call after it succeeds.
    pg.down();
    pg.up();
    let (out, took) = entry_show(&server);
    eprintln!("first entry show after a restart while idle: {took:?}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.cli_ok(&["healthcheck"]).contains("healthy"));
}
