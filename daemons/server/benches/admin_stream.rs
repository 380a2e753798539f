//! Admin `Watch` stream at scale: a server hub holding 10,000 agents and 100,000 workload
//! SVIDs (built with the server's own node builders), served by the real `Observe` service
//! on a Unix socket to a real gRPC client.
//!
//! Measures: time to receive and decode the whole snapshot; latency from a change (an SVID
//! issued, as `SignX509Svids` publishes it) to its delta arriving at the client, paced and in
//! bursts; and the cost of the periodic agent reconcile (diffing 10,000 unchanged agents).
//!
//! Run: `cargo bench -p trustdeck-server --bench admin_stream`

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_stream::wrappers::UnixListenerStream;
use trustdeck_admin::{AdminAccess, ObserveService};
use trustdeck_datastore::AttestedNode;
use trustdeck_proto::admin::observe_client::ObserveClient;
use trustdeck_proto::admin::observe_server::ObserveServer;
use trustdeck_proto::admin::watch_message::Body;
use trustdeck_proto::admin::{DaemonIdentity, DaemonRole, WatchRequest};
use trustdeck_server::observe::{GROUP_AGENTS, GROUP_SVIDS, IssuedSvid, agent_node, svid_node};
use trustdeck_topology::Hub;

const AGENTS: usize = 10_000;
const SVIDS_PER_AGENT: usize = 10;
const SERVER: &str = "spiffe://bench.td/trustdeck/server";
/// The issuing CA's key id every bench SVID names (40 hex digits, as a real one).
const ISSUER_KEY_ID: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9011223344";

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Resident memory of this process, KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

fn agent(i: usize) -> String {
    format!("spiffe://bench.td/trustdeck/agent/join_token/{i:08x}")
}

/// The agent nodes a server with `AGENTS` attested agents publishes.
fn agent_nodes(t: i64) -> Vec<trustdeck_proto::admin::Node> {
    (0..AGENTS)
        .map(|i| {
            agent_node(
                SERVER,
                "bench",
                &AttestedNode {
                    spiffe_id: agent(i),
                    attestation_type: "join_token".into(),
                    cert_serial: format!("{i:032x}"),
                    cert_not_after: t + 3600,
                    new_cert: None,
                    banned: false,
                    selectors: vec!["join_token:x".into()],
                    created_at: t,
                    updated_at: t,
                },
            )
        })
        .collect()
}

