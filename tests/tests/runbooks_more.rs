//! End-to-end: more of the shipped runbooks through `trustdeck runbook run --yes --output
//! json`, against live topologies (the demo's, CA keys in SoftHSM2): each test reads the step
//! events, the exit code, the journal (`runbook list`), the audit log naming the runbook and
//! step, and `trustdeck status` at the end; py-spiffe clients validate their SVIDs
//! continuously where a runbook rotates or taints something. Waits come from copies of the
//! shipped runbooks with shorter timeouts (`--runbooks DIR`).

use std::path::PathBuf;

use trustdeck_e2e::runbook::*;
use trustdeck_e2e::*;

/// Demo options: short SVID and intermediate lifetimes (the intermediate outlives the
/// demo's 10-minute agent SVIDs, or the downstream refuses its config), one workload agent per segment.
const DEMO: &[&str] = &["--svid-ttl", "30s", "--intermediate-ttl", "15m"];

#[test]
fn rotate_intermediate_on_one_downstream() {
    let demo = DemoProc::start(DEMO);
    let rb = runbooks_dir(demo.dir.path(), "runbooks", 60, |_, t| t);
    let (before, seq_before) = authorities_of(&config_of(&demo, "gcp"));
    let dmz_before = authorities_of(&config_of(&demo, "dmz"));
    let old = ids_with(&before, "active");
    assert_eq!(old.len(), 1, "{before:?}");
    let v = validators(&demo);

    let (out, ev) = run_json(
        &demo.fleet_path(),
        &rb,
        &["rotate-intermediate", "--target", "gcp"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        finished(&ev)["outcome"]["result"],
        "succeeded",
        "{}",
        text(&out)
    );
    assert_eq!(
        verified(&ev),
        [
            "preflight",
            "prepare",
            "activate",
            "move",
            "drain",
            "revoke"
        ],
        "{}",
        text(&out)
    );
    let new_ca = event(&ev, "acted", "prepare")
        .and_then(|e| e["saved"]["new_ca"].as_str())
        .expect("prepare saved new_ca")
        .to_string();
    let exec = execution(&ev);

    let (after, seq_after) = authorities_of(&config_of(&demo, "gcp"));
    assert_eq!(
        status_in(&after, &new_ca).as_deref(),
        Some("active"),
        "{after:?}"
    );
    assert_eq!(
        status_in(&after, &old[0]).as_deref(),
        Some("revoked"),
        "{after:?}"
    );
    // A downstream's bundle is its upstream's (roots only): rotating its intermediate leaves
    // the trust domain's sequence alone (the documented deviation of issue 13).
    assert_eq!(seq_after, seq_before, "{seq_before} -> {seq_after}");
    assert_eq!(
        authorities_of(&config_of(&demo, "dmz")).0,
        dmz_before.0,
        "dmz was not the target"
    );

    // Each step that changed something is in gcp's audit log, naming runbook and step.
    let gcp = config_of(&demo, "gcp");
    for (step, action) in [
        ("prepare", "prepare"),
        ("activate", "activate"),
        ("move", "taint"),
        ("revoke", "revoke"),
    ] {
        let recs = audited(&gcp, "rotate-intermediate", step, &exec);
        assert!(
            recs.iter().any(|r| r.contains(action)),
            "no {action} record for step {step}: {recs:?}"
        );
    }
    // The journal's own records are on the upstream; nothing is left in progress.
    let up = config_of(&demo, "upstream");
    let v_up = server_json(
        &up,
        &["audit", "list", "--limit", "1000", "--output", "json"],
    );
    assert!(
        v_up.as_array().into_iter().flatten().any(|r| r["action"]
            .as_str()
            .is_some_and(|a| a.starts_with("runbook."))
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("rotate-intermediate"))),
        "{v_up}"
    );
    assert_eq!(journal(&demo.fleet_path(), &rb), Vec::<Json>::new());

    assert_clean(v);
    assert_healthy(&demo.fleet_path());
}

