//! End-to-end: workloads of one trust domain validate SVIDs of another (issue 15). Home
//! server A (example.org) federates with partner B (partner.test) over `https_spiffe`; an
//! entry of A that `federates_with` partner.test gets B's bundle through its agent, so an
//! unchanged SPIFFE client (py-spiffe) verifies B's X.509-SVID and B's JWT-SVID, locally and
//! through the agent's ValidateJWTSVID. An entry without it gets nothing of B's. A downstream
//! of A hands the bundle relayed by A to its own workloads. When B prepares a new root, A's
//! workloads hold it before it signs anything, and B's SVIDs re-issued on it validate at A.

use std::path::Path;

use trustdeck_e2e::*;

const PARTNER: &str = "partner.test";
const AUDIENCE: &str = "home-api";

/// What the workload on `socket` holds of the partner, and its verdicts on `chain` and `token`.
fn federated(socket: &Path, chain: &Path, token: &str) -> serde_json::Value {
    try_federated(socket, chain, token).unwrap_or_else(|e| panic!("{e}"))
}

/// [`federated`], failing while the workload has no identity yet.
fn try_federated(socket: &Path, chain: &Path, token: &str) -> Result<serde_json::Value, String> {
    foreign_view(socket, PARTNER, Some(chain), Some((token, AUDIENCE)))
}

