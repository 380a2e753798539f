//! One name per thing: what the console, `status` and the dump call a node or a daemon's peer.
//! A server or an agent is the fleet file's name of the daemon it is (`dmz`,
//! `dmz-workloads-1`), whichever daemon reported it; anything else is its label. A SPIFFE ID is
//! never a name unless nothing else is known.
//!
//! Which daemon a SPIFFE ID names: the one whose fleet entry pins it, if any (no other daemon
//! can take its name by claiming it); else the one unpinned daemon that says it is that ID
//! (none when several do). A daemon that claims an ID other than its pin, or another's pinned
//! ID, is a [`NameConflict`] (a warning in health).

use trustdeck_proto::admin::{Connectivity, Node, NodeKind};

use super::Fleet;

/// A daemon's claimed SPIFFE ID that names no one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameConflict {
    /// Daemon `daemon` says it is `claims`, but its fleet entry pins `pinned`.
    PinMismatch {
        daemon: usize,
        claims: String,
        pinned: String,
    },
    /// Unpinned daemon `daemon` says it is `claims`, which daemon `owner`'s entry pins.
    PinnedToAnother {
        daemon: usize,
        claims: String,
        owner: usize,
    },
    /// Several unpinned daemons say they are `claims`.
    Ambiguous { daemons: Vec<usize>, claims: String },
}

impl Fleet {
    /// Pins daemon `d`'s SPIFFE ID, as its fleet entry gives it.
    pub fn pin_spiffe_id(&mut self, d: usize, spiffe_id: impl Into<String>) {
        if let Some(ds) = self.daemons.get_mut(d) {
            ds.pinned_id = Some(spiffe_id.into()).filter(|s| !s.is_empty());
        }
    }

    /// What daemon `d` says its SPIFFE ID is (None: not said yet).
    fn claimed_id(&self, d: usize) -> Option<&str> {
        self.daemons[d]
            .identity
            .as_ref()
            .map(|i| i.spiffe_id.as_str())
            .filter(|s| !s.is_empty())
    }

    /// The daemons whose fleet entry pins `spiffe_id`, and the unpinned ones that say they
    /// are it.
    fn candidates(&self, spiffe_id: &str) -> (Vec<usize>, Vec<usize>) {
        let pinned = (0..self.daemons.len())
            .filter(|&d| self.daemons[d].pinned_id.as_deref() == Some(spiffe_id))
            .collect();
        let claiming = (0..self.daemons.len())
            .filter(|&d| self.daemons[d].pinned_id.is_none())
            .filter(|&d| self.claimed_id(d) == Some(spiffe_id))
            .collect();
        (pinned, claiming)
    }

    /// The daemon `spiffe_id` names (see the module doc): its pinned daemon, else its one
    /// unpinned claimant.
    pub fn daemon_by_spiffe_id(&self, spiffe_id: &str) -> Option<usize> {
        if spiffe_id.is_empty() {
            return None;
        }
        let (pinned, claiming) = self.candidates(spiffe_id);
        match (pinned.as_slice(), claiming.as_slice()) {
            ([d], _) | ([], [d]) => Some(*d),
            _ => None,
        }
    }

    /// Daemons whose claimed SPIFFE ID names no one, each conflict once.
    pub fn name_conflicts(&self) -> Vec<NameConflict> {
        let mut out = Vec::new();
        for d in 0..self.daemons.len() {
            let Some(claims) = self.claimed_id(d) else {
                continue;
            };
            if let Some(pinned) = &self.daemons[d].pinned_id {
                if pinned != claims {
                    out.push(NameConflict::PinMismatch {
                        daemon: d,
                        claims: claims.to_string(),
                        pinned: pinned.clone(),
                    });
                }
                continue;
            }
            let (pinned, claiming) = self.candidates(claims);
            if let Some(&owner) = pinned.first() {
                out.push(NameConflict::PinnedToAnother {
                    daemon: d,
                    claims: claims.to_string(),
                    owner,
                });
            } else if claiming.len() > 1 && claiming[0] == d {
                out.push(NameConflict::Ambiguous {
                    daemons: claiming,
                    claims: claims.to_string(),
                });
            }
        }
        out
    }

