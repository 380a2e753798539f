//! The console's model of a fleet: every daemon's last-known state (from its `Watch` stream),
//! merged into one tree, with the figures an operator needs: remaining TTL per tier, what
//! expires next, the autonomous window per segment, and overall health. Pure: the caller feeds
//! messages and connection changes, and passes `now`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use trustdeck_proto::admin::{
    Connectivity, DaemonIdentity, Event, Node, NodeKind, WatchMessage, watch_message::Body,
};

use crate::ttl::{self, fmt_secs, rfc3339};
pub use crate::ttl::{Level, Thresholds};

/// Events kept by the console, fleet-wide.
pub const FLEET_EVENTS: usize = 1000;

/// The console's connection to one daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonConn {
    /// Not connected yet.
    Connecting,
    /// Receiving the stream.
    Live,
    /// The stream broke or could not be opened; the last-known state is kept.
    Lost {
        /// Since when.
        since: DateTime<Utc>,
        /// Why.
        error: String,
    },
}

/// Why a message could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// A delta did not follow the last revision: the stream must be reopened.
    #[error("revision gap: have {have}, got {got}")]
    Gap {
        /// The last applied revision.
        have: u64,
        /// The message's revision.
        got: u64,
    },
    /// A message without a body.
    #[error("empty message")]
    Empty,
    /// No such daemon.
    #[error("no daemon #{0}")]
    NoDaemon(usize),
}

/// One daemon as the console knows it.
#[derive(Debug, Clone)]
pub struct DaemonState {
    /// Name from the fleet file.
    pub name: String,
    /// Admin endpoint.
    pub endpoint: String,
    /// Role from the fleet file, until the daemon says.
    pub role_hint: String,
    /// Segment from the fleet file, until the daemon says.
    pub segment_hint: String,
    /// What the daemon said about itself.
    pub identity: Option<DaemonIdentity>,
    /// Its nodes (shared with the merged tree, never copied).
    pub nodes: HashMap<String, Arc<Node>>,
    /// Its upstream connectivity.
    pub upstream: Option<Connectivity>,
    /// Last applied revision (0: none yet).
    pub revision: u64,
    /// The console's connection to it.
    pub conn: DaemonConn,
    /// When the console last heard from it (console clock).
    pub last_heard: Option<DateTime<Utc>>,
    /// Daemon clock minus console clock, in milliseconds, at the last message.
    pub skew_ms: i64,
    pending: Option<(u64, Vec<Node>)>,
    /// Whether a complete snapshot was applied on the current stream (deltas need one).
    synced: bool,
}

impl DaemonState {
    /// Role: what the daemon said, or the fleet file's hint.
    pub fn role(&self) -> &str {
        self.identity
            .as_ref()
            .map(|i| i.role.as_str())
            .filter(|r| !r.is_empty())
            .unwrap_or(&self.role_hint)
    }

    /// Segment: what the daemon said, or the fleet file's hint.
    pub fn segment(&self) -> &str {
        self.identity
            .as_ref()
            .map(|i| i.segment.as_str())
            .filter(|r| !r.is_empty())
            .unwrap_or(&self.segment_hint)
    }

    /// Whether the stream is live.
    pub fn is_live(&self) -> bool {
        self.conn == DaemonConn::Live
    }

    /// How old the shown state is: zero while live, else time since last heard (None: never).
    pub fn staleness(&self, now: DateTime<Utc>) -> Option<i64> {
        if self.is_live() {
            return Some(0);
        }
        self.last_heard.map(|t| (now - t).num_seconds().max(0))
    }
}

/// A fleet event with the daemon it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetEvent {
    /// Daemon name.
    pub daemon: String,
    /// The event.
    pub event: Event,
}

/// The whole fleet.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// Daemons, in fleet-file order.
    pub daemons: Vec<DaemonState>,
    /// Recent events from every daemon and from the console itself, oldest first.
    pub events: VecDeque<FleetEvent>,
    /// Increases on every change (views cache on it).
    pub generation: u64,
    /// Events ever added (the first of [`events`](Self::events) is number
    /// `events_total - events.len()`).
    pub events_total: u64,
}

/// A node in the merged tree.
#[derive(Debug, Clone)]
pub struct TreeNode {
    /// The node.
    pub node: Arc<Node>,
    /// Index of the daemon it came from.
    pub source: usize,
    /// Children, sorted.
    pub children: Vec<usize>,
    /// Parent index.
    pub parent: Option<usize>,
}

