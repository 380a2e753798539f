//! End-to-end: a real `trustdeck-server` process, its CLI, and an agent talking the node API
//! over mTLS.

use std::time::Duration;

use trustdeck_e2e::*;
use trustdeck_spiffe::x509;

fn entry_count(server: &ServerProc) -> usize {
    let out = server.cli_ok(&["entry", "show", "--output", "json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .expect("json")
        .as_array()
        .expect("array")
        .len()
}

async fn issue_and_verify(server: &ServerProc) {
    let roots = server.bundle_roots();
    let token = server.token("10m");
    let mut agent = AgentSession::join(&server.addr(), &roots, &token)
        .await
        .expect("attest");
    assert_eq!(
        agent.id.to_string(),
        format!("spiffe://example.org/trustdeck/agent/join_token/{token}")
    );
    // The agent SVID is a SPIFFE leaf for the agent ID and verifies with openssl.
    let info = x509::check_leaf(&agent.svid[0]).expect("agent SVID profile");
    assert_eq!(info.spiffe_id, agent.id);
    let (ok, text) = openssl_verify(server.dir.path(), &roots, &agent.svid);
    assert!(ok, "openssl verify agent SVID: {text}");

    let id = "spiffe://example.org/prod/gcp/payments/api-server";
    let entry_id = server.create_entry(agent.id.as_str(), id);
    let entries = agent.entries().await.expect("sync");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id, entry_id);
    assert_eq!(entries[0].spiffe_id, id);

    let (csr, key) = csr_for(id);
    let r = agent.sign(&entry_id, csr).await.expect("sign");
    assert_eq!(r.error_code, 0, "{}", r.error_message);
    let leaf = x509::check_leaf(&r.chain[0]).expect("leaf profile");
    assert_eq!(leaf.spiffe_id.as_str(), id);
    assert_eq!(leaf.public_key_spki_der, key.public_key_spki());
    let ttl = leaf.not_after - leaf.not_before;
    assert!(
        ttl <= chrono::Duration::minutes(10) + chrono::Duration::seconds(10),
        "default TTL is 10m, got {ttl}"
    );
    let (ok, text) = openssl_verify(server.dir.path(), &roots, &r.chain);
    assert!(ok, "openssl verify workload SVID: {text}");
}

#[tokio::test]
async fn join_token_agent_gets_workload_svids_that_openssl_verifies() {
    let server = ServerProc::start("");
    issue_and_verify(&server).await;
    // Health check passes against the running server.
    assert!(server.cli_ok(&["healthcheck"]).contains("healthy"));
}

#[tokio::test]
async fn same_flow_on_postgresql() {
    if let Some(db) = PgDatabase::create("e2e") {
        let server = ServerProc::start(&db.config_line());
        issue_and_verify(&server).await;
    }
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_loses_nothing() {
    let server = ServerProc::start("");
    let roots = server.bundle_roots();
    let token = server.token("10m");
    let mut agent = AgentSession::join(&server.addr(), &roots, &token)
        .await
        .expect("attest");
    let good_id = "spiffe://example.org/prod/gcp/payments/api";
    let entry_id = server.create_entry(agent.id.as_str(), good_id);
    let before = server.cli_ok(&["entry", "show", "--output", "json"]);

    // Malformed SPIFFE IDs and selectors in `entry create`: a clear error, nothing stored.
    let cases: &[(&[&str], &str)] = &[
        (
            &["--spiffe-id", "spiffe://Example.org/x"],
            "trust domain character 'E'",
        ),
        (&["--spiffe-id", "spiffe://example.org/a//b"], "empty"),
        (&["--spiffe-id", "spiffe://example.org/a/../b"], ".."),
        (&["--spiffe-id", "https://example.org/a"], "scheme"),
        (&["--spiffe-id", "spiffe://example.org"], "path"),
        (
            &["--spiffe-id", "spiffe://other.org/a"],
            "not in this server's trust domain",
        ),
        (&["--selector", "unix"], "selector"),
        (&["--selector", "unix:uid: 1000"], "whitespace"),
    ];
    for (args, expect) in cases {
        let mut full = vec!["entry", "create", "--parent-id", agent.id.as_str()];
        if !args.contains(&"--spiffe-id") {
            full.extend(["--spiffe-id", "spiffe://example.org/ok"]);
        }
        if !args.contains(&"--selector") {
            full.extend(["--selector", "unix:uid:1"]);
        }
        full.extend_from_slice(args);
        let out = server.cli(&full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            err.contains(expect) && err.contains("InvalidArgument"),
            "{args:?}: error should mention {expect:?}: {err}"
        );
    }
    assert_eq!(
        server.cli_ok(&["entry", "show", "--output", "json"]),
        before
    );

    // A reused join token is refused, naming the reason.
    let anon_err = AgentSession::join(&server.addr(), &roots, &token)
        .await
        .err()
        .expect("reused token accepted");
    assert_eq!(anon_err.code(), tonic::Code::PermissionDenied);
    assert!(
        anon_err.message().contains("already used"),
        "{}",
        anon_err.message()
    );
    // An expired one too.
    let short = server.token("1s");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let e = AgentSession::join(&server.addr(), &roots, &short)
        .await
        .err()
        .expect("expired token accepted");
    assert!(e.message().contains("expired"), "{}", e.message());
    // An unknown one.
    let e = AgentSession::join(&server.addr(), &roots, "deadbeef")
        .await
        .err()
        .expect("unknown token accepted");
    assert!(
        e.message().contains("not found") || e.message().contains("unknown"),
        "{}",
        e.message()
    );

    // A CSR for a SPIFFE ID the agent is not authorised for.
    let (csr, _) = csr_for("spiffe://example.org/prod/gcp/payments/admin");
    let r = agent.sign("", csr.clone()).await.expect("call");
    assert_eq!(r.error_code, tonic::Code::PermissionDenied as i32);
    assert!(
        r.error_message.contains("not authorised for SPIFFE ID"),
        "{}",
        r.error_message
    );
    assert!(r.chain.is_empty());
    // ... also when it names its own entry.
    let r = agent.sign(&entry_id, csr).await.expect("call");
    assert_eq!(
        r.error_code,
        tonic::Code::PermissionDenied as i32,
        "{}",
        r.error_message
    );
    // A CSR with a bad signature.
    let (mut bad, _) = csr_for(good_id);
    let n = bad.len();
    bad[n - 5] ^= 0x01;
    let r = agent.sign(&entry_id, bad).await.expect("call");
    assert_eq!(r.error_code, tonic::Code::InvalidArgument as i32);
    assert!(r.error_message.contains("signature"), "{}", r.error_message);
    // Garbage.
    let r = agent
        .sign(&entry_id, b"garbage".to_vec())
        .await
        .expect("call");
    assert_eq!(r.error_code, tonic::Code::InvalidArgument as i32);

    // A caller with no SVID gets nothing.
    let mut anon = anonymous_client(&server.addr(), &roots);
    let e = anon
        .sync_entries(trustdeck_proto::node::SyncEntriesRequest::default())
        .await
        .expect_err("anonymous sync");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);

    // The server keeps serving: the good request still works, nothing was lost.
    let (csr, _) = csr_for(good_id);
    let r = agent.sign(&entry_id, csr).await.expect("call");
    assert_eq!(r.error_code, 0, "{}", r.error_message);
    assert_eq!(entry_count(&server), 1);
}

#[tokio::test]
async fn truncated_config_and_corrupt_sqlite_are_refused_without_damage() {
    let dir = tempfile::tempdir().expect("tmp");
    let text = server_config(dir.path(), "");
    let cut = &text[..text.find("ca_ttl").expect("ca_ttl") + 9];
    let cfg = dir.path().join("cut.toml");
    std::fs::write(&cfg, cut).expect("write");
    let out = std::process::Command::new(bin("trustdeck-server"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cut.toml") && err.contains("line"), "{err}");

    let cfg = dir.path().join("ok.toml");
    std::fs::write(&cfg, &text).expect("write");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let db = data.join("datastore.sqlite3");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&db, &garbage).expect("write");
    let out = std::process::Command::new(bin("trustdeck-server"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("datastore") && err.contains("not a"), "{err}");
    assert_eq!(
        std::fs::read(&db).expect("read"),
        garbage,
        "corrupt file was modified"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_ca_bundle_sequence_and_entries() {
    let mut server = ServerProc::start("");
    let roots = server.bundle_roots();
    let bundle = server.cli_ok(&["bundle", "show", "--format", "spiffe"]);
    let token = server.token("10m");
    let agent = AgentSession::join(&server.addr(), &roots, &token)
        .await
        .expect("attest");
    let id = "spiffe://example.org/prod/onprem/data/postgres-primary";
    let entry_id = server.create_entry(agent.id.as_str(), id);
    let entries = server.cli_ok(&["entry", "show", "--output", "json"]);
    let agents = server.cli_ok(&["agent", "list", "--output", "json"]);
    drop(agent);

    server.stop();
    server.spawn();

    assert_eq!(
        server.cli_ok(&["bundle", "show", "--format", "spiffe"]),
        bundle
    );
    assert_eq!(
        server.cli_ok(&["entry", "show", "--output", "json"]),
        entries
    );
    assert_eq!(
        server.cli_ok(&["agent", "list", "--output", "json"]),
        agents
    );
    // The agent needs a new session (new address), not a new attestation: its SVID still works.
    // A fresh agent attests and gets an SVID that verifies against the bundle from before.
    let token = server.token("10m");
    let mut agent2 = AgentSession::join(&server.addr(), &roots, &token)
        .await
        .expect("attest after restart");
    let id2 = "spiffe://example.org/prod/onprem/data/postgres-replica";
    let e2 = server.create_entry(agent2.id.as_str(), id2);
    let (csr, _) = csr_for(id2);
    let r = agent2.sign(&e2, csr).await.expect("sign");
    assert_eq!(r.error_code, 0, "{}", r.error_message);
    let (ok, text) = openssl_verify(server.dir.path(), &roots, &r.chain);
    assert!(ok, "SVID after restart must chain to the same root: {text}");
    assert!(!entry_id.is_empty());
}
