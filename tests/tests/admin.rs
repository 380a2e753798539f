//! End-to-end: the admin `Observe` API of real daemons. The `Watch` stream's snapshot and
//! ordered deltas, `GetNode`, the agent's stream, and who may call what over the admin socket
//! and over mTLS TCP (viewers only read, operators change, others are refused).

use std::path::PathBuf;
use std::time::Duration;

use trustdeck_e2e::*;
use trustdeck_proto::admin::observe_client::ObserveClient;
use trustdeck_proto::admin::server_admin_client::ServerAdminClient;
use trustdeck_proto::admin::watch_message::Body;
use trustdeck_proto::admin::*;

type Stream = tonic::Streaming<WatchMessage>;

async fn next(s: &mut Stream) -> WatchMessage {
    tokio::time::timeout(Duration::from_secs(20), s.message())
        .await
        .expect("a message within 20 s")
        .expect("stream ok")
        .expect("stream open")
}

/// Reads the (possibly chunked) snapshot: identity, nodes, upstream, revision.
async fn snapshot(s: &mut Stream) -> (DaemonIdentity, Vec<Node>, Option<Connectivity>, u64) {
    let (id, nodes, up, rev, _) = snapshot_with_events(s).await;
    (id, nodes, up, rev)
}

/// [`snapshot`], with the events it replays.
async fn snapshot_with_events(
    s: &mut Stream,
) -> (
    DaemonIdentity,
    Vec<Node>,
    Option<Connectivity>,
    u64,
    Vec<trustdeck_proto::admin::Event>,
) {
    let mut events = Vec::new();
    let mut nodes = Vec::new();
    let mut identity = None;
    let mut upstream = None;
    loop {
        let m = next(s).await;
        let Some(Body::Snapshot(snap)) = m.body else {
            panic!("expected a snapshot, got {m:?}")
        };
        identity = identity.or(snap.identity);
        upstream = upstream.or(snap.upstream);
        nodes.extend(snap.nodes);
        events.extend(snap.events);
        if !snap.partial {
            return (
                identity.expect("identity"),
                nodes,
                upstream,
                m.revision,
                events,
            );
        }
    }
}

fn admin_socket(server: &ServerProc) -> PathBuf {
    server.info().admin_socket.clone()
}

