//! Tests of the merged tree: aliases, cycles, and the order of trust domains.

use std::collections::HashSet;

use trustdeck_proto::admin::{ConnectivityState, DaemonRole, NodeKind, NodeState};

use super::Fleet;
use super::tests::{at, fleet, n, snap};

#[test]
fn a_live_node_replaces_the_placeholder_it_aliases() {
    let mut f = fleet();
    let up_placeholder = vec![
        n(
            "server:spiffe://td/up",
            "",
            NodeKind::Server,
            NodeState::Serving,
            0,
            10_000,
        ),
        n(
            "server:spiffe://td/gcp-svid",
            "server:spiffe://td/up",
            NodeKind::Server,
            NodeState::Issued,
            0,
            5000,
        ),
        n(
            "x509:i9",
            "server:spiffe://td/gcp-svid",
            NodeKind::X509Authority,
            NodeState::Issued,
            0,
            5000,
        ),
    ];
    f.apply(
        0,
        snap(
            6,
            DaemonRole::Upstream,
            "root",
            "spiffe://td/up",
            up_placeholder,
            None,
        ),
        at(1000),
    )
    .unwrap();
    let mut gcp_server = n(
        "server:spiffe://td/gcp",
        "server:spiffe://td/up",
        NodeKind::Server,
        NodeState::Serving,
        0,
        5000,
    );
    gcp_server.aliases = vec!["server:spiffe://td/gcp-svid".into()];
    f.apply(
        1,
        snap(
            10,
            DaemonRole::Downstream,
            "gcp",
            "spiffe://td/gcp",
            vec![gcp_server],
            Some(ConnectivityState::Connected),
        ),
        at(1000),
    )
    .unwrap();
    let t = f.tree();
    assert!(
        !t.nodes
            .iter()
            .any(|x| x.node.id == "server:spiffe://td/gcp-svid")
    );
    let i9 = t.by_id["x509:i9"];
    assert_eq!(t.nodes[i9].parent, Some(t.by_id["server:spiffe://td/gcp"]));
}

#[test]
fn parent_cycles_do_not_hang_the_tree() {
    let mut f = Fleet::new([("a".into(), "e".into(), DaemonRole::Agent, "s".into())]);
    let nodes = vec![
        n("x", "y", NodeKind::Agent, NodeState::Unspecified, 0, 1),
        n("y", "x", NodeKind::Agent, NodeState::Unspecified, 0, 1),
        n("z", "z", NodeKind::Agent, NodeState::Unspecified, 0, 1),
    ];
    f.apply(
        0,
        snap(1, DaemonRole::Agent, "s", "spiffe://td/a", nodes, None),
        at(0),
    )
    .unwrap();
    let t = f.tree();
    assert_eq!(t.rows(&HashSet::new(), "").len(), 3);
    assert!(!t.roots.is_empty());
}

#[test]
fn the_fleets_own_trust_domain_comes_first_in_the_tree() {
    let mut f = Fleet::new([
        ("zz".into(), "e".into(), DaemonRole::Upstream, "zz".into()),
        ("aa".into(), "e".into(), DaemonRole::Upstream, "aa".into()),
    ]);
    f.set_trust_domain(1, "partner.test");
    for (d, seg, id) in [
        (0, "zz", "spiffe://td/up"),
        (1, "aa", "spiffe://partner.test/up"),
    ] {
        let server = n(
            &format!("server:{id}"),
            "",
            NodeKind::Server,
            NodeState::Serving,
            0,
            1,
        );
        let m = snap(1, DaemonRole::Upstream, seg, id, vec![server], None);
        f.apply(d, m, at(0)).unwrap();
    }
    let t = f.tree();
    let roots: Vec<&str> = t
        .roots
        .iter()
        .map(|&i| t.nodes[i].node.id.as_str())
        .collect();
    assert_eq!(
        roots,
        ["server:spiffe://td/up", "server:spiffe://partner.test/up"]
    );
    assert_eq!(f.own_trust_domain().daemons.len(), 1);
}
