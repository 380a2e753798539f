//! End-to-end: the runbooks that meet a lost HSM token, through `trustdeck runbook run --yes
//! --output json`, with real SoftHSM2 tokens and py-spiffe validators.
//!
//! - `replace-hsm-token`: the root's token is replaced by an empty one, so the root refuses to
//!   start; the runbook begins while the journal's server (the root itself) is down, plays its
//!   manual steps (the test restarts the root with `--replace-lost-keys`, then gives the
//!   root's agents the new bundle), journals itself once the root answers, waits until the
//!   fleet moved onto the new key and revokes the lost one.
//! - The HSM lost during `rotate-root-ca` (the demo's root key in SoftHSM2): the token goes away
//!   after `prepare`; activation is refused before anything changes (the prepared key does not
//!   answer), the operator is told; the token comes back and `runbook resume` finishes.

use std::path::{Path, PathBuf};

use trustdeck_e2e::hsm::TwoTokens;
use trustdeck_e2e::runbook::*;
use trustdeck_e2e::*;

const PIN: &str = "td-pin-7311";

fn agent_admin(a: &AgentProc) -> String {
    format!("unix://{}", a.dir.path().join("data/admin.sock").display())
}

fn server_admin(s: &ServerProc) -> String {
    format!("unix://{}", s.info().admin_socket.display())
}

/// Restarts `agent` trusting `roots_pem` instead of its stored bundle.
fn rebootstrap(agent: &mut AgentProc, roots_pem: &str) {
    agent.stop();
    std::fs::write(agent.dir.path().join("bootstrap.pem"), roots_pem).expect("bundle");
    agent.run_args = vec!["--rebootstrap-bundle".into()];
    agent.spawn();
}

