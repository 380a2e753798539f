//! End-to-end: `tpm_devid` node attestation against real swtpm instances (one per test, on
//! free ports) and a real `trustdeck-server`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use trustdeck_e2e::tpm::*;
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

/// A server trusting `ca` for DevIDs and `endorsement` (a PEM file) for EKs.
fn server_for(dir: &std::path::Path, ca: &DevIdCa, endorsement: &std::path::Path) -> ServerProc {
    let devid_ca = dir.join("devid-ca.pem");
    std::fs::write(&devid_ca, &ca.pem).expect("write");
    ServerProc::start(&server_section(&devid_ca, endorsement))
}

fn fresh_csr() -> Vec<u8> {
    let (key, _) = trustdeck_pki::keys::SoftwareKey::ephemeral().expect("key");
    let key: Arc<dyn trustdeck_pki::SigningKey> = Arc::new(key);
    trustdeck_pki::csr::make_csr(&key, None).expect("csr")
}

#[tokio::test(flavor = "multi_thread")]
async fn software_make_credential_activates_in_swtpm() {
    let ca = DevIdCa::new("DevID CA");
    let node = TpmNode::provision("node-cred", &ca);
    let ev = node.evidence();
    let ek = trustdeck_tpm::public::PublicArea::from_tpm2b(&ev.ek_public).expect("EK area");
    let devid = trustdeck_tpm::public::PublicArea::from_tpm2b(&ev.devid_public).expect("area");
    let name = devid.name().expect("name");
    let secret = *b"a secret only this TPM releases!";
    let cred = trustdeck_tpm::credential::make_credential(&ek, &name, &secret).expect("make");
    let mut tpm = node.tpm.open();
    let got = tpm
        .activate_credential(&node.key(), &cred.id_object, &cred.encrypted_secret)
        .expect("swtpm ActivateCredential of a software MakeCredential");
    assert_eq!(got, secret);
    // Bound to the DevID key's name: a credential for another object does not activate.
    let mut other = name.clone();
    other[10] ^= 0xff;
    let cred = trustdeck_tpm::credential::make_credential(&ek, &other, &secret).expect("make");
    let e = tpm
        .activate_credential(&node.key(), &cred.id_object, &cred.encrypted_secret)
        .expect_err("credential for another name activated");
    assert!(e.to_string().contains("ActivateCredential"), "{e}");
    // The provisioned CSR was signed by the TPM key, and openssl agrees.
    let out = std::process::Command::new("openssl")
        .args(["req", "-noout", "-verify", "-in"])
        .arg(node.key_path.with_file_name("devid.csr.pem"))
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        node.provision_output.contains("Next:"),
        "{}",
        node.provision_output
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tpm_devid_agent_attests_and_workloads_get_svids() {
    let ca = DevIdCa::new("DevID CA");
    let node = TpmNode::provision("node-a", &ca);
    let server = server_for(node.tpm.dir.path(), &ca, &node.ek_ca_path);
    let roots = server.bundle_roots();
    // Node alias by DevID subject, and a workload entry for this process under it.
    server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/node/tpm/node-a",
        "--parent-id",
        "spiffe://example.org/trustdeck/server",
        "--selector",
        "tpm_devid:subject:cn:node-a",
    ]);
    let wid = "spiffe://example.org/prod/tpm/api";
    entry_for_me(&server, "spiffe://example.org/node/tpm/node-a", wid, "10m");

    let started = Instant::now();
    let agent = AgentProc::start(&server, &node.agent_attestation(), "");
    let mut client = agent.client();
    let svid = loop {
        if let Ok(r) = client.fetch_x509svid(X509svidRequest {}).await {
            let mut s = r.into_inner();
            if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), s.next()).await
                && let Some(svid) = m.svids.into_iter().next()
            {
                break svid;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no SVID within 30s:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let to_svid = started.elapsed();
    assert_eq!(svid.spiffe_id, wid);
    let chain = split_der(&svid.x509_svid);
    let (ok, out) = openssl_verify(agent.dir.path(), &roots, &chain);
    assert!(ok, "openssl verify: {out}");

    // The node record: ID from the DevID fingerprint, all four selectors.
    let listed = agents(&server);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let a = &listed[0];
    assert_eq!(a["spiffe_id"], node.agent_id().as_str());
    assert_eq!(a["attestation_type"], "tpm_devid");
    let selectors: Vec<String> = a["selectors"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let fp = trustdeck_tpm::verify::sha256_hex(&node.cert_der);
    for want in [
        "tpm_devid:subject:cn:node-a".to_string(),
        "tpm_devid:issuer:cn:DevID CA".to_string(),
        format!("tpm_devid:fingerprint:{fp}"),
    ] {
        assert!(
            selectors.contains(&want),
            "{want} missing from {selectors:?}"
        );
    }
    assert!(
        selectors
            .iter()
            .any(|s| s.starts_with("tpm_devid:ek:fingerprint:") && s.len() == 25 + 64),
        "{selectors:?}"
    );

    // py-spiffe sees the same SVID.
    let r = py_spiffe(&agent.socket, &["x509", "--timeout", "20"]);
    assert_eq!(r["x509"][0]["spiffe_id"], wid, "{r}");

    // Evicted: the agent attests again through its TPM without operator help.
    let serial = a["cert_serial"].clone();
    server.cli_ok(&["agent", "evict", "--spiffe-id", &node.agent_id()]);
    let back = wait_for(
        20,
        "the tpm_devid agent to re-attest after eviction",
        || {
            agents(&server)
                .into_iter()
                .find(|a| a["spiffe_id"] == node.agent_id().as_str() && a["cert_serial"] != serial)
        },
    );
    assert_eq!(back["attestation_type"], "tpm_devid");
    println!(
        "tpm_devid: agent start to first workload SVID: {:.0} ms",
        to_svid.as_secs_f64() * 1000.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tpm_devid_attestation_timing() {
    let ca = DevIdCa::new("DevID CA");
    let node = TpmNode::provision("node-t", &ca);
    let server = server_for(node.tpm.dir.path(), &ca, &node.ek_ca_path);
    let roots = server.bundle_roots();
    let chain = vec![node.cert_der.clone()];
    let mut times = Vec::new();
    for _ in 0..5 {
        let mut anon = anonymous_client(&server.addr(), &roots);
        let t = Instant::now();
        // What the agent does: evidence from the TPM, dialogue, TPM answer.
        let ev = node.evidence();
        let r = tpm_attest(&mut anon, chain.clone(), ev, fresh_csr(), |ch| {
            Some(node.answer(ch))
        })
        .await
        .expect("tpm_devid attestation");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(r.spiffe_id, node.agent_id());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "tpm_devid: attest dialogue incl. TPM work (5 runs, debug build): min {:.1} ms, median {:.1} ms, max {:.1} ms",
        times[0], times[2], times[4]
    );
}

/// Runs a dialogue expected to fail, returns the status; checks no node was recorded.
async fn refused(server: &ServerProc, node: &TpmNode) -> tonic::Status {
    let roots = server.bundle_roots();
    let mut anon = anonymous_client(&server.addr(), &roots);
    let e = tpm_attest(
        &mut anon,
        vec![node.cert_der.clone()],
        node.evidence(),
        fresh_csr(),
        |ch| Some(node.answer(ch)),
    )
    .await
    .expect_err("attestation accepted");
    assert!(agents(server).is_empty(), "a node was recorded");
    e
}

#[tokio::test(flavor = "multi_thread")]
async fn tpm_devid_rejects_ek_from_another_ca() {
    let ca = DevIdCa::new("DevID CA");
    let node = TpmNode::provision("node-b", &ca);
    let foreign = node.tpm.dir.path().join("foreign-ek-ca.pem");
    std::fs::write(&foreign, DevIdCa::new("Some TPM vendor CA").pem).expect("write");
    let server = server_for(node.tpm.dir.path(), &ca, &foreign);
    let e = refused(&server, &node).await;
    // The agent learns the reason; the bundle's path and the subjects stay in the server's log.
    assert_evidence_refused(
        &e,
        &[&foreign.display().to_string(), "EK certificate", "CN="],
    );
    assert!(
        server.log().contains(&format!(
            "does not chain to the endorsement CA bundle {}",
            foreign.display()
        )),
        "{}",
        server.log()
    );
    // The agent process refuses to start and says why.
    let dir = node.tpm.dir.path().join("agent");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let bundle = dir.join("bootstrap.pem");
    std::fs::write(
        &bundle,
        server.cli_ok(&["bundle", "show", "--format", "pem"]),
    )
    .expect("w");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "trust_domain = \"example.org\"\nserver_address = \"{}\"\ntrust_bundle_path = \"{}\"\ndata_dir = \"{}\"\n[node_attestation]\n{}",
            server.addr(),
            bundle.display(),
            dir.join("data").display(),
            node.agent_attestation()
        ),
    )
    .expect("config");
    let out = std::process::Command::new(bin("trustdeck-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("run agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("node attestation refused: tpm_devid attestation evidence refused"),
        "{stderr}"
    );
    assert!(!stderr.contains(&foreign.display().to_string()), "{stderr}");
    assert!(agents(&server).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn tpm_devid_rejects_devid_from_another_ca() {
    let ca = DevIdCa::new("DevID CA");
    let node = TpmNode::provision("node-c", &ca);
    let other = DevIdCa::new("Other DevID CA");
    let server = server_for(node.tpm.dir.path(), &other, &node.ek_ca_path);
    let e = refused(&server, &node).await;
    assert_evidence_refused(&e, &["CN=node-c", "does not chain"]);
    assert!(
        server
            .log()
            .contains("DevID certificate CN=node-c does not chain to the DevID CA bundle"),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tpm_devid_rejects_replayed_response() {
    let ca = DevIdCa::new("DevID CA");
    let node = TpmNode::provision("node-d", &ca);
    let server = server_for(node.tpm.dir.path(), &ca, &node.ek_ca_path);
    let roots = server.bundle_roots();
    let chain = vec![node.cert_der.clone()];
    // Dialogue 1: a genuine answer is computed (as an eavesdropper would capture it) but the
    // dialogue is abandoned.
    let captured: Mutex<Option<trustdeck_proto::node::TpmDevidProof>> = Mutex::new(None);
    let mut anon = anonymous_client(&server.addr(), &roots);
    let r = tpm_attest(
        &mut anon,
        chain.clone(),
        node.evidence(),
        fresh_csr(),
        |ch| {
            *captured.lock().expect("lock") = Some(node.answer(ch));
            None
        },
    )
    .await;
    assert!(r.is_err());
    let proof = captured
        .lock()
        .expect("lock")
        .take()
        .expect("captured answer");
    // Dialogue 2: the captured answer replayed against a new challenge.
    let mut anon = anonymous_client(&server.addr(), &roots);
    let e = tpm_attest(
        &mut anon,
        chain.clone(),
        node.evidence(),
        fresh_csr(),
        |_| Some(proof.clone()),
    )
    .await
    .expect_err("replayed response accepted");
    assert_evidence_refused(&e, &["replayed"]);
    assert!(server.log().contains("replayed"), "{}", server.log());
    assert!(agents(&server).is_empty(), "replay recorded a node");
    // Only the signature replayed, with a fresh activation: the secret is checked too.
    let mut anon = anonymous_client(&server.addr(), &roots);
    let e = tpm_attest(
        &mut anon,
        chain.clone(),
        node.evidence(),
        fresh_csr(),
        |ch| {
            let fresh = node.answer(ch);
            Some(trustdeck_proto::node::TpmDevidProof {
                signature: fresh.signature,
                activated_secret: proof.activated_secret.clone(),
            })
        },
    )
    .await
    .expect_err("replayed secret accepted");
    assert_evidence_refused(&e, &["credential activation failed"]);
    assert!(
        server.log().contains("credential activation failed"),
        "{}",
        server.log()
    );
    assert!(agents(&server).is_empty());
    // A fresh answer on a fresh dialogue works.
    let mut anon = anonymous_client(&server.addr(), &roots);
    let r = tpm_attest(&mut anon, chain, node.evidence(), fresh_csr(), |ch| {
        Some(node.answer(ch))
    })
    .await
    .expect("fresh attestation");
    assert_eq!(r.spiffe_id, node.agent_id());
}

#[tokio::test(flavor = "multi_thread")]
async fn downstream_server_node_bootstraps_with_tpm_devid() {
    let ca = DevIdCa::new("DevID CA");
    let node = TpmNode::provision("edge-1", &ca);
    let parent = server_for(node.tpm.dir.path(), &ca, &node.ek_ca_path);
    // The downstream server's own ID upstream, granted to the TPM-attested node's agent.
    let spiffe_id = "spiffe://example.org/edge/trustdeck-server";
    parent.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        spiffe_id,
        "--parent-id",
        &node.agent_id(),
        "--selector",
        &format!("unix:uid:{}", my_uid()),
        "--downstream",
    ]);
    let local_agent = AgentProc::start(
        &parent,
        &node.agent_attestation(),
        &format!("server_spiffe_id = \"{}\"\n", parent.server_spiffe_id()),
    );
    let server_spiffe_id = "spiffe://example.org/edge/trustdeck/server";
    let downstream = ServerProc::start(&format!(
        "server_spiffe_id = \"{server_spiffe_id}\"\n[upstream]\naddress = \"{addr}\"\nspiffe_id = \"{up}\"\nworkload_api_socket = \"{sock}\"\nown_spiffe_id = \"{spiffe_id}\"\n",
        addr = parent.addr(),
        up = parent.server_spiffe_id(),
        sock = local_agent.socket.display(),
    ));
    // A workload agent under the downstream gets SVIDs chaining to the parent's root.
    let token = downstream.token("10m");
    let wid = "spiffe://example.org/prod/edge/app";
    entry_for_me(
        &downstream,
        &format!("spiffe://example.org/trustdeck/agent/join_token/{token}"),
        wid,
        "10m",
    );
    let agent = AgentProc::start(
        &downstream,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
        &format!("server_spiffe_id = \"{server_spiffe_id}\"\n"),
    );
    let r = py_spiffe(&agent.socket, &["x509", "--timeout", "20"]);
    assert_eq!(r["x509"][0]["spiffe_id"], wid, "{r}");
    let chain =
        trustdeck_spiffe::pem::decode_certs(r["x509"][0]["chain_pem"].as_str().unwrap_or_default())
            .unwrap_or_default();
    assert!(chain.len() >= 2, "leaf and intermediate: {r}");
    let (ok, out) = openssl_verify(agent.dir.path(), &parent.bundle_roots(), &chain);
    assert!(ok, "openssl verify against the upstream root: {out}");
    assert_eq!(agents(&parent)[0]["attestation_type"], "tpm_devid");
}

/// The first X509-SVID `agent` serves this process, retried for `secs`.
async fn first_svid(agent: &AgentProc, secs: u64) -> trustdeck_proto::workload::X509svid {
    let started = Instant::now();
    loop {
        if let Ok(r) = agent.client().fetch_x509svid(X509svidRequest {}).await {
            let mut s = r.into_inner();
            if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), s.next()).await
                && let Some(svid) = m.svids.into_iter().next()
            {
                return svid;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "no SVID within {secs}s:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The runbook `rebootstrap-tpm-node`, command by command: the node's TPM is cleared, so its
/// DevID key is gone; the old node is evicted, `trustdeck-agent tpm provision --force` makes a
/// new DevID key and CSR, the operator's DevID CA signs it (openssl), and the restarted agent
/// attests again, as a new node, and its workloads get SVIDs.
#[tokio::test(flavor = "multi_thread")]
async fn a_cleared_tpm_node_is_reprovisioned_and_attests_again() {
    let ca = DevIdCa::new("DevID CA");
    let node = TpmNode::provision("node-r", &ca);
    let server = server_for(node.tpm.dir.path(), &ca, &node.ek_ca_path);
    let alias = "spiffe://example.org/node/tpm/node-r";
    server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        alias,
        "--parent-id",
        "spiffe://example.org/trustdeck/server",
        "--selector",
        "tpm_devid:subject:cn:node-r",
    ]);
    let wid = "spiffe://example.org/prod/tpm/worker";
    entry_for_me(&server, alias, wid, "10m");
    let mut agent = AgentProc::start(&server, &node.agent_attestation(), "");
    assert_eq!(first_svid(&agent, 30).await.spiffe_id, wid);
    let old_id = node.agent_id();

    // The TPM is cleared: the DevID key blob no longer loads. Evicted, the agent cannot
    // attest again and says what the operator must do.
    agent.stop();
    node.tpm.clear();
    server.cli_ok(&["agent", "evict", "--spiffe-id", &old_id]);
    agent.spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !agent
        .log()
        .contains("trustdeck-agent tpm provision --force")
    {
        assert!(
            Instant::now() < deadline,
            "the agent names the re-provisioning step:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.stop();

    // Re-provision on the node, sign the CSR with the DevID CA, restart the agent.
    let csr = node.reprovision("node-r");
    ca.sign_with_openssl(&csr, &node.cert_path);
    agent.spawn();
    let svid = first_svid(&agent, 30).await;
    assert_eq!(svid.spiffe_id, wid);
    let (ok, text) = openssl_verify(
        agent.dir.path(),
        &server.bundle_roots(),
        &split_der(&svid.x509_svid),
    );
    assert!(ok, "{text}");
    let new_id = node.current_agent_id();
    let listed = wait_for(20, "the new node listed", || {
        let a = agents(&server);
        a.iter()
            .any(|a| a["spiffe_id"] == new_id.as_str())
            .then_some(a)
    });
    assert!(
        listed.iter().all(|a| a["spiffe_id"] != old_id.as_str()),
        "{listed:?}"
    );
}
