//! End-to-end: the HSM token of the root server is replaced (its CA and JWT keys lost), with
//! real processes and two SoftHSM2 tokens. Without `--replace-lost-keys` the server refuses to
//! start and names the flag; `check-config --replace-lost-keys` says what it would do; with
//! the flag it starts on the new token: the old root and JWT key are tainted (still in the
//! bundle), new ones are minted in the new token, one `server.replace_lost_keys` record names
//! them. Agents of the root trust its new bundle (`trustdeck-agent run --rebootstrap-bundle`,
//! the operator's step: the root's new TLS identity chains to nothing they trusted), then the
//! downstream replaces its intermediate and every SVID re-issues onto the new root without
//! further action; the old root is revoked, and a workload SVID verifies (openssl) against
//! the new bundle alone. A second `--replace-lost-keys` is refused: nothing is lost.

use std::time::{Duration, Instant};

use trustdeck_e2e::hsm::{SoftHsm, TwoTokens};
use trustdeck_e2e::*;

const PIN: &str = "td-pin-5150";

/// `trustdeck-server check-config --replace-lost-keys` on `server`'s config with `hsm`.
fn check_config(server: &ServerProc, hsm: &SoftHsm) -> (bool, String) {
    let out = hsm
        .cmd(bin("trustdeck-server").to_str().expect("path"))
        .args(["check-config", "--replace-lost-keys", "--config"])
        .arg(&server.config)
        .output()
        .expect("check-config");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Restarts `agent` trusting `roots` (PEM) instead of its stored bundle.
fn rebootstrap(agent: &mut AgentProc, roots_pem: &str) {
    agent.stop();
    std::fs::write(agent.dir.path().join("bootstrap.pem"), roots_pem).expect("bundle");
    agent.run_args = vec!["--rebootstrap-bundle".into()];
    agent.spawn();
}

/// Retries `authority x509 revoke --id key` until the census allows it.
fn revoke_when_allowed(server: &ServerProc, key: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let out = server.cli(&["authority", "x509", "revoke", "--id", key]);
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "revoke of {key} still refused after {secs}s: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_token_is_replaced_explicitly_and_the_fleet_moves_to_the_new_root() {
    let tokens = TwoTokens::new(PIN);
    let mut root = tokens.root_on_a();
    let mut mid = Downstream::start(&root, "mid", "");
    let (mid_agent, mid_agent_id) = mid.workload_agent();
    let mid_wid = "spiffe://example.org/prod/mid/svc";
    entry_for_me(&mid.server, &mid_agent_id, mid_wid, "10m");
    let token = root.token("10m");
    let root_agent_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
    let mut root_agent = AgentProc::start(
        &root,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
        "",
    );
    entry_for_me(
        &root,
        &root_agent_id,
        "spiffe://example.org/prod/core/api",
        "10m",
    );
    let old = root_key_ids(&root.bundle_roots());
    assert_eq!(old.len(), 1);
    let old = old[0].clone();
    let old_kid = with_status(&authority(&root, "jwt", "show", None), "active");
    assert_eq!(old_kid.len(), 1);
    all_clean(&mid_agent, 1, "none", 30).await;
    all_clean(&root_agent, 1, "none", 30).await;

    // The token is replaced by an empty one: the journal names keys it does not hold.
    root.stop();
    tokens.switch_to_b(&mut root);
    root.spawn_expect_failure();
    let log = root.log();
    assert!(
        log.contains("CA key unavailable, refusing to start")
            && log.contains("trustdeck-server run --replace-lost-keys"),
        "the refusal names the way out:\n{log}"
    );
    let (ok, said) = check_config(&root, &tokens.b);
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!("would taint x509 authority {old} (active)"))
            && said.contains(&format!(
                "would taint jwt authority {} (active)",
                old_kid[0]
            ))
            && said.contains("would mint a new x509 authority in pkcs11 token td-token-b")
            && said.contains("server.replace_lost_keys"),
        "{said}"
    );

    root.run_args = vec!["--replace-lost-keys".into()];
    root.spawn();
    let roots = root_key_ids(&root.bundle_roots());
    assert_eq!(roots.len(), 2, "old (tainted) and new roots: {roots:?}");
    assert!(roots.contains(&old));
    let new = roots.iter().find(|k| **k != old).expect("new root").clone();
    let x509 = authority(&root, "x509", "show", None);
    assert_eq!(with_status(&x509, "tainted"), vec![old.clone()], "{x509}");
    assert_eq!(with_status(&x509, "active"), vec![new.clone()], "{x509}");
    let jwt = authority(&root, "jwt", "show", None);
    assert_eq!(with_status(&jwt, "tainted"), old_kid, "{jwt}");
    assert_eq!(with_status(&jwt, "active").len(), 1, "{jwt}");
    let objects = tokens.b.list_objects();
    assert!(
        objects.matches("Private Key Object").count() >= 2,
        "new keys in the new token:\n{objects}"
    );
    let replaced: Vec<String> = root
        .audit_log()
        .into_iter()
        .filter(|r| r.contains("|server.replace_lost_keys|"))
        .collect();
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    assert!(
        replaced[0].starts_with("operator (trustdeck-server run")
            && replaced[0].contains(&format!("x509 {old}: active -> tainted"))
            && replaced[0].contains(&format!("jwt {}: active -> tainted", old_kid[0]))
            && replaced[0].contains(&format!("x509 {new}: new -> active")),
        "{replaced:?}"
    );

    // The operator hands the new bundle to the agents of the root (its TLS identity now
    // chains to the new root only); everything else follows by itself.
    wait_for(30, "the agent to name --rebootstrap-bundle", || {
        root_agent
            .log()
            .contains("trustdeck-agent run --rebootstrap-bundle")
            .then_some(())
    });
    let pem = root.cli_ok(&["bundle", "show", "--format", "pem"]);
    rebootstrap(&mut root_agent, &pem);
    rebootstrap(&mut mid.local_agent, &pem);
    let mid_svids = all_clean(&mid_agent, 1, &old, 90).await;
    let root_svids = all_clean(&root_agent, 1, &old, 60).await;
    for (id, chain, _) in mid_svids.iter().chain(&root_svids) {
        assert_eq!(chain_keys(chain).last(), Some(&new), "{id}");
    }
    let show = authority(&mid.server, "x509", "show", None);
    assert_eq!(
        with_status(&show, "tainted").len(),
        1,
        "the mid's intermediate under the lost root was replaced: {show}"
    );
    wait_for(30, "agent SVIDs re-issued", || {
        let clean = [&root_agent, &mid_agent]
            .iter()
            .all(|a| !chain_keys(&agent_own_chain(a)).contains(&old));
        clean.then_some(())
    });

    // Nothing chains to the old root any more: it is revoked and leaves the bundle.
    revoke_when_allowed(&root, &old, 60);
    let trusted = root.bundle_roots();
    assert_eq!(root_key_ids(&trusted), vec![new.clone()]);
    let (_, chain, _) = &mid_svids[0];
    let (ok, text) = openssl_verify(mid_agent.dir.path(), &trusted, chain);
    assert!(ok, "a workload SVID against the new bundle: {text}");

    // Nothing is lost now: the flag is refused, by `run` and by `check-config`.
    root.stop();
    root.spawn_expect_failure();
    assert!(
        root.log().contains("--replace-lost-keys refused") && root.log().contains("no key is lost"),
        "{}",
        root.log()
    );
    let (ok, said) = check_config(&root, &tokens.b);
    assert!(!ok && said.contains("no key is lost"), "{said}");
}
