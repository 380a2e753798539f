//! End-to-end: federation freshness on the admin `Watch` stream and in `trustdeck status`
//! (issue 15, "bootstrap bundle staleness"). Home server A federates with partner B over
//! `https_spiffe`; `status --output json` against a fleet file naming only A shows B's trust
//! domain with its profile, sequence and a recent success. Then B is killed: A's refreshes
//! fail (connect), and `status` shows the failures, the "refreshes keep failing" warning, the
//! federation as stale and a non-zero exit code.

use std::path::{Path, PathBuf};

use trustdeck_e2e::runbook::server_entry;
use trustdeck_e2e::*;

const PARTNER: &str = "partner.test";
const HOME: &str = "home.test";

/// A at `refresh_minimum` 1s; B serves its bundle over https_spiffe with a 2s hint.
fn servers() -> (ServerProc, ServerProc) {
    let b = ServerProc::start_in(
        PARTNER,
        "[federation.bundle_endpoint]\nbind_address = \"127.0.0.1:0\"\n\
         profile = \"https_spiffe\"\nrefresh_hint = \"2s\"\n",
    );
    let a = ServerProc::start_in(HOME, "[federation]\nrefresh_minimum = \"1s\"\n");
    (a, b)
}

/// `dir/fleet.json` naming only A (B is another trust domain's server).
fn fleet_of(dir: &Path, a: &ServerProc) -> PathBuf {
    let path = dir.join("fleet.json");
    let v = serde_json::json!({
        "trust_domain": HOME,
        "servers": [server_entry("home", "upstream", "root", a)],
        "agents": [],
    });
    std::fs::write(&path, v.to_string()).expect("fleet file");
    path
}

