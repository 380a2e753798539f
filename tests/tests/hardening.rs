//! End-to-end checks of issue 12's operator-facing hardening: config bounds, entry rules and
//! CLI output into a closed pipe, through the real binaries.

use std::process::{Command, Output};

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
