//! End-to-end: authority operations on a real server (issue 13): a forced root rotation
//! through the CLI (prepare, activate, taint, revoke), each step published in the bundle, a
//! revoke refused while a live SVID the fleet reported chains to the tainted root, refusals
//! that change nothing, `kill -9` between steps, and an audit record for every step.

use trustdeck_e2e::*;
use trustdeck_proto::node::{FetchBundleRequest, HeldSvid, HeldSvids, KeyKind, SyncEntriesRequest};

/// `authority x509 <args> --output json`, parsed.
fn x509(server: &ServerProc, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["authority", "x509"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--output", "json"]);
    serde_json::from_str(&server.cli_ok(&a)).expect("authority json")
}

fn show(server: &ServerProc) -> serde_json::Value {
    x509(server, &["show"])
}

fn authority<'a>(show: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    show["authorities"]
        .as_array()
        .expect("authorities")
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("{id} in {show}"))
}

/// Runs a refused operation: non-zero, the rule named, nothing changed.
fn refused(server: &ServerProc, args: &[&str], rule: &str) {
    let (before, bundle) = (show(server), server.bundle_roots());
    let mut a = vec!["authority", "x509"];
    a.extend_from_slice(args);
    let out = server.cli(&a);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(err.contains(&format!("refused: {rule}")), "{args:?}: {err}");
    assert_eq!(show(server), before, "{args:?} changed the authorities");
    assert_eq!(server.bundle_roots(), bundle, "{args:?} changed the bundle");
}

fn kill9_and_restart(server: &mut ServerProc) {
    if let Some(mut c) = server.child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    server.spawn();
}