#[test]
fn replace_hsm_token_through_the_cli_while_the_journal_server_is_down() {
    let tokens = TwoTokens::new(PIN);
    let mut root = tokens.root_on_a();
    let mut mid = Downstream::start(&root, "mid", "");
    let (mid_agent, mid_agent_id) = mid.workload_agent();
    entry_for_me(
        &mid.server,
        &mid_agent_id,
        "spiffe://example.org/prod/mid/svc",
        "1m",
    );
    let token = root.token("10m");
    let root_agent_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
    let mut root_agent = AgentProc::start(
        &root,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
        "name = \"root-w\"\n",
    );
    entry_for_me(
        &root,
        &root_agent_id,
        "spiffe://example.org/prod/core/api",
        "1m",
    );
    let dir = tempfile::Builder::new()
        .prefix("td-rb-hsm-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let fleet = dir.path().join("fleet.json");
    std::fs::write(
        &fleet,
        serde_json::json!({
            "trust_domain": "example.org",
            "servers": [
                {"name": "root", "role": "upstream", "segment": "root",
                 "spiffe_id": root.server_spiffe_id(), "admin": server_admin(&root)},
                {"name": "mid", "role": "downstream", "segment": "mid",
                 "spiffe_id": mid.server_spiffe_id, "admin": server_admin(&mid.server)}],
            "agents": [
                {"name": "root-w", "segment": "root", "serves": "workloads",
                 "workload_socket": root_agent.socket.display().to_string(),
                 "admin": agent_admin(&root_agent)},
                {"name": "mid-local", "segment": "root", "serves": "server",
                 "admin": agent_admin(&mid.local_agent)},
                {"name": "mid-w", "segment": "mid", "serves": "workloads",
                 "workload_socket": mid_agent.socket.display().to_string(),
                 "admin": agent_admin(&mid_agent)}],
        })
        .to_string(),
    )
    .expect("fleet file");
    let rb = runbooks_dir(dir.path(), "runbooks", 90, |_, t| t);
    healthy_but(&fleet, &["key policy:"]);
    // X.509 only: JWT-SVIDs are signed by the root, which is down for a while (seed 000 §5).
    let validator = Validator::start_on(
        &mid_agent.socket,
        "mid-w",
        &ValidatorOptions {
            jwt_interval: None,
            ..ValidatorOptions::default()
        },
    );
    let (before, _) = authorities_of(&root.config);
    let lost = ids_with(&before, "active").pop().expect("an active root");
    let jwt_keys = |config: &Path| authorities_of_kind(config, "jwt").0;
    let lost_jwt = ids_with(&jwt_keys(&root.config), "active")
        .pop()
        .expect("an active JWT key");

    // The token is replaced by an empty one: the root refuses to start.
    root.stop();
    tokens.switch_to_b(&mut root);

    let cmd = runbook_cmd(
        &fleet,
        &rb,
        &[
            "run",
            "replace-hsm-token",
            "--target",
            "root",
            "--yes",
            "--output",
            "json",
        ],
    );
    let run = run_streamed(cmd, |e| {
        if e["event"] != "acted" {
            return;
        }
        // The operator does what each manual step says.
        if e["id"] == "restart" {
            root.run_args = vec!["--replace-lost-keys".into()];
            root.spawn();
        } else if e["id"] == "agents" {
            let pem = root.cli_ok(&["bundle", "show", "--format", "pem"]);
            rebootstrap(&mut root_agent, &pem);
            rebootstrap(&mut mid.local_agent, &pem);
        }
    });
    let all = format!("{:#?}\n{}\n{}", run.events, run.stderr, root.log());
    assert_eq!(run.status.code(), Some(0), "{all}");
    assert!(
        run.stderr
            .contains("is journaled as soon as the server answers"),
        "{all}"
    );
    let ev = run.events;
    assert_eq!(finished(&ev)["outcome"]["result"], "succeeded", "{all}");
    assert_eq!(
        verified(&ev),
        [
            "restart",
            "agents",
            "find-lost",
            "find-lost-jwt",
            "move",
            "revoke",
            "drain-jwt",
            "revoke-jwt"
        ],
        "{all}"
    );
    assert_eq!(
        event(&ev, "acted", "find-lost").and_then(|e| e["saved"]["lost"].as_str()),
        Some(lost.as_str()),
        "{all}"
    );
    let exec = execution(&ev);
    let (after, _) = authorities_of(&root.config);
    assert_eq!(
        status_in(&after, &lost).as_deref(),
        Some("revoked"),
        "{after:?}"
    );
    assert_eq!(ids_with(&after, "active").len(), 1, "{after:?}");
    let jwt_after = jwt_keys(&root.config);
    assert_eq!(
        status_in(&jwt_after, &lost_jwt).as_deref(),
        Some("revoked"),
        "{jwt_after:?}"
    );
    assert_eq!(ids_with(&jwt_after, "active").len(), 1, "{jwt_after:?}");
    for (step, action) in [
        ("revoke", "authority.x509.revoke|ok|"),
        ("revoke-jwt", "authority.jwt.revoke|ok|"),
    ] {
        let recs = audited(&root.config, "replace-hsm-token", step, &exec);
        assert!(
            recs.iter().any(|r| r.starts_with(action)),
            "{step}: {recs:?}"
        );
    }
    assert_eq!(journal(&fleet, &rb), Vec::<Json>::new());
    let name = validator.name().to_string();
    validator.finish().assert_clean(&name);
    healthy_but(&fleet, &["key policy:"]);
}

/// Demo options: short SVID and intermediate lifetimes.
const DEMO: &[&str] = &["--svid-ttl", "30s", "--intermediate-ttl", "3m"];

/// The demo upstream's SoftHSM2 token directory.
fn upstream_tokens(demo: &DemoProc) -> PathBuf {
    demo.dir.path().join("upstream").join("hsm").join("tokens")
}

/// Moves a directory (the token's files away, or back).
fn rename(from: &Path, to: &Path) {
    std::fs::rename(from, to)
        .unwrap_or_else(|e| panic!("rename {} -> {}: {e}", from.display(), to.display()));
}

#[test]
fn the_hsm_lost_after_prepare_refuses_activation_and_resume_finishes() {
    let demo = DemoProc::start(DEMO);
    let rb = short_runbooks(demo.dir.path(), 60);
    let up = config_of(&demo, "upstream");
    let (before, _) = authorities_of(&up);
    let old = ids_with(&before, "active").pop().expect("an active root");
    let v = validators(&demo);
    let tokens = upstream_tokens(&demo);
    assert!(tokens.is_dir(), "the demo keeps its root key in SoftHSM2");
    let away = tokens.with_extension("away");

    let cmd = runbook_cmd(
        &demo.fleet_path(),
        &rb,
        &["run", "rotate-root-ca", "--yes", "--output", "json"],
    );
    let run = run_streamed(cmd, |e| {
        // The token goes away right after the new root was made in it.
        if e["event"] == "acted" && e["id"] == "prepare" {
            rename(&tokens, &away);
        }
    });
    let all = format!("{:#?}\n{}", run.events, run.stderr);
    assert_eq!(run.status.code(), Some(1), "{all}");
    let ev = run.events;
    let f = &finished(&ev)["outcome"];
    assert_eq!(f["result"], "stopped", "{all}");
    assert_eq!(f["id"], "activate", "{all}");
    assert!(
        f["reason"] == "precondition" || f["reason"] == "action_failed",
        "{all}"
    );
    assert!(
        f["detail"]
            .as_str()
            .is_some_and(|d| d.contains("keys_answer") || d.contains("does not answer")),
        "the operator is told the key does not answer: {all}"
    );
    assert!(run.stderr.contains("runbook resume"), "{all}");
    let new_root = event(&ev, "acted", "prepare")
        .and_then(|e| e["saved"]["new_root"].as_str())
        .expect("prepare saved new_root")
        .to_string();
    let (mid, _) = authorities_of(&up);
    assert_eq!(
        status_in(&mid, &old).as_deref(),
        Some("active"),
        "nothing activated: {mid:?}"
    );
    assert_eq!(
        status_in(&mid, &new_root).as_deref(),
        Some("prepared"),
        "{mid:?}"
    );
    let exec = execution(&ev);

    // The token comes back; SoftHSM2 sees a token that went away again only in a new
    // process, so the operator restarts the server, then resumes.
    rename(&away, &tokens);
    signal(demo.pid("upstream"), "KILL");
    wait_for(10, "the upstream to die", || {
        (!alive(demo.pid("upstream"))).then_some(())
    });
    let restarted = restart_demo_server(&demo, "upstream");
    wait_for(30, "the restarted upstream's journal", || {
        let o = runbook_cmd(&demo.fleet_path(), &rb, &["list", "--output", "json"])
            .output()
            .ok()?;
        let v: Json = serde_json::from_slice(&o.stdout).ok()?;
        v["executions"]
            .as_array()?
            .iter()
            .any(|e| e["id"] == exec.as_str())
            .then_some(())
    });
    let out = runbook_cmd(
        &demo.fleet_path(),
        &rb,
        &["resume", &exec, "--yes", "--output", "json"],
    )
    .output()
    .expect("resume");
    let ev = events_of(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(finished(&ev)["outcome"]["result"], "succeeded");
    let (after, _) = authorities_of(&up);
    assert_eq!(
        status_in(&after, &new_root).as_deref(),
        Some("active"),
        "{after:?}"
    );
    assert_eq!(
        status_in(&after, &old).as_deref(),
        Some("revoked"),
        "{after:?}"
    );
    assert_clean(v);
    assert_healthy(&demo.fleet_path());
    drop(restarted);
}