/// The merged tree.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// Nodes.
    pub nodes: Vec<TreeNode>,
    /// Top-level nodes.
    pub roots: Vec<usize>,
    /// Index by node id.
    pub by_id: HashMap<String, usize>,
}

/// A visible row of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Index in [`Tree::nodes`].
    pub idx: usize,
    /// Depth (0 for top level).
    pub depth: u16,
    /// Whether it has children.
    pub has_children: bool,
    /// Whether its children are shown.
    pub expanded: bool,
}

/// How long one segment survives a loss, computed from live data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentWindow {
    /// Segment name.
    pub segment: String,
    /// The segment's server (daemon name).
    pub server: String,
    /// `upstream` or `downstream`.
    pub role: String,
    /// Upstream connectivity as the server reports it (downstream only).
    pub upstream_state: Option<String>,
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
    /// Whether these figures come from a daemon the console cannot reach right now.
    pub stale_secs: Option<i64>,
}

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
}

fn role_rank(role: &str) -> u8 {
    match role {
        "upstream" => 0,
        "downstream" => 1,
        _ => 2,
    }
}

fn kind_rank(k: i32) -> u8 {
    match NodeKind::try_from(k).unwrap_or(NodeKind::Unspecified) {
        NodeKind::X509Authority => 0,
        NodeKind::JwtAuthority => 1,
        NodeKind::Server => 2,
        NodeKind::Agent => 3,
        NodeKind::WorkloadSvid => 4,
        NodeKind::Unspecified => 5,
    }
}

/// The key-storage policy of seed 000 §3.2: the root CA key (tier 0) must be in an HSM
/// (critical otherwise), intermediates (tier 1) should be (a warning otherwise). Returns the
/// breach for a signing authority (active or prepared), if any.
pub fn key_policy(role: &str, n: &Node) -> Option<(Level, String)> {
    if n.kind != NodeKind::X509Authority as i32 || !(n.state == "active" || n.state == "prepared") {
        return None;
    }
    let backend = n
        .key_storage
        .as_ref()
        .map(|k| k.backend.as_str())
        .unwrap_or("unknown");
    if backend == "pkcs11" {
        return None;
    }
    match role {
        "upstream" => Some((
            Level::Critical,
            format!(
                "tier 0 {} {} key is in {backend}, not an HSM",
                n.state, n.label
            ),
        )),
        "downstream" => Some((
            Level::Warning,
            format!(
                "tier 1 {} {} key is in {backend}, not an HSM",
                n.state, n.label
            ),
        )),
        _ => None,
    }
}

/// Whether a node counts towards health (old authorities are kept only for validation).
pub fn counts_for_health(n: &Node) -> bool {
    n.not_after > 0 && n.state != "old" && n.state != "banned"
}

impl Fleet {
    /// A fleet of daemons `(name, endpoint, role hint, segment hint)`.
    pub fn new(daemons: impl IntoIterator<Item = (String, String, String, String)>) -> Self {
        Self {
            daemons: daemons
                .into_iter()
                .map(|(name, endpoint, role_hint, segment_hint)| DaemonState {
                    name,
                    endpoint,
                    role_hint,
                    segment_hint,
                    identity: None,
                    nodes: HashMap::new(),
                    upstream: None,
                    revision: 0,
                    conn: DaemonConn::Connecting,
                    last_heard: None,
                    skew_ms: 0,
                    pending: None,
                    synced: false,
                })
                .collect(),
            events: VecDeque::new(),
            generation: 0,
            events_total: 0,
        }
    }

    fn push_event(&mut self, daemon: String, event: Event) {
        self.events_total += 1;
        self.events.push_back(FleetEvent { daemon, event });
        while self.events.len() > FLEET_EVENTS {
            self.events.pop_front();
        }
    }

