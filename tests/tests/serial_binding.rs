//! End-to-end: agent SVID serial binding (SPIRE's `serial_number` / `new_serial_number`).
//! A renewal whose answer is lost leaves the agent working with its current SVID, and it
//! renews next time; an older SVID of the agent is refused (`SvidSuperseded`) once the agent
//! used its renewed one, while the agent keeps working.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use tokio_stream::StreamExt;
use trustdeck_e2e::*;
use trustdeck_proto::node::{Reason, SyncEntriesRequest};
use trustdeck_proto::workload::X509svidRequest;

/// The agent's SVID and key as it stored them in its data dir: (chain DER, key PKCS#8 DER).
fn stored_svid(agent: &AgentProc) -> Option<(Vec<Vec<u8>>, Vec<u8>)> {
    let data = agent.dir.path().join("data");
    let chain = std::fs::read_to_string(data.join("agent_svid.pem")).ok()?;
    let key = std::fs::read_to_string(data.join("agent_key.pem")).ok()?;
    Some((
        trustdeck_spiffe::pem::decode_certs(&chain).ok()?,
        trustdeck_spiffe::pem::decode_private_key(&key).ok()?,
    ))
}

/// A leaf's serial as the server stores it: lowercase hex, no leading zeros.
fn serial_of(chain: &[Vec<u8>]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(&chain[0]).expect("leaf");
    let hex: String = cert
        .tbs_certificate
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    normal(&hex)
}

fn normal(serial: &str) -> String {
    serial.trim().trim_start_matches('0').to_ascii_lowercase()
}

/// The server's record of the agent: (current serial, pending new serial, created_at).
fn node_row(db: &TestDb, agent_id: &str) -> (String, String, String) {
    let out = db.query(&format!(
        "SELECT cert_serial, COALESCE(new_cert_serial, ''), created_at FROM attested_nodes \
         WHERE spiffe_id = '{agent_id}'"
    ));
    let mut cols = out.trim().split('|').map(|s| s.to_string());
    (
        normal(&cols.next().unwrap_or_default()),
        normal(&cols.next().unwrap_or_default()),
        cols.next().unwrap_or_default(),
    )
}

fn agent_id_of(agent: &AgentProc) -> String {
    let (chain, _) = stored_svid(agent).expect("stored SVID");
    let (_, cert) = x509_parser::parse_x509_certificate(&chain[0]).expect("leaf");
    trustdeck_spiffe::x509::check_leaf(&chain[0])
        .map(|l| l.spiffe_id.to_string())
        .unwrap_or_else(|e| panic!("leaf {:?}: {e}", cert.subject()))
}

