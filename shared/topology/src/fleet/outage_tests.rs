//! Tests of the outage states, on a fleet shaped like the demo's: an upstream, a downstream
//! "dmz" that takes its identity from a node agent attested to the upstream, and a workload
//! agent attested to dmz. Time is injected: the snapshots arrive at 1000.

use std::collections::BTreeSet;

use trustdeck_proto::admin::{
    Connectivity, ConnectivityState, DaemonRole, Delta, Event, EventKind, Node, NodeKind,
    NodeState, Severity, WatchMessage, watch_message::Body,
};

use super::tests::{at, n, snap};
use super::*;

const UP: &str = "server:spiffe://td/up";
const DMZ: &str = "server:spiffe://td/dmz";
/// The dmz server as its upstream knows it: the SVID its node agent hands it.
const DMZ_AS_ISSUED: &str = "server:spiffe://td/prod/dmz/ds";

fn with_id(mut x: Node, spiffe_id: &str, segment: &str) -> Node {
    x.spiffe_id = spiffe_id.into();
    x.segment = segment.into();
    x
}

fn link(state: ConnectivityState, since: i64) -> Connectivity {
    Connectivity {
        configured: true,
        state: state.into(),
        since,
        last_error: if state == ConnectivityState::Connected {
            String::new()
        } else {
            "connection refused".into()
        },
        ..Default::default()
    }
}

fn upstream_nodes() -> Vec<Node> {
    let mut placeholder = n(
        DMZ_AS_ISSUED,
        UP,
        NodeKind::Server,
        NodeState::Issued,
        0,
        5000,
    );
    placeholder.spiffe_id = "spiffe://td/prod/dmz/ds".into();
    vec![
        with_id(
            n(UP, "", NodeKind::Server, NodeState::Serving, 0, 90_000),
            "spiffe://td/up",
            "root",
        ),
        n(
            "x509:r1",
            UP,
            NodeKind::X509Authority,
            NodeState::Active,
            0,
            90_000,
        ),
        with_id(
            n(
                "agent:node",
                UP,
                NodeKind::Agent,
                NodeState::Attested,
                0,
                3000,
            ),
            "spiffe://td/agent/node",
            "root",
        ),
        with_id(
            n(
                "svid:node#ds",
                "agent:node",
                NodeKind::WorkloadSvid,
                NodeState::Issued,
                900,
                1500,
            ),
            "spiffe://td/prod/dmz/ds",
            "root",
        ),
        placeholder,
        n(
            "x509:i1",
            DMZ_AS_ISSUED,
            NodeKind::X509Authority,
            NodeState::Issued,
            0,
            5000,
        ),
    ]
}

fn dmz_nodes() -> Vec<Node> {
    let mut server = with_id(
        n(DMZ, UP, NodeKind::Server, NodeState::Serving, 0, 5000),
        "spiffe://td/dmz",
        "dmz",
    );
    server.aliases = vec![DMZ_AS_ISSUED.into()];
    vec![
        server,
        n(
            "x509:i1",
            DMZ,
            NodeKind::X509Authority,
            NodeState::Active,
            0,
            5000,
        ),
    ]
}

fn svid(id: &str, nb: i64, na: i64) -> Node {
    with_id(
        n(
            id,
            "agent:w1",
            NodeKind::WorkloadSvid,
            NodeState::Held,
            nb,
            na,
        ),
        &format!("spiffe://td/prod/dmz/{id}"),
        "dmz",
    )
}

fn workload_agent_nodes() -> Vec<Node> {
    vec![
        with_id(
            n(
                "agent:w1",
                DMZ,
                NodeKind::Agent,
                NodeState::Attested,
                0,
                3000,
            ),
            "spiffe://td/agent/w1",
            "dmz",
        ),
        svid("svid:w1#a", 1000, 1300),
        svid("svid:w1#b", 1000, 1310),
        svid("svid:w1#c", 1000, 1320),
    ]
}

