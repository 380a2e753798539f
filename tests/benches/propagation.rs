//! Propagation through a nested topology, with default sync and poll intervals, real
//! release-built processes: root -> mid downstream -> leaf downstream -> agent -> workload.
//!
//! ```sh
//! cargo build --release --bins && cargo bench -p trustdeck-e2e --bench propagation
//! ```
//!
//! 1. A bundle change on the root (root CA prepared, or an expired one pruned) until the new
//!    bundle arrives on the workload's FetchX509Bundles stream two server levels down.
//! 2. An entry created on the leaf downstream server until the workload's FetchX509SVID
//!    stream carries an SVID for it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_stream::StreamExt;
use trustdeck_e2e::*;
use trustdeck_proto::admin::CreateEntryRequest;
use trustdeck_proto::admin::server_admin_client::ServerAdminClient;
use trustdeck_proto::workload::{X509BundlesRequest, X509svidRequest};

const ENTRY_SAMPLES: usize = 10;

fn stats(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name}: n={} min {:.0} ms, p50 {:.0} ms, max {:.0} ms (target < 1000 ms)",
        v.len(),
        v[0],
        p(0.5),
        v[v.len() - 1]
    );
}

/// Timestamps of the root's bundle changes, from its log.
fn bundle_changes(log: &str) -> Vec<DateTime<Utc>> {
    log.lines()
        // X.509 authority changes only: the workload's X.509 bundle stream does not change
        // for a JWT key.
        .filter(|l| {
            (l.contains("X.509 CA") && l.contains("published in the bundle"))
                || l.contains("expired x509 authority")
        })
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .collect()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let root = ServerProc::start(
        "ca_ttl = \"30s\"\ndefault_x509_svid_ttl = \"5s\"\ndefault_jwt_svid_ttl = \"5s\"\nrotation_check_interval = \"100ms\"\n",
    );
    let mid = Downstream::start(
        &root,
        "eu",
        "ca_ttl = \"30s\"\ndefault_x509_svid_ttl = \"5s\"\n",
    );
    let leaf = Downstream::start(
        &mid.server,
        // Inside the mid's namespace (`/prod/eu/`), which issues the leaf's identity.
        "prod/eu/plant",
        "ca_ttl = \"30s\"\ndefault_x509_svid_ttl = \"5s\"\n",
    );
    let (agent, agent_id) = leaf.workload_agent();
    leaf.server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/prod/eu/plant/base",
        "--parent-id",
        &agent_id,
        "--selector",
        &format!("unix:uid:{}", my_uid()),
        "--x509-ttl",
        "5s",
    ]);

    // 1. Bundle propagation: watch the workload's bundle stream for ~60 s of root rotations.
    let mut c = agent.client();
    let mut bundles = loop {
        if let Ok(s) = c.fetch_x509_bundles(X509BundlesRequest {}).await {
            break s.into_inner();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut arrivals: Vec<(DateTime<Utc>, Vec<u8>)> = Vec::new();
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        match tokio::time::timeout(Duration::from_secs(2), bundles.next()).await {
            Ok(Some(Ok(m))) => {
                let b = m.bundles.values().next().cloned().unwrap_or_default();
                if arrivals.last().map(|(_, last)| last != &b).unwrap_or(true) {
                    arrivals.push((Utc::now(), b));
                }
            }
            Ok(_) => break,
            Err(_) => {}
        }
    }
    let changes = bundle_changes(&root.log());
    let mut bundle_ms = Vec::new();
    for t in &changes {
        // The first arrival at or after the change on the root.
        if let Some((at, _)) = arrivals.iter().find(|(at, _)| at >= t) {
            let ms = (*at - *t).num_milliseconds() as f64;
            if ms < 5000.0 {
                bundle_ms.push(ms);
            }
        }
    }

    // 2. Entry to SVID: each new entry adds an identity to this workload's stream.
    let mut admin = ServerAdminClient::new(
        trustdeck_transport::connect::uds_channel(leaf.server.info().admin_socket.clone())
            .expect("admin"),
    );
    let mut entry_ms = Vec::new();
    for i in 0..ENTRY_SAMPLES {
        let id = format!("spiffe://example.org/prod/eu/plant/sample-{i}");
        let mut s = c
            .fetch_x509svid(X509svidRequest {})
            .await
            .expect("fetch")
            .into_inner();
        s.next().await.expect("first").expect("ok");
        let t = Instant::now();
        admin
            .create_entry(CreateEntryRequest {
                spiffe_id: id.clone(),
                parent_id: agent_id.clone(),
                selectors: vec![format!("unix:uid:{}", my_uid())],
                x509_ttl_secs: Some(5),
                ..Default::default()
            })
            .await
            .expect("entry");
        loop {
            let m = s.next().await.expect("message").expect("ok");
            if m.svids.iter().any(|v| v.spiffe_id == id) {
                entry_ms.push(t.elapsed().as_secs_f64() * 1e3);
                break;
            }
        }
    }
    println!("topology: root -> mid downstream -> leaf downstream -> agent -> workload");
    println!("defaults: downstream bundle poll 250 ms, agent sync 500 ms");
    println!(
        "root bundle changes seen: {}, arrivals on the workload stream: {}",
        changes.len(),
        arrivals.len()
    );
    if bundle_ms.is_empty() {
        println!("bundle propagation: no sample (no bundle change matched)");
    } else {
        stats(
            "bundle change on the root -> workload stream two levels down",
            bundle_ms,
        );
    }
    stats(
        "entry created on the leaf downstream -> workload's SVID",
        entry_ms,
    );
}
