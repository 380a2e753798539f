//! Tests of the fleet model, on a small fixed fleet.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{
    Connectivity, ConnectivityState, DaemonIdentity, DaemonRole, Delta, Event, EventKind,
    KeyBackend, KeyStorage, Node, NodeKind, NodeState, Snapshot, WatchMessage, watch_message::Body,
};
use trustdeck_proto::vocab::Wire;

use super::*;

pub(super) fn at(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(s, 0).unwrap()
}

pub(super) fn n(
    id: &str,
    parent: &str,
    kind: NodeKind,
    state: NodeState,
    nb: i64,
    na: i64,
) -> Node {
    Node {
        id: id.into(),
        parent: parent.into(),
        kind: kind as i32,
        label: id.into(),
        state: state.into(),
        not_before: nb,
        not_after: na,
        ..Default::default()
    }
}

pub(super) fn snap(
    rev: u64,
    role: DaemonRole,
    seg: &str,
    id: &str,
    nodes: Vec<Node>,
    up: Option<ConnectivityState>,
) -> WatchMessage {
    WatchMessage {
        revision: rev,
        daemon_time_ms: 1_000_000,
        body: Some(Body::Snapshot(Snapshot {
            identity: Some(DaemonIdentity {
                name: seg.into(),
                role: role.into(),
                segment: seg.into(),
                spiffe_id: id.into(),
                ..Default::default()
            }),
            nodes,
            upstream: up.map(|s| Connectivity {
                configured: true,
                state: s.into(),
                since: 900,
                last_error: if s == ConnectivityState::Connected {
                    String::new()
                } else {
                    "refused".into()
                },
                ..Default::default()
            }),
            events: vec![],
            partial: false,
            federation: None,
        })),
    }
}

/// An upstream with a root and an agent (the downstream's node agent), a downstream with
/// an intermediate, one agent and two workloads.
pub(super) fn fleet() -> Fleet {
    let mut f = Fleet::new([
        (
            "up".into(),
            "unix:///up".into(),
            DaemonRole::Upstream,
            "root".into(),
        ),
        (
            "gcp".into(),
            "unix:///gcp".into(),
            DaemonRole::Downstream,
            "gcp".into(),
        ),
    ]);
    let up = vec![
        n(
            "server:spiffe://td/up",
            "",
            NodeKind::Server,
            NodeState::Serving,
            0,
            10_000,
        ),
        n(
            "x509:r1",
            "server:spiffe://td/up",
            NodeKind::X509Authority,
            NodeState::Active,
            0,
            10_000,
        ),
        n(
            "agent:a0",
            "server:spiffe://td/up",
            NodeKind::Agent,
            NodeState::Attested,
            0,
            2000,
        ),
        n(
            "svid:a0#e",
            "agent:a0",
            NodeKind::WorkloadSvid,
            NodeState::Issued,
            900,
            1900,
        ),
        n(
            "server:spiffe://td/gcp",
            "server:spiffe://td/up",
            NodeKind::Server,
            NodeState::Issued,
            0,
            0,
        ),
    ];
    let gcp = vec![
        n(
            "server:spiffe://td/gcp",
            "server:spiffe://td/up",
            NodeKind::Server,
            NodeState::Serving,
            0,
            5000,
        ),
        n(
            "x509:i1",
            "server:spiffe://td/gcp",
            NodeKind::X509Authority,
            NodeState::Active,
            0,
            5000,
        ),
        n(
            "x509:i2",
            "server:spiffe://td/gcp",
            NodeKind::X509Authority,
            NodeState::Prepared,
            2500,
            7000,
        ),
        n(
            "agent:a1",
            "server:spiffe://td/gcp",
            NodeKind::Agent,
            NodeState::Attested,
            0,
            3000,
        ),
        n(
            "svid:a1#w1",
            "agent:a1",
            NodeKind::WorkloadSvid,
            NodeState::Issued,
            900,
            1200,
        ),
        n(
            "svid:a1#w2",
            "agent:a1",
            NodeKind::WorkloadSvid,
            NodeState::Issued,
            950,
            1500,
        ),
    ];
    f.apply(
        0,
        snap(5, DaemonRole::Upstream, "root", "spiffe://td/up", up, None),
        at(1000),
    )
    .unwrap();
    f.apply(
        1,
        snap(
            9,
            DaemonRole::Downstream,
            "gcp",
            "spiffe://td/gcp",
            gcp,
            Some(ConnectivityState::Connected),
        ),
        at(1000),
    )
    .unwrap();
    f
}