fn node_agent_nodes() -> Vec<Node> {
    vec![
        with_id(
            n(
                "agent:node",
                UP,
                NodeKind::Agent,
                NodeState::Attested,
                0,
                3000,
            ),
            "spiffe://td/agent/node",
            "dmz",
        ),
        with_id(
            n(
                "svid:node#ds",
                "agent:node",
                NodeKind::WorkloadSvid,
                NodeState::Held,
                900,
                1500,
            ),
            "spiffe://td/prod/dmz/ds",
            "dmz",
        ),
    ]
}

const D_UP: usize = 0;
const D_DMZ: usize = 1;
const D_W1: usize = 2;
const D_NODE: usize = 3;

/// The demo-shaped fleet; dmz's own stream only when `dmz_reached`.
fn demo(dmz_reached: bool) -> Fleet {
    let mut f = Fleet::new([
        (
            "upstream".into(),
            "e0".into(),
            DaemonRole::Upstream,
            "root".into(),
        ),
        (
            "dmz".into(),
            "e1".into(),
            DaemonRole::Downstream,
            "dmz".into(),
        ),
        (
            "dmz-w1".into(),
            "e2".into(),
            DaemonRole::Agent,
            "dmz".into(),
        ),
        (
            "dmz-node".into(),
            "e3".into(),
            DaemonRole::Agent,
            "dmz".into(),
        ),
    ]);
    let msgs = [
        (
            D_UP,
            snap(
                1,
                DaemonRole::Upstream,
                "root",
                "spiffe://td/up",
                upstream_nodes(),
                None,
            ),
        ),
        (
            D_W1,
            snap(
                1,
                DaemonRole::Agent,
                "dmz",
                "spiffe://td/agent/w1",
                workload_agent_nodes(),
                Some(ConnectivityState::Connected),
            ),
        ),
        (
            D_NODE,
            snap(
                1,
                DaemonRole::Agent,
                "dmz",
                "spiffe://td/agent/node",
                node_agent_nodes(),
                Some(ConnectivityState::Connected),
            ),
        ),
    ];
    for (d, m) in msgs {
        f.apply(d, m, at(1000)).unwrap();
    }
    if dmz_reached {
        let m = snap(
            1,
            DaemonRole::Downstream,
            "dmz",
            "spiffe://td/dmz",
            dmz_nodes(),
            Some(ConnectivityState::Connected),
        );
        f.apply(D_DMZ, m, at(1000)).unwrap();
    }
    f
}

fn lose(f: &mut Fleet, d: usize, since: i64) {
    f.set_conn(
        d,
        DaemonConn::Lost {
            since: at(since),
            error: "keepalive timed out".into(),
        },
        at(since),
    );
}

/// A delta from daemon `d` at revision `rev`, sent and received at `when`.
fn delta(rev: u64, when: i64, d: Delta) -> WatchMessage {
    WatchMessage {
        revision: rev,
        daemon_time_ms: when * 1000,
        body: Some(Body::Delta(d)),
    }
}

/// Every node with its parent's id: the tree's shape.
fn shape(t: &Tree) -> BTreeSet<(String, Option<String>)> {
    t.nodes
        .iter()
        .map(|x| {
            (
                x.node.id.clone(),
                x.parent.map(|p| t.nodes[p].node.id.clone()),
            )
        })
        .collect()
}

fn window<'a>(w: &'a [SegmentWindow], seg: &str) -> &'a SegmentWindow {
    w.iter().find(|x| x.segment == seg).unwrap()
}

#[test]
fn a_stale_downstream_keeps_the_tree_shape() {
    let mut f = demo(true);
    let before = f.tree();
    assert_eq!(before.by_id[DMZ_AS_ISSUED], before.by_id[DMZ]);
    lose(&mut f, D_DMZ, 1010);
    let after = f.tree();
    assert_eq!(after.nodes.len(), before.nodes.len(), "no node appears");
    assert_eq!(shape(&after), shape(&before), "no node moves");
    // The intermediate stays below the dmz server, whoever reports it.
    let i1 = after.by_id["x509:i1"];
    assert_eq!(after.nodes[i1].parent, Some(after.by_id[DMZ]));
}

