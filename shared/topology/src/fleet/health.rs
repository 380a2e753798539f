//! Levels: per node (remaining lifetime against the thresholds, on the daemon's clock), per
//! upstream link, and for the whole fleet with the reasons and the exit code of `status`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use trustdeck_proto::admin::{Connectivity, ConnectivityState, DaemonRole, Node, NodeState};
use trustdeck_proto::vocab::Wire;

use super::renewal::NodeAlert;
use super::{DaemonConn, DaemonState, Fleet, Tree, key_policy};
use crate::ttl::{self, Level, Thresholds, fmt_secs, fmt_time};

/// The fleet's state in one word, the same for `status` (JSON `health`, the table), `watch`
/// (`health`) and the console header, with the exit code derived from it. Ordered from best to
/// worst: a daemon the console cannot reach makes every other verdict partial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FleetHealth {
    #[default]
    Ok,
    Warning,
    Critical,
    /// A daemon the console cannot reach (lost, or never reached).
    Unreachable,
}

impl FleetHealth {
    /// Exit code of `trustdeck status`: 0 ok, 1 warning, 2 critical, 3 unreachable.
    pub fn exit_code(self) -> i32 {
        match self {
            FleetHealth::Ok => 0,
            FleetHealth::Warning => 1,
            FleetHealth::Critical => 2,
            FleetHealth::Unreachable => 3,
        }
    }

    /// Lower-case name (the JSON value).
    pub fn as_str(self) -> &'static str {
        match self {
            FleetHealth::Ok => "ok",
            FleetHealth::Warning => "warning",
            FleetHealth::Critical => "critical",
            FleetHealth::Unreachable => "unreachable",
        }
    }

    /// The level its colour follows (unreachable is critical).
    pub fn level(self) -> Level {
        match self {
            FleetHealth::Ok => Level::Ok,
            FleetHealth::Warning => Level::Warning,
            FleetHealth::Critical | FleetHealth::Unreachable => Level::Critical,
        }
    }
}

impl From<Level> for FleetHealth {
    fn from(l: Level) -> Self {
        match l {
            Level::Ok => FleetHealth::Ok,
            Level::Warning => FleetHealth::Warning,
            Level::Critical => FleetHealth::Critical,
        }
    }
}

/// Fleet health for scripts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    /// Worst level over the tiers, alerts and connectivity (daemons the console cannot reach
    /// aside: see [`state`](Self::state)).
    pub level: Level,
    /// Daemons the console cannot reach (lost, or never reached).
    pub unreachable: Vec<String>,
    /// Why the state is what it is.
    pub reasons: Vec<String>,
}

impl Health {
    /// The fleet's state: unreachable while a daemon is, else the worst level.
    pub fn state(&self) -> FleetHealth {
        if self.unreachable.is_empty() {
            self.level.into()
        } else {
            FleetHealth::Unreachable
        }
    }