fn start(server: &ServerProc, env: &[(&str, &str)]) -> AgentProc {
    let agent = AgentProc::start_with_env(
        server,
        &format!("type = \"join_token\"\ntoken = \"{}\"", server.token("10m")),
        "sync_interval = \"1s\"\n",
        env,
    );
    wait_for(20, "attestation", || {
        (agent.log().contains("node attested") && stored_svid(&agent).is_some()).then_some(())
    });
    agent
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_renewal_answer_never_strands_the_agent() {
    let server = ServerProc::start("agent_svid_ttl = \"8s\"\n");
    let db = TestDb::Sqlite(server.data_dir.join("datastore.sqlite3"));
    let agent = start(&server, &[("TRUSTDECK_AGENT_FAULT_DROP_RENEWAL", "1")]);
    let agent_id = agent_id_of(&agent);
    let (first, _) = stored_svid(&agent).expect("stored SVID");
    let first = serial_of(&first);
    let (current, pending, created) = node_row(&db, &agent_id);
    assert_eq!((current.as_str(), pending.as_str()), (first.as_str(), ""));

    // The first renewal is issued by the server, its answer dropped on the way back.
    wait_for(20, "the dropped renewal", || {
        agent.log().contains("renewal answer dropped").then_some(())
    });
    // The agent renews next time with the SVID it still holds, which the server accepts.
    let renewed = wait_for(20, "the next renewal", || {
        let (chain, _) = stored_svid(&agent)?;
        let s = serial_of(&chain);
        (s != first && agent.log().contains("agent SVID renewed")).then_some(s)
    });
    // Its first use promotes it: the server's current serial is the agent's.
    wait_for(10, "promotion of the renewed SVID", || {
        let (current, pending, _) = node_row(&db, &agent_id);
        (current == renewed && pending.is_empty()).then_some(())
    });
    let log = agent.log();
    assert_eq!(log.matches("renewal answer dropped").count(), 1, "{log}");
    assert_eq!(
        log.matches("node attested").count(),
        1,
        "re-attested:\n{log}"
    );
    assert!(!log.contains("superseded"), "{log}");
    assert_eq!(
        node_row(&db, &agent_id).2,
        created,
        "the node attested again"
    );

    // And it serves workloads.
    let uid = std::fs::metadata(agent.dir.path()).expect("dir").uid();
    server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/serial/web",
        "--parent-id",
        &agent_id,
        "--selector",
        &format!("unix:uid:{uid}"),
    ]);
    let svid = wait_for(20, "a workload SVID", || {
        let rt = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| {
            rt.block_on(async {
                let mut c = agent.client();
                let mut s = c
                    .fetch_x509svid(X509svidRequest {})
                    .await
                    .ok()?
                    .into_inner();
                let m = tokio::time::timeout(Duration::from_secs(3), s.next())
                    .await
                    .ok()??
                    .ok()?;
                m.svids.first().map(|s| s.spiffe_id.clone())
            })
        })
    });
    assert_eq!(svid, "spiffe://example.org/serial/web");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_svid_is_refused_once_the_new_one_was_used() {
    let server = ServerProc::start("agent_svid_ttl = \"20s\"\n");
    let db = TestDb::Sqlite(server.data_dir.join("datastore.sqlite3"));
    let agent = start(&server, &[]);
    let agent_id = agent_id_of(&agent);
    // A copy of the agent's SVID and key, as a thief would take them.
    let (old_chain, old_key) = stored_svid(&agent).expect("stored SVID");
    let old = serial_of(&old_chain);
    let roots = server.bundle_roots();
    let session = |chain: Vec<Vec<u8>>, key: &[u8]| {
        let r = trustdeck_proto::node::AttestResult {
            spiffe_id: agent_id.clone(),
            svid_chain: chain,
            ..Default::default()
        };
        AgentSession::from_result(&server.addr(), &roots, r, key)
    };
    // Before the renewal the copy works: it is the current SVID.
    let mut thief = session(old_chain.clone(), &old_key);
    thief
        .client
        .sync_entries(SyncEntriesRequest::default())
        .await
        .expect("the current SVID is accepted");

    let renewed = wait_for(30, "the agent's renewal", || {
        let (chain, _) = stored_svid(&agent)?;
        let s = serial_of(&chain);
        (s != old).then_some(s)
    });
    wait_for(10, "the agent to use its renewed SVID", || {
        let (current, pending, _) = node_row(&db, &agent_id);
        (current == renewed && pending.is_empty()).then_some(())
    });

    // The old SVID, still unexpired, is refused now, on a fresh connection.
    let mut thief = session(old_chain, &old_key);
    let refused = thief
        .client
        .sync_entries(SyncEntriesRequest::default())
        .await
        .expect_err("a superseded SVID must be refused");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert_eq!(
        trustdeck_proto::reason::reason_of(&refused),
        Reason::SvidSuperseded,
        "{refused:?}"
    );
    assert!(server.log().contains("superseded agent SVID refused"));

    // The agent keeps working: it renews again with the SVID it holds, never re-attesting.
    let renewals = agent.log().matches("agent SVID renewed").count();
    wait_for(30, "the agent's next renewal", || {
        (agent.log().matches("agent SVID renewed").count() > renewals).then_some(())
    });
    let log = agent.log();
    assert_eq!(
        log.matches("node attested").count(),
        1,
        "re-attested:\n{log}"
    );
    assert!(!log.contains("superseded"), "{log}");
    let (current, _, _) = node_row(&db, &agent_id);
    assert_ne!(current, old);
}
