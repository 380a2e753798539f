//! End-to-end: x509pop attestation, eviction and re-attestation, bans, rate limits.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use trustdeck_e2e::*;
use trustdeck_pki::SigningKey;
use trustdeck_pki::keys::SoftwareKey;
use trustdeck_proto::node::RenewAgentRequest;

struct NodeCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn node_ca(cn: &str) -> NodeCa {
    let mut p = CertificateParams::new(vec![]).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    let k = KeyPair::generate().expect("key");
    let c = p.self_signed(&k).expect("ca");
    NodeCa {
        pem: c.pem(),
        issuer: Issuer::new(p, k),
    }
}

fn node_cert(ca: &NodeCa, cn: &str) -> (Vec<u8>, KeyPair) {
    let mut p = CertificateParams::new(vec![format!("{cn}.example.org")]).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    let k = KeyPair::generate().expect("key");
    let c = p.signed_by(&k, &ca.issuer).expect("cert");
    (c.der().to_vec(), k)
}

async fn x509pop_attest(
    server: &ServerProc,
    roots: &[Vec<u8>],
    cert: &[u8],
    node_key: &KeyPair,
) -> Result<AgentSession, tonic::Status> {
    let mut anon = anonymous_client(&server.addr(), roots);
    let (key, pkcs8) = SoftwareKey::ephemeral().expect("key");
    let key: Arc<dyn SigningKey> = Arc::new(key);
    let csr = trustdeck_pki::csr::make_csr(&key, None).expect("csr");
    let r = attest(&mut anon, "x509pop", vec![cert.to_vec()], csr, |nonce| {
        rcgen::SigningKey::sign(node_key, &trustdeck_pki::x509pop::challenge_message(nonce))
            .expect("sign")
    })
    .await?;
    Ok(AgentSession::from_result(&server.addr(), roots, r, &pkcs8))
}

