//! Helpers for driving `trustdeck runbook` end to end: copies of the shipped runbooks with
//! shorter waits, the CLI with `--output json` (one event per line), the journal, the audit
//! records naming a step, and the fleet's health at the end.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use crate::{AgentProc, DemoProc, ServerProc, Validator, ValidatorOptions, bin};

pub type Json = serde_json::Value;

/// Writes the shipped runbooks into `dir/name`, every step timeout set to `secs`, each file's
/// text passed through `edit` (file name, text).
pub fn runbooks_dir(
    dir: &Path,
    name: &str,
    secs: u64,
    edit: impl Fn(&str, String) -> String,
) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).expect("runbooks dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runbooks");
    for e in std::fs::read_dir(&src).expect("runbooks/") {
        let p = e.expect("entry").path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let file = p.file_name().expect("name").to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&p).expect("read runbook");
        let short: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("timeout = ") {
                    format!("timeout = \"{secs}s\"")
                } else {
                    l.to_string()
                }
            })
            .collect();
        let text = edit(&file, short.join("\n") + "\n");
        std::fs::write(out.join(&file), text).expect("write runbook");
    }
    out
}

/// The shipped runbooks in `dir/runbooks`, every step timeout set to `secs`.
pub fn short_runbooks(dir: &Path, secs: u64) -> PathBuf {
    runbooks_dir(dir, "runbooks", secs, |_, t| t)
}

/// `trustdeck runbook <args> --runbooks DIR --fleet FLEET`, stdin closed.
pub fn runbook_cmd(fleet: &Path, rb: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin("trustdeck"));
    c.arg("runbook")
        .args(args)
        .arg("--runbooks")
        .arg(rb)
        .arg("--fleet")
        .arg(fleet)
        .stdin(Stdio::null());
    c
}

/// The step events of `--output json` (one object per line).
pub fn events_of(stdout: &str) -> Vec<Json> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// stdout then stderr, as text.
pub fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// The last `finished` event.
pub fn finished(ev: &[Json]) -> &Json {
    ev.iter()
        .rev()
        .find(|e| e["event"] == "finished")
        .expect("a finished event")
}

/// The first event `kind` of step `id`.
pub fn event<'a>(ev: &'a [Json], kind: &str, id: &str) -> Option<&'a Json> {
    ev.iter().find(|e| e["event"] == kind && e["id"] == id)
}

/// The ids of the steps with a `verified` event, in order.
pub fn verified(ev: &[Json]) -> Vec<String> {
    ev.iter()
        .filter(|e| e["event"] == "verified")
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect()
}

/// The execution id the events name.
pub fn execution(ev: &[Json]) -> String {
    ev.iter()
        .find_map(|e| e["execution"].as_str().filter(|s| !s.is_empty()))
        .expect("events name their execution")
        .to_string()
}

/// `runbook run <args> --yes --output json`: its output and events.
pub fn run_json(fleet: &Path, rb: &Path, args: &[&str]) -> (Output, Vec<Json>) {
    let mut a = vec!["run"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--yes", "--output", "json"]);
    let out = runbook_cmd(fleet, rb, &a).output().expect("runbook run");
    let ev = events_of(&String::from_utf8_lossy(&out.stdout));
    (out, ev)
}

/// What a streamed run left: its exit status, every event, its stderr.
pub struct Streamed {
    pub status: ExitStatus,
    pub events: Vec<Json>,
    pub stderr: String,
}

/// Runs `cmd` (a `runbook run|resume ... --output json`), handing each event to `on_event` as
/// it arrives: the test plays the operator's manual steps there.
pub fn run_streamed(mut cmd: Command, mut on_event: impl FnMut(&Json)) -> Streamed {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runbook run");
    let mut stderr = child.stderr.take().expect("stderr");
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut events = Vec::new();
    for l in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let l = l.expect("line");
        let e: Json = serde_json::from_str(&l).unwrap_or_else(|x| panic!("not JSON ({x}): {l}"));
        on_event(&e);
        events.push(e);
    }
    let status = child.wait().expect("wait");
    Streamed {
        status,
        events,
        stderr: err.join().expect("stderr"),
    }
}

/// The executions `runbook list` shows (those not finished).
pub fn journal(fleet: &Path, rb: &Path) -> Vec<Json> {
    let o = runbook_cmd(fleet, rb, &["list", "--output", "json"])
        .output()
        .expect("runbook list");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Json = serde_json::from_slice(&o.stdout).expect("list JSON");
    assert!(v["journal_error"].is_null(), "{v}");
    v["executions"].as_array().cloned().expect("executions")
}