#[test]
fn a_stale_downstream_window_uses_its_last_known_intermediate() {
    let mut f = demo(true);
    lose(&mut f, D_DMZ, 1010);
    let t = f.tree();
    let w = f.windows(&t, at(1015));
    let dmz = window(&w, "dmz");
    assert_eq!(
        dmz.x509_until,
        Some(5000),
        "the intermediate's real not_after"
    );
    assert_eq!(
        dmz.reach,
        Reach::Lost {
            since: 1010,
            error: "keepalive timed out".into()
        }
    );
    assert_eq!(
        dmz.stale_secs,
        Some(5),
        "counted from the loss, not the last message"
    );
    let up = dmz.upstream.as_ref().unwrap();
    assert_eq!(up.state, ConnectivityState::Connected);
    assert_eq!(up.as_of, Some(1010), "its upstream link is last-known");
    assert_eq!(
        dmz.upstream_outage(at(1015)),
        UpstreamOutage::IfLostNow {
            x509_until: Some(5000)
        }
    );
    assert_eq!(dmz.workloads, 3);
}

#[test]
fn a_server_never_reached_is_matched_to_its_upstreams_record() {
    let mut f = demo(false);
    lose(&mut f, D_DMZ, 1005);
    lose(&mut f, D_DMZ, 1008);
    assert_eq!(
        f.daemons[D_DMZ].conn,
        DaemonConn::NeverReached {
            first_failure: at(1005),
            error: "keepalive timed out".into()
        },
        "never reached is its own state, not a loss"
    );
    assert_eq!(f.daemons[D_DMZ].staleness(at(1010)), None);
    let t = f.tree();
    // Its agents hang below the placeholder its upstream publishes.
    let p = t.by_id[DMZ_AS_ISSUED];
    assert_eq!(t.nodes[t.by_id["agent:w1"]].parent, Some(p));
    assert_eq!(&*t.nodes[p].segment, "dmz");
    let w = f.windows(&t, at(1010));
    let dmz = window(&w, "dmz");
    assert_eq!(dmz.x509_until, Some(5000), "the upstream's record");
    assert_eq!(dmz.workloads, 3);
    assert_eq!(dmz.workloads_fail_at, Some(1300));
    assert_eq!(dmz.stale_secs, None);
    assert!(dmz.upstream.is_none());
    assert_eq!(
        dmz.upstream_outage(at(1010)),
        UpstreamOutage::Unknown {
            x509_until: Some(5000)
        }
    );
    let r = f.status_report(at(1010), &Thresholds::default());
    let json = serde_json::to_value(&r).unwrap();
    assert!(!json.to_string().contains("-1"), "no sentinels: {json}");
    assert_eq!(json["daemons"][1]["state"], "never_reached");
    assert_eq!(
        json["daemons"][1]["first_failure_at"],
        "1970-01-01T00:16:45Z"
    );
    assert!(json["daemons"][1]["lost_since"].is_null());
    let seg = json["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["segment"] == "dmz")
        .unwrap();
    assert_eq!(seg["server_state"], "never_reached");
    assert_eq!(seg["server_lost"], true);
    assert_eq!(
        seg["if_upstream_lost"]["x509_until"],
        "1970-01-01T01:23:20Z"
    );
    assert_eq!(seg["if_server_lost"]["workload_svids"], 3);
    let e = f.events.back().unwrap();
    assert_eq!(e.event.kind_wire(), EventKind::ConsoleUnreachable);
    assert!(
        e.event.message.contains("cannot reach dmz"),
        "{}",
        e.event.message
    );
}

#[test]
fn a_loss_that_happened_is_a_fact() {
    let mut f = demo(true);
    lose(&mut f, D_DMZ, 1010);
    // The workload agent loses its server too, later.
    let d = delta(
        2,
        1020,
        Delta {
            upstream: Some(link(ConnectivityState::Lost, 1020)),
            ..Default::default()
        },
    );
    f.apply(D_W1, d, at(1020)).unwrap();
    let t = f.tree();
    let w = f.windows(&t, at(1200));
    let dmz = window(&w, "dmz");
    assert_eq!(
        dmz.agents,
        AgentLinks {
            total: 1,
            lost: 1,
            lost_since: Some(1020)
        }
    );
    assert_eq!(
        dmz.server_outage(at(1200)),
        ServerOutage::Lost {
            reach: Reach::Lost {
                since: 1010,
                error: "keepalive timed out".into()
            },
            agents_lost_at: Some(1020),
            past_renewal: 3,
            failure: Some(Deadline::At(1300)),
        }
    );
    // Once the first SVID expired, it has failed since then (never "in -8s").
    let ServerOutage::Lost { failure, .. } = dmz.server_outage(at(1308)) else {
        panic!("still lost")
    };
    assert_eq!(failure, Some(Deadline::Passed(1300)));
    // The root segment is not lost: still a what-if.
    assert_eq!(
        window(&w, "root").server_outage(at(1200)),
        ServerOutage::IfLostNow {
            fail_at: Some(1500)
        }
    );
}

#[test]
fn an_upstream_lost_is_a_fact_too() {
    let mut f = demo(true);
    let d = delta(
        2,
        1100,
        Delta {
            upstream: Some(link(ConnectivityState::Lost, 1090)),
            ..Default::default()
        },
    );
    f.apply(D_DMZ, d, at(1100)).unwrap();
    let t = f.tree();
    let w = f.windows(&t, at(1100));
    assert_eq!(
        window(&w, "dmz").upstream_outage(at(1100)),
        UpstreamOutage::Lost {
            since: 1090,
            as_of: None,
            x509: Some(Deadline::At(5000))
        }
    );
    // JWT unavailable is recorded once per loss.
    assert!(f.derive_events(&t, at(1100)) >= 1);
    let jwt: Vec<&FleetEvent> = f
        .events
        .iter()
        .filter(|e| e.event.kind_wire() == EventKind::JwtUnavailable)
        .collect();
    assert_eq!(jwt.len(), 1);
    assert_eq!(jwt[0].key, "console:jwt-unavailable:dmz:1090");
    f.derive_events(&t, at(1101));
    assert_eq!(
        f.events
            .iter()
            .filter(|e| e.event.kind_wire() == EventKind::JwtUnavailable)
            .count(),
        1
    );
}

#[test]
fn ages_count_from_the_loss_not_the_last_message() {
    let mut f = demo(true);
    // Last message at 1000; the console notices the loss at 1050.
    lose(&mut f, D_DMZ, 1050);
    assert_eq!(f.daemons[D_DMZ].staleness(at(1060)), Some(10));
    assert_eq!(f.daemons[D_DMZ].staleness(at(1000)), Some(0));
    assert_eq!(f.daemons[D_UP].staleness(at(1060)), Some(0), "live");
    let r = f.status_report(at(1060), &Thresholds::default());
    assert_eq!(r.daemons[D_DMZ].lost_seconds, Some(10));
    assert_eq!(r.daemons[D_DMZ].state, "lost");
    let t = f.tree();
    let tier = r.tiers.iter().find(|x| x.id == "x509:i1").unwrap();
    assert!(!tier.stale, "taken from the live upstream's record");
    assert_eq!(t.nodes[t.by_id[DMZ]].source, D_DMZ);
    let srv = r.tiers.iter().find(|x| x.id == DMZ).unwrap();
    assert_eq!(srv.as_of.as_deref(), Some("1970-01-01T00:17:30Z"));
}

#[test]
fn health_is_one_word_and_the_exit_code_follows_it() {
    let th = Thresholds {
        key_policy: false,
        ..Thresholds::default()
    };
    let mut f = demo(true);
    let t = f.tree();
    let h = f.health(&t, at(1010), &th);
    assert_eq!(
        (h.state(), h.exit_code()),
        (FleetHealth::Ok, 0),
        "{:?}",
        h.reasons
    );
    lose(&mut f, D_DMZ, 1010);
    let t = f.tree();
    let h = f.health(&t, at(1011), &th);
    assert_eq!(h.state(), FleetHealth::Unreachable);
    assert_eq!(h.exit_code(), 3);
    let r = f.status_report(at(1011), &th);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        (json["health"].as_str(), json["exit_code"].as_i64()),
        (Some("unreachable"), Some(3))
    );
    // The state stays the worst while the daemon is unreachable, even when more goes wrong.
    let h = f.health(&f.tree(), at(1200), &th);
    assert_eq!(h.state(), FleetHealth::Unreachable);
    assert!(
        h.level >= Level::Warning,
        "renewals overdue: {:?}",
        h.reasons
    );
    // Every state has its own code.
    for (s, c) in [
        (FleetHealth::Ok, 0),
        (FleetHealth::Warning, 1),
        (FleetHealth::Critical, 2),
        (FleetHealth::Unreachable, 3),
    ] {
        assert_eq!(s.exit_code(), c);
    }
}

