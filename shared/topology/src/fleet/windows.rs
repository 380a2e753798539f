//! The autonomous window of each segment: how long it keeps issuing if its upstream is lost
//! now, and when its workloads start failing if its own server is lost now.

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{ConnectivityState, DaemonRole, NodeKind, NodeState};
use trustdeck_proto::vocab::Wire;

use super::{Fleet, Tree};

/// How long one segment survives a loss, computed from live data.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentWindow {
    pub segment: String,
    /// The segment's server (daemon name).
    pub server: String,
    /// The server's role (upstream, downstream, or one this build does not know).
    pub role: Wire<DaemonRole>,
    /// Upstream connectivity as the server reports it (downstream only).
    pub upstream_state: Option<Wire<ConnectivityState>>,
    /// Since when (Unix seconds).
    pub upstream_since: Option<i64>,
    /// Last upstream error.
    pub upstream_error: Option<String>,
    /// Upstream lost now: X.509 issuance continues until this instant (the latest expiry of
    /// the intermediates the segment holds). Downstream only.
    pub x509_until: Option<i64>,
    /// Upstream lost now: JWT-SVID issuance stops at once (JWTs are signed upstream).
    pub jwt_stops_now: bool,
    /// This segment's server lost now: its workloads start failing at this instant (the
    /// earliest expiry among the SVIDs they hold; they renew at half TTL, so nothing held is
    /// older).
    pub workloads_fail_at: Option<i64>,
    /// Workload SVIDs counted.
    pub workloads: usize,
    /// Seconds since the console last heard from the server, when it cannot reach it now
    /// (-1: never heard).
    pub stale_secs: Option<i64>,
}

impl SegmentWindow {
    /// Whether the segment's server is a downstream (the only kind with an upstream to lose).
    pub fn is_downstream(&self) -> bool {
        self.role == DaemonRole::Downstream
    }
}

/// What a walk of one server's subtree found.
#[derive(Default)]
struct Held {
    x509_until: Option<i64>,
    fail_at: Option<i64>,
    workloads: usize,
}

/// Intermediates held by the server at `root` (counted when `downstream`), and workload SVIDs
/// anywhere below it that are not below another server.
fn held_below(tree: &Tree, root: usize, downstream: bool) -> Held {
    let mut h = Held::default();
    let mut stack = vec![root];
    while let Some(i) = stack.pop() {
        let n = &tree.nodes[i].node;
        match n.kind_wire().known() {
            Some(NodeKind::Server) if i != root => continue,
            Some(NodeKind::X509Authority)
                if downstream
                    && matches!(
                        n.state_wire().known(),
                        Some(NodeState::Active | NodeState::Prepared)
                    ) =>
            {
                h.x509_until = Some(h.x509_until.map_or(n.not_after, |x| x.max(n.not_after)));
            }
            Some(NodeKind::WorkloadSvid) => {
                h.workloads += 1;
                h.fail_at = Some(h.fail_at.map_or(n.not_after, |x| x.min(n.not_after)));
            }
            _ => {}
        }
        stack.extend(tree.nodes[i].children.iter().copied());
    }
    h
}

impl Fleet {
    /// The autonomous window of every segment with a known server.
    pub fn windows(&self, tree: &Tree, now: DateTime<Utc>) -> Vec<SegmentWindow> {
        let mut out = Vec::new();
        for d in self.ordered() {
            let ds = &self.daemons[d];
            let role = ds.role();
            if role == DaemonRole::Agent {
                continue;
            }
            let downstream = role == DaemonRole::Downstream;
            let server_node = ds
                .identity
                .as_ref()
                .and_then(|i| tree.by_id.get(&format!("server:{}", i.spiffe_id)).copied());
            let held = server_node
                .map(|root| held_below(tree, root, downstream))
                .unwrap_or_default();
            let up = ds.upstream.as_ref();
            out.push(SegmentWindow {
                segment: ds.segment().to_string(),
                server: ds.name.clone(),
                role,
                upstream_state: up.map(|u| u.state_wire()),
                upstream_since: up.map(|u| u.since),
                upstream_error: up.map(|u| u.last_error.clone()).filter(|e| !e.is_empty()),
                x509_until: held.x509_until,
                jwt_stops_now: downstream,
                workloads_fail_at: held.fail_at,
                workloads: held.workloads,
                stale_secs: (!ds.is_live()).then(|| ds.staleness(now).unwrap_or(-1)),
            });
        }
        out
    }
}
