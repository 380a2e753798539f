//! End-to-end checks of issue 12's operator-facing hardening: config bounds, entry rules and
//! CLI output into a closed pipe, through the real binaries.

use std::process::{Command, Output, Stdio};

use trustdeck_e2e::*;

fn server_cmd(args: &[&str], config: &std::path::Path) -> Output {
    Command::new(bin("trustdeck-server"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run trustdeck-server")
}

/// A Rust panic exits 101 and prints "panicked"; a refusal is a plain error.
fn assert_refused_without_panic(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what} was accepted: {err}");
    assert_ne!(out.status.code(), Some(101), "{what} panicked: {err}");
    assert!(!err.contains("panicked"), "{what} panicked: {err}");
    err
}

/// Issue 12, defect 6: `check-config` passed TTLs that `run` then panicked on (a huge
/// `ca_ttl`) or could not start with (`ca_ttl = "1s"`). Both commands now refuse every
/// out-of-range duration with the same message, naming the key and the allowed range.
#[test]
fn out_of_range_durations_are_refused_by_check_config_and_run_alike() {
    let dir = tempfile::tempdir().expect("tmp");
    for (key, value) in [
        ("ca_ttl", "999999999999h"),
        ("ca_ttl", "1s"),
        ("jwt_key_ttl", "999999999999h"),
        ("default_x509_svid_ttl", "500ms"),
        ("rotation_check_interval", "999999999999h"),
        ("bundle_import_max_age", "400d"),
    ] {
        let cfg = dir.path().join(format!("{key}-{value}.toml"));
        std::fs::write(
            &cfg,
            server_config(dir.path(), &format!("{key} = \"{value}\"\n")),
        )
        .expect("write config");
        let check = server_cmd(&["check-config"], &cfg);
        let check_err = assert_refused_without_panic(&check, &format!("check-config {key}"));
        let run = server_cmd(&["run"], &cfg);
        let run_err = assert_refused_without_panic(&run, &format!("run {key}"));
        let line = format!("{key} = {value} is out of range: allowed ");
        assert!(check_err.contains(&line), "check-config: {check_err}");
        assert!(run_err.contains(&line), "run: {run_err}");
    }
}

/// Issue 12, defect 9: `entry create` stored entries that could never work or that were
/// dangerous. The server refuses each (`InvalidArgument`) with its reason; nothing is stored.
#[test]
fn entries_that_never_work_or_impersonate_a_daemon_are_refused_by_the_server() {
    let server = ServerProc::start("");
    let agent = "spiffe://example.org/trustdeck/agent/join_token/abc";
    let server_id = server.server_spiffe_id();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--selector", "unix:uid:notanumber"],
            "a uid or gid is a number",
        ),
        (&["--x509-ttl", "0s"], "x509_ttl = 0s is out of range"),
        (&["--jwt-ttl", "0s"], "jwt_ttl = 0s is out of range"),
        (
            &["--parent-id", "spiffe://example.org/web"],
            "its own parent",
        ),
        (&["--spiffe-id", server_id.as_str()], "reserved"),
        (
            &[
                "--spiffe-id",
                "spiffe://example.org/trustdeck/agent/join_token/x",
            ],
            "reserved",
        ),
    ];
    for (args, reason) in cases {
        let mut full = vec!["entry", "create"];
        full.extend_from_slice(args);
        for (flag, default) in [
            ("--spiffe-id", "spiffe://example.org/web"),
            ("--parent-id", agent),
            ("--selector", "unix:uid:1000"),
        ] {
            if !args.contains(&flag) {
                full.extend([flag, default]);
            }
        }
        let out = server.cli(&full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            err.contains(reason) && err.contains("InvalidArgument"),
            "{args:?}: {err}"
        );
    }
    let shown = server.cli_ok(&["entry", "show", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(0), "{shown}");
}

/// Runs `program args` with stdout a pipe whose reading end is already closed, so the first
/// write fails with EPIPE (deterministically: nobody ever reads).
fn into_closed_pipe(program: &str, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Command::new(bin(program))
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run")
}

/// Issue 12, defect 10: `trustdeck-server entry show | head -1` panicked (exit 101). Every
/// CLI output path ends quietly with status 0 when its reader is gone.
#[test]
fn cli_output_into_a_closed_pipe_ends_quietly_with_status_zero() {
    let server = ServerProc::start("");
    let (attestation, agent_id) = {
        let token = server.token("10m");
        (
            format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
            format!("spiffe://example.org/trustdeck/agent/join_token/{token}"),
        )
    };
    entry_for_me(&server, &agent_id, "spiffe://example.org/web", "10m");
    let agent = AgentProc::start(&server, &attestation, "");
    let config = server.config.display().to_string();
    let socket = agent.socket.display().to_string();
    wait_for(30, "the workload SVID", || {
        let out = Command::new(bin("trustdeck-agent"))
            .args(["api", "fetch", "x509", "--socket", &socket])
            .output()
            .expect("run");
        out.status.success().then_some(())
    });
    let runs: &[(&str, Vec<&str>)] = &[
        (
            "trustdeck-server",
            vec!["entry", "show", "--config", &config],
        ),
        (
            "trustdeck-server",
            vec!["entry", "show", "--output", "json", "--config", &config],
        ),
        (
            "trustdeck-server",
            vec!["check-config", "--config", &config],
        ),
        ("trustdeck-server", vec!["healthcheck", "--config", &config]),
        ("trustdeck-server", vec!["--help"]),
        (
            "trustdeck-agent",
            vec!["api", "fetch", "x509", "--socket", &socket],
        ),
        ("trustdeck-agent", vec!["healthcheck", "--socket", &socket]),
        ("trustdeck", vec!["--help"]),
    ];
    for (program, args) in runs {
        let out = into_closed_pipe(program, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{program} {args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{program} {args:?}: {err}");
    }
}