    /// Applies one stream message from daemon `d`, received at `now` (console clock).
    pub fn apply(
        &mut self,
        d: usize,
        msg: WatchMessage,
        now: DateTime<Utc>,
    ) -> Result<(), ApplyError> {
        let ds = self.daemons.get_mut(d).ok_or(ApplyError::NoDaemon(d))?;
        ds.last_heard = Some(now);
        ds.skew_ms = msg.daemon_time_ms - now.timestamp_millis();
        let mut new_events = Vec::new();
        match msg.body.ok_or(ApplyError::Empty)? {
            Body::Snapshot(s) => {
                let (rev, mut nodes) = match ds.pending.take() {
                    Some((rev, nodes)) if rev == msg.revision => (rev, nodes),
                    _ => (msg.revision, Vec::new()),
                };
                if let Some(id) = s.identity {
                    ds.identity = Some(id);
                    nodes.clear();
                }
                if let Some(u) = s.upstream {
                    ds.upstream = u.configured.then_some(u);
                }
                if !s.events.is_empty() {
                    // Only events newer than the ones already shown (a resubscription
                    // repeats the daemon's history).
                    let seen = self
                        .events
                        .iter()
                        .filter(|e| e.daemon == ds.name)
                        .map(|e| e.event.seq)
                        .max()
                        .unwrap_or(0);
                    // A daemon that restarted numbers its events from 1 again: its history
                    // ending below what was seen means everything in it is new.
                    let newest = s.events.iter().map(|e| e.seq).max().unwrap_or(0);
                    let seen = if newest < seen { 0 } else { seen };
                    new_events.extend(s.events.into_iter().filter(|e| e.seq > seen));
                }
                nodes.extend(s.nodes);
                if s.partial {
                    ds.pending = Some((rev, nodes));
                } else {
                    ds.nodes = nodes
                        .into_iter()
                        .map(|n| (n.id.clone(), Arc::new(n)))
                        .collect();
                    ds.revision = rev;
                    ds.synced = true;
                    ds.conn = DaemonConn::Live;
                }
            }
            Body::Delta(delta) => {
                if !ds.synced || msg.revision != ds.revision + 1 {
                    return Err(ApplyError::Gap {
                        have: ds.revision,
                        got: msg.revision,
                    });
                }
                ds.revision = msg.revision;
                for id in delta.removes {
                    ds.nodes.remove(&id);
                }
                for n in delta.upserts {
                    ds.nodes.insert(n.id.clone(), Arc::new(n));
                }
                if let Some(u) = delta.upstream {
                    ds.upstream = u.configured.then_some(u);
                }
                if let Some(id) = delta.identity {
                    ds.identity = Some(id);
                }
                new_events.extend(delta.events);
            }
        }
        let name = self.daemons[d].name.clone();
        for e in new_events {
            self.push_event(name.clone(), e);
        }
        self.generation += 1;
        Ok(())
    }

    /// Records the console's connection state to daemon `d`.
    pub fn set_conn(&mut self, d: usize, conn: DaemonConn, now: DateTime<Utc>) {
        let Some(ds) = self.daemons.get_mut(d) else {
            return;
        };
        if ds.conn == conn {
            return;
        }
        // Still lost: keep when it started, show the latest reason.
        if let (DaemonConn::Lost { since, .. }, DaemonConn::Lost { error, .. }) = (&ds.conn, &conn)
        {
            ds.conn = DaemonConn::Lost {
                since: *since,
                error: error.clone(),
            };
            self.generation += 1;
            return;
        }
        let was_live = ds.is_live();
        if let DaemonConn::Lost { error, .. } = &conn
            && (was_live || ds.conn == DaemonConn::Connecting)
        {
            let name = ds.name.clone();
            let msg = format!("console lost its stream from {name}: {error}");
            ds.conn = conn;
            ds.pending = None;
            ds.synced = false;
            self.push_event(
                name,
                Event {
                    at_ms: now.timestamp_millis(),
                    severity: "error".into(),
                    kind: "console-unreachable".into(),
                    message: msg,
                    ..Default::default()
                },
            );
        } else {
            ds.conn = conn;
        }
        self.generation += 1;
    }

