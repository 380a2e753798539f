//! End-to-end: nested topology (seed 000 §3–5) with real processes: an upstream root server,
//! downstream servers that get their identity from a local agent and their intermediate CA
//! from the upstream, and workload agents in each segment.

use std::time::Duration;

use tokio_stream::StreamExt;
use trustdeck_e2e::*;
use trustdeck_proto::workload::{JwtsvidRequest, ValidateJwtsvidRequest, X509svidRequest};

/// The first X509-SVID response for this process from `agent`, retried until one arrives.
async fn x509(agent: &AgentProc, spiffe_id: &str, secs: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let mut c = agent.client();
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(3), c.fetch_x509svid(X509svidRequest {})).await
            && let Ok(Some(Ok(m))) =
                tokio::time::timeout(Duration::from_secs(3), s.get_mut().next()).await
            && let Some(svid) = m.svids.iter().find(|s| s.spiffe_id == spiffe_id)
        {
            return (split_der(&svid.x509_svid), split_der(&svid.bundle));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no SVID {spiffe_id} within {secs}s:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn jwt(agent: &AgentProc, audience: &str) -> Result<String, tonic::Status> {
    let r = agent
        .client()
        .fetch_jwtsvid(JwtsvidRequest {
            audience: vec![audience.into()],
            spiffe_id: String::new(),
        })
        .await?
        .into_inner();
    Ok(r.svids[0].svid.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn segments_validate_each_other_with_nothing_segment_specific() {
    let root = ServerProc::start("");
    let gcp = Downstream::start(&root, "gcp", "");
    let dmz = Downstream::start(&root, "dmz", "");
    let (gcp_agent, gcp_agent_id) = gcp.workload_agent();
    let (dmz_agent, dmz_agent_id) = dmz.workload_agent();
    let gcp_id = "spiffe://example.org/prod/gcp/payments/api-server";
    let dmz_id = "spiffe://example.org/prod/dmz/edge/gateway";
    entry_for_me(&gcp.server, &gcp_agent_id, gcp_id, "10m");
    entry_for_me(&dmz.server, &dmz_agent_id, dmz_id, "10m");

    // Wait until each agent has synced its new entry, then use real clients in each segment.
    x509(&gcp_agent, gcp_id, 15).await;
    x509(&dmz_agent, dmz_id, 15).await;
    let g = py_spiffe(&gcp_agent.socket, &["full", "--timeout", "20"]);
    let d = py_spiffe(&dmz_agent.socket, &["full", "--timeout", "20"]);
    assert_eq!(g["x509"][0]["spiffe_id"], gcp_id, "{g}");
    assert_eq!(d["x509"][0]["spiffe_id"], dmz_id, "{d}");
    assert_eq!(g["validated_spiffe_id"], gcp_id);
    assert_eq!(d["locally_validated_spiffe_id"], dmz_id);
    let pem = |v: &serde_json::Value, k: &str| {
        trustdeck_spiffe::pem::decode_certs(v["x509"][0][k].as_str().expect("pem")).expect("certs")
    };
    let (g_chain, g_bundle) = (pem(&g, "chain_pem"), pem(&g, "bundle_pem"));
    let (d_chain, d_bundle) = (pem(&d, "chain_pem"), pem(&d, "bundle_pem"));
    // Chains run leaf -> segment intermediate; bundles hold the root only, the same root.
    assert_eq!(g_chain.len(), 2);
    assert_eq!(d_chain.len(), 2);
    assert_ne!(
        g_chain[1], d_chain[1],
        "each segment has its own intermediate"
    );
    assert_eq!(g_bundle, root.bundle_roots());
    assert_eq!(d_bundle, g_bundle);
    // A gcp workload validates a dmz workload's chain with its own bundle, and vice versa.
    let (ok, text) = openssl_verify(gcp_agent.dir.path(), &g_bundle, &d_chain);
    assert!(ok, "gcp validating dmz: {text}");
    let (ok, text) = openssl_verify(dmz_agent.dir.path(), &d_bundle, &g_chain);
    assert!(ok, "dmz validating gcp: {text}");
    // JWT-SVIDs are signed by the upstream's key: a dmz token validates through the gcp agent.
    let token = d["jwt"]["token"].as_str().expect("token").to_string();
    let v = gcp_agent
        .client()
        .validate_jwtsvid(ValidateJwtsvidRequest {
            audience: "trustdeck-test".into(),
            svid: token,
        })
        .await
        .expect("cross-segment JWT validation")
        .into_inner();
    assert_eq!(v.spiffe_id, dmz_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_unreachable_jwt_fails_at_once_x509_goes_on() {
    let port = free_port();
    let mut root = ServerProc::start(&format!("bind_address = \"127.0.0.1:{port}\"\n"));
    let seg = Downstream::start(&root, "onprem", "");
    let (agent, agent_id) = seg.workload_agent();
    let id = "spiffe://example.org/prod/onprem/data/postgres-primary";
    entry_for_me(&seg.server, &agent_id, id, "10m");
    x509(&agent, id, 15).await;
    jwt(&agent, "db").await.expect("JWT-SVID while connected");

    root.stop();
    // JWT-SVID issuance fails at once (fresh audience: nothing cached).
    let t = std::time::Instant::now();
    let e = jwt(&agent, "other-audience")
        .await
        .expect_err("JWT-SVID without upstream");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "JWT failure took {:?}",
        t.elapsed()
    );
    // X.509 issuance continues: a brand-new entry gets its SVID from the intermediate.
    let new_id = "spiffe://example.org/prod/onprem/data/postgres-replica";
    entry_for_me(&seg.server, &agent_id, new_id, "10m");
    let (chain, bundle) = x509(&agent, new_id, 15).await;
    let (ok, text) = openssl_verify(agent.dir.path(), &bundle, &chain);
    assert!(ok, "{text}");
    // The downstream reports the upstream as lost.
    let health = seg.server.cli(&["healthcheck"]);
    let err = String::from_utf8_lossy(&health.stderr);
    wait_for(10, "upstream reported lost", || {
        let h = seg.server.cli(&["healthcheck"]);
        String::from_utf8_lossy(&h.stderr)
            .contains("upstream lost")
            .then_some(())
    });
    assert!(health.status.success(), "X.509 still serving: {err}");

    // Upstream back: JWT-SVIDs resume with no restart and no manual step.
    root.spawn();
    wait_for_async_ok(20, || jwt(&agent, "third-audience")).await;
}

async fn wait_for_async_ok<T, E: std::fmt::Debug, F, Fut>(secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "still failing after {secs}s: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_levels_root_intermediate_leaf_servers() {
    let root = ServerProc::start("");
    let mid = Downstream::start(&root, "region-eu", "");
    // The leaf's own ID lies in its mid's namespace (`/prod/region-eu/`): the mid issues it.
    let leaf = Downstream::start(&mid.server, "prod/region-eu/factory", "");
    let (agent, agent_id) = leaf.workload_agent();
    // Inside the leaf's namespace, which lies inside its mid's (`/prod/region-eu/`).
    let id = "spiffe://example.org/prod/region-eu/factory/plc-gateway";
    entry_for_me(&leaf.server, &agent_id, id, "10m");
    let (chain, bundle) = x509(&agent, id, 20).await;
    // leaf SVID -> leaf server's intermediate -> mid server's intermediate; bundle = root.
    assert_eq!(chain.len(), 3, "chain should be leaf, 2 intermediates");
    assert_eq!(bundle, root.bundle_roots());
    let (ok, text) = openssl_verify(agent.dir.path(), &bundle, &chain);
    assert!(ok, "{text}");
    // JWT-SVIDs are forwarded two levels up and validate against the root's keys.
    let token = jwt(&agent, "plc").await.expect("JWT two levels down");
    let v = agent
        .client()
        .validate_jwtsvid(ValidateJwtsvidRequest {
            audience: "plc".into(),
            svid: token,
        })
        .await
        .expect("validate")
        .into_inner();
    assert_eq!(v.spiffe_id, id);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_downstream_entries_get_an_intermediate() {
    let root = ServerProc::start("");
    let token = root.token("10m");
    let agent_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
    // An ordinary workload entry (not marked downstream) for this process.
    let id = "spiffe://example.org/prod/gcp/payments/api-server";
    entry_for_me(&root, &agent_id, id, "10m");
    let agent = AgentProc::start(
        &root,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
        "",
    );
    let mut c = agent.client();
    let mut s = c
        .fetch_x509svid(X509svidRequest {})
        .await
        .expect("fetch")
        .into_inner();
    let m = s.next().await.expect("message").expect("ok");
    let svid = &m.svids[0];
    // Call the upstream's node API with that workload SVID.
    let identity = trustdeck_transport::SharedIdentity::new();
    identity
        .set(split_der(&svid.x509_svid), &svid.x509_svid_key)
        .expect("identity");
    let roots = trustdeck_transport::SharedRoots::new(&root.bundle_roots()).expect("roots");
    let tls = trustdeck_transport::tls::client_config(identity, roots, server_id()).expect("tls");
    let mut node = trustdeck_proto::node::node_client::NodeClient::new(
        trustdeck_transport::connect::mtls_channel(&root.addr(), tls).expect("channel"),
    );
    let (csr, _) = csr_for(id);
    let e = node
        .mint_intermediate(trustdeck_proto::node::MintIntermediateRequest { csr, ttl_secs: 600 })
        .await
        .expect_err("intermediate for a non-downstream caller");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(
        e.message().contains("not a downstream server"),
        "{}",
        e.message()
    );
    let e = node
        .mint_jwt_svid_for(trustdeck_proto::node::MintJwtSvidForRequest {
            spiffe_id: "spiffe://example.org/anything".into(),
            audience: vec!["x".into()],
            ttl_secs: 60,
        })
        .await
        .expect_err("JWT-SVID minting for a non-downstream caller");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
}