/// `trustdeck-server <args> --config CONFIG`, stdout as JSON.
pub fn server_json(config: &Path, args: &[&str]) -> Json {
    let out = Command::new(bin("trustdeck-server"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("trustdeck-server");
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?} ({e}): {}", text(&out)))
}

/// The config of the demo's server `server`.
pub fn config_of(demo: &DemoProc, server: &str) -> PathBuf {
    demo.dir.path().join(server).join("server.toml")
}

/// A server's X.509 authorities as (id, status), and its bundle sequence.
pub fn authorities_of(config: &Path) -> (BTreeSet<(String, String)>, u64) {
    authorities_of_kind(config, "x509")
}

/// A server's authorities of `kind` (`x509`, `jwt`) as (id, status), and its bundle sequence.
pub fn authorities_of_kind(config: &Path, kind: &str) -> (BTreeSet<(String, String)>, u64) {
    let v = server_json(config, &["authority", kind, "show", "--output", "json"]);
    let set = v["authorities"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or_default().to_string(),
                a["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    (set, v["bundle_sequence"].as_u64().unwrap_or_default())
}

/// The status of authority `id` in `set`.
pub fn status_in(set: &BTreeSet<(String, String)>, id: &str) -> Option<String> {
    set.iter().find(|(i, _)| i == id).map(|(_, s)| s.clone())
}

/// The ids in `set` with `status`.
pub fn ids_with(set: &BTreeSet<(String, String)>, status: &str) -> Vec<String> {
    set.iter()
        .filter(|(_, s)| s == status)
        .map(|(i, _)| i.clone())
        .collect()
}

/// The audit records (`action|outcome|detail`) of a server's log that name `runbook`'s
/// `step` in execution `exec`.
pub fn audited(config: &Path, runbook: &str, step: &str, exec: &str) -> Vec<String> {
    let v = server_json(
        config,
        &["audit", "list", "--limit", "1000", "--output", "json"],
    );
    let note = format!("runbook {runbook} step {step} (execution {exec})");
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["detail"].as_str().is_some_and(|d| d.contains(&note)))
        .map(|r| {
            ["action", "outcome", "detail"]
                .map(|k| r[k].as_str().unwrap_or_default().to_string())
                .join("|")
        })
        .collect()
}

/// A py-spiffe validator on every workload agent of the demo.
pub fn validators(demo: &DemoProc) -> Vec<Validator> {
    let v: Vec<Validator> = demo.fleet["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["serves"] == "workloads")
        .filter_map(|a| {
            let s = a["workload_socket"].as_str().filter(|s| !s.is_empty())?;
            let n = a["name"].as_str().unwrap_or("?");
            Some(Validator::start_on(
                Path::new(s),
                n,
                &ValidatorOptions::default(),
            ))
        })
        .collect();
    assert!(!v.is_empty(), "no workload agents in {}", demo.fleet);
    v
}

/// Every validator saw zero failures.
pub fn assert_clean(v: Vec<Validator>) {
    for v in v {
        let name = v.name().to_string();
        v.finish().assert_clean(&name);
    }
}

/// A child process killed when dropped (a daemon a test restarted by hand).
pub struct Restarted(pub Child);

impl Drop for Restarted {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the demo's server `name` again (after the test killed it), its log in
/// `<demo>/<name>-restart.log`.
pub fn restart_demo_server(demo: &DemoProc, name: &str) -> Restarted {
    let log =
        std::fs::File::create(demo.dir.path().join(format!("{name}-restart.log"))).expect("log");
    Command::new(bin("trustdeck-server"))
        .arg("run")
        .arg("--config")
        .arg(config_of(demo, name))
        .env_clear()
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(Restarted)
        .expect("restart server")
}

/// `trustdeck status --output json --fleet FLEET`: exit code and report.
pub fn fleet_status(fleet: &Path) -> (i32, Json) {
    let out = Command::new(bin("trustdeck"))
        .args(["status", "--output", "json", "--fleet"])
        .arg(fleet)
        .output()
        .expect("trustdeck status");
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Json::Null),
    )
}

/// `status` exits 0; polled a while (a census or a renewal may trail the runbook's end).
pub fn assert_healthy(fleet: &Path) {
    let mut last = Json::Null;
    for _ in 0..40 {
        let (code, report) = fleet_status(fleet);
        if code == 0 {
            return;
        }
        last = report;
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("status did not exit 0: {last}");
}

/// A fleet-file server entry for `s`: its admin socket, its SPIFFE ID pinned.
pub fn server_entry(name: &str, role: &str, segment: &str, s: &ServerProc) -> Json {
    serde_json::json!({
        "name": name, "role": role, "segment": segment,
        "spiffe_id": s.server_spiffe_id(),
        "admin": format!("unix://{}", s.info().admin_socket.display()),
    })
}

/// A fleet-file agent entry for `a` (`serves`: `workloads` or `server`); its SPIFFE ID is
/// not pinned (a re-bootstrapped agent comes back under another).
pub fn agent_entry(name: &str, segment: &str, serves: &str, a: &AgentProc) -> Json {
    serde_json::json!({
        "name": name, "segment": segment, "serves": serves,
        "workload_socket": a.socket.display().to_string(),
        "admin": format!("unix://{}", a.admin_socket().display()),
    })
}

/// Writes `dir/fleet.json` (trust domain `example.org`) with these entries; returns its path.
pub fn write_fleet(dir: &Path, servers: &[Json], agents: &[Json]) -> PathBuf {
    let path = dir.join("fleet.json");
    let v = serde_json::json!({
        "trust_domain": "example.org", "servers": servers, "agents": agents,
    });
    std::fs::write(&path, v.to_string()).expect("fleet file");
    path
}

/// Why `status` does not call the fleet healthy, less the reasons naming any of `except`
/// (what a small topology lacks, e.g. `key policy:` for a root key kept on disk).
pub fn unhealthy_reasons(report: &Json, except: &[&str]) -> Vec<String> {
    report["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .filter(|r| !except.iter().any(|e| r.contains(e)))
        .map(str::to_string)
        .collect()
}

/// Polls `status` (up to 20 s: a renewal may trail under load) until it names no reason but
/// those containing one of `except`; returns the report.
pub fn healthy_but(fleet: &Path, except: &[&str]) -> Json {
    wait_status(fleet, 20, "a healthy fleet", |r| {
        r["reasons"].is_array() && unhealthy_reasons(r, except).is_empty()
    })
}

/// Polls `status` until `pred` holds for its report (returned), or panics after `secs` with
/// `what` and the last report.
pub fn wait_status(fleet: &Path, secs: u64, what: &str, pred: impl Fn(&Json) -> bool) -> Json {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (_, report) = fleet_status(fleet);
        if pred(&report) {
            return report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}: {report:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
