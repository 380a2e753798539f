//! End-to-end: agent node attestation lifecycle against a real server.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_stream::StreamExt;
use trustdeck_e2e::*;
use trustdeck_proto::workload::X509svidRequest;

fn agents(server: &ServerProc) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(
        &server.cli_ok(&["agent", "list", "--output", "json"]),
    )
    .expect("json")
    .as_array()
    .cloned()
    .unwrap_or_default()
}

async fn svid_serial(agent: &AgentProc) -> Option<String> {
    let mut c = agent.client();
    let mut s = c
        .fetch_x509svid(X509svidRequest {})
        .await
        .ok()?
        .into_inner();
    let m = tokio::time::timeout(std::time::Duration::from_secs(3), s.next())
        .await
        .ok()??
        .ok()?;
    let der = &m.svids.first()?.x509_svid;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.raw_serial_as_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn x509pop_agent_reattests_on_its_own_after_eviction() {
    let dir = tempfile::tempdir().expect("tmp");
    // A node CA and a node certificate, as an internal PKI would issue at build time.
    let mut ca = CertificateParams::new(vec![]).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "node CA");
    let ca_key = KeyPair::generate().expect("key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca, ca_key);
    let mut node = CertificateParams::new(vec!["node-7.example.org".into()]).expect("params");
    node.distinguished_name.push(DnType::CommonName, "node-7");
    let node_key = KeyPair::generate().expect("key");
    let node_cert = node.signed_by(&node_key, &issuer).expect("cert");
    let ca_path = dir.path().join("node-ca.pem");
    let cert_path = dir.path().join("node.pem");
    let key_path = dir.path().join("node.key");
    std::fs::write(&ca_path, ca_cert.pem()).expect("write");
    std::fs::write(&cert_path, node_cert.pem()).expect("write");
    std::fs::write(&key_path, node_key.serialize_pem()).expect("write");

    let server = ServerProc::start(&format!(
        "[node_attestation.x509pop]\nca_bundle_path = \"{}\"\n",
        ca_path.display()
    ));
    // Node alias for node-7, and a workload entry under it for this process.
    server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/node/onprem/node-7",
        "--parent-id",
        "spiffe://example.org/trustdeck/server",
        "--selector",
        "x509pop:subject:cn:node-7",
    ]);
    server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/prod/onprem/data/db",
        "--parent-id",
        "spiffe://example.org/node/onprem/node-7",
        "--selector",
        &format!("unix:uid:{}", my_uid()),
        "--x509-ttl",
        "1m",
    ]);
    let agent = AgentProc::start(
        &server,
        &format!(
            "type = \"x509pop\"\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
            cert_path.display(),
            key_path.display()
        ),
        "",
    );
    let listed = wait_for(10, "the x509pop agent in agent list", || {
        agents(&server).into_iter().next()
    });
    let agent_id = listed["spiffe_id"].as_str().expect("id").to_string();
    assert!(agent_id.contains("/trustdeck/agent/x509pop/"), "{agent_id}");
    let first = svid_serial(&agent)
        .await
        .expect("workload SVID before eviction");

    server.cli_ok(&["agent", "evict", "--spiffe-id", &agent_id]);
    // The old agent SVID is gone with the eviction.
    assert!(
        agents(&server)
            .iter()
            .all(|a| a["cert_serial"] != listed["cert_serial"])
    );
    // The agent notices on its next sync and attests again by itself.
    let back = wait_for(15, "the agent to re-attest after eviction", || {
        agents(&server).into_iter().find(|a| {
            a["spiffe_id"] == agent_id.as_str() && a["cert_serial"] != listed["cert_serial"]
        })
    });
    assert_eq!(back["attestation_type"], "x509pop");
    assert!(agent.log().contains("attesting again"), "{}", agent.log());
    // Workloads keep getting SVIDs.
    assert!(svid_serial(&agent).await.is_some());
    assert!(!first.is_empty());
}

#[test]
fn evicted_join_token_agent_says_it_needs_a_new_token() {
    let server = ServerProc::start("");
    let token = server.token("10m");
    let agent_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
    let agent = AgentProc::start(
        &server,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
        "",
    );
    wait_for(10, "agent attested", || {
        agents(&server)
            .iter()
            .any(|a| a["spiffe_id"] == agent_id.as_str())
            .then_some(())
    });
    server.cli_ok(&["agent", "evict", "--spiffe-id", &agent_id]);
    wait_for(
        15,
        "the agent to explain that its join token is used up",
        || {
            agent
                .log()
                .contains("give it a new join token")
                .then_some(())
        },
    );
    // Starting a second agent with the used token fails at once with the reason.
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("a.toml");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&agent.config)
            .expect("config")
            .replace(
                &agent.dir.path().join("data").display().to_string(),
                &dir.path().join("data").display().to_string(),
            ),
    )
    .expect("write");
    let out = std::process::Command::new(bin("trustdeck-agent"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("already used"), "{err}");
}
