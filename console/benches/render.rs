//! Console scale check: a fleet of ~100k tree nodes (1 upstream, 4 downstreams, 10k agents,
//! 90k workload SVIDs). Measures (a) applying the snapshots and building the cached tree and
//! rows, (b) one delta plus the rebuild it triggers, (c) the render time per frame on a 200×60
//! `TestBackend` with the selection moving, (d) resident memory.
//!
//! Run: `cargo bench -p trustdeck-console --bench render`. Targets: < 10 ms per frame,
//! < 150 MiB RSS.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use trustdeck_console::app::{App, LARGE_REBUILD_SECS, Msg, update};
use trustdeck_console::view;
use trustdeck_topology::fleet::{Fleet, Thresholds};
use trustdeck_topology::{
    Body, Connectivity, ConnectivityState, DaemonIdentity, DaemonRole, Delta, KeyBackend,
    KeyStorage, Node, NodeKind, NodeState, Snapshot, WatchMessage,
};

const TD: &str = "spiffe://bench.trustdeck";
const SEGMENTS: [&str; 4] = ["gcp", "aws", "dmz", "edge"];
const AGENTS_PER_SEGMENT: usize = 2500;
const SVIDS_PER_AGENT: usize = 9;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_504_323, 0).unwrap_or_default()
}

fn n(id: String, parent: String, kind: NodeKind, label: String, spiffe: String, seg: &str) -> Node {
    let t = now().timestamp();
    Node {
        id,
        parent,
        kind: kind as i32,
        label,
        spiffe_id: spiffe,
        state: NodeState::Issued.into(),
        not_before: t - 1800,
        not_after: t + 1800,
        key_storage: Some(KeyStorage {
            backend: KeyBackend::Agent.into(),
            detail: String::new(),
            ..Default::default()
        }),
        segment: seg.into(),
        ..Default::default()
    }
}

fn server(name: &str) -> String {
    format!("server:{TD}/trustdeck/server/{name}")
}

fn snapshot(name: &str, role: DaemonRole, seg: &str, nodes: Vec<Node>) -> WatchMessage {
    WatchMessage {
        revision: 1,
        daemon_time_ms: now().timestamp_millis(),
        body: Some(Body::Snapshot(Snapshot {
            identity: Some(DaemonIdentity {
                name: name.into(),
                role: role.into(),
                segment: seg.into(),
                spiffe_id: format!("{TD}/trustdeck/server/{name}"),
                trust_domain: "bench.trustdeck".into(),
                ..Default::default()
            }),
            nodes,
            upstream: (role == DaemonRole::Downstream).then(|| Connectivity {
                configured: true,
                state: ConnectivityState::Connected.into(),
                since: now().timestamp() - 3600,
                ..Default::default()
            }),
            events: vec![],
            partial: false,
            federation: None,
        })),
    }
}

fn upstream_nodes() -> Vec<Node> {
    let up = server("upstream");
    let mut v = vec![n(
        up.clone(),
        String::new(),
        NodeKind::Server,
        "upstream".into(),
        format!("{TD}/trustdeck/server/upstream"),
        "root",
    )];
    for i in 0..2 {
        v.push(n(
            format!("x509:root{i}"),
            up.clone(),
            NodeKind::X509Authority,
            format!("root CA {i}"),
            String::new(),
            "root",
        ));
    }
    v.push(n(
        "jwt:k1".into(),
        up.clone(),
        NodeKind::JwtAuthority,
        "JWT key k1".into(),
        String::new(),
        "root",
    ));
    for s in SEGMENTS {
        v.push(n(
            server(s),
            up.clone(),
            NodeKind::Server,
            s.into(),
            format!("{TD}/trustdeck/server/{s}"),
            s,
        ));
    }
    v
}

fn downstream_nodes(seg: &str) -> Vec<Node> {
    let srv = server(seg);
    let mut v = vec![n(
        srv.clone(),
        server("upstream"),
        NodeKind::Server,
        seg.into(),
        format!("{TD}/trustdeck/server/{seg}"),
        seg,
    )];
    for i in 0..2 {
        v.push(n(
            format!("x509:{seg}-int{i}"),
            srv.clone(),
            NodeKind::X509Authority,
            format!("{seg} intermediate {i}"),
            String::new(),
            seg,
        ));
    }
    for a in 0..AGENTS_PER_SEGMENT {
        let aid = format!("{TD}/trustdeck/agent/{seg}/node-{a:05}");
        v.push(n(
            format!("agent:{aid}"),
            srv.clone(),
            NodeKind::Agent,
            format!("{seg}-agent-{a:05}"),
            aid.clone(),
            seg,
        ));
        for w in 0..SVIDS_PER_AGENT {
            let path = format!("prod/{seg}/team{}/workload-{a:05}-{w}", a % 40);
            v.push(n(
                format!("svid:{aid}#e-{w}"),
                format!("agent:{aid}"),
                NodeKind::WorkloadSvid,
                path.clone(),
                format!("{TD}/{path}"),
                seg,
            ));
        }
    }
    v
}

fn rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    ms(sorted[i.min(sorted.len() - 1)])
}

