//! Taint of the root in a three-level topology (root → mid → leaf → agents) holding 1,000
//! workload SVIDs: time until the last SVID chains to the new root (issue 13).
//!
//! ```sh
//! cargo build --release --bins && cargo bench -p trustdeck-e2e --bench taint
//! ```
//!
//! The leaf's agents pre-sign 1,000 SVIDs for their node (entries no local process matches).
//! After `prepare` and `activate` on the root, `taint` of the old root starts the clock:
//! 1. agents: the moment each agent published its last re-issued SVID (its log's
//!    "workload SVIDs issued or rotated" lines after the taint adding up to its entries);
//! 2. census: the moment the root's `authority x509 show` counts no live SVID chaining to the
//!    tainted root (an upper bound: it includes the agents' and downstreams' report latency).
//!
//! SPIRE's baseline: tainted SVIDs re-issued 100 every 5 s, about 50 s for 1,000.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use trustdeck_e2e::*;
use trustdeck_proto::admin::CreateEntryRequest;
use trustdeck_proto::admin::server_admin_client::ServerAdminClient;

const AGENTS: usize = 4;
const PER_AGENT: usize = 250;
const SERVER: &str =
    "ca_ttl = \"1h\"\n[rate_limit]\nsigns_per_second = 100000.0\nburst = 100000.0\n";

/// The log lines' (time, count) of "workload SVIDs issued or rotated".
fn issued(log: &str) -> Vec<(DateTime<Utc>, usize)> {
    log.lines()
        .filter(|l| l.contains("workload SVIDs issued or rotated"))
        .filter_map(|l| {
            let at = DateTime::parse_from_rfc3339(l.split_whitespace().next()?).ok()?;
            let n = l
                .split("count=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((at.with_timezone(&Utc), n))
        })
        .collect()
}

/// When the SVIDs issued after `since` first add up to `n`.
fn reissued_by(log: &str, since: DateTime<Utc>, n: usize) -> Option<DateTime<Utc>> {
    let mut sum = 0;
    for (at, c) in issued(log).into_iter().filter(|(at, _)| *at >= since) {
        sum += c;
        if sum >= n {
            return Some(at);
        }
    }
    None
}

fn live_svids(root: &ServerProc, id: &str) -> u64 {
    let show = authority(root, "x509", "show", None);
    show["authorities"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["id"] == id)
        .and_then(|a| a["live_svids"].as_u64())
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = bin_dir();
    if !dir.ends_with("release") {
        eprintln!(
            "note: binaries from {} (build with --release for figures)",
            dir.display()
        );
    }
    let root = ServerProc::start(SERVER);
    let mid = Downstream::start(&root, "eu", SERVER);
    let leaf = Downstream::start(&mid.server, "prod/eu/plant", SERVER);
    let mut admin = ServerAdminClient::new(
        trustdeck_transport::connect::uds_channel(leaf.server.info().admin_socket.clone())
            .expect("admin channel"),
    );
    let mut agents = Vec::new();
    for a in 0..AGENTS {
        let token = leaf.server.token("10m");
        let agent_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
        for i in 0..PER_AGENT {
            admin
                .create_entry(CreateEntryRequest {
                    spiffe_id: format!("spiffe://example.org/prod/eu/plant/a{a}/w{i}"),
                    parent_id: agent_id.clone(),
                    selectors: vec![format!("bench:n:{i}")],
                    x509_ttl_secs: Some(1200),
                    ..Default::default()
                })
                .await
                .expect("entry");
        }
        agents.push(leaf.agent_with(&format!("type = \"join_token\"\ntoken = \"{token}\"\n")));
    }
    for a in &agents {
        wait_for(120, "the agent's SVIDs", || {
            (issued(&a.log()).iter().map(|(_, n)| n).sum::<usize>() >= PER_AGENT).then_some(())
        });
    }
    let old = with_status(&authority(&root, "x509", "show", None), "active").remove(0);
    // The census knows them all (agents' reports forwarded up two tiers).
    wait_for(30, "the census of the old root", || {
        (live_svids(&root, &old) >= (AGENTS * PER_AGENT) as u64).then_some(())
    });

    let new = authority(&root, "x509", "prepare", None)["authority"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    wait_for(30, "the prepared root at the leaf", || {
        (leaf.server.bundle_roots().len() == 2).then_some(())
    });
    authority(&root, "x509", "activate", Some(&new));
    let since = Utc::now();
    let start = Instant::now();
    authority(&root, "x509", "taint", Some(&old));

    let census = wait_for(120, "no live SVID on the tainted root", || {
        (live_svids(&root, &old) == 0).then(|| start.elapsed())
    });
    let mut last = since;
    for a in &agents {
        let log = a.log();
        let at = reissued_by(&log, since, PER_AGENT)
            .unwrap_or_else(|| panic!("an agent did not re-issue its SVIDs:\n{log}"));
        last = last.max(at);
    }
    let agents_ms = (last - since).num_milliseconds();
    println!(
        "taint: {} SVIDs re-issued under the new root: last published {agents_ms} ms after \
         the taint (agents' logs); census at 0 after {:.0} ms (SPIRE: ~50 s; target < 10 s)",
        AGENTS * PER_AGENT,
        census.as_secs_f64() * 1000.0
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
}