    /// Exit code, from [`state`](Self::state): 0 ok, 1 warning, 2 critical, 3 unreachable.
    pub fn exit_code(&self) -> i32 {
        self.state().exit_code()
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

/// The level of an upstream link: degraded is a warning; lost, stranded (an agent that needs a
/// new join token), or a state this build does not know, is critical; connecting (no call
/// completed yet) is not a problem yet.
pub fn conn_level(state: Wire<ConnectivityState>) -> Level {
    match state.known() {
        // Not known yet (the daemon just started): not a loss.
        Some(ConnectivityState::Connected | ConnectivityState::Connecting) => Level::Ok,
        Some(ConnectivityState::Degraded) => Level::Warning,
        Some(
            ConnectivityState::Lost | ConnectivityState::Stranded | ConnectivityState::Unspecified,
        )
        | None => Level::Critical,
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

    /// The level of one node: its remaining lifetime against the thresholds, raised by its
    /// alert (a renewal overdue is a warning, an expiry critical).
    pub fn node_level(&self, tree: &Tree, i: usize, now: DateTime<Utc>, th: &Thresholds) -> Level {
        let t = &tree.nodes[i];
        if !counts_for_health(&t.node) {
            return Level::Ok;
        }
        let dnow = self.daemon_now(t.source, now);
        let ttl = ttl::level(t.node.not_before, t.node.not_after, dnow, th);
        let alert = self
            .node_alert(tree, i, now)
            .map_or(Level::Ok, |a| a.level());
        ttl.max(alert)
    }

    /// Fleet health: the worst tier, node alerts, upstream connectivity (degraded: warning;
    /// lost: critical), foreign trust domains (see [`super::federation`]), key policy, daemons whose claimed SPIFFE ID names no one (warning),
    /// and daemons the console cannot reach.
    pub fn health(&self, tree: &Tree, now: DateTime<Utc>, th: &Thresholds) -> Health {
        let mut h = Health::default();
        for ds in &self.daemons {
            match &ds.conn {
                DaemonConn::Live => {}
                DaemonConn::Connecting => h.add(
                    Level::Warning,
                    format!("{}: connecting (no answer yet)", ds.name),
                ),
                DaemonConn::Lost { since, error } => {
                    h.unreachable.push(ds.name.clone());
                    h.reasons.push(format!(
                        "{}: unreachable since {} ({error})",
                        ds.name,
                        fmt_time(since.timestamp())
                    ));
                }
                DaemonConn::NeverReached { error, .. } => {
                    h.unreachable.push(ds.name.clone());
                    h.reasons
                        .push(format!("{}: never reached ({error})", ds.name));
                }
            }
            if let Some(u) = &ds.upstream {
                let l = conn_level(u.state_wire());
                if l > Level::Ok {
                    h.add(l, self.link_reason(ds, u));
                }
            }
        }
        for r in self.foreign() {
            let a = self.assess_foreign(&r, now);
            if a.level > Level::Ok {
                h.add(
                    a.level,
                    format!(
                        "{}: federation {}: {}",
                        self.daemons[r.daemon].name,
                        r.td.trust_domain,
                        a.reasons.join("; ")
                    ),
                );
            }
        }
        for c in self.name_conflicts() {
            h.add(Level::Warning, self.conflict_reason(&c));
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
            self.node_reason(&mut h, tree, i, now, th);
        }
        h
    }

    /// Why a daemon's own link counts against health, naming what it links to by its fleet
    /// name: `dmz-workloads-1: server link lost (dmz: connection refused)`.
    fn link_reason(&self, ds: &DaemonState, u: &Connectivity) -> String {
        if let Some(r) = super::stranded::reason(u) {
            let peer = match self.peer_name(u) {
                Some(name) => format!("server {name}"),
                None => u.peer.clone(),
            };
            return super::stranded::health_reason(&ds.name, r, &peer);
        }
        let link = if ds.role() == DaemonRole::Agent {
            "server"
        } else {
            "upstream"
        };
        let detail = match (self.peer_name(u), u.last_error.as_str()) {
            (Some(p), "") => p.to_string(),
            (Some(p), e) => format!("{p}: {e}"),
            (None, e) => e.to_string(),
        };
        format!("{}: {link} link {} ({detail})", ds.name, u.state_wire())
    }

    /// Adds node `i`'s reason, when its level is not ok.
    fn node_reason(
        &self,
        h: &mut Health,
        tree: &Tree,
        i: usize,
        now: DateTime<Utc>,
        th: &Thresholds,
    ) {
        let l = self.node_level(tree, i, now, th);
        if l == Level::Ok {
            return;
        }
        let n = &tree.nodes[i].node;
        let left = n.not_after - self.daemon_now(tree.nodes[i].source, now).timestamp();
        let who = if n.spiffe_id.is_empty() {
            &n.id
        } else {
            &n.spiffe_id
        };
        let life = fmt_secs(n.not_after - n.not_before);
        let what = match self.node_alert(tree, i, now) {
            Some(a @ (NodeAlert::RenewalOverdue { since } | NodeAlert::ServerLost { since })) => {
                format!(
                    "{} since {}, {} left of {life}",
                    a.as_str(),
                    fmt_time(since),
                    fmt_secs(left)
                )
            }
            Some(NodeAlert::Expired { at }) => {
                format!("expired at {} ({life} lifetime)", fmt_time(at))
            }
            None if left <= 0 => format!("expired at {} ({life} lifetime)", fmt_time(n.not_after)),
            None => format!("{} left of {life}", fmt_secs(left)),
        };
        h.add(l, format!("{} {who}: {what}", self.node_name(n)));
    }
}