fn fill(hub: &Hub) {
    let now = Utc::now();
    let t = now.timestamp();
    let agents = agent_nodes(t);
    hub.replace_group(GROUP_AGENTS, agents, now);
    for i in 0..AGENTS {
        for e in 0..SVIDS_PER_AGENT {
            hub.upsert(
                GROUP_SVIDS,
                svid_node(&IssuedSvid {
                    agent: &agent(i),
                    entry_id: &format!("entry-{i}-{e}"),
                    spiffe_id: &format!("spiffe://bench.td/prod/gcp/team{e}/workload{i}"),
                    serial: &format!("{:032x}", i * 100 + e),
                    not_before: t,
                    not_after: t + 600,
                    issuer_key_id: ISSUER_KEY_ID,
                    segment: "bench",
                }),
                now,
            );
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("admin.sock");
    let hub = Arc::new(Hub::new(DaemonIdentity {
        name: "bench".into(),
        role: DaemonRole::Downstream.into(),
        ..Default::default()
    }));
    let t = Instant::now();
    fill(&hub);
    println!(
        "hub filled: {} nodes in {:.0} ms; process RSS with the hub alone: {} MiB",
        hub.len(),
        t.elapsed().as_secs_f64() * 1e3,
        rss_kib() / 1024
    );

    let access = AdminAccess {
        own_uid: trustdeck_admin::effective_uid().unwrap_or(0),
        ..Default::default()
    };
    let svc = ObserveServer::new(ObserveService::new(
        hub.clone(),
        Arc::new(access),
        trustdeck_process::clock::system(),
        Arc::new(|_| Vec::new()),
    ))
    .max_encoding_message_size(64 << 20);
    let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    let ch = trustdeck_transport::connect::watch_channel_uds(sock.clone()).expect("channel");

    // Snapshot: from the call to the last chunk decoded.
    let mut snaps = Vec::new();
    for _ in 0..5 {
        let mut c = ObserveClient::new(ch.clone()).max_decoding_message_size(64 << 20);
        let t = Instant::now();
        let mut s = c.watch(WatchRequest {}).await.expect("watch").into_inner();
        let mut n = 0;
        loop {
            let m = s.message().await.expect("ok").expect("open");
            let Some(Body::Snapshot(snap)) = m.body else {
                panic!("snapshot first")
            };
            n += snap.nodes.len();
            if !snap.partial {
                break;
            }
        }
        assert_eq!(n, hub.len());
        snaps.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "snapshot of {} nodes: p50 {:.0} ms, max {:.0} ms (n = 5; target < 1000 ms)",
        hub.len(),
        pct(&mut snaps.clone(), 0.5),
        snaps.iter().cloned().fold(0.0, f64::max)
    );

    // Deltas: one SVID re-issued at a time; latency from upsert to the client.
    let mut c = ObserveClient::new(ch.clone()).max_decoding_message_size(64 << 20);
    let mut s = c.watch(WatchRequest {}).await.expect("watch").into_inner();
    loop {
        let m = s.message().await.expect("ok").expect("open");
        if let Some(Body::Snapshot(snap)) = m.body
            && !snap.partial
        {
            break;
        }
    }
    for (phase, (label, n, pause)) in [
        ("paced (200/s)", 1000usize, Duration::from_millis(5)),
        ("burst (back to back)", 5000usize, Duration::ZERO),
    ]
    .into_iter()
    .enumerate()
    {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let h = hub.clone();
        let producer = tokio::spawn(async move {
            for k in 0..n {
                let now = Utc::now();
                let i = k % AGENTS;
                tx.send(Instant::now()).expect("send");
                let changed = h.upsert(
                    GROUP_SVIDS,
                    svid_node(&IssuedSvid {
                        agent: &agent(i),
                        entry_id: &format!("entry-{i}-0"),
                        spiffe_id: &format!("spiffe://bench.td/prod/gcp/team0/workload{i}"),
                        // A new serial each time: every re-issue is a change.
                        serial: &format!("{phase}{k:031x}"),
                        not_before: now.timestamp(),
                        not_after: now.timestamp() + 600 + k as i64,
                        issuer_key_id: ISSUER_KEY_ID,
                        segment: "bench",
                    }),
                    now,
                );
                assert!(changed, "every re-issue is a change");
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        });
        let mut lat = Vec::with_capacity(n);
        let mut last_rev = 0;
        while lat.len() < n {
            let m = match tokio::time::timeout(Duration::from_secs(10), s.message()).await {
                Ok(m) => m.expect("ok").expect("open"),
                Err(_) => panic!("{label}: stalled after {} of {n} deltas", lat.len()),
            };
            let got = Instant::now();
            assert!(m.revision > last_rev, "ordered");
            last_rev = m.revision;
            if let Some(Body::Delta(d)) = m.body {
                for _ in &d.upserts {
                    let sent = rx.recv().await.expect("sent");
                    lat.push(got.duration_since(sent).as_secs_f64() * 1e3);
                }
            }
        }
        producer.await.expect("producer");
        println!(
            "delta latency, {label}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n = {n}; target p99 < 100 ms)",
            pct(&mut lat.clone(), 0.5),
            pct(&mut lat.clone(), 0.99),
            lat.iter().cloned().fold(0.0, f64::max)
        );
    }

    // The periodic agent reconcile with nothing changed.
    let now = Utc::now();
    let t0 = now.timestamp();
    let agents = agent_nodes(t0);
    let mut rec = Vec::new();
    for _ in 0..10 {
        let a = agents.clone();
        let t = Instant::now();
        hub.replace_group(GROUP_AGENTS, a, now);
        rec.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "agent reconcile (10,000 agents, no change): p50 {:.1} ms",
        pct(&mut rec, 0.5)
    );
    println!(
        "bench process RSS at the end (hub, server and client buffers): {} MiB",
        rss_kib() / 1024
    );
}