    /// A health reason for conflict `c`, naming daemons by their fleet names.
    pub fn conflict_reason(&self, c: &NameConflict) -> String {
        let name = |d: usize| self.daemons[d].name.as_str();
        match c {
            NameConflict::PinMismatch {
                daemon,
                claims,
                pinned,
            } => format!(
                "{}: says it is {claims} but the fleet file pins {pinned}",
                name(*daemon)
            ),
            NameConflict::PinnedToAnother {
                daemon,
                claims,
                owner,
            } => format!(
                "{}: says it is {claims}, which the fleet file pins to {}",
                name(*daemon),
                name(*owner)
            ),
            NameConflict::Ambiguous { daemons, claims } => {
                let names: Vec<&str> = daemons.iter().map(|&d| name(d)).collect();
                let none = if names.len() == 2 { "neither" } else { "none" };
                format!(
                    "{}: each says it is {claims} (so {none} is named by it)",
                    names.join(", ")
                )
            }
        }
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
    /// or no one in the fleet file is named by that ID).
    pub fn peer_name(&self, c: &Connectivity) -> Option<&str> {
        self.daemon_by_spiffe_id(&c.peer_spiffe_id)
            .map(|d| self.daemons[d].name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use trustdeck_proto::admin::{Connectivity, DaemonIdentity, DaemonRole, Node, NodeKind};

    use crate::fleet::Fleet;
    use crate::fleet::tests::at;

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

    /// The fleet with a third daemon "gcp" that says it is `claims`.
    fn with_claimant(claims: &str) -> Fleet {
        let mut f = fleet();
        f.daemons.extend(
            Fleet::new([(
                "gcp".to_string(),
                "unix:///run/gcp.sock".to_string(),
                DaemonRole::Downstream,
                "gcp".to_string(),
            )])
            .daemons,
        );
        f.daemons[2].identity = Some(DaemonIdentity {
            spiffe_id: claims.into(),
            ..Default::default()
        });
        f
    }

    /// Asserts that the fleet's health gives `want` as a reason, at warning level at least.
    fn has_reason(f: &Fleet, want: &str) {
        let h = f.health(&f.tree(), at(1000), &crate::fleet::Thresholds::default());
        assert!(h.reasons.iter().any(|r| r == want), "{:?}", h.reasons);
        assert!(h.level >= crate::fleet::Level::Warning);
    }

    fn server(spiffe_id: &str) -> Node {
        node(NodeKind::Server, "downstream", spiffe_id)
    }

    #[test]
    fn without_pins_a_claimed_id_names_no_one_when_two_claim_it() {
        let f = with_claimant("spiffe://td/trustdeck/server/dmz");
        let dmz = server("spiffe://td/trustdeck/server/dmz");
        assert_eq!(f.daemon_by_spiffe_id(&dmz.spiffe_id), None, "ambiguous");
        assert_eq!(f.node_name(&dmz), "downstream");
        has_reason(
            &f,
            "dmz, gcp: each says it is spiffe://td/trustdeck/server/dmz (so neither is named by it)",
        );
    }

    #[test]
    fn a_pinned_id_names_only_its_daemon() {
        let mut f = with_claimant("spiffe://td/trustdeck/server/dmz");
        f.pin_spiffe_id(0, "spiffe://td/trustdeck/server/dmz");
        f.pin_spiffe_id(2, "spiffe://td/trustdeck/server/gcp");
        let dmz = server("spiffe://td/trustdeck/server/dmz");
        // gcp claims dmz's ID: it does not take dmz's name.
        assert_eq!(f.node_name(&dmz), "dmz");
        let c = Connectivity {
            peer_spiffe_id: "spiffe://td/trustdeck/server/dmz".into(),
            ..Default::default()
        };
        assert_eq!(f.peer_name(&c), Some("dmz"));
        // gcp's pinned ID still names it while it claims another.
        assert_eq!(
            f.node_name(&server("spiffe://td/trustdeck/server/gcp")),
            "gcp"
        );
        has_reason(
            &f,
            "gcp: says it is spiffe://td/trustdeck/server/dmz but the fleet file pins spiffe://td/trustdeck/server/gcp",
        );
    }

    #[test]
    fn a_mismatched_claim_maps_to_no_name() {
        let mut f = with_claimant("spiffe://td/trustdeck/server/other");
        f.pin_spiffe_id(2, "spiffe://td/trustdeck/server/gcp");
        let other = server("spiffe://td/trustdeck/server/other");
        assert_eq!(f.daemon_by_spiffe_id(&other.spiffe_id), None);
        assert_eq!(f.node_name(&other), "downstream");
    }

    #[test]
    fn an_unpinned_daemon_cannot_take_a_pinned_id() {
        let mut f = with_claimant("spiffe://td/trustdeck/server/dmz");
        f.pin_spiffe_id(0, "spiffe://td/trustdeck/server/dmz");
        assert_eq!(
            f.node_name(&server("spiffe://td/trustdeck/server/dmz")),
            "dmz"
        );
        has_reason(
            &f,
            "gcp: says it is spiffe://td/trustdeck/server/dmz, which the fleet file pins to dmz",
        );
    }

    #[test]
    fn agreeing_pins_raise_nothing() {
        let mut f = fleet();
        f.pin_spiffe_id(0, "spiffe://td/trustdeck/server/dmz");
        f.pin_spiffe_id(1, "spiffe://td/trustdeck/agent/join_token/5fb56b");
        assert!(f.name_conflicts().is_empty());
        assert_eq!(
            f.node_name(&node(
                NodeKind::Agent,
                "agent",
                "spiffe://td/trustdeck/agent/join_token/5fb56b"
            )),
            "dmz-workloads-1"
        );
    }
}
