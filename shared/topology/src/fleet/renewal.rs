//! Where a held or issued SVID stands against its renewal point, and the alerts a tree node
//! carries beyond its remaining lifetime: renewal overdue, expired, an agent that lost its
//! server.
//!
//! Agents renew an SVID (their own and their workloads') at half its lifetime counted from when
//! they received it, up to a tenth of the lifetime earlier (jitter). A fresh certificate's
//! `not_before` is set back by the CA's backdate, so the agent's half-life point is half the
//! backdate after the certificate's. A renewal not done [`grace`] after the agent's point is
//! overdue: its server, or the agent, is not doing its job, long before the TTL thresholds
//! make the SVID critical.

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{DaemonRole, Node, NodeKind, NodeState};

use super::{Fleet, Tree};
use crate::ttl::Level;

/// Least grace after the half-life point before a renewal counts as overdue (an agent syncs
/// every half second by default; a renewal takes one round).
pub const GRACE_MIN_SECS: i64 = 5;
/// Grace after the half-life point, as a fraction of the lifetime (15 s of a 5-minute SVID).
pub const GRACE_FRACTION: f64 = 0.05;

/// Grace after the half-life point for a lifetime of `life` seconds.
pub fn grace(life: i64) -> i64 {
    ((life as f64 * GRACE_FRACTION) as i64).max(GRACE_MIN_SECS)
}

/// How far a CA sets a new certificate's `not_before` back for clock skew
/// (`trustdeck_pki::ca::BACKDATE`; an agent test holds the two equal).
pub const CERT_BACKDATE_SECS: i64 = 10;

/// When the renewal of an SVID valid over `[not_before, not_after]` becomes overdue: [`grace`]
/// after the agent's latest renewal point, half of what was left of the lifetime when the agent
/// received it (a backdate after `not_before`). A daemon that publishes the issue time as
/// `not_before` gets those few seconds more.
pub fn overdue_at(not_before: i64, not_after: i64) -> i64 {
    let life = (not_after - not_before).max(0);
    let received = not_before + CERT_BACKDATE_SECS.min(life);
    received + (not_after - received) / 2 + grace(life)
}

/// Whether `n` is an SVID an agent renews: a workload SVID held or issued, or an attested
/// agent's own SVID.
pub fn renews(n: &Node) -> bool {
    n.not_after > 0
        && matches!(
            (n.kind_wire().known(), n.state_wire().known()),
            (
                Some(NodeKind::WorkloadSvid),
                Some(NodeState::Held | NodeState::Issued)
            ) | (Some(NodeKind::Agent), Some(NodeState::Attested))
        )
}

/// What a tree node carries beyond its remaining lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAlert {
    /// A renewed SVID expired at `at` (no renewal came).
    Expired { at: i64 },
    /// An agent reports its calls to its server failing (degraded, then lost) since `since`.
    ServerLost { since: i64 },
    /// An SVID past its renewal point (plus grace) since `since`, not renewed.
    RenewalOverdue { since: i64 },
}

impl NodeAlert {
    /// Expired is critical; the others are warnings.
    pub fn level(self) -> Level {
        match self {
            NodeAlert::Expired { .. } => Level::Critical,
            NodeAlert::ServerLost { .. } | NodeAlert::RenewalOverdue { .. } => Level::Warning,
        }
    }

    /// The words the state column and the reasons use.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeAlert::Expired { .. } => "expired",
            NodeAlert::ServerLost { .. } => "server lost",
            NodeAlert::RenewalOverdue { .. } => "renewal overdue",
        }
    }

    /// The JSON name (`alert` of a tier).
    pub fn key(self) -> &'static str {
        match self {
            NodeAlert::Expired { .. } => "expired",
            NodeAlert::ServerLost { .. } => "server-lost",
            NodeAlert::RenewalOverdue { .. } => "renewal-overdue",
        }
    }
}

/// The renewal alert of SVID `n` at `now` (its daemon's clock), if any.
pub fn svid_alert(n: &Node, now: i64) -> Option<NodeAlert> {
    if !renews(n) {
        return None;
    }
    if now >= n.not_after {
        return Some(NodeAlert::Expired { at: n.not_after });
    }
    let due = overdue_at(n.not_before, n.not_after);
    (now >= due).then_some(NodeAlert::RenewalOverdue { since: due })
}

impl Fleet {
    /// The alert of tree node `i` at console time `now`: expired, an agent's own link to its
    /// server lost (as the agent reports it), or a renewal overdue.
    pub fn node_alert(&self, tree: &Tree, i: usize, now: DateTime<Utc>) -> Option<NodeAlert> {
        let t = &tree.nodes[i];
        let dnow = self.daemon_now(t.source, now).timestamp();
        let svid = svid_alert(&t.node, dnow);
        if let Some(a @ NodeAlert::Expired { .. }) = svid {
            return Some(a);
        }
        self.agent_server_lost(t.source, &t.node).or(svid)
    }

    /// When agent node `n`, published by daemon `d`, reports its calls to its server failing
    /// (degraded or lost, as the windows count it), since the first failure: only the agent
    /// itself knows its link.
    fn agent_server_lost(&self, d: usize, n: &Node) -> Option<NodeAlert> {
        let ds = &self.daemons[d];
        if n.kind_wire() != NodeKind::Agent || ds.role() != DaemonRole::Agent {
            return None;
        }
        let since = ds.upstream_failing_since()?;
        Some(NodeAlert::ServerLost { since })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svid(nb: i64, na: i64) -> Node {
        Node {
            kind: NodeKind::WorkloadSvid.into(),
            state: NodeState::Held.into(),
            not_before: nb,
            not_after: na,
            ..Default::default()
        }
    }

    #[test]
    fn renewal_is_overdue_after_half_life_and_grace() {
        // 300 s from a not_before set 10 s back: received at 1010, renews at 1155 (half of
        // the 290 s left), grace 15 s.
        let n = svid(1000, 1300);
        assert_eq!(overdue_at(1000, 1300), 1170);
        assert_eq!(svid_alert(&n, 1169), None);
        assert_eq!(
            svid_alert(&n, 1170),
            Some(NodeAlert::RenewalOverdue { since: 1170 })
        );
        assert_eq!(svid_alert(&n, 1300), Some(NodeAlert::Expired { at: 1300 }));
        // Short lifetimes keep the minimum grace: a 1-minute SVID received at 10 renews by 40.
        assert_eq!(overdue_at(0, 70), 45);
        // Authorities are not renewed by agents.
        let mut ca = svid(0, 100);
        ca.kind = NodeKind::X509Authority.into();
        ca.state = NodeState::Active.into();
        assert_eq!(svid_alert(&ca, 99), None);
    }
}
