//! One name per thing: what the console, `status` and the dump call a node or a daemon's peer.
//! A server or an agent is the fleet file's name of the daemon it is (`dmz`,
//! `dmz-workloads-1`), whichever daemon reported it; anything else is its label. A SPIFFE ID is
//! never a name unless nothing else is known.

use trustdeck_proto::admin::{Connectivity, Node, NodeKind};

use super::Fleet;

impl Fleet {
    /// The daemon whose own SPIFFE ID is `spiffe_id`.
    pub fn daemon_by_spiffe_id(&self, spiffe_id: &str) -> Option<usize> {
        if spiffe_id.is_empty() {
            return None;
        }
        self.daemons.iter().position(|d| {
            d.identity
                .as_ref()
                .is_some_and(|i| i.spiffe_id == spiffe_id)
        })
    }

    /// What node `n` is called: for a server or an agent, the fleet name of the daemon it is;
    /// else its label; else its SPIFFE ID; else its id.
    pub fn node_name<'a>(&'a self, n: &'a Node) -> &'a str {
        let is_daemon = matches!(
            n.kind_wire().known(),
            Some(NodeKind::Server | NodeKind::Agent)
        );
        if is_daemon && let Some(d) = self.daemon_by_spiffe_id(&n.spiffe_id) {
            return &self.daemons[d].name;
        }
        [&n.label, &n.spiffe_id, &n.id]
            .into_iter()
            .find(|s| !s.is_empty())
            .map_or("", |s| s.as_str())
    }

    /// The fleet name of the peer of an upstream link (None: the daemon did not say who it is,
    /// or it is not in the fleet file).
    pub fn peer_name(&self, c: &Connectivity) -> Option<&str> {
        self.daemon_by_spiffe_id(&c.peer_spiffe_id)
            .map(|d| self.daemons[d].name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use trustdeck_proto::admin::{Connectivity, DaemonIdentity, DaemonRole, Node, NodeKind};

    use crate::fleet::Fleet;

    fn fleet() -> Fleet {
        let mut f = Fleet::new([
            (
                "dmz".to_string(),
                "unix:///run/dmz.sock".to_string(),
                DaemonRole::Downstream,
                "dmz".to_string(),
            ),
            (
                "dmz-workloads-1".to_string(),
                "unix:///run/a.sock".to_string(),
                DaemonRole::Agent,
                "dmz".to_string(),
            ),
        ]);
        for (d, id) in [
            (0, "spiffe://td/trustdeck/server/dmz"),
            (1, "spiffe://td/trustdeck/agent/join_token/5fb56b"),
        ] {
            f.daemons[d].identity = Some(DaemonIdentity {
                spiffe_id: id.into(),
                ..Default::default()
            });
        }
        f
    }

    fn node(kind: NodeKind, label: &str, spiffe_id: &str) -> Node {
        Node {
            id: format!("x:{spiffe_id}"),
            kind: kind as i32,
            label: label.into(),
            spiffe_id: spiffe_id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_agent_is_its_fleet_name_whoever_reports_it() {
        let f = fleet();
        let id = "spiffe://td/trustdeck/agent/join_token/5fb56b";
        // As its server reports it (label "agent") and as it reports itself.
        for label in ["agent", "dmz-workloads-1"] {
            assert_eq!(
                f.node_name(&node(NodeKind::Agent, label, id)),
                "dmz-workloads-1"
            );
        }
    }

    #[test]
    fn others_are_their_label_then_spiffe_id_then_id() {
        let f = fleet();
        let n = node(NodeKind::WorkloadSvid, "/prod/dmz/edge", "spiffe://td/prod");
        assert_eq!(f.node_name(&n), "/prod/dmz/edge");
        let n = node(NodeKind::Agent, "", "spiffe://td/trustdeck/agent/x");
        assert_eq!(f.node_name(&n), "spiffe://td/trustdeck/agent/x");
        let n = node(NodeKind::X509Authority, "", "");
        assert_eq!(f.node_name(&n), "x:");
    }

    #[test]
    fn a_peer_is_named_by_its_spiffe_id() {
        let f = fleet();
        let c = Connectivity {
            peer: "server 127.0.0.1:42161".into(),
            peer_spiffe_id: "spiffe://td/trustdeck/server/dmz".into(),
            ..Default::default()
        };
        assert_eq!(f.peer_name(&c), Some("dmz"));
        let unknown = Connectivity {
            peer: "server 127.0.0.1:42161".into(),
            ..Default::default()
        };
        assert_eq!(f.peer_name(&unknown), None);
    }

    #[test]
    fn health_names_the_server_an_agent_lost() {
        let mut f = fleet();
        f.daemons[0].conn = crate::fleet::DaemonConn::Live;
        f.daemons[1].conn = crate::fleet::DaemonConn::Live;
        f.daemons[1].upstream = Some(Connectivity {
            configured: true,
            state: trustdeck_proto::admin::ConnectivityState::Lost.into(),
            peer: "server 127.0.0.1:42161".into(),
            peer_spiffe_id: "spiffe://td/trustdeck/server/dmz".into(),
            last_error: "connection refused".into(),
            ..Default::default()
        });
        let now = chrono::DateTime::from_timestamp(1000, 0).unwrap_or_default();
        let h = f.health(&f.tree(), now, &crate::fleet::Thresholds::default());
        assert!(
            h.reasons
                .iter()
                .any(|r| r == "dmz-workloads-1: server link lost (dmz: connection refused)"),
            "{:?}",
            h.reasons
        );
    }
}
