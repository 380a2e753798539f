//! End-to-end: the failure table of seed 000 §5.4, one test per row (row 1, upstream
//! unreachable, is in `nested.rs`), and a root CA rotation under load.

use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_stream::StreamExt;
use trustdeck_e2e::*;
use trustdeck_proto::workload::X509svidRequest;

struct Held {
    chain: Vec<Vec<u8>>,
    bundle: Vec<Vec<u8>>,
    not_after: i64,
    serial: String,
}

/// One FetchX509SVID answer, or why there was none within `wait`.
async fn fetch(agent: &AgentProc, wait: Duration) -> Result<Held, String> {
    let mut c = agent.client();
    let mut s = tokio::time::timeout(wait, c.fetch_x509svid(X509svidRequest {}))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| format!("{:?}: {}", e.code(), e.message()))?
        .into_inner();
    let m = tokio::time::timeout(wait, s.next())
        .await
        .map_err(|_| "no message".to_string())?
        .ok_or("stream ended")?
        .map_err(|e| format!("{:?}: {}", e.code(), e.message()))?;
    let svid = m.svids.first().ok_or("no SVID")?;
    let chain = split_der(&svid.x509_svid);
    let info = trustdeck_spiffe::x509::check_leaf(&chain[0]).map_err(|e| e.to_string())?;
    Ok(Held {
        bundle: split_der(&svid.bundle),
        not_after: info.not_after.timestamp(),
        serial: info.serial_hex,
        chain,
    })
}

async fn fetch_until(agent: &AgentProc, secs: u64, what: &str, ok: impl Fn(&Held) -> bool) -> Held {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(h) = fetch(agent, Duration::from_secs(2)).await
            && ok(&h)
        {
            return h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Row 2: downstream server unreachable. New SVID issuance fails; running workloads keep
/// valid SVIDs until they expire; recovery is automatic.
#[tokio::test(flavor = "multi_thread")]
async fn row2_downstream_unreachable() {
    let root = ServerProc::start("");
    let port = free_port();
    let mut seg = Downstream::start(
        &root,
        "gcp",
        &format!("bind_address = \"127.0.0.1:{port}\""),
    );
    let (mut agent, agent_id) = seg.workload_agent();
    entry_for_me(
        &seg.server,
        &agent_id,
        "spiffe://example.org/prod/gcp/checkout/api",
        "30s",
    );
    let held = fetch_until(&agent, 15, "first SVID", |_| true).await;

    seg.server.stop();
    // The running workload's SVID stays valid until it expires (and not after).
    let (ok, text) = openssl_verify(agent.dir.path(), &held.bundle, &held.chain);
    assert!(ok, "{text}");
    let (ok, _) = openssl_verify_at(
        agent.dir.path(),
        &held.bundle,
        &held.chain,
        Some(held.not_after + 5),
    );
    assert!(!ok, "an SVID must not verify after its expiry");
    // The agent keeps serving its cached SVID.
    let again = fetch(&agent, Duration::from_secs(3))
        .await
        .expect("cached SVID");
    assert_eq!(again.serial, held.serial);
    // A new workload start fails: a fresh agent process (empty cache) gets nothing.
    if let Some(mut c) = agent.child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    agent.spawn();
    let e = fetch(&agent, Duration::from_secs(12))
        .await
        .err()
        .expect("SVID without server");
    assert!(e.contains("Unavailable") && e.contains("no SVID"), "{e}");

    // The downstream server comes back: the agent recovers with no manual step.
    seg.server.spawn();
    fetch_until(&agent, 20, "SVID after the downstream returned", |h| {
        h.not_after > now()
    })
    .await;
}

/// Row 3: the node's agent unreachable. Workloads holding SVIDs keep them until expiry.
#[tokio::test(flavor = "multi_thread")]
async fn row3_agent_unreachable() {
    let root = ServerProc::start("");
    let seg = Downstream::start(&root, "azure", "");
    let (agent, agent_id) = seg.workload_agent();
    entry_for_me(
        &seg.server,
        &agent_id,
        "spiffe://example.org/prod/azure/identity/token-service",
        "1m",
    );
    let held = fetch_until(&agent, 15, "first SVID", |_| true).await;
    let pid = agent.child.as_ref().expect("child").id().to_string();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill");
    assert!(stop.success());
    // New SVID requests on this node fail: the agent does not answer.
    assert!(fetch(&agent, Duration::from_secs(2)).await.is_err());
    // The held SVID verifies now and up to its expiry, not after.
    for at in [now(), held.not_after - 2] {
        let (ok, text) = openssl_verify_at(agent.dir.path(), &held.bundle, &held.chain, Some(at));
        assert!(ok, "at {at}: {text}");
    }
    let (ok, _) = openssl_verify_at(
        agent.dir.path(),
        &held.bundle,
        &held.chain,
        Some(held.not_after + 2),
    );
    assert!(!ok);
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    fetch_until(&agent, 10, "the agent answering again", |_| true).await;
}

/// Row 4: the intermediate expires while the upstream is down. All issuance from that
/// server fails and workloads fail as their SVIDs expire; when the upstream returns, the
/// downstream gets a new intermediate and agents recover, with no manual step.
#[tokio::test(flavor = "multi_thread")]
async fn row4_intermediate_expires_while_upstream_down() {
    let dir = tempfile::tempdir().expect("tmp");
    // Node PKI for the workload agent, so it can attest again once its SVID has expired.
    let mut ca = CertificateParams::new(vec![]).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "node CA");
    let ca_key = KeyPair::generate().expect("key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca, ca_key);
    let mut node = CertificateParams::new(vec![]).expect("params");
    node.distinguished_name.push(DnType::CommonName, "node-1");
    let node_key = KeyPair::generate().expect("key");
    let node_cert = node.signed_by(&node_key, &issuer).expect("cert");
    for (name, text) in [
        ("ca.pem", ca_cert.pem()),
        ("node.pem", node_cert.pem()),
        ("node.key", node_key.serialize_pem()),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write");
    }

    let port = free_port();
    let mut root = ServerProc::start(&format!("bind_address = \"127.0.0.1:{port}\""));
    let seg = Downstream::start(
        &root,
        "dmz",
        &format!(
            "ca_ttl = \"12s\"\ndefault_x509_svid_ttl = \"2s\"\nrotation_check_interval = \"250ms\"\n[node_attestation.x509pop]\nca_bundle_path = \"{}\"",
            dir.path().join("ca.pem").display()
        ),
    );
    let agent = seg.agent_with(&format!(
        "type = \"x509pop\"\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
        dir.path().join("node.pem").display(),
        dir.path().join("node.key").display()
    ));
    seg.server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/node/dmz/node-1",
        "--parent-id",
        &seg.server_spiffe_id,
        "--selector",
        "x509pop:subject:cn:node-1",
    ]);
    entry_for_me(
        &seg.server,
        "spiffe://example.org/node/dmz/node-1",
        "spiffe://example.org/prod/dmz/edge/gateway",
        "2s",
    );
    let first = fetch_until(&agent, 15, "first SVID", |_| true).await;
    let first_intermediate = first.chain[1].clone();

    root.stop();
    // Wait past the intermediate's expiry (at most 12 s after it was minted).
    let int_not_after = trustdeck_spiffe::x509::cert_validity(&first_intermediate)
        .expect("validity")
        .1
        .timestamp();
    tokio::time::sleep(Duration::from_secs(
        (int_not_after - now() + 2).max(0) as u64
    ))
    .await;
    // Hard failure: no valid SVID is handed out, and the server says it cannot issue.
    let r = fetch(&agent, Duration::from_secs(3)).await;
    assert!(
        r.as_ref().map(|h| h.not_after <= now()).unwrap_or(true),
        "a valid SVID was served after the intermediate expired"
    );
    let health = seg.server.cli(&["healthcheck"]);
    assert!(
        !health.status.success(),
        "healthcheck should fail with an expired intermediate"
    );

    // The upstream returns: new intermediate, agents recover, no manual step.
    root.spawn();
    let after = fetch_until(&agent, 40, "an SVID under a new intermediate", |h| {
        h.not_after > now() && h.chain.get(1) != Some(&first_intermediate)
    })
    .await;
    let (ok, text) = openssl_verify(agent.dir.path(), &after.bundle, &after.chain);
    assert!(ok, "{text}");
}