    /// Daemons in tree order: upstream servers, downstream servers, agents.
    fn ordered(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.daemons.len()).collect();
        v.sort_by_key(|&i| role_rank(self.daemons[i].role()));
        v
    }

    /// Merges every daemon's nodes into one tree. A node reported by several daemons is taken
    /// from the most specific live one (an agent about its own SVIDs beats its server).
    pub fn tree(&self) -> Tree {
        let mut chosen: HashMap<&str, usize> = HashMap::new();
        for d in self.ordered() {
            let live = self.daemons[d].is_live();
            for id in self.daemons[d].nodes.keys() {
                match chosen.get(id.as_str()) {
                    Some(&prev) if self.daemons[prev].is_live() && !live => {}
                    _ => {
                        chosen.insert(id.as_str(), d);
                    }
                }
            }
        }
        // A live node's aliases replace placeholders with those ids.
        let mut aliases: Vec<(String, String)> = Vec::new();
        for (&id, &d) in &chosen {
            if self.daemons[d].is_live() {
                for a in &self.daemons[d].nodes[id].aliases {
                    aliases.push((a.clone(), id.to_string()));
                }
            }
        }
        for (a, _) in &aliases {
            chosen.remove(a.as_str());
        }
        let mut tree = Tree::default();
        let mut ids: Vec<(&str, usize)> = chosen.into_iter().collect();
        ids.sort_unstable();
        tree.nodes.reserve(ids.len());
        tree.by_id.reserve(ids.len());
        for (id, d) in ids {
            let node = self.daemons[d].nodes[id].clone();
            tree.by_id.insert(id.to_string(), tree.nodes.len());
            tree.nodes.push(TreeNode {
                node,
                source: d,
                children: Vec::new(),
                parent: None,
            });
        }
        for (a, real) in aliases {
            if let Some(&i) = tree.by_id.get(&real) {
                tree.by_id.entry(a).or_insert(i);
            }
        }
        for i in 0..tree.nodes.len() {
            if let Some(&p) = tree.by_id.get(&tree.nodes[i].node.parent)
                && p != i
            {
                tree.nodes[i].parent = Some(p);
            }
        }
        // Daemon data is not trusted to be a tree: a node on a parent cycle becomes a root.
        break_cycles(&mut tree.nodes);
        for i in 0..tree.nodes.len() {
            match tree.nodes[i].parent {
                Some(p) => tree.nodes[p].children.push(i),
                None => tree.roots.push(i),
            }
        }
        // Siblings: authorities, JWT keys, servers, agents, workloads; then by segment, label
        // and id. Compared by reference: no string is copied.
        let nodes = &tree.nodes;
        let cmp = |a: &usize, b: &usize| {
            let (x, y) = (&nodes[*a].node, &nodes[*b].node);
            (kind_rank(x.kind), &x.segment, &x.label, &x.id).cmp(&(
                kind_rank(y.kind),
                &y.segment,
                &y.label,
                &y.id,
            ))
        };
        let mut roots = std::mem::take(&mut tree.roots);
        roots.sort_by(cmp);
        let mut children: Vec<Vec<usize>> = tree
            .nodes
            .iter()
            .map(|t| {
                let mut c = t.children.clone();
                c.sort_by(cmp);
                c
            })
            .collect();
        for (t, c) in tree.nodes.iter_mut().zip(children.iter_mut()) {
            t.children = std::mem::take(c);
        }
        tree.roots = roots;
        tree
    }

    /// Daemon clock at console time `now`, for the daemon a node came from.
    pub fn daemon_now(&self, d: usize, now: DateTime<Utc>) -> DateTime<Utc> {
        let skew = self.daemons.get(d).map(|x| x.skew_ms).unwrap_or(0);
        now + chrono::Duration::milliseconds(skew)
    }

    /// The autonomous window of every segment with a known server.
    pub fn windows(&self, tree: &Tree, now: DateTime<Utc>) -> Vec<SegmentWindow> {
        let mut out = Vec::new();
        for d in self.ordered() {
            let ds = &self.daemons[d];
            let role = ds.role();
            if role == "agent" {
                continue;
            }
            let segment = ds.segment().to_string();
            let server_id = ds.identity.as_ref().map(|i| i.spiffe_id.clone());
            let server_node = server_id
                .as_ref()
                .and_then(|id| tree.by_id.get(&format!("server:{id}")).copied());
            // Intermediates held by this server, and workload SVIDs anywhere below it that
            // are not below another server.
            let mut x509_until: Option<i64> = None;
            let mut fail_at: Option<i64> = None;
            let mut workloads = 0;
            if let Some(root) = server_node {
                let mut stack = vec![root];
                while let Some(i) = stack.pop() {
                    let n = &tree.nodes[i].node;
                    let kind = NodeKind::try_from(n.kind).unwrap_or(NodeKind::Unspecified);
                    match kind {
                        NodeKind::Server if i != root => continue,
                        NodeKind::X509Authority
                            if role == "downstream"
                                && (n.state == "active" || n.state == "prepared") =>
                        {
                            x509_until =
                                Some(x509_until.map_or(n.not_after, |x| x.max(n.not_after)));
                        }
                        NodeKind::WorkloadSvid => {
                            workloads += 1;
                            fail_at = Some(fail_at.map_or(n.not_after, |x| x.min(n.not_after)));
                        }
                        _ => {}
                    }
                    stack.extend(tree.nodes[i].children.iter().copied());
                }
            }
            let up = ds.upstream.as_ref();
            out.push(SegmentWindow {
                segment,
                server: ds.name.clone(),
                role: role.to_string(),
                upstream_state: up.map(|u| u.state.clone()),
                upstream_since: up.map(|u| u.since),
                upstream_error: up.map(|u| u.last_error.clone()).filter(|e| !e.is_empty()),
                x509_until,
                jwt_stops_now: role == "downstream",
                workloads_fail_at: fail_at,
                workloads,
                stale_secs: (!ds.is_live()).then(|| ds.staleness(now).unwrap_or(-1)),
            });
        }
        out
    }

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
    /// critical), and daemons the console cannot reach.
    pub fn health(&self, tree: &Tree, now: DateTime<Utc>, th: &Thresholds) -> Health {
        let mut h = Health::default();
        for ds in &self.daemons {
            if !ds.is_live() {
                h.unreachable.push(ds.name.clone());
                h.reasons.push(format!(
                    "{}: unreachable ({})",
                    ds.name,
                    match &ds.conn {
                        DaemonConn::Lost { error, .. } => error.as_str(),
                        _ => "no answer yet",
                    }
                ));
            }
            if let Some(u) = &ds.upstream {
                let l = match u.state.as_str() {
                    "connected" => Level::Ok,
                    "degraded" => Level::Warning,
                    _ => Level::Critical,
                };
                if l > Level::Ok {
                    h.level = h.level.max(l);
                    h.reasons.push(format!(
                        "{}: upstream {} ({})",
                        ds.name, u.state, u.last_error
                    ));
                }
            }
        }
        if th.key_policy {
            for t in &tree.nodes {
                if let Some((l, why)) = key_policy(self.daemons[t.source].role(), &t.node) {
                    h.level = h.level.max(l);
                    h.reasons.push(format!(
                        "{}: key policy: {why}",
                        self.daemons[t.source].name
                    ));
                }
            }
        }
        for i in 0..tree.nodes.len() {
            let l = self.node_level(tree, i, now, th);
            if l > Level::Ok {
                h.level = h.level.max(l);
                let n = &tree.nodes[i].node;
                let left = n.not_after - self.daemon_now(tree.nodes[i].source, now).timestamp();
                h.reasons.push(format!(
                    "{} {}: {} left of {}",
                    n.label,
                    if n.spiffe_id.is_empty() {
                        &n.id
                    } else {
                        &n.spiffe_id
                    },
                    fmt_secs(left),
                    fmt_secs(n.not_after - n.not_before)
                ));
            }
        }
        h
    }

    /// What `trustdeck status --output json` prints.
    pub fn status_report(&self, now: DateTime<Utc>, th: &Thresholds) -> serde_json::Value {
        let tree = self.tree();
        let health = self.health(&tree, now, th);
        let tiers: Vec<serde_json::Value> = (0..tree.nodes.len())
            .filter(|&i| tree.nodes[i].node.not_after > 0)
            .map(|i| {
                let t = &tree.nodes[i];
                let n = &t.node;
                let dnow = self.daemon_now(t.source, now);
                serde_json::json!({
                    "id": n.id,
                    "kind": NodeKind::try_from(n.kind).map(|k| k.as_str_name()).unwrap_or("UNKNOWN"),
                    "label": n.label,
                    "segment": n.segment,
                    "daemon": self.daemons[t.source].name,
                    "subject": n.subject,
                    "spiffe_id": n.spiffe_id,
                    "state": n.state,
                    "parent": n.parent,
                    "not_before": rfc3339(n.not_before),
                    "not_after": rfc3339(n.not_after),
                    "seconds_remaining": n.not_after - dnow.timestamp(),
                    "key_storage": n.key_storage.as_ref().map(|k| serde_json::json!({"backend": k.backend, "detail": k.detail})),
                    "level": self.node_level(&tree, i, now, th),
                    "key_policy": key_policy(self.daemons[t.source].role(), n)
                        .map(|(l, why)| serde_json::json!({"level": l, "breach": why})),
                    "stale": !self.daemons[t.source].is_live(),
                })
            })
            .collect();
        let daemons: Vec<serde_json::Value> = self
            .daemons
            .iter()
            .map(|ds| {
                serde_json::json!({
                    "name": ds.name,
                    "role": ds.role(),
                    "segment": ds.segment(),
                    "admin": ds.endpoint,
                    "spiffe_id": ds.identity.as_ref().map(|i| i.spiffe_id.clone()),
                    "reachable": ds.is_live(),
                    "error": match &ds.conn { DaemonConn::Lost { error, .. } => Some(error.clone()), _ => None },
                    "revision": ds.revision,
                    "clock_skew_ms": ds.skew_ms,
                    "upstream": ds.upstream.as_ref().map(|u| serde_json::json!({
                        "state": u.state,
                        "since": rfc3339(u.since),
                        "last_error": u.last_error,
                        "peer": u.peer,
                        "last_bundle_sequence": u.last_bundle_sequence,
                    })),
                })
            })
            .collect();
        let segments: Vec<serde_json::Value> = self
            .windows(&tree, now)
            .into_iter()
            .map(|w| {
                serde_json::json!({
                    "segment": w.segment,
                    "server": w.server,
                    "role": w.role,
                    "upstream": w.upstream_state,
                    "upstream_since": w.upstream_since.map(rfc3339),
                    "upstream_error": w.upstream_error,
                    "if_upstream_lost": (w.role == "downstream").then(|| serde_json::json!({
                        "x509_until": w.x509_until.map(rfc3339),
                        "x509_seconds": w.x509_until.map(|t| t - now.timestamp()),
                        "jwt_stops_now": w.jwt_stops_now,
                    })),
                    "if_server_lost": {
                        "workloads_fail_at": w.workloads_fail_at.map(rfc3339),
                        "seconds": w.workloads_fail_at.map(|t| t - now.timestamp()),
                        "workload_svids": w.workloads,
                    },
                    "stale_seconds": w.stale_secs,
                })
            })
            .collect();
        serde_json::json!({
            "at": rfc3339(now.timestamp()),
            "health": health.level,
            "exit_code": health.exit_code(),
            "reasons": health.reasons,
            "unreachable": health.unreachable,
            "daemons": daemons,
            "segments": segments,
            "tiers": tiers,
        })
    }
}

