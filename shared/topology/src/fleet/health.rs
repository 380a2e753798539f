//! Levels: per node (remaining lifetime against the thresholds, on the daemon's clock), per
//! upstream link, and for the whole fleet with the reasons and the exit code of `status`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use trustdeck_proto::admin::{ConnectivityState, Node, NodeState};
use trustdeck_proto::vocab::Wire;

use super::{Fleet, Tree, key_policy};
use crate::ttl::{self, Level, Thresholds, fmt_secs};

/// Fleet health for scripts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    /// Worst level over the tiers and connectivity.
    pub level: Level,
    /// Daemons the console cannot reach.
    pub unreachable: Vec<String>,
    /// Why the level is what it is.
    pub reasons: Vec<String>,
}

impl Health {
    /// Exit code: 0 healthy, 1 warning, 2 critical, 3 a daemon unreachable.
    pub fn exit_code(&self) -> i32 {
        if !self.unreachable.is_empty() {
            3
        } else {
            match self.level {
                Level::Ok => 0,
                Level::Warning => 1,
                Level::Critical => 2,
            }
        }
    }

    fn add(&mut self, level: Level, reason: String) {
        self.level = self.level.max(level);
        self.reasons.push(reason);
    }
}

/// Whether a node counts towards health (old authorities are kept only for validation).
pub fn counts_for_health(n: &Node) -> bool {
    n.not_after > 0
        && !matches!(
            n.state_wire().known(),
            Some(NodeState::Old | NodeState::Banned)
        )
}

/// The level of an upstream link: degraded is a warning; lost, or a state this build does not
/// know, is critical.
pub fn conn_level(state: Wire<ConnectivityState>) -> Level {
    match state.known() {
        Some(ConnectivityState::Connected) => Level::Ok,
        Some(ConnectivityState::Degraded) => Level::Warning,
        _ => Level::Critical,
    }
}

impl Fleet {
    /// Nodes that count for health, soonest expiry first.
    pub fn expiring(&self, tree: &Tree, limit: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..tree.nodes.len())
            .filter(|&i| counts_for_health(&tree.nodes[i].node))
            .collect();
        v.sort_by_key(|&i| (tree.nodes[i].node.not_after, tree.nodes[i].node.id.clone()));
        v.truncate(limit);
        v
    }

    /// The level of one node.
    pub fn node_level(&self, tree: &Tree, i: usize, now: DateTime<Utc>, th: &Thresholds) -> Level {
        let t = &tree.nodes[i];
        if !counts_for_health(&t.node) {
            return Level::Ok;
        }
        let dnow = self.daemon_now(t.source, now);
        ttl::level(t.node.not_before, t.node.not_after, dnow, th)
    }

    /// Fleet health: the worst tier, upstream connectivity (degraded: warning; lost:
    /// critical), key policy, and daemons the console cannot reach.
    pub fn health(&self, tree: &Tree, now: DateTime<Utc>, th: &Thresholds) -> Health {
        let mut h = Health::default();
        for ds in &self.daemons {
            if !ds.is_live() {
                h.unreachable.push(ds.name.clone());
                h.reasons.push(format!(
                    "{}: unreachable ({})",
                    ds.name,
                    ds.conn_error().unwrap_or("no answer yet")
                ));
            }
            if let Some(u) = &ds.upstream {
                let l = conn_level(u.state_wire());
                if l > Level::Ok {
                    let state = u.state_wire();
                    h.add(
                        l,
                        format!("{}: upstream {state} ({})", ds.name, u.last_error),
                    );
                }
            }
        }
        if th.key_policy {
            for t in &tree.nodes {
                let ds = &self.daemons[t.source];
                if let Some(b) = key_policy(ds.role(), &t.node) {
                    h.add(b.level, format!("{}: key policy: {b}", ds.name));
                }
            }
        }
        for i in 0..tree.nodes.len() {
            let l = self.node_level(tree, i, now, th);
            if l > Level::Ok {
                let n = &tree.nodes[i].node;
                let left = n.not_after - self.daemon_now(tree.nodes[i].source, now).timestamp();
                let who = if n.spiffe_id.is_empty() {
                    &n.id
                } else {
                    &n.spiffe_id
                };
                h.add(
                    l,
                    format!(
                        "{} {who}: {} left of {}",
                        n.label,
                        fmt_secs(left),
                        fmt_secs(n.not_after - n.not_before)
                    ),
                );
            }
        }
        h
    }
}