#[tokio::test]
async fn forced_root_rotation_with_refusals_restarts_and_audit() {
    let mut server = ServerProc::start("");
    let s0 = show(&server);
    let seq0 = s0["bundle_sequence"].as_u64().expect("sequence");
    let old = with_status(&s0, "active").remove(0);

    // An agent attested now holds an SVID chaining to the root about to be replaced.
    let token = server.token("5m");
    let first = AgentSession::join(&server.addr(), &server.bundle_roots(), &token)
        .await
        .expect("join");
    let held_old = HeldSvid {
        kind: KeyKind::X509.into(),
        spiffe_id: first.id.to_string(),
        key_ids: trustdeck_spiffe::x509::chain_key_ids(&first.svid).expect("key ids"),
        not_after: chrono::Utc::now().timestamp() + 300,
        count: 0,
    };
    assert_eq!(held_old.key_ids, vec![old.clone()]);

    // Prepare: published before it signs, sequence + 1.
    let r = x509(&server, &["prepare"]);
    let new = r["authority"]["id"].as_str().expect("id").to_string();
    assert_eq!(r["authority"]["status"], "prepared");
    let s1 = show(&server);
    assert_eq!(s1["bundle_sequence"].as_u64(), Some(seq0 + 1));
    assert_eq!(authority(&s1, &new)["in_bundle"], true);
    assert_eq!(authority(&s1, &new)["tier"], 0);
    assert_eq!(server.bundle_roots().len(), 2);

    // kill -9 between prepare and activate: the same state comes back, the next step works.
    kill9_and_restart(&mut server);
    assert_eq!(show(&server), s1);
    refused(
        &server,
        &["activate", "--id", &old],
        "activate takes only the prepared",
    );
    let r = x509(&server, &["activate", "--id", &new]);
    assert_eq!(r["bundle_sequence"].as_u64(), Some(seq0 + 2));
    let s2 = show(&server);
    assert_eq!(with_status(&s2, "active"), vec![new.clone()]);
    assert_eq!(with_status(&s2, "old"), vec![old.clone()]);

    // Refusals change nothing.
    refused(
        &server,
        &["taint", "--id", &new],
        "taint never takes the active",
    );
    refused(
        &server,
        &["revoke", "--id", &old],
        "revoke takes only a tainted",
    );
    refused(&server, &["taint", "--id", "00ff"], "unknown authority id");
    refused(&server, &["taint"], "--id required");

    // Taint the old root: still in the bundle, listed as tainted to every node.
    x509(&server, &["taint", "--id", &old]);
    let s3 = show(&server);
    assert_eq!(with_status(&s3, "tainted"), vec![old.clone()]);
    assert_eq!(authority(&s3, &old)["in_bundle"], true);
    assert_eq!(s3["bundle_sequence"].as_u64(), Some(seq0 + 3));
    refused(&server, &["taint", "--id", &old], "already in that state");

    // kill -9 between taint and revoke.
    kill9_and_restart(&mut server);
    assert_eq!(show(&server), s3);

    let token = server.token("5m");
    let mut agent = AgentSession::join(&server.addr(), &server.bundle_roots(), &token)
        .await
        .expect("join");
    let fetched = agent
        .client
        .fetch_bundle(FetchBundleRequest::default())
        .await
        .expect("fetch bundle")
        .into_inner();
    assert_eq!(
        fetched.tainted.expect("tainted").x509_key_ids,
        vec![old.clone()]
    );
    // The agent reports the SVID chaining to the tainted root: revoke is refused.
    let report = |svids| SyncEntriesRequest {
        held: Some(HeldSvids { svids }),
    };
    let synced = agent
        .client
        .sync_entries(report(vec![held_old.clone()]))
        .await
        .expect("sync")
        .into_inner();
    assert_eq!(
        synced.tainted.expect("tainted").x509_key_ids,
        vec![old.clone()]
    );
    assert_eq!(authority(&show(&server), &old)["live_svids"], 1);
    refused(
        &server,
        &["revoke", "--id", &old],
        "live SVIDs still chain to it",
    );
    // A report out of bounds is refused and changes nothing.
    let too_deep = HeldSvid {
        key_ids: vec!["ab".into(); 17],
        ..held_old.clone()
    };
    let e = agent
        .client
        .sync_entries(report(vec![too_deep]))
        .await
        .expect_err("out of bounds");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(authority(&show(&server), &old)["live_svids"], 1);

    // Forced: the bundle holds exactly the active root.
    let r = x509(&server, &["revoke", "--id", &old, "--force"]);
    assert_eq!(r["authority"]["status"], "revoked");
    assert_eq!(r["bundle_sequence"].as_u64(), Some(seq0 + 4));
    let roots = server.bundle_roots();
    assert_eq!(roots.len(), 1);
    assert_eq!(
        trustdeck_spiffe::x509::chain_key_ids(&agent.svid).expect("key ids"),
        vec![new.clone()]
    );
    let dir = tempfile::tempdir().expect("tmp");
    let (ok, out) = openssl_verify(dir.path(), &roots, &agent.svid);
    assert!(ok, "an SVID of the active root verifies: {out}");
    let (ok, _) = openssl_verify(dir.path(), &roots, &first.svid);
    assert!(!ok, "an SVID of the revoked root no longer verifies");
    let s4 = show(&server);
    assert_eq!(authority(&s4, &old)["in_bundle"], false);

    // Every step, done or refused, is in the audit log, and the chain holds.
    let audit: serde_json::Value = serde_json::from_str(
        &server.cli_ok(&["audit", "list", "--limit", "1000", "--output", "json"]),
    )
    .expect("audit json");
    let records = audit.as_array().expect("records");
    let count = |action: &str, outcome: &str| {
        records
            .iter()
            .filter(|r| {
                r["action"] == action
                    && r["outcome"]
                        .as_str()
                        .is_some_and(|o| o.starts_with(outcome))
            })
            .count()
    };
    for step in ["prepare", "activate", "taint", "revoke"] {
        assert_eq!(
            count(&format!("authority.x509.{step}"), "ok"),
            1,
            "{step}: {audit}"
        );
    }
    assert_eq!(count("authority.x509.taint", "failed"), 4, "{audit}");
    assert_eq!(count("authority.x509.revoke", "failed"), 2, "{audit}");
    assert_eq!(count("authority.x509.activate", "failed"), 1, "{audit}");
    assert!(
        count("authority.x509.replace", "ok") >= 1,
        "the first CA is audited: {audit}"
    );
    server.stop();
    server.cli_ok(&["audit", "verify"]);
}