fn key(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn main() {
    let rss_start = rss_mib().unwrap_or(0.0);
    let mut daemons = vec![(
        "upstream".to_string(),
        "unix:///up".to_string(),
        DaemonRole::Upstream,
        "root".to_string(),
    )];
    for s in SEGMENTS {
        daemons.push((
            s.to_string(),
            format!("https://{s}:8443"),
            DaemonRole::Downstream,
            s.to_string(),
        ));
    }
    let mut msgs = vec![snapshot(
        "upstream",
        DaemonRole::Upstream,
        "root",
        upstream_nodes(),
    )];
    for s in SEGMENTS {
        msgs.push(snapshot(s, DaemonRole::Downstream, s, downstream_nodes(s)));
    }

    // (a) The fleet alone, then the console's caches (tree, rows, expiring, windows, health),
    // built once (the term loop applies a burst of messages and then rebuilds once).
    let (w, h) = (200u16, 60u16);
    let t0 = Instant::now();
    let mut fleet = Fleet::new(daemons);
    for (d, msg) in msgs.into_iter().enumerate() {
        if let Err(e) = fleet.apply(d, msg, now()) {
            eprintln!("apply: {e}");
            return;
        }
    }
    let apply = t0.elapsed();
    let rss_fleet = rss_mib().unwrap_or(0.0);
    let t1 = Instant::now();
    let mut app = App::new(fleet, Thresholds::default());
    update(&mut app, Msg::Resize(w, h), now());
    let build = t1.elapsed();
    let nodes = app.tree().nodes.len();
    println!(
        "apply 5 snapshots: {:.0} ms; build tree/rows/expiring/windows/health once: {:.0} ms ({nodes} nodes, {} rows)",
        ms(apply),
        ms(build),
        app.rows().len()
    );
    println!(
        "RSS after the fleet: {rss_fleet:.0} MiB; after the console's caches: {:.0} MiB",
        rss_mib().unwrap_or(0.0)
    );

    // (b) One delta (an SVID rotated) and the rebuild it causes.
    let mut deltas = Vec::new();
    for i in 0..5u64 {
        let aid = format!("{TD}/trustdeck/agent/gcp/node-00001");
        let mut up = n(
            format!("svid:{aid}#e-0"),
            format!("agent:{aid}"),
            NodeKind::WorkloadSvid,
            "prod/gcp/team1/workload-00001-0".into(),
            format!("{TD}/prod/gcp/team1/workload-00001-0"),
            "gcp",
        );
        up.not_after += i as i64 + 1;
        // Two seconds apart: a large tree is rebuilt at most every two seconds.
        let at = now() + chrono::Duration::seconds(2 * (i as i64 + 1));
        let t = Instant::now();
        update(
            &mut app,
            Msg::Stream {
                daemon: 1,
                msg: WatchMessage {
                    revision: 2 + i,
                    daemon_time_ms: now().timestamp_millis(),
                    body: Some(Body::Delta(Delta {
                        upserts: vec![up],
                        ..Default::default()
                    })),
                },
            },
            at,
        );
        deltas.push(t.elapsed());
    }
    // Another delta in the same second as the last rebuild: applied to the fleet, the rebuild
    // deferred to a later tick.
    let last = now() + chrono::Duration::seconds(10);
    let aid = format!("{TD}/trustdeck/agent/gcp/node-00002");
    let t = Instant::now();
    update(
        &mut app,
        Msg::Stream {
            daemon: 1,
            msg: WatchMessage {
                revision: 7,
                daemon_time_ms: now().timestamp_millis(),
                body: Some(Body::Delta(Delta {
                    removes: vec![format!("svid:{aid}#e-1")],
                    ..Default::default()
                })),
            },
        },
        last,
    );
    let deferred = t.elapsed();
    println!(
        "delta within {LARGE_REBUILD_SECS} s of a rebuild: {:.2} ms (rebuild deferred: {})",
        ms(deferred),
        app.behind()
    );
    deltas.sort();
    println!(
        "delta + rebuild of the cached tree: p50 {:.0} ms, max {:.0} ms",
        pct(&deltas, 0.5),
        ms(deltas[deltas.len() - 1])
    );

    // (c) Frames, selection moving (j, with a page down every 10 frames).
    let mut term = match Terminal::new(TestBackend::new(w, h)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("test terminal: {e}");
            return;
        }
    };
    let mut frames = Vec::new();
    let mut keys = Vec::new();
    let t_now = now() + chrono::Duration::seconds(20);
    for i in 0..200 {
        let k = Instant::now();
        let msg = if i % 10 == 9 {
            key(KeyCode::PageDown)
        } else {
            key(KeyCode::Char('j'))
        };
        update(&mut app, msg, t_now);
        keys.push(k.elapsed());
        let t = Instant::now();
        if let Err(e) = term.draw(|f| view::render(&app, f, t_now, true)) {
            eprintln!("draw: {e}");
            return;
        }
        frames.push(t.elapsed());
    }
    frames.sort();
    keys.sort();
    println!(
        "render 100k nodes ({nodes}), {w}×{h}, 200 frames: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(&frames, 0.5),
        pct(&frames, 0.99),
        ms(frames[frames.len() - 1])
    );
    println!(
        "update per key (j/PgDn): p50 {:.3} ms, p99 {:.3} ms",
        pct(&keys, 0.5),
        pct(&keys, 0.99)
    );
    // A second of time passing: health is recomputed over every node, then a frame.
    let t = Instant::now();
    update(&mut app, Msg::Tick, t_now + chrono::Duration::seconds(1));
    println!("tick (health over all nodes): {:.1} ms", ms(t.elapsed()));
    // (d) Memory.
    match rss_mib() {
        Some(r) => println!("RSS: {r:.0} MiB (at start {rss_start:.0} MiB)"),
        None => println!("RSS: unavailable (no /proc/self/status)"),
    }
}
