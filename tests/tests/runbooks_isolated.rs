//! End-to-end: `isolated-bundle-rotation` through the CLI (issue 15). Trust domain
//! example.org (server A, agent a1 in the fleet file) and an isolated peer isolated.test
//! (server I and its agent, never connected to A) exchanged signed bundles and receipts at
//! provisioning. The runbook rotates A's root; the test plays the person carrying files: each
//! export imported at I, each receipt imported at A. Throughout, A's workload validates its
//! own SVIDs (the continuous validator) and I's workload verifies A's current SVID with the
//! bundle it federates with, at every step event: zero failures on both sides.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use trustdeck_e2e::runbook::*;
use trustdeck_e2e::*;

const PEER: &str = "isolated.test";

fn json(out: &str) -> Json {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `bundle import` of `file` as trust domain `td` at `s` (a bundle or a receipt); the receipt
/// it wrote, for a bundle.
fn import(s: &ServerProc, td: &str, file: &Path, fingerprint: Option<&str>) -> Option<PathBuf> {
    import_file(s, td, file, fingerprint)["receipt"]
        .as_str()
        .map(PathBuf::from)
}

/// Whether I's workload verifies A's workload's current SVID now: `None`, or the reason.
fn verified_at_peer(a_socket: &Path, i_socket: &Path, dir: &Path) -> Option<String> {
    let chain = dir.join("a-chain.pem");
    save_svid_chain(a_socket, &chain);
    let v =
        foreign_view(i_socket, "example.org", Some(&chain), None).unwrap_or_else(|e| panic!("{e}"));
    v["chain"].as_str().map(str::to_string)
}

/// The one file in `dir` not in `seen`, recorded as seen.
fn new_export(dir: &Path, seen: &mut Vec<PathBuf>) -> PathBuf {
    let mut new: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("out dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| !p.to_string_lossy().ends_with(".receipt") && !seen.contains(p))
        .collect();
    assert_eq!(new.len(), 1, "one new export in {}: {new:?}", dir.display());
    let p = new.remove(0);
    seen.push(p.clone());
    p
}

#[test]
fn isolated_bundle_rotation_with_zero_failed_validations_on_both_sides() {
    let a = ServerProc::start("");
    let i = ServerProc::start_in(PEER, "");
    let work = tempfile::tempdir().expect("tmp");
    let carry = work.path().join("carry");
    std::fs::create_dir(&carry).expect("carry dir");

    // Provisioning: bundles and receipts exchanged by hand, both ways.
    let (i0, i_export) = export_signed(&i, work.path(), "i0.bundle");
    let i0_receipt = import(&a, PEER, &i0, Some(&signing_root(&i_export))).expect("receipt");
    let (a0, a_export) = export_signed(&a, work.path(), "a0.bundle");
    let a_root = signing_root(&a_export);
    let a0_receipt = import(&i, "example.org", &a0, Some(&a_root)).expect("receipt");
    import(&a, PEER, &a0_receipt, None);
    import(&i, "example.org", &i0_receipt, None);

    // A's workload; I's workload federates with example.org and verifies A's SVIDs.
    let (a_agent, a_agent_id) = join_agent(&a);
    entry_for_me(&a, &a_agent_id, "spiffe://example.org/api", "1m");
    let (i_agent, i_agent_id) = join_agent(&i);
    let out = federating_entry(
        &i,
        &i_agent_id,
        &format!("spiffe://{PEER}/reader"),
        &["example.org"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(30, "I's workload verifies A's SVID", || {
        let chain = work.path().join("a-chain.pem");
        save_svid_chain(&a_agent.socket, &chain);
        let v = foreign_view(&i_agent.socket, "example.org", Some(&chain), None).ok()?;
        v["chain"].is_null().then_some(())
    });

    let fleet = write_fleet(
        work.path(),
        &[server_entry("up", "upstream", "root", &a)],
        &[agent_entry("a1", "root", "workloads", &a_agent)],
    );
    let validator = Validator::start_on(&a_agent.socket, "a1", &ValidatorOptions::default());
    let rb = short_runbooks(work.path(), 60);
    let out_dir = format!("out_dir={}", carry.display());
    let cmd = runbook_cmd(
        &fleet,
        &rb,
        &[
            "run",
            "isolated-bundle-rotation",
            "--set",
            &out_dir,
            "--yes",
            "--output",
            "json",
        ],
    );
    let (mut seen, mut carried, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    let run = run_streamed(cmd, |e| {
        if let Some(why) = verified_at_peer(&a_agent.socket, &i_agent.socket, work.path()) {
            failures.push(format!("{} {}: {why}", e["event"], e["id"]));
        }
        let id = e["id"].as_str().unwrap_or_default();
        if e["event"] != "acted" || !["carry", "carry-final"].contains(&id) {
            return;
        }
        // The person carrying the file: import at the peer, the receipt back at A.
        let file = new_export(&carry, &mut seen);
        let receipt = import(&i, "example.org", &file, None).expect("a receipt");
        import(&a, PEER, &receipt, None);
        carried.push(id.to_string());
    });
    let all = format!("{:#?}\n{}\nA:\n{}", run.events, run.stderr, a.log());
    assert_eq!(run.status.code(), Some(0), "{all}");
    assert_eq!(
        finished(&run.events)["outcome"]["result"],
        "succeeded",
        "{all}"
    );
    assert_eq!(carried, ["carry", "carry-final"], "{all}");
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "I failed to verify A's SVIDs: {all}"
    );
    validator.finish().assert_clean("a1");

    // I holds A's final bundle: only the new root, at the sequence A exported last.
    let held = json(&i.cli_ok(&["bundle", "foreign", "--output", "json"]));
    let a_bundle = held["bundles"]
        .as_array()
        .and_then(|b| b.iter().find(|x| x["trust_domain"] == "example.org"))
        .expect("A's bundle at I")
        .clone();
    let new_root = fingerprints(&a.bundle_roots());
    assert_eq!(new_root.len(), 1);
    assert_eq!(a_bundle["roots"], serde_json::json!(new_root), "{a_bundle}");
    assert_ne!(new_root[0], a_root);
    assert_eq!(a_bundle["sequence"], a.bundle_sequence(), "{a_bundle}");
    // A's record of I's receipts says the same.
    let receipts = json(&a.cli_ok(&["bundle", "foreign", "--output", "json"]))["receipts"].clone();
    assert_eq!(receipts[0]["peer_trust_domain"], PEER);
    assert_eq!(receipts[0]["sequence"], a.bundle_sequence());
    assert!(verified_at_peer(&a_agent.socket, &i_agent.socket, work.path()).is_none());
}
