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

mod events;
mod health;
mod tree;
mod windows;

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
        node_agent("root"),
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

/// The node agent (attested to the upstream) as `segment` sees it.
fn node_agent(segment: &str) -> Node {
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
        segment,
    )
}

fn node_agent_nodes() -> Vec<Node> {
    vec![
        node_agent("dmz"),
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

/// Daemon `d` reports its upstream link `state` since `since`, in delta `rev` sent and
/// received at `when`.
fn set_link(
    f: &mut Fleet,
    d: usize,
    (rev, when): (u64, i64),
    state: ConnectivityState,
    since: i64,
) {
    let m = delta(
        rev,
        when,
        Delta {
            upstream: Some(link(state, since)),
            ..Default::default()
        },
    );
    f.apply(d, m, at(when)).unwrap();
}
