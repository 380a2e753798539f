//! Agent benchmarks against real release-built processes.
//!
//! ```sh
//! cargo build --release --bins && cargo bench -p trustdeck-e2e --bench agent
//! ```
//!
//! 1. Agent resident memory with 1,000 cached workload SVIDs.
//! 2. FetchX509SVID first-message latency (p50, p99) from a warm cache, 100 concurrent clients.
//! 3. A rotation pushed to 1,000 open FetchX509SVID streams: spread between the first and the
//!    last stream receiving the rotated SVID.

use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use trustdeck_e2e::measure::{cpu_secs, percentile, rss_kib};
use trustdeck_e2e::*;
use trustdeck_proto::admin::CreateEntryRequest;
use trustdeck_proto::admin::server_admin_client::ServerAdminClient;
use trustdeck_proto::workload::X509svidRequest;

const ENTRIES: usize = 1000;
const CLIENTS: usize = 100;
const CALLS_PER_CLIENT: usize = 50;
const STREAMS: usize = 1000;

fn issued_count(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("workload SVIDs issued or rotated"))
        .filter_map(|l| l.split("count=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<usize>().ok())
        .sum()
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
    let server = ServerProc::start("[rate_limit]\nsigns_per_second = 100000.0\nburst = 100000.0\n");
    let token = server.token("10m");
    let agent_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
    let mut admin = ServerAdminClient::new(
        trustdeck_transport::connect::uds_channel(server.info().admin_socket.clone())
            .expect("admin channel"),
    );
    // 999 entries no local process matches, plus one for this process with a short TTL so a
    // rotation happens during the run.
    for i in 0..ENTRIES - 1 {
        admin
            .create_entry(CreateEntryRequest {
                spiffe_id: format!("spiffe://example.org/bench/workload-{i}"),
                parent_id: agent_id.clone(),
                selectors: vec![format!("bench:n:{i}")],
                ..Default::default()
            })
            .await
            .expect("entry");
    }
    admin
        .create_entry(CreateEntryRequest {
            spiffe_id: "spiffe://example.org/bench/me".into(),
            parent_id: agent_id.clone(),
            selectors: vec![format!("unix:uid:{}", my_uid())],
            x509_ttl_secs: Some(20),
            ..Default::default()
        })
        .await
        .expect("entry");
    let agent = AgentProc::start(
        &server,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
        "",
    );
    let pid = agent.child.as_ref().expect("child").id();
    let t0 = Instant::now();
    wait_for(120, "1,000 SVIDs in the agent cache", || {
        (issued_count(&agent.log()) >= ENTRIES).then_some(())
    });
    let fill = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_cached = rss_kib(pid);

    // Per-call cost: one client, calls one after another.
    let mut solo = Vec::new();
    {
        let mut c = agent.client();
        for _ in 0..2000 {
            let s = Instant::now();
            let mut st = c
                .fetch_x509svid(X509svidRequest {})
                .await
                .expect("fetch")
                .into_inner();
            st.next().await.expect("message").expect("ok");
            solo.push(s.elapsed());
        }
    }
    solo.sort();

    // Burst: 100 warm clients on their own connections open a stream at the same moment;
    // 50 rounds.
    let clients: Vec<_> = (0..CLIENTS).map(|_| agent.client()).collect();
    for c in &clients {
        let mut c = c.clone();
        let _ = c
            .fetch_x509svid(X509svidRequest {})
            .await
            .expect("fetch")
            .into_inner()
            .next()
            .await;
    }
    let mut burst = Vec::with_capacity(CLIENTS * CALLS_PER_CLIENT);
    for _ in 0..CALLS_PER_CLIENT {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CLIENTS));
        let mut round = Vec::new();
        for c in &clients {
            let mut c = c.clone();
            let barrier = barrier.clone();
            round.push(tokio::spawn(async move {
                barrier.wait().await;
                let s = Instant::now();
                let mut st = c
                    .fetch_x509svid(X509svidRequest {})
                    .await
                    .expect("fetch")
                    .into_inner();
                st.next().await.expect("message").expect("ok");
                s.elapsed()
            }));
        }
        for t in round {
            burst.push(t.await.expect("task"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    burst.sort();

    // Sustained: the same 100 clients each call again as soon as they have an answer, so 100
    // calls are always in flight (a throughput test: latency is queueing on 2 cores).
    let started = Instant::now();
    let agent_cpu0 = cpu_secs(pid);
    let mut tasks = Vec::new();
    for c in &clients {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(CALLS_PER_CLIENT);
            for _ in 0..CALLS_PER_CLIENT {
                let s = Instant::now();
                let mut st = c
                    .fetch_x509svid(X509svidRequest {})
                    .await
                    .expect("fetch")
                    .into_inner();
                st.next().await.expect("message").expect("ok");
                samples.push(s.elapsed());
            }
            samples
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let sustained_rate = lat.len() as f64 / started.elapsed().as_secs_f64();
    let agent_us_per_call = (cpu_secs(pid) - agent_cpu0) * 1e6 / lat.len() as f64;
    let elapsed_us_per_call = started.elapsed().as_secs_f64() * 1e6 / lat.len() as f64;
    lat.sort();
    drop(clients);

    // Rotation fan-out: 1,000 open streams over 20 connections.
    let mut clients: Vec<_> = (0..20).map(|_| agent.client()).collect();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(STREAMS);
    let mut watchers = Vec::new();
    for i in 0..STREAMS {
        let mut c = clients[i % 20].clone();
        let ready = ready_tx.clone();
        watchers.push(tokio::spawn(async move {
            let mut st = c
                .fetch_x509svid(X509svidRequest {})
                .await
                .expect("fetch")
                .into_inner();
            let first = st.next().await.expect("message").expect("ok");
            let _ = ready.send(()).await;
            loop {
                let m = st.next().await.expect("message").expect("ok");
                if m.svids[0].x509_svid != first.svids[0].x509_svid {
                    return Instant::now();
                }
            }
        }));
    }
    for _ in 0..STREAMS {
        ready_rx.recv().await;
    }
    let rss_streams = rss_kib(pid);
    let mut got = Vec::new();
    for w in watchers {
        got.push(
            tokio::time::timeout(Duration::from_secs(60), w)
                .await
                .expect("rotation within 60s")
                .expect("task"),
        );
    }
    got.sort();
    let spread = got[got.len() - 1] - got[0];
    clients.clear();

    println!("agent: {ENTRIES} entries cached in {:.2?}", fill);
    println!(
        "agent RSS with {ENTRIES} cached SVIDs:            {:.1} MiB (target < 30 MiB)",
        rss_cached as f64 / 1024.0
    );
    println!(
        "agent RSS with {ENTRIES} SVIDs + {STREAMS} open streams: {:.1} MiB",
        rss_streams as f64 / 1024.0
    );
    println!(
        "FetchX509SVID first message, {CLIENTS} clients at once x {CALLS_PER_CLIENT} rounds: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (target p99 < 2 ms)",
        percentile(&burst, 0.50).as_secs_f64() * 1e3,
        percentile(&burst, 0.99).as_secs_f64() * 1e3,
        burst[burst.len() - 1].as_secs_f64() * 1e3,
    );
    println!(
        "FetchX509SVID sustained, {CLIENTS} calls always in flight: {sustained_rate:.0} calls/s, p50 {:.3} ms, p99 {:.3} ms",
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "  CPU per call: agent {agent_us_per_call:.0} us, whole machine {:.0} us (2 cores x {elapsed_us_per_call:.1} us wall)",
        2.0 * elapsed_us_per_call
    );
    println!(
        "FetchX509SVID first message, 1 client x 2000 sequential: p50 {:.3} ms, p99 {:.3} ms",
        percentile(&solo, 0.50).as_secs_f64() * 1e3,
        percentile(&solo, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "rotation pushed to {STREAMS} open streams: last stream {:.1} ms after the first (target < 200 ms)",
        spread.as_secs_f64() * 1e3
    );
}