async fn observe_uds(path: PathBuf) -> ObserveClient<tonic::transport::Channel> {
    ObserveClient::new(trustdeck_transport::connect::watch_channel_uds(path).expect("channel"))
        .max_decoding_message_size(64 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_watch_is_a_snapshot_then_ordered_deltas() {
    let server = ServerProc::start("name = \"core\"\n");
    let mut c = observe_uds(admin_socket(&server)).await;
    let mut s = c.watch(WatchRequest {}).await.expect("watch").into_inner();
    let (id, nodes, upstream, rev, events) = snapshot_with_events(&mut s).await;
    assert_eq!(id.role_wire(), DaemonRole::Upstream);
    assert_eq!(id.name, "core");
    assert_eq!(id.segment, "root");
    assert_eq!(id.spiffe_id, server.server_spiffe_id());
    assert!(upstream.is_none_or(|u| !u.configured));
    let now = chrono::Utc::now().timestamp();
    let server_node = nodes
        .iter()
        .find(|n| n.id == format!("server:{}", server.server_spiffe_id()))
        .expect("server node");
    let root = nodes
        .iter()
        .find(|n| n.kind == NodeKind::X509Authority as i32 && n.state_wire() == NodeState::Active)
        .expect("active root CA");
    assert_eq!(root.parent, server_node.id);
    assert!(root.not_after > now && root.not_before <= now, "{root:?}");
    // The tier's expiry is the bundle's root's real notAfter.
    let roots = server.bundle_roots();
    let (_, real_na) = trustdeck_spiffe::x509::cert_validity(&roots[0]).expect("root");
    assert_eq!(root.not_after, real_na.timestamp());
    assert_eq!(server_node.not_after, root.not_after);
    assert!(
        !root
            .key_storage
            .as_ref()
            .expect("key storage")
            .backend_wire()
            .is_unspecified()
    );
    let jwt = nodes
        .iter()
        .find(|n| n.kind == NodeKind::JwtAuthority as i32 && n.state_wire() == NodeState::Active)
        .expect("active JWT key");
    // The CA events of the start name the authorities' nodes.
    for (kind, node) in [
        (EventKind::X509Activated, &root.id),
        (EventKind::JwtActivated, &jwt.id),
    ] {
        assert!(
            events
                .iter()
                .any(|e| e.kind_wire() == kind && e.node_id == *node),
            "{kind:?} for {node}: {events:?}"
        );
    }

    // An agent attests and gets an SVID: deltas follow, one revision at a time.
    let token = server.token("10m");
    let agent_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
    let wid = "spiffe://example.org/prod/gcp/payments/api";
    entry_for_me(&server, &agent_id, wid, "1m");
    let _agent = AgentProc::start(
        &server,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
        "",
    );
    let mut expect = rev + 1;
    let (mut saw_agent, mut saw_svid, mut saw_event) = (false, false, false);
    while !(saw_agent && saw_svid && saw_event) {
        let m = next(&mut s).await;
        assert_eq!(m.revision, expect, "deltas are ordered without gaps");
        expect += 1;
        let Some(Body::Delta(d)) = m.body else {
            panic!("expected only deltas after the snapshot")
        };
        for n in &d.upserts {
            if n.id == format!("agent:{agent_id}") {
                assert_eq!(n.parent, server_node.id);
                saw_agent = true;
            }
            if n.kind == NodeKind::WorkloadSvid as i32 && n.spiffe_id == wid {
                assert_eq!(n.parent, format!("agent:{agent_id}"));
                assert!(n.not_after > now && n.not_after <= now + 70, "{n:?}");
                saw_svid = true;
            }
        }
        saw_event |= d
            .events
            .iter()
            .any(|e| e.kind_wire() == EventKind::AttestationOk);
    }

    // Details of one node: fields and the certificate itself.
    let detail = c
        .get_node(GetNodeRequest {
            id: root.id.clone(),
        })
        .await
        .expect("get node")
        .into_inner();
    assert_eq!(detail.chain_der.len(), 1);
    assert_eq!(detail.chain_der[0], roots[0]);
    assert!(
        detail.fields.iter().any(|f| f.starts_with("subject:")),
        "{:?}",
        detail.fields
    );
    assert!(
        detail.fields.iter().any(|f| f.starts_with("CA: true")),
        "{:?}",
        detail.fields
    );
    assert!(
        detail.fields.iter().any(|f| f == "key type: ECDSA P-256"),
        "{:?}",
        detail.fields
    );
    let e = c
        .get_node(GetNodeRequest {
            id: "x509:nope".into(),
        })
        .await
        .expect_err("unknown node");
    assert_eq!(e.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_watch_shows_its_svids_and_server_link() {
    let server = ServerProc::start("");
    let token = server.token("10m");
    let agent_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
    let wid = "spiffe://example.org/prod/gcp/payments/worker";
    entry_for_me(&server, &agent_id, wid, "1m");
    let agent = AgentProc::start(
        &server,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
        "name = \"gcp-w1\"\nsegment = \"gcp\"\n",
    );
    let admin = agent.dir.path().join("data").join("admin.sock");
    let mut c = observe_uds(admin).await;
    let agent_id = &agent_id;
    let nodes = wait_for_async(20, "the agent's SVID in its snapshot", || {
        let mut c = c.clone();
        async move {
            let mut s = c.watch(WatchRequest {}).await.ok()?.into_inner();
            let (id, nodes, up, _) = snapshot(&mut s).await;
            assert_eq!(id.role_wire(), DaemonRole::Agent);
            assert_eq!(id.name, "gcp-w1");
            if id.spiffe_id != *agent_id {
                return None;
            }
            let up = up?;
            (up.state_wire() == ConnectivityState::Connected
                && nodes.iter().any(|n| n.spiffe_id == wid))
            .then_some(nodes)
        }
    })
    .await;
    let svid = nodes.iter().find(|n| n.spiffe_id == wid).expect("svid");
    assert_eq!(svid.parent, format!("agent:{agent_id}"));
    // Serial and issuer key id, as the server writes them: the CA's subject key id.
    let ca = trustdeck_spiffe::x509::summarize(&server.bundle_roots()[0]).expect("root");
    assert_eq!(Some(&svid.issuer_key_id), ca.subject_key_id.as_ref());
    assert!(!svid.serial.is_empty());
    assert_eq!(svid.segment, "gcp");
    let a = nodes
        .iter()
        .find(|n| n.id == format!("agent:{agent_id}"))
        .expect("agent node");
    assert_eq!(a.parent, format!("server:{}", server.server_spiffe_id()));
    // The SVID's node id is the one the server publishes, so the console merges them.
    let detail = c
        .get_node(GetNodeRequest {
            id: svid.id.clone(),
        })
        .await
        .expect("detail")
        .into_inner();
    assert_eq!(
        trustdeck_spiffe::x509::spiffe_id_of(&detail.chain_der[0])
            .expect("leaf")
            .as_str(),
        wid
    );
    let leaf = trustdeck_spiffe::x509::summarize(&detail.chain_der[0]).expect("leaf");
    assert_eq!(svid.serial, leaf.serial_hex);
}

/// Operator actions on an agent (ban, evict) and a refused attestation of a known agent carry
/// that agent's node id, so the console can jump from the event to the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_actions_and_refused_attestations_name_the_agents_node() {
    let server = ServerProc::start("");
    let mut c = observe_uds(admin_socket(&server)).await;
    let mut s = c.watch(WatchRequest {}).await.expect("watch").into_inner();
    snapshot(&mut s).await;
    let token = server.token("10m");
    let roots = server.bundle_roots();
    let agent = AgentSession::join(&server.addr(), &roots, &token)
        .await
        .expect("attested");
    let node = format!("agent:{}", agent.id);
    server.cli_ok(&["agent", "ban", "--spiffe-id", agent.id.as_str()]);
    let e = AgentSession::join(&server.addr(), &roots, &token)
        .await
        .err()
        .expect("a banned agent attested");
    assert!(e.message().contains("banned"), "{}", e.message());
    server.cli_ok(&["agent", "evict", "--spiffe-id", agent.id.as_str()]);
    let mut want = vec![
        (EventKind::OperatorAction, "agent.ban"),
        (EventKind::AttestationFailed, "banned"),
        (EventKind::OperatorAction, "agent.evict"),
    ];
    while !want.is_empty() {
        let Some(Body::Delta(d)) = next(&mut s).await.body else {
            panic!("expected only deltas after the snapshot")
        };
        for e in &d.events {
            if let Some(i) = want
                .iter()
                .position(|(k, has)| e.kind_wire() == *k && e.message.contains(has))
            {
                assert_eq!(e.node_id, node, "{e:?}");
                want.remove(i);
            }
        }
    }
}

async fn wait_for_async<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An mTLS admin client presenting the SVID for `id` from `agent`.
async fn tls_clients(
    agent: &AgentProc,
    id: &str,
    server: &ServerProc,
    addr: &str,
) -> (
    ObserveClient<tonic::transport::Channel>,
    ServerAdminClient<tonic::transport::Channel>,
) {
    tls_clients_with(agent, id, &server.server_spiffe_id(), addr, 3).await
}

/// Like [`tls_clients`], for a server presenting `server_id`, once the agent holds `min` SVIDs.
async fn tls_clients_with(
    agent: &AgentProc,
    id: &str,
    server_id: &str,
    addr: &str,
    min: usize,
) -> (
    ObserveClient<tonic::transport::Channel>,
    ServerAdminClient<tonic::transport::Channel>,
) {
    let mut wc = agent.client();
    let resp = wait_for_async(20, "SVIDs", || {
        let mut wc = wc.clone();
        async move {
            let mut s = wc
                .fetch_x509svid(trustdeck_proto::workload::X509svidRequest {})
                .await
                .ok()?
                .into_inner();
            let r = s.message().await.ok()??;
            (r.svids.len() >= min).then_some(r)
        }
    })
    .await;
    let _ = &mut wc;
    let svid = resp
        .svids
        .iter()
        .find(|s| s.spiffe_id == id)
        .expect("svid for id");
    let identity = trustdeck_transport::SharedIdentity::new();
    identity
        .set(split_der(&svid.x509_svid), &svid.x509_svid_key)
        .expect("identity");
    let roots = trustdeck_transport::SharedRoots::new(&split_der(&svid.bundle)).expect("roots");
    let cfg = trustdeck_transport::tls::client_config(
        identity,
        roots,
        trustdeck_spiffe::SpiffeId::parse(server_id).expect("id"),
    )
    .expect("tls");
    let ch = trustdeck_transport::connect::watch_channel_tls(addr, cfg).expect("channel");
    (ObserveClient::new(ch.clone()), ServerAdminClient::new(ch))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_only_read_operators_change_others_are_refused() {
    let viewer = "spiffe://example.org/ops/viewer";
    let operator = "spiffe://example.org/ops/operator";
    let stranger = "spiffe://example.org/ops/stranger";
    let server = ServerProc::start(&format!(
        "[admin]\nbind_address = \"127.0.0.1:0\"\nviewers = [\"{viewer}\"]\noperators = [\"{operator}\"]\n"
    ));
    let addr = server.info().admin_tcp.expect("admin_tcp").to_string();
    let token = server.token("10m");
    let agent_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
    for id in [viewer, operator, stranger] {
        entry_for_me(&server, &agent_id, id, "10m");
    }
    let agent = AgentProc::start(
        &server,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
        "",
    );

    let new_entry = |spiffe_id: &str| CreateEntryRequest {
        spiffe_id: spiffe_id.into(),
        parent_id: agent_id.clone(),
        selectors: vec!["unix:uid:4242".into()],
        ..Default::default()
    };

    // A viewer watches and reads, and cannot change anything.
    let (mut obs, mut adm) = tls_clients(&agent, viewer, &server, &addr).await;
    let mut s = obs
        .watch(WatchRequest {})
        .await
        .expect("viewer may watch")
        .into_inner();
    let (id, _, _, _) = snapshot(&mut s).await;
    assert_eq!(id.role_wire(), DaemonRole::Upstream);
    adm.list_entries(ListEntriesRequest::default())
        .await
        .expect("viewer may list");
    adm.health(HealthRequest {})
        .await
        .expect("viewer may read health");
    let before = adm
        .list_entries(ListEntriesRequest::default())
        .await
        .expect("list")
        .into_inner();
    for (what, r) in [
        (
            "CreateEntry",
            adm.create_entry(new_entry("spiffe://example.org/x"))
                .await
                .map(|_| ()),
        ),
        (
            "CreateJoinToken",
            adm.create_join_token(CreateJoinTokenRequest { ttl_secs: 60 })
                .await
                .map(|_| ()),
        ),
        (
            "DeleteEntry",
            adm.delete_entry(DeleteEntryRequest {
                id: before.entries[0].id.clone(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "EvictAgent",
            adm.evict_agent(AgentRequest {
                spiffe_id: agent_id.clone(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "BanAgent",
            adm.ban_agent(AgentRequest {
                spiffe_id: agent_id.clone(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "BeginRunbook",
            adm.begin_runbook(BeginRunbookRequest {
                runbook: "rotate-root-ca".into(),
                target: "root".into(),
                runbook_digest: "d".into(),
                session: "v".into(),
                steps: 1,
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
        (
            "ClaimRunbook",
            adm.claim_runbook(ClaimRunbookRequest {
                id: "x".into(),
                session: "v".into(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "RecordRunbook",
            adm.record_runbook(RecordRunbookRequest {
                id: "x".into(),
                session: "v".into(),
                state: RunbookState::Aborted.into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
    ] {
        let e = r.expect_err(what);
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{what}: {e:?}");
        assert!(
            e.message().contains("viewer") && e.message().contains(what),
            "{e:?}"
        );
    }
    let after = adm
        .list_entries(ListEntriesRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(before.entries, after.entries, "nothing changed");
    // The runbook journal and the key probe are open to viewers; nothing was begun.
    let listed = adm
        .list_runbooks(ListRunbooksRequest {
            include_finished: true,
            id: String::new(),
        })
        .await
        .expect("viewer may list runbooks")
        .into_inner();
    assert!(listed.executions.is_empty(), "{listed:?}");
    let probed = adm
        .probe_keys(ProbeKeysRequest {})
        .await
        .expect("viewer may probe keys")
        .into_inner();
    assert!(
        !probed.keys.is_empty() && probed.keys.iter().all(|k| k.probe() == KeyProbe::Ok),
        "{probed:?}"
    );

    // An operator changes things (and the change is audited as the operator).
    let (_, mut op) = tls_clients(&agent, operator, &server, &addr).await;
    op.create_entry(new_entry("spiffe://example.org/y"))
        .await
        .expect("operator may create");
    let audit = server.log();
    assert!(audit.contains(operator), "audit names the operator");

    // The console's own client: `trustdeck status` over mTLS with the viewer's SVID from the
    // Workload API, and refused with the stranger's.
    let fleet = agent.dir.path().join("fleet.json");
    std::fs::write(
        &fleet,
        serde_json::json!({
            "trust_domain": "example.org",
            "servers": [{"name": "core", "role": "upstream", "segment": "root",
                         "admin": format!("https://{addr}"), "spiffe_id": server.server_spiffe_id()}],
        })
        .to_string(),
    )
    .expect("fleet file");
    let status = |id: &str| {
        let out = std::process::Command::new(bin("trustdeck"))
            .args([
                "status",
                "--output",
                "json",
                "--no-key-policy",
                "--spiffe-id",
                id,
                "--fleet",
            ])
            .arg(&fleet)
            .arg("--workload-socket")
            .arg(&agent.socket)
            .output()
            .expect("trustdeck status");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), v)
    };
    let (code, v) = status(viewer);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["daemons"][0]["reachable"], true, "{v}");
    assert!(v["tiers"].as_array().is_some_and(|t| !t.is_empty()), "{v}");
    let (code, v) = status(stranger);
    assert_eq!(code, Some(3), "{v}");
    assert!(
        v["daemons"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("neither an admin viewer nor an operator"),
        "{v}"
    );

    // Anyone else in the trust domain is refused, even for watching.
    let (mut sobs, mut sadm) = tls_clients(&agent, stranger, &server, &addr).await;
    let e = sobs.watch(WatchRequest {}).await.expect_err("stranger");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains(stranger), "{e:?}");
    let e = sadm
        .list_entries(ListEntriesRequest::default())
        .await
        .expect_err("stranger");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    // Issue 12, defect 5: refused TCP callers are audited by their SPIFFE ID.
    wait_for(10, "the stranger's refusals in the audit log", || {
        let rows = server.audit_log();
        let refused = |m: &str| {
            rows.iter()
                .any(|r| r.starts_with(&format!("{stranger}|{m}|refused|")))
        };
        (refused("Watch") && refused("ListEntries")).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_cannot_mint_an_upstream_operator() {
    // Any CA of the trust domain can issue any ID: an operator ID minted by a downstream's
    // intermediate must not make its holder an operator of the upstream. (Inside the
    // downstream's namespace, so it can register it.)
    let operator = "spiffe://example.org/prod/gcp/ops/operator";
    let upstream = ServerProc::start(&format!(
        "[admin]\nbind_address = \"127.0.0.1:0\"\noperators = [\"{operator}\"]\n"
    ));
    let addr = upstream.info().admin_tcp.expect("admin_tcp").to_string();
    let ds = Downstream::start(&upstream, "gcp", "");
    let (agent, agent_id) = ds.workload_agent();
    entry_for_me(&ds.server, &agent_id, operator, "10m");
    let (mut obs, mut adm) =
        tls_clients_with(&agent, operator, &upstream.server_spiffe_id(), &addr, 1).await;
    let e = adm
        .create_entry(CreateEntryRequest {
            spiffe_id: "spiffe://example.org/stolen".into(),
            parent_id: agent_id.clone(),
            selectors: vec!["unix:uid:0".into()],
            ..Default::default()
        })
        .await
        .expect_err("a downstream-issued operator SVID");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("not issued by this server's CA"),
        "{e:?}"
    );
    let e = obs
        .watch(WatchRequest {})
        .await
        .expect_err("not even a viewer");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
}