#[tokio::test]
async fn x509pop_attests_and_reattests_after_eviction() {
    let ca = node_ca("node CA");
    let dir = tempfile::tempdir().expect("tmp");
    let ca_path = dir.path().join("node-ca.pem");
    std::fs::write(&ca_path, &ca.pem).expect("write");
    let server = ServerProc::start(&format!(
        "[node_attestation.x509pop]\nca_bundle_path = \"{}\"\n",
        ca_path.display()
    ));
    let roots = server.bundle_roots();
    let (cert, key) = node_cert(&ca, "node-1");

    let mut agent = x509pop_attest(&server, &roots, &cert, &key)
        .await
        .expect("x509pop attestation");
    assert!(
        agent.id.path().starts_with("/trustdeck/agent/x509pop/"),
        "{}",
        agent.id
    );
    // A node alias entry matching the node's selectors gives it a workload entry.
    server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/node/onprem",
        "--parent-id",
        "spiffe://example.org/trustdeck/server",
        "--selector",
        "x509pop:subject:cn:node-1",
    ]);
    server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/prod/onprem/data/db",
        "--parent-id",
        "spiffe://example.org/node/onprem",
        "--selector",
        "unix:uid:70",
    ]);
    let entries = agent.entries().await.expect("sync");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        entries[0].spiffe_id,
        "spiffe://example.org/prod/onprem/data/db"
    );

    // Evicted: the old SVID no longer works ...
    server.cli_ok(&["agent", "evict", "--spiffe-id", agent.id.as_str()]);
    let e = agent.entries().await.expect_err("evicted agent synced");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(
        e.message().contains("not an attested agent"),
        "{}",
        e.message()
    );
    // ... and x509pop attests again with the same identity.
    let mut again = x509pop_attest(&server, &roots, &cert, &key)
        .await
        .expect("re-attestation");
    assert_eq!(again.id, agent.id);
    assert_eq!(again.entries().await.expect("sync").len(), 1);

    // Banned: no renewal, no re-attestation.
    server.cli_ok(&["agent", "ban", "--spiffe-id", again.id.as_str()]);
    let (csr, _) = csr_for(again.id.as_str());
    let e = again
        .client
        .renew_agent(RenewAgentRequest { csr })
        .await
        .expect_err("banned agent renewed");
    assert!(e.message().contains("banned"), "{}", e.message());
    let e = x509pop_attest(&server, &roots, &cert, &key)
        .await
        .err()
        .expect("banned agent attested");
    assert!(e.message().contains("banned"), "{}", e.message());

    // A certificate from another CA and a wrong proof are refused.
    let other = node_ca("other CA");
    let (foreign, fkey) = node_cert(&other, "node-2");
    let e = x509pop_attest(&server, &roots, &foreign, &fkey)
        .await
        .err()
        .expect("foreign cert accepted");
    // The agent learns the reason; the subjects and the chain error stay in the server's log.
    assert_evidence_refused(&e, &["node-2", "does not chain"]);
    assert!(server.log().contains("does not chain"), "{}", server.log());
    let (cert3, _) = node_cert(&ca, "node-3");
    let wrong_key = KeyPair::generate().expect("key");
    let e = x509pop_attest(&server, &roots, &cert3, &wrong_key)
        .await
        .err()
        .expect("proof with the wrong key accepted");
    assert_evidence_refused(&e, &["node-3", "proof of possession"]);
    assert!(
        server.log().contains("proof of possession"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn renewal_and_per_caller_rate_limits() {
    let server = ServerProc::start("[rate_limit]\nsigns_per_second = 0.5\nburst = 3\n");
    let roots = server.bundle_roots();
    let mut a = AgentSession::join(&server.addr(), &roots, &server.token("10m"))
        .await
        .expect("attest a");
    let mut b = AgentSession::join(&server.addr(), &roots, &server.token("10m"))
        .await
        .expect("attest b");
    // Renewal returns a new SVID for the same ID.
    let (csr, _) = csr_for(a.id.as_str());
    let renewed = a
        .client
        .renew_agent(RenewAgentRequest { csr })
        .await
        .expect("renew")
        .into_inner();
    let info = trustdeck_spiffe::x509::check_leaf(&renewed.svid_chain[0]).expect("leaf");
    assert_eq!(info.spiffe_id, a.id);
    // Agent a spent one token on renewal; two more signatures pass, then it is limited.
    let id = "spiffe://example.org/w";
    let ea = server.create_entry(a.id.as_str(), id);
    let eb = server.create_entry(b.id.as_str(), id);
    for _ in 0..2 {
        let (csr, _) = csr_for(id);
        assert_eq!(a.sign(&ea, csr).await.expect("sign").error_code, 0);
    }
    let (csr, _) = csr_for(id);
    let e = a.sign(&ea, csr).await.expect_err("rate limit not applied");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(e.message().contains("rate limit"), "{}", e.message());
    // Another caller is unaffected.
    let (csr, _) = csr_for(id);
    assert_eq!(b.sign(&eb, csr).await.expect("sign b").error_code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_agent_svid_is_refused_on_a_live_connection() {
    let server = ServerProc::start("agent_svid_ttl = \"2s\"\n");
    let roots = server.bundle_roots();
    let mut agent = AgentSession::join(&server.addr(), &roots, &server.token("10m"))
        .await
        .expect("attest");
    // The same connection works while the SVID is valid ...
    agent.entries().await.expect("sync with a valid SVID");
    let not_after = trustdeck_spiffe::x509::check_leaf(&agent.svid[0])
        .expect("leaf")
        .not_after;
    let wait = (not_after - chrono::Utc::now()).num_milliseconds().max(0) as u64 + 1200;
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    // ... and is refused once it has expired, although the TLS session is still up.
    let e = agent.entries().await.expect_err("expired SVID accepted");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("expired"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_applies_the_agents_audience_limits_to_jwt_svids() {
    use trustdeck_proto::node::{MintJwtSvidRequest, Reason};
    let server = ServerProc::start("");
    let roots = server.bundle_roots();
    let mut agent = AgentSession::join(&server.addr(), &roots, &server.token("10m"))
        .await
        .expect("attest");
    let entry = server.create_entry(agent.id.as_str(), "spiffe://example.org/w");
    let mint = |audience: Vec<String>| MintJwtSvidRequest {
        entry_id: entry.clone(),
        audience,
    };
    let ok = agent.client.mint_jwt_svid(mint(vec!["db".into()])).await;
    assert!(ok.is_ok(), "{ok:?}");
    // A raw node-API call, bypassing the agent's own check.
    let flood = (0..65).map(|i| format!("aud-{i}")).collect();
    let e = agent
        .client
        .mint_jwt_svid(mint(flood))
        .await
        .expect_err("65 audiences accepted");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert_eq!(
        trustdeck_proto::reason::reason_of(&e),
        Reason::InvalidRequest
    );
    assert!(e.message().contains("at most 64"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_datastore_reaches_agents_as_a_reason_not_as_its_error() {
    use trustdeck_proto::node::Reason;
    let server = ServerProc::start("");
    let roots = server.bundle_roots();
    let mut agent = AgentSession::join(&server.addr(), &roots, &server.token("10m"))
        .await
        .expect("attest");
    agent
        .entries()
        .await
        .expect("sync while the datastore works");
    // The SQLite file, its WAL and its shared-memory index overwritten under the running
    // server.
    for entry in std::fs::read_dir(&server.data_dir).expect("data dir") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("datastore.sqlite3"))
        {
            std::fs::write(&path, vec![0x5a; 64 * 1024]).expect("overwrite");
        }
    }
    let e = agent
        .entries()
        .await
        .expect_err("sync on a broken datastore");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert_eq!(
        trustdeck_proto::reason::reason_of(&e),
        Reason::DatastoreUnavailable
    );
    assert_eq!(e.message(), "datastore unavailable, retry");
    assert!(
        server.log().contains("node API: datastore error"),
        "{}",
        server.log()
    );
}