#[test]
fn a_downstream_still_connecting_is_not_a_loss() {
    let mut f = demo(true);
    let d = delta(
        2,
        1001,
        Delta {
            upstream: Some(link(ConnectivityState::Connecting, 1000)),
            ..Default::default()
        },
    );
    f.apply(D_DMZ, d, at(1001)).unwrap();
    let t = f.tree();
    let th = Thresholds {
        key_policy: false,
        ..Thresholds::default()
    };
    assert_eq!(f.health(&t, at(1001), &th).state(), FleetHealth::Ok);
    let w = f.windows(&t, at(1001));
    assert!(matches!(
        window(&w, "dmz").upstream_outage(at(1001)),
        UpstreamOutage::IfLostNow { .. }
    ));
    f.derive_events(&t, at(1001));
    assert!(
        f.events
            .iter()
            .all(|e| e.event.kind_wire() != EventKind::JwtUnavailable)
    );
}

#[test]
fn renewal_overdue_and_expiry_are_alerts_and_events_once_per_certificate() {
    let mut f = demo(true);
    lose(&mut f, D_DMZ, 1010);
    let th = Thresholds::default();
    let t = f.tree();
    let a = t.by_id["svid:w1#a"];
    // 300 s SVIDs: renewal due at 1150, overdue at 1165.
    assert_eq!(f.node_alert(&t, a, at(1160)), None);
    assert_eq!(
        f.node_alert(&t, a, at(1170)),
        Some(NodeAlert::RenewalOverdue { since: 1165 })
    );
    assert_eq!(
        f.node_level(&t, a, at(1170), &th),
        Level::Warning,
        "before the TTL thresholds"
    );
    let h = f.health(&t, at(1170), &th);
    assert!(
        h.reasons.iter().any(|r| r.contains("renewal overdue")),
        "{:?}",
        h.reasons
    );
    let n0 = f.events_total;
    assert_eq!(f.derive_events(&t, at(1180)), 3, "a, b and c");
    assert_eq!(f.derive_events(&t, at(1181)), 0, "once");
    let late: Vec<&FleetEvent> = f.events.iter().skip(n0 as usize).collect();
    assert!(
        late.iter()
            .all(|e| e.event.kind_wire() == EventKind::SvidRenewalLate
                && e.event.severity_wire() == Severity::Warning
                && !e.replayed)
    );
    assert_eq!(late[0].event.node_id, "svid:w1#a");
    assert_eq!(late[0].key, "console:svid-renewal-late:svid:w1#a:1300");
    // a is renewed: a new certificate, no alert; b and c expire (once each).
    let d = delta(
        2,
        1200,
        Delta {
            upserts: vec![svid("svid:w1#a", 1200, 1500)],
            ..Default::default()
        },
    );
    f.apply(D_W1, d, at(1200)).unwrap();
    let t = f.tree();
    assert_eq!(f.node_alert(&t, t.by_id["svid:w1#a"], at(1200)), None);
    let expired = |f: &Fleet| -> Vec<String> {
        f.events
            .iter()
            .filter(|e| e.event.kind_wire() == EventKind::SvidExpired)
            .inspect(|e| assert_eq!(e.event.severity_wire(), Severity::Error))
            .map(|e| e.event.node_id.clone())
            .collect()
    };
    f.derive_events(&t, at(1315));
    assert_eq!(expired(&f), vec!["svid:w1#b"]);
    f.derive_events(&t, at(1325));
    f.derive_events(&t, at(1326));
    assert_eq!(expired(&f), vec!["svid:w1#b", "svid:w1#c"], "once each");
    assert_eq!(
        f.node_alert(&t, t.by_id["svid:w1#c"], at(1325)),
        Some(NodeAlert::Expired { at: 1320 })
    );
}