/// Cuts parent links so that no walk up the tree loops: each node is walked up until a root or
/// an already-checked node; a node met twice on one walk is on a cycle and loses its parent.
fn break_cycles(nodes: &mut [TreeNode]) {
    // 0 unvisited, 1 on the current walk, 2 done.
    let mut mark = vec![0u8; nodes.len()];
    for start in 0..nodes.len() {
        let mut path = Vec::new();
        let mut i = start;
        loop {
            if mark[i] == 2 {
                break;
            }
            if mark[i] == 1 {
                nodes[i].parent = None;
                break;
            }
            mark[i] = 1;
            path.push(i);
            match nodes[i].parent {
                Some(p) => i = p,
                None => break,
            }
        }
        for j in path {
            mark[j] = 2;
        }
    }
}

impl Tree {
    /// Visible rows: every node whose ancestors are all expanded (`collapsed` holds node ids),
    /// restricted, when `filter` is not empty, to nodes matching it and their ancestors.
    pub fn rows(&self, collapsed: &HashSet<String>, filter: &str) -> Vec<Row> {
        let filter = filter.to_lowercase();
        let keep: Option<Vec<bool>> = (!filter.is_empty()).then(|| {
            let mut keep = vec![false; self.nodes.len()];
            for (i, t) in self.nodes.iter().enumerate() {
                let n = &t.node;
                let hit = n.label.to_lowercase().contains(&filter)
                    || n.spiffe_id.to_lowercase().contains(&filter)
                    || n.segment.to_lowercase().contains(&filter)
                    || n.state.to_lowercase().contains(&filter);
                if hit {
                    let mut j = Some(i);
                    while let Some(k) = j {
                        if keep[k] {
                            break;
                        }
                        keep[k] = true;
                        j = self.nodes[k].parent;
                    }
                }
            }
            keep
        });
        let mut rows = Vec::new();
        let mut stack: Vec<(usize, u16)> = self.roots.iter().rev().map(|&i| (i, 0)).collect();
        while let Some((i, depth)) = stack.pop() {
            if let Some(k) = &keep
                && !k[i]
            {
                continue;
            }
            let t = &self.nodes[i];
            let expanded = !collapsed.contains(&t.node.id) || keep.is_some();
            rows.push(Row {
                idx: i,
                depth,
                has_children: !t.children.is_empty(),
                expanded,
            });
            if expanded {
                stack.extend(t.children.iter().rev().map(|&c| (c, depth + 1)));
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustdeck_proto::admin::{Delta, Snapshot};

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    fn n(id: &str, parent: &str, kind: NodeKind, state: &str, nb: i64, na: i64) -> Node {
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

    fn snap(
        rev: u64,
        role: &str,
        seg: &str,
        id: &str,
        nodes: Vec<Node>,
        up: Option<&str>,
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
                    last_error: if s == "connected" {
                        String::new()
                    } else {
                        "refused".into()
                    },
                    ..Default::default()
                }),
                events: vec![],
                partial: false,
            })),
        }
    }

    /// An upstream with a root and an agent (the downstream's node agent), a downstream with
    /// an intermediate, one agent and two workloads.
    fn fleet() -> Fleet {
        let mut f = Fleet::new([
            (
                "up".into(),
                "unix:///up".into(),
                "upstream".into(),
                "root".into(),
            ),
            (
                "gcp".into(),
                "unix:///gcp".into(),
                "downstream".into(),
                "gcp".into(),
            ),
        ]);
        let up = vec![
            n(
                "server:spiffe://td/up",
                "",
                NodeKind::Server,
                "serving",
                0,
                10_000,
            ),
            n(
                "x509:r1",
                "server:spiffe://td/up",
                NodeKind::X509Authority,
                "active",
                0,
                10_000,
            ),
            n(
                "agent:a0",
                "server:spiffe://td/up",
                NodeKind::Agent,
                "attested",
                0,
                2000,
            ),
            n(
                "svid:a0#e",
                "agent:a0",
                NodeKind::WorkloadSvid,
                "issued",
                900,
                1900,
            ),
            n(
                "server:spiffe://td/gcp",
                "server:spiffe://td/up",
                NodeKind::Server,
                "issued",
                0,
                0,
            ),
        ];
        let gcp = vec![
            n(
                "server:spiffe://td/gcp",
                "server:spiffe://td/up",
                NodeKind::Server,
                "serving",
                0,
                5000,
            ),
            n(
                "x509:i1",
                "server:spiffe://td/gcp",
                NodeKind::X509Authority,
                "active",
                0,
                5000,
            ),
            n(
                "x509:i2",
                "server:spiffe://td/gcp",
                NodeKind::X509Authority,
                "prepared",
                2500,
                7000,
            ),
            n(
                "agent:a1",
                "server:spiffe://td/gcp",
                NodeKind::Agent,
                "attested",
                0,
                3000,
            ),
            n(
                "svid:a1#w1",
                "agent:a1",
                NodeKind::WorkloadSvid,
                "issued",
                900,
                1200,
            ),
            n(
                "svid:a1#w2",
                "agent:a1",
                NodeKind::WorkloadSvid,
                "issued",
                950,
                1500,
            ),
        ];
        f.apply(
            0,
            snap(5, "upstream", "root", "spiffe://td/up", up, None),
            at(1000),
        )
        .unwrap();
        f.apply(
            1,
            snap(
                9,
                "downstream",
                "gcp",
                "spiffe://td/gcp",
                gcp,
                Some("connected"),
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
        assert_eq!(t.nodes[gcp].node.state, "serving");
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
    fn a_live_node_replaces_the_placeholder_it_aliases() {
        let mut f = fleet();
        let up_placeholder = vec![
            n(
                "server:spiffe://td/up",
                "",
                NodeKind::Server,
                "serving",
                0,
                10_000,
            ),
            n(
                "server:spiffe://td/gcp-svid",
                "server:spiffe://td/up",
                NodeKind::Server,
                "issued",
                0,
                5000,
            ),
            n(
                "x509:i9",
                "server:spiffe://td/gcp-svid",
                NodeKind::X509Authority,
                "issued",
                0,
                5000,
            ),
        ];
        f.apply(
            0,
            snap(
                6,
                "upstream",
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
            "serving",
            0,
            5000,
        );
        gcp_server.aliases = vec!["server:spiffe://td/gcp-svid".into()];
        f.apply(
            1,
            snap(
                10,
                "downstream",
                "gcp",
                "spiffe://td/gcp",
                vec![gcp_server],
                Some("connected"),
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
        let mut f = Fleet::new([("a".into(), "e".into(), "agent".into(), "s".into())]);
        let nodes = vec![
            n("x", "y", NodeKind::Agent, "", 0, 1),
            n("y", "x", NodeKind::Agent, "", 0, 1),
            n("z", "z", NodeKind::Agent, "", 0, 1),
        ];
        f.apply(
            0,
            snap(1, "agent", "s", "spiffe://td/a", nodes, None),
            at(0),
        )
        .unwrap();
        let t = f.tree();
        assert_eq!(t.rows(&HashSet::new(), "").len(), 3);
        assert!(!t.roots.is_empty());
    }

    #[test]
    fn a_daemon_at_revision_zero_takes_its_first_delta() {
        let mut f = Fleet::new([("a".into(), "e".into(), "agent".into(), "s".into())]);
        f.apply(
            0,
            snap(0, "agent", "s", "spiffe://td/a", vec![], None),
            at(0),
        )
        .unwrap();
        let d = WatchMessage {
            revision: 1,
            daemon_time_ms: 0,
            body: Some(Body::Delta(Delta {
                upserts: vec![n("x", "", NodeKind::Agent, "", 0, 1)],
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
        assert_eq!(root.role, "upstream");
        assert_eq!(root.workloads, 1);
        assert_eq!(root.workloads_fail_at, Some(1900));
        assert_eq!(root.x509_until, None);
        let gcp = &w[1];
        assert_eq!(gcp.x509_until, Some(7000)); // the prepared intermediate is held too
        assert!(gcp.jwt_stops_now);
        assert_eq!(gcp.workloads_fail_at, Some(1200));
        assert_eq!(gcp.workloads, 2);
        assert_eq!(gcp.upstream_state.as_deref(), Some("connected"));
        assert_eq!(gcp.stale_secs, None);
    }

    #[test]
    fn deltas_apply_in_order_and_gaps_are_refused() {
        let mut f = fleet();
        let d = |rev, upserts: Vec<Node>, up: Option<&str>| WatchMessage {
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
            })),
        };
        f.apply(1, d(10, vec![], Some("lost")), at(1001)).unwrap();
        assert!(!f.daemons[1].nodes.contains_key("svid:a1#w1"));
        assert_eq!(
            f.apply(1, d(12, vec![], None), at(1001)),
            Err(ApplyError::Gap { have: 10, got: 12 })
        );
        let t = f.tree();
        let h = f.health(&t, at(1001), &Thresholds::default());
        assert_eq!(h.level, Level::Critical);
        assert_eq!(h.exit_code(), 2);
        assert!(h.reasons.iter().any(|r| r.contains("upstream lost")));
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
        assert_eq!(w[1].stale_secs, Some(40));
        let h = f.health(&t, at(1040), &Thresholds::default());
        assert_eq!(h.unreachable, vec!["gcp".to_string()]);
        assert_eq!(h.exit_code(), 3);
        assert_eq!(f.events.back().unwrap().event.kind, "console-unreachable");
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
            n.key_storage = Some(trustdeck_proto::admin::KeyStorage {
                backend: "pkcs11".into(),
                detail: "pkcs11:token=t;label=l".into(),
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
            snap(6, "upstream", "root", "spiffe://td/up", up, None),
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
        let mut f = Fleet::new([("a".into(), "e".into(), "agent".into(), "s".into())]);
        let mut first = snap(
            3,
            "agent",
            "s",
            "spiffe://td/a",
            vec![n("x", "", NodeKind::Agent, "", 0, 1)],
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
                nodes: vec![n("y", "x", NodeKind::WorkloadSvid, "", 0, 1)],
                ..Default::default()
            })),
        };
        f.apply(0, second, at(0)).unwrap();
        assert_eq!(f.daemons[0].nodes.len(), 2);
        assert!(f.daemons[0].is_live());
        let report = f.status_report(at(0), &Thresholds::default());
        assert_eq!(report["tiers"].as_array().unwrap().len(), 2);
    }
}
