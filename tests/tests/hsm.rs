//! End-to-end: the `pkcs11` key manager with a real SoftHSM2 token created by the harness.
//! The root CA key lives in the token (sensitive, never extractable), SVIDs verify with
//! `openssl verify`, a restart keeps the same root, and a wrong PIN, token or missing key
//! stops the server with a clear error instead of falling back to software keys.

use std::process::{Command, Stdio};
use std::time::Duration;

use trustdeck_e2e::hsm::SoftHsm;
use trustdeck_e2e::*;

const PIN: &str = "td-pin-7391";

/// A server using `hsm`, with the PIN in a file.
fn server(hsm: &SoftHsm) -> ServerProc {
    let pin_file = hsm.pin_file(PIN);
    let env = hsm.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ServerProc::start_with_env(&hsm.key_manager_toml(&pin_file), &env)
}

/// Runs `trustdeck-server run` with `config_extra`, expecting it to refuse to start; returns
/// its stderr.
fn refused(hsm: &SoftHsm, config_extra: &str) -> String {
    let dir = tempfile::Builder::new()
        .prefix("td-hsm-srv-")
        .tempdir_in("/tmp")
        .expect("dir");
    let config = dir.path().join("server.toml");
    std::fs::write(&config, server_config(dir.path(), config_extra)).expect("config");
    let mut child = Command::new(bin("trustdeck-server"))
        .args(["run", "--config"])
        .arg(&config)
        .env("SOFTHSM2_CONF", &hsm.conf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(!status.success(), "the server must refuse to start");
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server kept running instead of refusing to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        !dir.path().join("data/server.json").exists(),
        "it never served"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn root_key_lives_in_the_token_and_survives_a_restart() {
    let hsm = SoftHsm::new("trustdeck-root", PIN);
    let mut server = server(&hsm);
    let roots = server.bundle_roots();
    assert_eq!(roots.len(), 1);

    // The token holds the CA and JWT keys, sensitive and never extractable.
    let objects = hsm.list_objects();
    let privkeys: Vec<&str> = objects.split("Private Key Object").skip(1).collect();
    assert!(
        privkeys.len() >= 2,
        "CA and JWT keys in the token:\n{objects}"
    );
    for k in &privkeys {
        let label = k
            .lines()
            .find(|l| l.trim_start().starts_with("label:"))
            .unwrap_or("");
        assert!(
            label
                .trim_start()
                .trim_start_matches("label:")
                .trim()
                .starts_with("td-"),
            "{k}"
        );
        let usage = k
            .lines()
            .find(|l| l.trim_start().starts_with("Usage:"))
            .unwrap_or("");
        assert!(
            usage.contains("sign") && !usage.contains("decrypt"),
            "sign only: {k}"
        );
        let access = k
            .lines()
            .find(|l| l.trim_start().starts_with("Access:"))
            .unwrap_or("");
        assert!(access.contains("sensitive"), "CKA_SENSITIVE true: {k}");
        assert!(
            access.contains("never extractable"),
            "CKA_EXTRACTABLE false: {k}"
        );
        assert!(
            !access.contains(" extractable") || access.contains("never extractable"),
            "{k}"
        );
    }

    // SVIDs issued under that root verify with openssl.
    let token = server.token("10m");
    let agent_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
    let wid = "spiffe://example.org/prod/core/payments/api";
    entry_for_me(&server, &agent_id, wid, "10m");
    let fetch = |server: &ServerProc, attestation: &str| {
        let agent = AgentProc::start(server, attestation, "");
        let r = py_spiffe(&agent.socket, &["x509", "--timeout", "20"]);
        let chain = trustdeck_spiffe::pem::decode_certs(
            r["x509"][0]["chain_pem"].as_str().unwrap_or_default(),
        )
        .unwrap_or_default();
        (agent, r, chain)
    };
    let (agent, r, chain) = fetch(
        &server,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
    );
    assert_eq!(r["x509"][0]["spiffe_id"], wid, "{r}");
    let (ok, out) = openssl_verify(agent.dir.path(), &roots, &chain);
    assert!(ok, "openssl verify: {out}");
    drop(agent);

    // Restart: the same root, loaded from the token, signs again.
    server.stop();
    server.spawn();
    assert_eq!(server.bundle_roots(), roots, "same root after restart");
    let token = server.token("10m");
    let agent_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
    entry_for_me(&server, &agent_id, wid, "10m");
    let (agent, _, chain) = fetch(
        &server,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
    );
    let (ok, out) = openssl_verify(agent.dir.path(), &roots, &chain);
    assert!(ok, "after restart: {out}");
    let health = server.cli_ok(&["healthcheck"]);
    assert!(!health.is_empty());
    // The PIN is never logged.
    assert!(!server.log().contains(PIN), "the PIN appears in the log");
}

#[test]
fn a_wrong_pin_token_or_missing_key_stops_the_server_clearly() {
    let hsm = SoftHsm::new("trustdeck-errors", PIN);
    let wrong = hsm.pin_file("not-the-pin");
    let e = refused(&hsm, &hsm.key_manager_toml(&wrong));
    assert!(
        e.contains("PIN rejected by token \"trustdeck-errors\""),
        "{e}"
    );
    assert!(!e.contains("not-the-pin"), "the PIN is not echoed: {e}");

    let good = hsm.pin_file(PIN);
    let open = hsm.dir.path().join("pin-open");
    std::fs::write(&open, format!("{PIN}\n")).expect("pin");
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let e = refused(&hsm, &hsm.key_manager_toml(&open));
    assert!(
        e.contains("readable by group or others") && e.contains("pin-open"),
        "{e}"
    );
    let e = refused(
        &hsm,
        &hsm.key_manager_toml(&good).replace(
            "token_label = \"trustdeck-errors\"",
            "token_label = \"nope\"",
        ),
    );
    assert!(
        e.contains("no token labelled \"nope\"") && e.contains("trustdeck-errors"),
        "{e}"
    );

    let e = refused(
        &hsm,
        &hsm.key_manager_toml(&good)
            .replace(trustdeck_e2e::hsm::MODULE, "/usr/lib/nope/libnope.so"),
    );
    assert!(e.contains("/usr/lib/nope/libnope.so"), "{e}");

    let e = refused(
        &hsm,
        &format!("{}pin = \"1234\"\n", hsm.key_manager_toml(&good)),
    );
    assert!(e.contains("must not be written in the config file"), "{e}");

    // A key the CA journal names, deleted from the token: refuse, never mint a software CA.
    let env = hsm.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut server = ServerProc::start_with_env(&hsm.key_manager_toml(&good), &env);
    let objects = hsm.list_objects();
    let label = objects
        .split("Private Key Object")
        .skip(1)
        .filter_map(|o| o.lines().find(|l| l.trim_start().starts_with("label:")))
        .map(|l| {
            l.trim_start()
                .trim_start_matches("label:")
                .trim()
                .to_string()
        })
        .find(|l| l.starts_with("td-x509"))
        .unwrap_or_else(|| panic!("an X.509 CA key in the token:\n{objects}"));
    server.stop();
    hsm.delete_private_key(&label);
    server.spawn_expect_failure();
    let log = server.log();
    assert!(
        log.contains("CA key unavailable, refusing to start") && log.contains(&label),
        "{log}"
    );
}