#[test]
fn an_agent_that_lost_its_server_says_so() {
    let mut f = demo(true);
    let d = delta(
        2,
        1020,
        Delta {
            upstream: Some(link(ConnectivityState::Lost, 1020)),
            ..Default::default()
        },
    );
    f.apply(D_W1, d, at(1020)).unwrap();
    let t = f.tree();
    let agent = t.by_id["agent:w1"];
    assert_eq!(
        f.node_alert(&t, agent, at(1030)),
        Some(NodeAlert::ServerLost { since: 1020 })
    );
    assert_eq!(
        f.node_level(&t, agent, at(1030), &Thresholds::default()),
        Level::Warning
    );
}

#[test]
fn replayed_history_is_marked_and_keys_are_stable() {
    let hist = |seq: u64| Event {
        seq,
        at_ms: 900_000,
        severity: Severity::Info.into(),
        kind: EventKind::X509Activated.into(),
        message: format!("event {seq}"),
        ..Default::default()
    };
    // A daemon first reached now: its history is a replay.
    let mut first = snap(
        1,
        DaemonRole::Downstream,
        "gcp",
        "spiffe://td/gcp",
        vec![],
        Some(ConnectivityState::Connected),
    );
    let mut f2 = Fleet::new([(
        "gcp".into(),
        "e".into(),
        DaemonRole::Downstream,
        "gcp".into(),
    )]);
    if let Some(Body::Snapshot(s)) = &mut first.body {
        s.events = vec![hist(1), hist(2)];
        if let Some(i) = &mut s.identity {
            i.started_at = 777;
        }
    }
    f2.apply(0, first.clone(), at(1000)).unwrap();
    let keys: Vec<(&str, bool)> = f2
        .events
        .iter()
        .map(|e| (e.key.as_str(), e.replayed))
        .collect();
    assert_eq!(keys, vec![("gcp:777:1", true), ("gcp:777:2", true)]);
    // A delta is news.
    let d = delta(
        2,
        1001,
        Delta {
            events: vec![hist(3)],
            ..Default::default()
        },
    );
    f2.apply(0, d, at(1001)).unwrap();
    assert_eq!(
        (f2.events[2].key.as_str(), f2.events[2].replayed),
        ("gcp:777:3", false)
    );
    // Lost and back: what happened meanwhile is news too, and the console says it is back.
    lose(&mut f2, 0, 1010);
    if let Some(Body::Snapshot(s)) = &mut first.body {
        s.events = vec![hist(1), hist(2), hist(3), hist(4)];
    }
    first.revision = 7;
    f2.apply(0, first, at(1030)).unwrap();
    let tail: Vec<(&str, bool, &str)> = f2
        .events
        .iter()
        .skip(3)
        .map(|e| (e.key.as_str(), e.replayed, e.event.kind_wire().as_str()))
        .collect();
    assert_eq!(
        tail,
        vec![
            ("console:unreachable:gcp:1010", false, "console-unreachable"),
            ("gcp:777:4", false, "x509-activated"),
            ("console:reconnected:gcp:1030", false, "console-reconnected"),
        ]
    );
    assert!(
        f2.events
            .back()
            .unwrap()
            .event
            .message
            .contains("after 20s")
    );
}

#[test]
fn node_agent_svids_count_under_the_segment_of_the_server_that_issues_them() {
    let f = demo(true);
    let t = f.tree();
    // The node agent reports itself in segment dmz; its server is the upstream.
    let ds = t.by_id["svid:node#ds"];
    assert_eq!(t.nodes[ds].source, D_NODE);
    assert_eq!(&*t.nodes[ds].segment, "root");
    assert_eq!(&*t.nodes[t.by_id["agent:node"]].segment, "root");
    assert_eq!(&*t.nodes[t.by_id["svid:w1#a"]].segment, "dmz");
    assert_eq!(&*t.nodes[t.by_id["x509:i1"]].segment, "dmz");
    let w = f.windows(&t, at(1000));
    assert_eq!(window(&w, "root").workloads, 1, "the window panel");
    let r = f.status_report(at(1000), &Thresholds::default());
    let tier = r.tiers.iter().find(|x| x.id == "svid:node#ds").unwrap();
    assert_eq!(tier.segment, "root", "the JSON");
}