#[test]
fn workloads_validate_a_federated_partners_svids() {
    let b = ServerProc::start_in(
        PARTNER,
        "[federation.bundle_endpoint]\nbind_address = \"127.0.0.1:0\"\n\
         profile = \"https_spiffe\"\nrefresh_hint = \"1s\"\n",
    );
    let a = ServerProc::start("[federation]\nrefresh_minimum = \"1s\"\n");
    let dir = tempfile::tempdir().expect("tempdir");

    // A partner workload's SVIDs, from B's agent.
    let (b_agent, b_agent_id) = join_agent(&b);
    let partner_id = format!("spiffe://{PARTNER}/payments");
    assert!(
        federating_entry(&b, &b_agent_id, &partner_id, &[])
            .status
            .success()
    );
    let svid = wait_for(30, "the partner workload's SVID", || {
        try_py_spiffe(&b_agent.socket, &["x509", "--timeout", "3"]).ok()
    });
    let chain = dir.path().join("partner-chain.pem");
    std::fs::write(
        &chain,
        svid["x509"][0]["chain_pem"].as_str().expect("chain"),
    )
    .expect("write");
    let jwt = py_spiffe(&b_agent.socket, &["jwt", "--audience", AUDIENCE]);
    let token = jwt["jwt"]["token"].as_str().expect("token").to_string();

    // A federates with B.
    federate_https_spiffe(&a, &b, dir.path());
    a.cli_ok(&["federation", "refresh", "--trust-domain", PARTNER]);

    // A workload whose entry does not federate: nothing of B's, B's SVIDs refused.
    let (a_agent, a_agent_id) = join_agent(&a);
    assert!(
        federating_entry(&a, &a_agent_id, "spiffe://example.org/plain", &[])
            .status
            .success()
    );
    wait_for(30, "the home workload's SVID", || {
        try_py_spiffe(&a_agent.socket, &["x509", "--timeout", "3"]).ok()
    });
    let plain = federated(&a_agent.socket, &chain, &token);
    assert_eq!(plain["context_roots"], serde_json::json!([]), "{plain}");
    assert_eq!(plain["jwt_kids"], serde_json::json!([]), "{plain}");
    assert!(plain["chain"].is_string(), "{plain}");
    let agent_says = plain["agent"].as_str().expect("refused");
    assert!(
        agent_says.contains("INVALID_ARGUMENT") && agent_says.contains("do not federate"),
        "{agent_says}"
    );

    // An entry may only federate with a trust domain whose bundle the server holds.
    let out = federating_entry(&a, &a_agent_id, "spiffe://example.org/x", &["unknown.test"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("holds no bundle") && err.contains("unknown.test"),
        "{err}"
    );

    // A federating entry for the same process: B's roots and keys, B's SVIDs valid.
    let out = federating_entry(&a, &a_agent_id, "spiffe://example.org/web", &[PARTNER]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let roots = fingerprints(&b.bundle_roots());
    let seen = wait_for(30, "the partner's bundle at the home workload", || {
        let v = federated(&a_agent.socket, &chain, &token);
        (v["context_roots"] == serde_json::json!(roots)).then_some(v)
    });
    assert_eq!(
        seen["x509_bundles_roots"],
        serde_json::json!(roots),
        "{seen}"
    );
    assert!(
        !seen["jwt_kids"].as_array().expect("kids").is_empty(),
        "{seen}"
    );
    assert!(seen["chain"].is_null(), "B's X.509-SVID verifies: {seen}");
    assert!(
        seen["local"].is_null(),
        "B's JWT-SVID verifies locally: {seen}"
    );
    assert!(
        seen["agent"].is_null(),
        "the agent validates B's JWT-SVID: {seen}"
    );
    assert_eq!(seen["agent_spiffe_id"], partner_id.as_str());

    // A nested segment: the downstream's workloads get the bundle A relays.
    let seg = Downstream::start(&a, "onprem", "");
    let (seg_agent, seg_agent_id) = seg.workload_agent();
    let seg_id = "spiffe://example.org/prod/onprem/billing";
    wait_for(30, "the downstream holds the relayed bundle", || {
        federating_entry(&seg.server, &seg_agent_id, seg_id, &[PARTNER])
            .status
            .success()
            .then_some(())
    });
    let nested = wait_for(30, "the partner's bundle at the nested workload", || {
        let v = try_federated(&seg_agent.socket, &chain, &token).ok()?;
        (v["context_roots"] == serde_json::json!(roots)).then_some(v)
    });
    assert!(nested["chain"].is_null(), "{nested}");
    assert!(nested["agent"].is_null(), "{nested}");

    // B prepares a new root: A's workloads hold it before it signs anything.
    b.cli_ok(&["authority", "x509", "prepare"]);
    let both = fingerprints(&b.bundle_roots());
    assert_eq!(both.len(), 2);
    let after = wait_for(
        30,
        "the partner's prepared root at the home workload",
        || {
            let v = federated(&a_agent.socket, &chain, &token);
            (v["context_roots"] == serde_json::json!(both)).then_some(v)
        },
    );
    assert!(after["chain"].is_null(), "{after}");

    // B activates it and moves its SVIDs onto it (the old root tainted): A's workload
    // validates B's new X.509-SVID, and B's SVIDs never failed to validate at A on the way.
    let authorities = |status: &str| -> String {
        let v: serde_json::Value =
            serde_json::from_str(&b.cli_ok(&["authority", "x509", "show", "--output", "json"]))
                .expect("json");
        v["authorities"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["status"] == status))
            .and_then(|x| x["id"].as_str())
            .unwrap_or_else(|| panic!("a {status} root: {v}"))
            .to_string()
    };
    let (old_root, new_root) = (authorities("active"), authorities("prepared"));
    b.cli_ok(&["authority", "x509", "activate", "--id", &new_root]);
    b.cli_ok(&["authority", "x509", "taint", "--id", &old_root]);
    let first = std::fs::read_to_string(&chain).expect("chain");
    let moved = dir.path().join("partner-chain-2.pem");
    let seen = wait_for(30, "B's workload SVID re-issued on the new root", || {
        save_svid_chain(&b_agent.socket, &moved);
        let now = std::fs::read_to_string(&moved).ok()?;
        let v = federated(&a_agent.socket, &moved, &token);
        assert!(v["chain"].is_null(), "B's SVID failed at A: {v}");
        (now != first).then_some(v)
    });
    assert!(seen["chain"].is_null(), "{seen}");
    let entries = a.cli_ok(&["entry", "show", "--output", "json"]);
    assert!(
        entries.contains("\"federates_with\":[\"partner.test\"]"),
        "{entries}"
    );
}