/// A root rotation: the new root is in every bundle before it is activated, then activated;
/// polled throughout, no workload ever holds an SVID that fails validation.
#[tokio::test(flavor = "multi_thread")]
async fn root_rotation_never_leaves_a_workload_with_an_invalid_svid() {
    let root = ServerProc::start(
        "ca_ttl = \"24s\"\ndefault_x509_svid_ttl = \"3s\"\ndefault_jwt_svid_ttl = \"3s\"\nrotation_check_interval = \"200ms\"\n",
    );
    let seg = Downstream::start(
        &root,
        "gcp",
        "ca_ttl = \"24s\"\ndefault_x509_svid_ttl = \"3s\"\nrotation_check_interval = \"200ms\"\n",
    );
    let (agent, agent_id) = seg.workload_agent();
    entry_for_me(
        &seg.server,
        &agent_id,
        "spiffe://example.org/prod/gcp/payments/api",
        "3s",
    );
    let first = fetch_until(&agent, 15, "first SVID", |_| true).await;
    let root0 = first.bundle[0].clone();
    let mut saw_two_roots = false;
    let mut saw_new_root_signing = false;
    let mut saw_root0_gone = false;
    let mut polls = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while tokio::time::Instant::now() < deadline {
        let h = fetch(&agent, Duration::from_secs(3))
            .await
            .unwrap_or_else(|e| panic!("poll {polls}: no SVID ({e})\n{}", agent.log()));
        verify_chain(&h.chain, &h.bundle, now()).unwrap_or_else(|e| {
            panic!("poll {polls}: the workload holds an SVID that fails validation: {e}")
        });
        saw_two_roots |= h.bundle.len() >= 2;
        if !h.bundle.contains(&root0) {
            saw_root0_gone = true;
        }
        if verify_chain(&h.chain, std::slice::from_ref(&root0), now()).is_err() {
            // Chains to a root other than the first: the new root signs.
            assert!(saw_two_roots, "new root signed before every bundle had it");
            saw_new_root_signing = true;
        }
        polls += 1;
        if saw_new_root_signing && saw_root0_gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(polls > 20, "too few polls: {polls}");
    assert!(
        saw_two_roots,
        "the prepared root never appeared in the bundle"
    );
    assert!(saw_new_root_signing, "the new root was never activated");
    assert!(saw_root0_gone, "the old root was never pruned after expiry");
}