/// `trustdeck status --no-key-policy --fleet FLEET [--output json]` (a test server's root
/// key is on disk, which would be critical on its own): exit code and stdout.
fn status(fleet: &Path, json: bool) -> (i32, String) {
    let mut cmd = std::process::Command::new(bin("trustdeck"));
    cmd.args(["status", "--no-key-policy", "--fleet"])
        .arg(fleet);
    if json {
        cmd.args(["--output", "json"]);
    }
    let out = cmd.output().expect("trustdeck status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Polls `status --output json` until `pred` holds; returns the exit code and the report
/// (panics after `secs` with `what` and the last report).
fn wait_report(
    fleet: &Path,
    secs: u64,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> (i32, serde_json::Value) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let (code, out) = status(fleet, true);
        let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        if pred(&report) {
            return (code, report);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}; last report: {report}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// The report's entry for the partner's trust domain, if any.
fn partner(report: &serde_json::Value) -> Option<&serde_json::Value> {
    report["federation"]
        .as_array()?
        .iter()
        .find(|f| f["trust_domain"] == PARTNER)
}

fn federation_reasons(report: &serde_json::Value) -> Vec<String> {
    report["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .filter(|r| r.contains("federation"))
        .map(str::to_string)
        .collect()
}

#[test]
fn status_shows_a_partners_freshness_and_its_failures_once_it_is_gone() {
    let (a, b) = servers();
    let dir = tempfile::tempdir().expect("tempdir");
    federate_https_spiffe(&a, &b, dir.path());
    let url = format!("https://127.0.0.1:{}/", b.bundle_endpoint_port());
    let fleet = fleet_of(dir.path(), &a);
    let sequence = b.bundle_sequence();

    // Fresh: fetched (not the bootstrap copy), B's sequence, a success seconds ago, no failure.
    let (code, report) = wait_report(&fleet, 30, "the partner fetched and fresh", |r| {
        partner(r).is_some_and(|p| {
            p["sequence"] == sequence
                && p["from_bootstrap"] == false
                && p["failures"] == 0
                && p["last_success_age_seconds"]
                    .as_i64()
                    .is_some_and(|s| s <= 10)
        })
    });
    let p = partner(&report).expect("partner");
    assert_eq!(p["daemon"], "home", "{p}");
    assert_eq!(p["source"], "federation", "{p}");
    assert_eq!(p["profile"], "https_spiffe", "{p}");
    assert_eq!(p["endpoint_url"], url.as_str(), "{p}");
    assert_eq!(p["level"], "ok", "{p}");
    assert_eq!(p["stale"], false, "{p}");
    assert_eq!(p["warnings"], serde_json::json!([]), "{p}");
    assert!(
        p["earliest_root_expiry_seconds"]
            .as_i64()
            .is_some_and(|s| s > 0),
        "{p}"
    );
    assert!(
        p["refresh_interval_seconds"]
            .as_i64()
            .is_some_and(|s| s >= 1),
        "{p}"
    );
    assert!(federation_reasons(&report).is_empty(), "{report}");
    assert_eq!(
        (code, &report["health"]),
        (0, &serde_json::json!("ok")),
        "{report}"
    );

    // The partner goes away: refreshes fail to connect, keep failing, and health says so.
    drop(b);
    let (code, report) = wait_report(&fleet, 60, "the partner's refreshes keep failing", |r| {
        partner(r).is_some_and(|p| {
            p["failures"].as_u64().is_some_and(|f| f >= 3)
                && p["warnings"]
                    .as_array()
                    .is_some_and(|w| w.iter().any(|w| w == "refreshes keep failing"))
        })
    });
    let p = partner(&report).expect("partner");
    assert_eq!(p["last_failure"], "connect", "{p}");
    assert_eq!(p["stale"], true, "{p}");
    assert_eq!(p["level"], "warning", "{p}");
    assert_eq!(p["sequence"], sequence, "the last good bundle is kept: {p}");
    assert!(p["failing_since"].is_string(), "{p}");
    let reasons = federation_reasons(&report);
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("home: federation partner.test: ")
                && r.contains("refreshes failed in a row")),
        "{report}"
    );
    assert_eq!(
        (code, &report["health"]),
        (1, &serde_json::json!("warning")),
        "a federation that keeps failing is a warning: {report}"
    );

    // The text report has the same section.
    let (code, text) = status(&fleet, false);
    assert_eq!(code, 1, "{text}");
    let section: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "FEDERATION")
        .take_while(|l| !l.is_empty())
        .collect();
    let section = section.join("\n");
    for words in [
        "partner.test",
        "federation https_spiffe",
        "stale",
        "refreshes failed in a row",
    ] {
        assert!(section.contains(words), "{words:?} not in:\n{text}");
    }
}

#[test]
fn status_shows_an_imported_bundle_and_which_sequence_of_ours_a_peer_holds() {
    let a = ServerProc::start_in(HOME, "");
    let b = ServerProc::start_in("isolated.test", "");
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = fleet_of(dir.path(), &a);

    // A's bundle carried to B, B's receipt and B's bundle carried back to A.
    let (a1, ex) = export_signed(&a, dir.path(), "a1.bundle");
    let got = import_file(&b, HOME, &a1, Some(&signing_root(&ex)));
    let receipt = PathBuf::from(got["receipt"].as_str().expect("receipt path"));
    let (b1, b_ex) = export_signed(&b, dir.path(), "b1.bundle");
    import_file(&a, "isolated.test", &b1, Some(&signing_root(&b_ex)));
    import_file(&a, "isolated.test", &receipt, None);

    let (code, report) = wait_report(&fleet, 20, "the import and the receipt", |r| {
        r["receipts"].as_array().is_some_and(|v| !v.is_empty())
            && r["federation"]
                .as_array()
                .is_some_and(|v| v.iter().any(|f| f["trust_domain"] == "isolated.test"))
    });
    let f = &report["federation"][0];
    assert_eq!(f["trust_domain"], "isolated.test", "{report}");
    assert_eq!(f["source"], "import", "{f}");
    assert_eq!(f["sequence"], b_ex["sequence"], "{f}");
    assert!(f["profile"].is_null() && f["endpoint_url"].is_null(), "{f}");
    assert!(f["last_success"].is_string(), "the import time: {f}");
    // The test CA lives an hour and was just imported: far from its last third, ok.
    assert_eq!(f["level"], "ok", "{f}");
    let r = &report["receipts"][0];
    assert_eq!(r["peer_trust_domain"], "isolated.test", "{r}");
    assert_eq!(r["sequence"], ex["sequence"], "{r}");
    assert_eq!(r["behind"], false, "{r}");
    assert_eq!(
        (code, &report["health"]),
        (0, &serde_json::json!("ok")),
        "{report}"
    );

    // A prepares a new root: its bundle moves on, and the peer's receipt is behind it.
    a.cli_ok(&["authority", "x509", "prepare"]);
    let (_, report) = wait_report(&fleet, 30, "the receipt behind A's new sequence", |r| {
        r["receipts"][0]["behind"] == true
    });
    let r = &report["receipts"][0];
    assert!(
        r["own_sequence"].as_u64() > ex["sequence"].as_u64(),
        "{report}"
    );
}