#[test]
fn merges_streams_into_one_tree() {
    let f = fleet();
    let t = f.tree();
    assert_eq!(t.roots.len(), 1);
    let root = &t.nodes[t.roots[0]];
    assert_eq!(root.node.id, "server:spiffe://td/up");
    let gcp = t.by_id["server:spiffe://td/gcp"];
    // The downstream's own report wins over the upstream's placeholder.
    assert_eq!(t.nodes[gcp].node.state_wire(), NodeState::Serving);
    assert_eq!(t.nodes[gcp].source, 1);
    assert_eq!(t.nodes[gcp].parent, Some(t.roots[0]));
    let rows = t.rows(&HashSet::new(), "");
    assert_eq!(rows.len(), t.nodes.len());
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| t.nodes[r.idx].node.id.as_str())
        .collect();
    assert_eq!(ids[0], "server:spiffe://td/up");
    assert_eq!(ids[1], "x509:r1"); // authorities first
    let mut collapsed = HashSet::new();
    collapsed.insert("server:spiffe://td/gcp".to_string());
    assert_eq!(t.rows(&collapsed, "").len(), t.nodes.len() - 5);
    let filtered = t.rows(&HashSet::new(), "a1#w2");
    let ids: Vec<&str> = filtered
        .iter()
        .map(|r| t.nodes[r.idx].node.id.as_str())
        .collect();
    assert_eq!(
        ids,
        vec![
            "server:spiffe://td/up",
            "server:spiffe://td/gcp",
            "agent:a1",
            "svid:a1#w2"
        ]
    );
}

#[test]
fn a_daemon_at_revision_zero_takes_its_first_delta() {
    let mut f = Fleet::new([("a".into(), "e".into(), DaemonRole::Agent, "s".into())]);
    f.apply(
        0,
        snap(0, DaemonRole::Agent, "s", "spiffe://td/a", vec![], None),
        at(0),
    )
    .unwrap();
    let d = WatchMessage {
        revision: 1,
        daemon_time_ms: 0,
        body: Some(Body::Delta(Delta {
            upserts: vec![n("x", "", NodeKind::Agent, NodeState::Unspecified, 0, 1)],
            ..Default::default()
        })),
    };
    f.apply(0, d, at(0)).unwrap();
    assert!(f.daemons[0].nodes.contains_key("x"));
}

#[test]
fn autonomous_windows_come_from_live_data() {
    let f = fleet();
    let t = f.tree();
    let w = f.windows(&t, at(1000));
    assert_eq!(w.len(), 2);
    let root = &w[0];
    assert_eq!(root.role, DaemonRole::Upstream);
    assert_eq!(root.workloads, 1);
    assert_eq!(root.workloads_fail_at, Some(1900));
    assert_eq!(root.x509_until, None);
    let gcp = &w[1];
    assert_eq!(gcp.x509_until, Some(7000)); // the prepared intermediate is held too
    assert!(gcp.jwt_stops_now);
    assert_eq!(gcp.workloads_fail_at, Some(1200));
    assert_eq!(gcp.workloads, 2);
    assert_eq!(
        gcp.upstream.as_ref().map(|u| u.state),
        Some(Wire::Known(ConnectivityState::Connected))
    );
    assert_eq!(gcp.stale_secs, None);
}

#[test]
fn deltas_apply_in_order_and_gaps_are_refused() {
    let mut f = fleet();
    let d = |rev, upserts: Vec<Node>, up: Option<ConnectivityState>| WatchMessage {
        revision: rev,
        daemon_time_ms: 1_000_000,
        body: Some(Body::Delta(Delta {
            upserts,
            removes: vec!["svid:a1#w1".into()],
            upstream: up.map(|s| Connectivity {
                configured: true,
                state: s.into(),
                last_error: "refused".into(),
                ..Default::default()
            }),
            events: vec![],
            identity: None,
            federation: None,
        })),
    };
    f.apply(1, d(10, vec![], Some(ConnectivityState::Lost)), at(1001))
        .unwrap();
    assert!(!f.daemons[1].nodes.contains_key("svid:a1#w1"));
    assert_eq!(
        f.apply(1, d(12, vec![], None), at(1001)),
        Err(ApplyError::Gap { have: 10, got: 12 })
    );
    let t = f.tree();
    let h = f.health(&t, at(1001), &Thresholds::default());
    assert_eq!(h.level, Level::Critical);
    assert_eq!(h.exit_code(), 2);
    assert!(h.reasons.iter().any(|r| r.contains("upstream link lost")));
}