#[test]
fn taint_authority_on_an_old_intermediate_and_a_refusal_for_the_active_one() {
    let demo = DemoProc::start(DEMO);
    let rb = runbooks_dir(demo.dir.path(), "runbooks", 60, |_, t| t);
    let dmz = config_of(&demo, "dmz");
    let v = validators(&demo);

    // Refused: the active intermediate. Nothing changes.
    let (before, seq_before) = authorities_of(&config_of(&demo, "dmz"));
    let active = ids_with(&before, "active")
        .pop()
        .expect("an active intermediate");
    let (out, ev) = run_json(
        &demo.fleet_path(),
        &rb,
        &["taint-authority", "--set", &format!("authority={active}")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let f = &finished(&ev)["outcome"];
    assert_eq!(f["result"], "stopped", "{f}");
    assert_eq!(f["id"], "taint", "{f}");
    assert_eq!(f["reason"], "action_failed", "{f}");
    assert_eq!(f["rolled_back"], false, "{f}");
    assert!(
        f["what_now"].as_str().is_some_and(|w| w.contains("rotate")),
        "the operator is told to rotate first: {f}"
    );
    assert!(event(&ev, "acted", "taint").is_none(), "{}", text(&out));
    assert!(
        text(&out).contains("STOPPED at step 2 (taint)"),
        "{}",
        text(&out)
    );
    assert_eq!(
        authorities_of(&config_of(&demo, "dmz")),
        (before.clone(), seq_before),
        "the refusal changed something"
    );
    let refused_exec = execution(&ev);
    let refused = audited(&dmz, "taint-authority", "taint", &refused_exec);
    assert!(
        !refused.is_empty(),
        "the refused taint is audited with its step"
    );
    let held = journal(&demo.fleet_path(), &rb);
    let e = held
        .iter()
        .find(|e| e["id"] == refused_exec.as_str())
        .unwrap_or_else(|| panic!("the stopped execution is in the journal: {held:?}"));
    assert_eq!(e["state"], "RUNBOOK_STATE_STOPPED", "{e}");
    assert_eq!(e["step_id"], "taint", "{e}");
    // It holds the trust domain until aborted.
    let o = runbook_cmd(&demo.fleet_path(), &rb, &["abort", &refused_exec])
        .output()
        .expect("abort");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(journal(&demo.fleet_path(), &rb), Vec::<Json>::new());

    // Rotate by hand, leaving the previous intermediate old (not active): taint that one.
    let p = server_json(&dmz, &["authority", "x509", "prepare", "--output", "json"]);
    let new = p["authority"]["id"]
        .as_str()
        .expect("prepared id")
        .to_string();
    server_json(
        &dmz,
        &[
            "authority",
            "x509",
            "activate",
            "--id",
            &new,
            "--output",
            "json",
        ],
    );
    let (mid, _) = authorities_of(&config_of(&demo, "dmz"));
    assert_eq!(status_in(&mid, &active).as_deref(), Some("old"), "{mid:?}");
    wait_for(30, "the fleet to see the new intermediate", || {
        (demo.status(&[]).0 == 0).then_some(())
    });
    let (out, ev) = run_json(
        &demo.fleet_path(),
        &rb,
        &["taint-authority", "--set", &format!("authority={active}")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        verified(&ev),
        ["preflight", "taint", "reissue", "revoke"],
        "{}",
        text(&out)
    );
    let exec = execution(&ev);
    let (after, _) = authorities_of(&config_of(&demo, "dmz"));
    assert_eq!(
        status_in(&after, &active).as_deref(),
        Some("revoked"),
        "{after:?}"
    );
    assert_eq!(
        status_in(&after, &new).as_deref(),
        Some("active"),
        "{after:?}"
    );
    for (step, action) in [("taint", "taint"), ("revoke", "revoke")] {
        let recs = audited(&dmz, "taint-authority", step, &exec);
        assert!(
            recs.iter().any(|r| r.contains(action)),
            "no {action} record for step {step}: {recs:?}"
        );
    }
    assert_eq!(journal(&demo.fleet_path(), &rb), Vec::<Json>::new());
    assert_clean(v);
    assert_healthy(&demo.fleet_path());
}

#[test]
fn a_verification_that_never_holds_times_out_and_rolls_back() {
    let demo = DemoProc::start(DEMO);
    // rotate-intermediate whose prepare step waits for the prepared intermediate to be
    // revoked (nothing revokes it) for 3 s; its rollback taints it.
    let rb = runbooks_dir(demo.dir.path(), "impossible", 60, |file, t| {
        if file != "rotate-intermediate.toml" {
            return t;
        }
        let (head, rest) = t.split_once("id = \"prepare\"").expect("a prepare step");
        let (prep, tail) = rest.split_once("[[steps]]").expect("a step after prepare");
        let prep = prep
            .replace("timeout = \"60s\"", "timeout = \"3s\"")
            .replace("status = \"prepared\"", "status = \"revoked\"");
        assert!(
            prep.contains("\"3s\"") && prep.contains("\"revoked\""),
            "{prep}"
        );
        format!("{head}id = \"prepare\"{prep}[[steps]]{tail}")
    });
    let (before, _) = authorities_of(&config_of(&demo, "gcp"));
    let active = ids_with(&before, "active");
    let v = validators(&demo);

    let (out, ev) = run_json(
        &demo.fleet_path(),
        &rb,
        &["rotate-intermediate", "--target", "gcp"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let f = &finished(&ev)["outcome"];
    assert_eq!(f["result"], "stopped", "{f}");
    assert_eq!(f["id"], "prepare", "{f}");
    assert_eq!(f["reason"], "timed_out", "{f}");
    assert_eq!(f["rolled_back"], true, "{f}");
    assert!(
        f["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not verified within 3 s")),
        "{f}"
    );
    let rolled = event(&ev, "rolled_back", "prepare").expect("a rollback event");
    assert_eq!(rolled["ok"], true, "{rolled}");
    assert!(
        event(&ev, "step_started", "activate").is_none(),
        "{}",
        text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rollback: ran"), "{err}");
    assert!(err.contains("what now:"), "{err}");

    // The prepared intermediate is tainted; the active one still signs.
    let new_ca = event(&ev, "acted", "prepare")
        .and_then(|e| e["saved"]["new_ca"].as_str())
        .expect("prepare saved new_ca")
        .to_string();
    let (after, _) = authorities_of(&config_of(&demo, "gcp"));
    assert_eq!(
        status_in(&after, &new_ca).as_deref(),
        Some("tainted"),
        "{after:?}"
    );
    assert_eq!(ids_with(&after, "active"), active, "{after:?}");
    let exec = execution(&ev);
    let gcp = config_of(&demo, "gcp");
    let recs = audited(&gcp, "rotate-intermediate", "prepare", &exec);
    assert!(recs.iter().any(|r| r.contains("prepare")), "{recs:?}");
    assert!(
        recs.iter().any(|r| r.contains("taint")),
        "the rollback is audited: {recs:?}"
    );

    let held = journal(&demo.fleet_path(), &rb);
    let e = held
        .iter()
        .find(|e| e["id"] == exec.as_str())
        .unwrap_or_else(|| panic!("the stopped execution is in the journal: {held:?}"));
    assert_eq!(e["state"], "RUNBOOK_STATE_STOPPED", "{e}");
    assert_eq!(e["rolled_back"], true, "{e}");
    assert!(
        e["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not verified")),
        "{e}"
    );
    let o = runbook_cmd(&demo.fleet_path(), &rb, &["abort", &exec])
        .output()
        .expect("abort");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(journal(&demo.fleet_path(), &rb), Vec::<Json>::new());

    assert_clean(v);
    assert_healthy(&demo.fleet_path());
}

/// A stranded join-token agent: its SVID (5 s) expired while its server was stopped.
struct Stranded {
    /// Holds the token file and the fleet file.
    dir: tempfile::TempDir,
    server: ServerProc,
    agent: AgentProc,
    token_path: PathBuf,
    fleet: PathBuf,
    old_id: String,
}

fn agent_state(report: &Json) -> Json {
    report["daemons"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == "a1"))
        .map(|d| d["upstream"]["state"].clone())
        .unwrap_or_default()
}

fn stranded_agent() -> Stranded {
    let port = free_port();
    let mut server = ServerProc::start(&format!(
        "bind_address = \"127.0.0.1:{port}\"\nagent_svid_ttl = \"5s\"\n"
    ));
    let dir = tempfile::Builder::new()
        .prefix("td-rebootstrap-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let token_path = dir.path().join("token");
    let token = server.token("10m");
    std::fs::write(&token_path, &token).expect("token file");
    let old_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
    entry_for_me(&server, &old_id, "spiffe://example.org/prod/app", "1m");
    let agent = AgentProc::start(
        &server,
        &format!(
            "type = \"join_token\"\ntoken_path = \"{}\"",
            token_path.display()
        ),
        &format!(
            "name = \"a1\"\nserver_spiffe_id = \"{}\"\n",
            server.server_spiffe_id()
        ),
    );
    let svid = py_spiffe(&agent.socket, &["x509", "--timeout", "20"]);
    assert!(svid.to_string().contains("/prod/app"), "{svid}");
    let fleet = dir.path().join("fleet.json");
    std::fs::write(
        &fleet,
        serde_json::json!({
            "trust_domain": "example.org",
            "servers": [{"name": "up", "role": "upstream", "segment": "root",
                         "spiffe_id": server.server_spiffe_id(),
                         "admin": format!("unix://{}", server.info().admin_socket.display())}],
            "agents": [{"name": "a1", "segment": "root", "serves": "workloads",
                        "workload_socket": agent.socket.display().to_string(),
                        "admin": format!("unix://{}", agent.dir.path().join("data/admin.sock").display())}],
        })
        .to_string(),
    )
    .expect("fleet file");
    // The outage outlasts the agent SVID.
    server.stop();
    wait_for(30, "the agent SVID to expire during the outage", || {
        let (_, r) = fleet_status(&fleet);
        r["tiers"]
            .as_array()?
            .iter()
            .any(|t| {
                t["kind"] == "AGENT"
                    && t["daemon"] == "a1"
                    && t["seconds_remaining"].as_i64().is_some_and(|s| s < 0)
            })
            .then_some(())
    });
    server.spawn();
    wait_for(40, "the agent to say it is stranded", || {
        (agent_state(&fleet_status(&fleet).1) == "stranded").then_some(())
    });
    Stranded {
        dir,
        server,
        agent,
        token_path,
        fleet,
        old_id,
    }
}

#[test]
fn rebootstrap_a_stranded_agent_with_the_token_the_runbook_gives() {
    let mut s = stranded_agent();
    let rb = runbooks_dir(s.dir.path(), "runbooks", 60, |_, t| t);
    let cmd = runbook_cmd(
        &s.fleet,
        &rb,
        &[
            "run",
            "rebootstrap-agent",
            "--target",
            "a1",
            "--yes",
            "--output",
            "json",
        ],
    );
    let mut token = None;
    let run = run_streamed(cmd, |e| {
        // The token step's event carries the token: do what the manual step says.
        if e["event"] == "acted" && e["id"] == "token" && token.is_none() {
            let t = e["saved"]["token"].as_str().expect("the token").to_string();
            std::fs::write(&s.token_path, &t).expect("token file");
            s.agent.stop();
            s.agent.spawn();
            token = Some(t);
        }
    });
    let (status, ev, err) = (run.status, run.events, run.stderr);
    let all = format!("{ev:?}\n{err}\n{}", s.agent.log());
    let token = token.unwrap_or_else(|| panic!("no token event: {all}"));
    assert_eq!(status.code(), Some(0), "{all}");
    assert_eq!(finished(&ev)["outcome"]["result"], "succeeded", "{all}");
    assert_eq!(
        verified(&ev),
        ["preflight", "token", "restart", "move-entries", "evict"],
        "{all}"
    );
    let token_agent = event(&ev, "acted", "token")
        .and_then(|e| e["saved"]["token_agent"].as_str())
        .expect("token_agent")
        .to_string();
    // Without a prompt (--yes) the manual step's instruction, with the token, is printed.
    assert!(
        err.contains(&format!("put the token {token} where")) && err.contains(&token_agent),
        "{err}"
    );
    assert!(token_agent.ends_with(&token), "{token_agent}");
    let exec = execution(&ev);

    // The agent serves under its new ID; the old record is gone; each change is audited.
    let agents = s.server.cli_ok(&["agent", "list"]);
    assert!(agents.contains(&token_agent), "{agents}");
    assert!(!agents.contains(&s.old_id), "{agents}");
    let svid = py_spiffe(&s.agent.socket, &["x509", "--timeout", "20"]);
    assert!(
        svid.to_string().contains("spiffe://example.org/prod/app"),
        "{svid}"
    );
    let log = s.server.audit_log();
    for step in ["token", "move-entries", "evict"] {
        let note = format!("runbook rebootstrap-agent step {step} (execution {exec})");
        assert!(
            log.iter().any(|r| r.contains(&note)),
            "no audit record for {step}: {log:#?}"
        );
    }
    assert_eq!(journal(&s.fleet, &rb), Vec::<Json>::new());
    // Healthy but for the key policy (this small topology keeps its root key on disk).
    let report = healthy_but(&s.fleet, &["key policy:"]);
    assert_eq!(agent_state(&report), "connected", "{report}");
}
