//! End-to-end: the shipped runbooks through `trustdeck runbook`, against the demo topology
//! (upstream key in SoftHSM2), while py-spiffe clients validate their SVIDs continuously.
//! Timeouts come from a copy of the shipped runbooks with shorter waits (`--runbooks DIR`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use trustdeck_e2e::runbook::*;
use trustdeck_e2e::*;

/// Demo options: short SVID and intermediate lifetimes, one workload agent per segment.
const DEMO: &[&str] = &["--svid-ttl", "30s", "--intermediate-ttl", "3m"];

fn runbook_cmd_demo(demo: &DemoProc, args: &[&str], dir: &Path) -> Command {
    runbook_cmd(&demo.fleet_path(), dir, args)
}

fn events(o: &Output) -> Vec<Json> {
    events_of(&String::from_utf8_lossy(&o.stdout))
}

fn workload_sockets(demo: &DemoProc) -> Vec<(String, PathBuf)> {
    demo.fleet["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let s = a["workload_socket"].as_str()?;
            (!s.is_empty()).then(|| (a["name"].as_str().unwrap_or("?").to_string(), s.into()))
        })
        .collect()
}

fn upstream_authorities(demo: &DemoProc) -> serde_json::Value {
    let out = Command::new(bin("trustdeck-server"))
        .args(["authority", "x509", "show", "--output", "json", "--config"])
        .arg(demo.dir.path().join("upstream").join("server.toml"))
        .output()
        .expect("trustdeck-server authority show");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("authority show ({e}): {}", text(&out)))
}

fn at(e: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    e["at"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .expect("event time")
}

#[test]
fn rotate_root_ca_through_the_cli_with_zero_failed_validations() {
    let demo = DemoProc::start(DEMO);
    let rb = short_runbooks(demo.dir.path(), 60);
    let before = upstream_authorities(&demo);
    let validators: Vec<Validator> = workload_sockets(&demo)
        .iter()
        .map(|(n, s)| Validator::start_on(s, n, &ValidatorOptions::default()))
        .collect();
    assert!(
        !validators.is_empty(),
        "no workload agents in {}",
        demo.fleet
    );

    let t0 = Instant::now();
    let out = runbook_cmd_demo(
        &demo,
        &["run", "rotate-root-ca", "--yes", "--output", "json"],
        &rb,
    )
    .output()
    .expect("run rotate-root-ca");
    let wall = t0.elapsed();
    let ev = events(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(finished(&ev)["outcome"]["result"], "succeeded");

    // Activation to every SVID chaining to the new root (the `move` step's verification).
    let activated = ev
        .iter()
        .find(|e| e["event"] == "acted" && e["id"] == "activate")
        .map(at)
        .expect("activate acted");
    let moved = ev
        .iter()
        .find(|e| e["event"] == "verified" && e["id"] == "move")
        .map(at)
        .expect("move verified");
    eprintln!(
        "BENCH rotate-root-ca wall {:.1} s; activation to every SVID on the new root {:.1} s",
        wall.as_secs_f64(),
        (moved - activated).num_milliseconds() as f64 / 1000.0
    );

    for v in validators {
        let name = v.name().to_string();
        v.finish().assert_clean(&name);
    }
    let (code, report) = demo.status(&[]);
    assert_eq!(code, 0, "status after the rotation: {report}");
    let after = upstream_authorities(&demo);
    let new_root = ev
        .iter()
        .find_map(|e| e["saved"]["new_root"].as_str())
        .expect("new_root saved");
    let active = after["authorities"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["status"] == "active"))
        .expect("an active root");
    assert_eq!(active["id"], new_root, "{after}");
    assert!(after["bundle_sequence"].as_u64() > before["bundle_sequence"].as_u64());

    // The journal says it succeeded: nothing left in progress.
    let list = runbook_cmd_demo(&demo, &["list", "--output", "json"], &rb)
        .output()
        .expect("list");
    let l: serde_json::Value = serde_json::from_slice(&list.stdout).expect("list JSON");
    assert_eq!(l["executions"], serde_json::json!([]), "{l}");
}

#[test]
fn a_stopped_downstream_refuses_the_root_rotation_before_any_change() {
    let demo = DemoProc::start(DEMO);
    let rb = short_runbooks(demo.dir.path(), 10);
    let before = upstream_authorities(&demo);
    let dmz = demo.pid("dmz");
    signal(dmz, "STOP");
    let out = runbook_cmd_demo(
        &demo,
        &["run", "rotate-root-ca", "--yes", "--output", "json"],
        &rb,
    )
    .output()
    .expect("run");
    signal(dmz, "CONT");
    let ev = events(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let f = &finished(&ev)["outcome"];
    assert_eq!(f["result"], "stopped", "{f}");
    assert_eq!(f["id"], "preflight", "{f}");
    assert_eq!(f["reason"], "precondition", "{f}");
    assert!(!ev.iter().any(|e| e["event"] == "acted"), "{}", text(&out));
    assert!(
        text(&out).contains("rollback: did not run"),
        "{}",
        text(&out)
    );
    assert_eq!(
        upstream_authorities(&demo),
        before,
        "the rotation changed something"
    );

    // Without a terminal and without --yes: refused before anything.
    let out = runbook_cmd_demo(&demo, &["run", "rotate-root-ca"], &rb)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = runbook_cmd_demo(&demo, &["run", "no-such-runbook", "--yes"], &rb)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn the_upstream_killed_during_a_verification_and_resume_finishes() {
    let demo = DemoProc::start(DEMO);
    let rb = short_runbooks(demo.dir.path(), 60);
    let mut run = runbook_cmd_demo(
        &demo,
        &["run", "rotate-root-ca", "--yes", "--output", "json"],
        &rb,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("run");
    // Wait for the propagation step (a verification) to start, then kill the upstream and
    // the CLI (the SSH session drops with it).
    let stdout = run.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut id = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for l in lines.by_ref() {
        let l = l.expect("line");
        let v: serde_json::Value = serde_json::from_str(&l).expect("JSON");
        id = v["execution"].as_str().unwrap_or_default().to_string();
        if v["event"] == "step_started" && v["id"] == "propagate" {
            break;
        }
        assert!(Instant::now() < deadline, "no propagate step");
    }
    assert!(!id.is_empty());
    signal(demo.pid("upstream"), "KILL");
    let _ = run.kill();
    let _ = run.wait();
    wait_for(10, "the upstream to die", || {
        (!alive(demo.pid("upstream"))).then_some(())
    });
    let up = restart_demo_server(&demo, "upstream");
    let outcome = std::panic::catch_unwind(|| {
        wait_for(30, "the restarted upstream's journal", || {
            let o = runbook_cmd_demo(&demo, &["list", "--output", "json"], &rb)
                .output()
                .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
            v["executions"]
                .as_array()?
                .iter()
                .any(|e| e["id"] == id.as_str())
                .then_some(())
        });
        let out = runbook_cmd_demo(&demo, &["resume", &id, "--yes", "--output", "json"], &rb)
            .output()
            .expect("resume");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(finished(&events(&out))["outcome"]["result"], "succeeded");
    });
    drop(up);
    if let Err(e) = outcome {
        eprintln!(
            "restarted upstream:\n{}",
            std::fs::read_to_string(demo.dir.path().join("upstream-restart.log"))
                .unwrap_or_default()
        );
        std::panic::resume_unwind(e);
    }
}