#[test]
fn unreachable_daemon_keeps_last_state_and_exit_code_3() {
    let mut f = fleet();
    f.set_conn(
        1,
        DaemonConn::Lost {
            since: at(1010),
            error: "connection refused".into(),
        },
        at(1010),
    );
    let t = f.tree();
    // Last-known state is still shown, marked stale.
    assert!(t.by_id.contains_key("svid:a1#w2"));
    let w = f.windows(&t, at(1040));
    // Counted from the loss (1010), not from the last message (1000).
    assert_eq!(w[1].stale_secs, Some(30));
    let h = f.health(&t, at(1040), &Thresholds::default());
    assert_eq!(h.unreachable, vec!["gcp".to_string()]);
    assert_eq!(h.exit_code(), 3);
    assert_eq!(
        f.events.back().unwrap().event.kind_wire(),
        EventKind::ConsoleUnreachable
    );
    // Still lost: the start is kept, the reason updated, no second event.
    f.set_conn(
        1,
        DaemonConn::Lost {
            since: at(1020),
            error: "timed out".into(),
        },
        at(1020),
    );
    assert_eq!(
        f.daemons[1].conn,
        DaemonConn::Lost {
            since: at(1010),
            error: "timed out".into()
        }
    );
    assert_eq!(f.events_total, 1);
}

#[test]
fn keys_outside_an_hsm_breach_the_policy() {
    let mut f = fleet();
    let t = f.tree();
    // Fixture authorities have no key storage: root critical, intermediates warnings.
    let h = f.health(&t, at(1000), &Thresholds::default());
    assert_eq!(h.level, Level::Critical);
    assert!(
        h.reasons
            .iter()
            .any(|r| r.contains("tier 0") && r.contains("not an HSM")),
        "{:?}",
        h.reasons
    );
    assert!(
        h.reasons
            .iter()
            .any(|r| r.starts_with("gcp: key policy: tier 1")),
        "{:?}",
        h.reasons
    );
    let hsm = |mut n: Node| {
        n.key_storage = Some(KeyStorage {
            backend: KeyBackend::Pkcs11.into(),
            detail: "pkcs11:token=t;label=l".into(),
            ..Default::default()
        });
        n
    };
    let up: Vec<Node> = f.daemons[0]
        .nodes
        .values()
        .map(|n| hsm((**n).clone()))
        .collect();
    f.apply(
        0,
        snap(6, DaemonRole::Upstream, "root", "spiffe://td/up", up, None),
        at(1000),
    )
    .unwrap();
    let t = f.tree();
    let h = f.health(&t, at(1000), &Thresholds::default());
    assert_eq!(h.level, Level::Warning, "{:?}", h.reasons);
    let off = Thresholds {
        key_policy: false,
        ..Thresholds::default()
    };
    assert_eq!(f.health(&t, at(1000), &off).level, Level::Ok);
}

#[test]
fn thresholds_drive_health() {
    let f = fleet();
    let t = f.tree();
    assert_eq!(
        f.health(
            &t,
            at(1000),
            &Thresholds {
                key_policy: false,
                ..Thresholds::default()
            }
        )
        .exit_code(),
        0
    );
    let strict = Thresholds {
        warn_fraction: 0.99,
        crit_fraction: 0.0,
        key_policy: false,
    };
    assert_eq!(f.health(&t, at(1000), &strict).exit_code(), 1);
    let stricter = Thresholds {
        warn_fraction: 0.99,
        crit_fraction: 0.99,
        key_policy: false,
    };
    assert_eq!(f.health(&t, at(1000), &stricter).exit_code(), 2);
    let exp = f.expiring(&t, 3);
    let ids: Vec<&str> = exp.iter().map(|&i| t.nodes[i].node.id.as_str()).collect();
    assert_eq!(ids, vec!["svid:a1#w1", "svid:a1#w2", "svid:a0#e"]);
}

