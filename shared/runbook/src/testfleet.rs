//! A small live fleet for the engine's tests: upstream `up` (root `r1` active), downstream
//! `gcp` (intermediate `i1` signed by `r1`), agent `gcp-a` (its SVID and one workload SVID
//! signed by `i1`, bundle sequence `seq`).

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{
    Connectivity, ConnectivityState, DaemonIdentity, DaemonRole, Node, NodeKind, NodeState,
    Snapshot, WatchMessage, watch_message::Body,
};
use trustdeck_topology::{DaemonConn, Fleet};

pub fn at(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(s, 0).expect("time")
}

pub fn node(id: &str, kind: NodeKind, state: NodeState, issuer: &str) -> Node {
    Node {
        id: id.into(),
        kind: kind as i32,
        state: state.into(),
        not_before: 0,
        not_after: 10_000,
        issuer_key_id: issuer.into(),
        ..Default::default()
    }
}

fn snap(
    name: &str,
    role: DaemonRole,
    id: &str,
    nodes: Vec<Node>,
    up: Option<(&str, u64)>,
) -> WatchMessage {
    WatchMessage {
        revision: 1,
        daemon_time_ms: 1_000_000,
        body: Some(Body::Snapshot(Snapshot {
            identity: Some(DaemonIdentity {
                name: name.into(),
                role: role.into(),
                segment: name.into(),
                spiffe_id: id.into(),
                ..Default::default()
            }),
            nodes,
            upstream: up.map(|(peer, seq)| Connectivity {
                configured: true,
                state: ConnectivityState::Connected.into(),
                peer_spiffe_id: peer.into(),
                last_bundle_sequence: seq,
                ..Default::default()
            }),
            events: vec![],
            partial: false,
            federation: None,
        })),
    }
}

pub const UP: &str = "spiffe://td/up";
pub const GCP: &str = "spiffe://td/gcp";

/// The fleet, every daemon live, followers at bundle sequence `seq`; `svid_issuer` signed
/// the agent's SVIDs.
pub fn fleet(seq: u64, svid_issuer: &str) -> Fleet {
    let now = at(1000);
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
        (
            "gcp-a".into(),
            "unix:///a".into(),
            DaemonRole::Agent,
            "gcp".into(),
        ),
    ]);
    let msgs = [
        snap(
            "up",
            DaemonRole::Upstream,
            UP,
            vec![
                node("server:up", NodeKind::Server, NodeState::Serving, ""),
                node("x509:r1", NodeKind::X509Authority, NodeState::Active, ""),
                node("jwt:k1", NodeKind::JwtAuthority, NodeState::Active, ""),
                // The intermediate it issued to gcp, as an upstream publishes it.
                node("x509:i1", NodeKind::X509Authority, NodeState::Issued, "r1"),
            ],
            None,
        ),
        snap(
            "gcp",
            DaemonRole::Downstream,
            GCP,
            vec![
                node("server:gcp", NodeKind::Server, NodeState::Serving, ""),
                node("x509:i1", NodeKind::X509Authority, NodeState::Active, "r1"),
            ],
            Some((UP, seq)),
        ),
        snap(
            "gcp-a",
            DaemonRole::Agent,
            "spiffe://td/agent/a",
            vec![
                node("agent:a", NodeKind::Agent, NodeState::Held, svid_issuer),
                Node {
                    spiffe_id: "spiffe://td/w1".into(),
                    ..node(
                        "svid:a#e1",
                        NodeKind::WorkloadSvid,
                        NodeState::Held,
                        svid_issuer,
                    )
                },
            ],
            Some((GCP, seq)),
        ),
    ];
    for (d, m) in msgs.into_iter().enumerate() {
        f.apply(d, m, now).expect("apply");
        f.set_conn(d, DaemonConn::Live, now);
    }
    f
}
