//! End-to-end: downstream namespaces (seed 000: a compromised downstream stays "within the
//! downstream's registered namespace"). A real root and a downstream for the `gcp` segment,
//! whose entry gets the seed 001 platform paths by default: the downstream registers no
//! entry outside them, and the root mints no JWT-SVID outside them for it, while inside
//! works.

use std::time::Duration;

use tokio_stream::StreamExt;
use trustdeck_e2e::*;
use trustdeck_proto::node::{MintJwtSvidForRequest, Reason};
use trustdeck_proto::workload::{JwtsvidRequest, X509svidRequest};

/// The first SVID `spiffe_id` from `agent`'s Workload API, with its key, retried.
async fn svid(agent: &AgentProc, spiffe_id: &str, secs: u64) -> (Vec<Vec<u8>>, Vec<u8>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let mut c = agent.client();
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(3), c.fetch_x509svid(X509svidRequest {})).await
            && let Ok(Some(Ok(m))) =
                tokio::time::timeout(Duration::from_secs(3), s.get_mut().next()).await
            && let Some(svid) = m.svids.iter().find(|s| s.spiffe_id == spiffe_id)
        {
            return (split_der(&svid.x509_svid), svid.x509_svid_key.clone());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no SVID {spiffe_id} within {secs}s:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_downstream_stays_within_its_namespace() {
    let root = ServerProc::start("");
    let gcp = Downstream::start(&root, "gcp", "");
    // The root gave the downstream entry the platform paths of `gcp`.
    let listed: serde_json::Value =
        serde_json::from_str(&root.cli_ok(&["entry", "show", "--output", "json"])).expect("json");
    let ds_entry = listed
        .as_array()
        .and_then(|a| a.iter().find(|e| e["spiffe_id"] == gcp.spiffe_id.as_str()))
        .cloned()
        .expect("downstream entry");
    assert_eq!(
        ds_entry["namespaces"],
        serde_json::json!(["/dev/gcp/", "/prod/gcp/", "/staging/gcp/"])
    );
    // The downstream keeps what the upstream sent with its intermediate.
    let kept = std::fs::read_to_string(gcp.server.data_dir.join("namespaces.json"))
        .expect("namespaces.json");
    assert!(kept.contains("/prod/gcp/"), "{kept}");

    let (agent, agent_id) = gcp.workload_agent();
    let uid = format!("unix:uid:{}", my_uid());
    // Outside: refused by the downstream's admin API, naming its namespaces.
    let outside = "spiffe://example.org/prod/aws/payments/api";
    let out = gcp.server.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        outside,
        "--parent-id",
        &agent_id,
        "--selector",
        &uid,
    ]);
    assert!(!out.status.success(), "an entry outside the namespace");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("outside this server's namespaces") && err.contains("/prod/gcp/"),
        "{err}"
    );
    // A nested downstream's namespace must lie inside this one's.
    let out = gcp.server.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/prod/gcp/leaf",
        "--parent-id",
        &agent_id,
        "--selector",
        &uid,
        "--downstream",
        "--namespace",
        "/prod/",
    ]);
    assert!(
        !out.status.success(),
        "a nested namespace wider than its mid's"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outside this server's own namespaces"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Malformed, and on an entry that is not downstream: refused at the root too.
    let out = root.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/aws/ds",
        "--parent-id",
        &agent_id,
        "--selector",
        &uid,
        "--downstream",
        "--namespace",
        "prod/aws",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must start and end with '/'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Inside: registered, and its SVIDs issued, X.509 and JWT.
    let inside = "spiffe://example.org/prod/gcp/payments/api";
    entry_for_me(&gcp.server, &agent_id, inside, "10m");
    svid(&agent, inside, 20).await;
    let token = agent
        .client()
        .fetch_jwtsvid(JwtsvidRequest {
            audience: vec!["db".into()],
            spiffe_id: inside.into(),
        })
        .await
        .expect("JWT-SVID inside the namespace")
        .into_inner();
    assert_eq!(token.svids[0].spiffe_id, inside);

    // The downstream's own identity asking the root for a JWT-SVID outside its namespace (as
    // a compromised downstream would): refused; inside: minted.
    let (chain, key) = svid(&gcp.local_agent, &gcp.spiffe_id, 20).await;
    let identity = trustdeck_transport::SharedIdentity::new();
    identity.set(chain, &key).expect("identity");
    let roots = trustdeck_transport::SharedRoots::new(&root.bundle_roots()).expect("roots");
    let tls = trustdeck_transport::tls::client_config(identity, roots, server_id()).expect("tls");
    let mut node = trustdeck_proto::node::node_client::NodeClient::new(
        trustdeck_transport::connect::mtls_channel(&root.addr(), tls).expect("channel"),
    );
    let ask = |sub: &str| MintJwtSvidForRequest {
        spiffe_id: sub.into(),
        audience: vec!["db".into()],
        ttl_secs: 60,
    };
    let e = node
        .mint_jwt_svid_for(ask(outside))
        .await
        .expect_err("a JWT-SVID outside the namespace");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert_eq!(
        trustdeck_proto::reason::reason_of(&e),
        Reason::OutsideNamespace,
        "{e:?}"
    );
    for sub in [
        "spiffe://example.org/prod/gcpx/a",
        "spiffe://example.org/prod/gcp",
    ] {
        let e = node.mint_jwt_svid_for(ask(sub)).await.expect_err(sub);
        assert_eq!(
            trustdeck_proto::reason::reason_of(&e),
            Reason::OutsideNamespace
        );
    }
    let ok = node
        .mint_jwt_svid_for(ask("spiffe://example.org/staging/gcp/x/y"))
        .await
        .expect("a JWT-SVID inside the namespace")
        .into_inner();
    assert!(!ok.token.is_empty());
}

/// A downstream without its kept namespaces (an upgrade from before namespaces, a lost file)
/// learns them from its next bundle poll, not only with its next intermediate: it is never
/// left refusing everything until a rotation.
#[tokio::test(flavor = "multi_thread")]
async fn a_downstream_relearns_its_namespaces_from_the_bundle_poll() {
    let root = ServerProc::start("");
    let mut gcp = Downstream::start(&root, "gcp", "ca_ttl = \"1h\"\n");
    let kept = gcp.server.data_dir.join("namespaces.json");
    assert!(kept.exists(), "kept after the first intermediate");
    gcp.server.stop();
    std::fs::remove_file(&kept).expect("remove namespaces.json");
    gcp.server.spawn();
    // The intermediate is still good for most of an hour: no new one is minted, yet the
    // namespaces come back within a few polls.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !kept.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "namespaces not relearned:\n{}",
            gcp.server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_agent, agent_id) = gcp.workload_agent();
    gcp.server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/prod/gcp/payments/api",
        "--parent-id",
        &agent_id,
        "--selector",
        &format!("unix:uid:{}", my_uid()),
    ]);
}