#[test]
fn chunked_snapshot_is_applied_when_complete() {
    let mut f = Fleet::new([("a".into(), "e".into(), DaemonRole::Agent, "s".into())]);
    let mut first = snap(
        3,
        DaemonRole::Agent,
        "s",
        "spiffe://td/a",
        vec![n("x", "", NodeKind::Agent, NodeState::Unspecified, 0, 1)],
        None,
    );
    if let Some(Body::Snapshot(s)) = &mut first.body {
        s.partial = true;
    }
    f.apply(0, first, at(0)).unwrap();
    assert!(f.daemons[0].nodes.is_empty());
    assert!(!f.daemons[0].is_live());
    let second = WatchMessage {
        revision: 3,
        daemon_time_ms: 0,
        body: Some(Body::Snapshot(Snapshot {
            nodes: vec![n(
                "y",
                "x",
                NodeKind::WorkloadSvid,
                NodeState::Unspecified,
                0,
                1,
            )],
            ..Default::default()
        })),
    };
    f.apply(0, second, at(0)).unwrap();
    assert_eq!(f.daemons[0].nodes.len(), 2);
    assert!(f.daemons[0].is_live());
    let report = f.status_report(at(0), &Thresholds::default());
    assert_eq!(report.tiers.len(), 2);
}

/// A daemon newer than this build: a role, node kind, state, key backend, link state and
/// event this build does not know. Nothing panics, nothing is dropped, and each reads as
/// "unknown".
#[test]
fn values_from_a_newer_daemon_read_as_unknown() {
    let mut f = Fleet::new([("new".into(), "e".into(), DaemonRole::Downstream, "s".into())]);
    let mut server = n(
        "server:spiffe://td/new",
        "",
        NodeKind::Server,
        NodeState::Serving,
        0,
        0,
    );
    server.spiffe_id = "spiffe://td/new".into();
    let mut ca = n(
        "x509:9",
        "server:spiffe://td/new",
        NodeKind::X509Authority,
        NodeState::Active,
        0,
        5000,
    );
    ca.state = 77;
    ca.key_storage = Some(KeyStorage {
        backend: 42,
        detail: String::new(),
        ..Default::default()
    });
    let mut odd = n(
        "odd:1",
        "server:spiffe://td/new",
        NodeKind::Agent,
        NodeState::Held,
        0,
        5000,
    );
    odd.kind = 31;
    let mut msg = snap(
        1,
        DaemonRole::Downstream,
        "s",
        "spiffe://td/new",
        vec![server, ca, odd],
        Some(ConnectivityState::Connected),
    );
    if let Some(Body::Snapshot(s)) = &mut msg.body {
        if let Some(id) = &mut s.identity {
            id.role = 9;
        }
        if let Some(u) = &mut s.upstream {
            u.state = 8;
            u.last_error = "refused".into();
        }
        s.events = vec![Event {
            seq: 1,
            severity: 5,
            kind: 500,
            message: "from the future".into(),
            ..Default::default()
        }];
    }
    f.apply(0, msg, at(1000)).unwrap();
    assert_eq!(f.events.len(), 1, "the event is kept");
    let e = &f.events[0].event;
    assert_eq!(
        (e.kind_wire().as_str(), e.severity_wire().as_str()),
        ("unknown", "unknown")
    );
    let ds = &f.daemons[0];
    assert_eq!(ds.role(), Wire::Unknown(9));
    let t = f.tree();
    assert_eq!(t.nodes.len(), 3, "no node is dropped");
    assert_eq!(
        t.rows(&HashSet::new(), "unknown").len(),
        2,
        "the filter sees the text"
    );
    let w = f.windows(&t, at(1000));
    assert_eq!(w[0].role.as_str(), "unknown");
    assert_eq!(
        w[0].upstream.as_ref().map(|u| u.state.as_str()),
        Some("unknown")
    );
    // An unknown link state is as bad as a lost one.
    let h = f.health(&t, at(1000), &Thresholds::default());
    assert_eq!(h.level, Level::Critical);
    assert!(
        h.reasons
            .iter()
            .any(|r| r == "new: upstream link unknown (refused)"),
        "{:?}",
        h.reasons
    );
    let r = f.status_report(at(1000), &Thresholds::default());
    assert_eq!(r.daemons[0].role, "unknown");
    assert_eq!(
        r.daemons[0].upstream.as_ref().map(|u| u.state),
        Some("unknown")
    );
    let ca = r.tiers.iter().find(|t| t.id == "x509:9").unwrap();
    assert_eq!(
        (ca.state, ca.key_storage.as_ref().map(|k| k.backend)),
        ("unknown", Some("unknown"))
    );
    let odd = r.tiers.iter().find(|t| t.id == "odd:1").unwrap();
    assert_eq!(odd.kind, "UNKNOWN");
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains(r#""role":"unknown""#), "{json}");
}
