//! The console's model of a fleet: every daemon's last-known state (from its `Watch` stream),
//! merged into one tree, with the figures an operator needs: remaining TTL per tier, what
//! expires next, the autonomous window per segment, and overall health. Pure: the caller feeds
//! messages and connection changes, and passes `now`.
//!
//! - [`conn`]: applying stream messages and connection changes to a daemon's state.
//! - [`derive`]: the events the console itself records (renewals overdue, expiries, JWT
//!   unavailable), once each.
//! - [`renewal`]: where an SVID stands against its renewal point.
//! - [`tree`]: the merged tree and its visible rows.
//! - [`windows`]: how long each segment keeps issuing when its upstream or server is lost.
//! - [`health`]: levels per node and for the fleet.
//! - [`federation`]: foreign trust domains and peers' receipts: staleness, root expiry, level.
//! - [`key_policy`]: where CA keys must live.
//! - [`report`]: the JSON of `trustdeck status`; [`stranded`]: an agent that needs a new
//!   join token, and its recovery.
//! - [`filter`]: the console's `/` filter, typed; [`names`]: what a node or a peer is called.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{
    Connectivity, DaemonIdentity, DaemonRole, Event, Federation, Node, NodeKind,
};
use trustdeck_proto::vocab::Wire;

pub mod conn;
pub mod derive;
pub mod federation;
pub mod filter;
pub mod health;
pub mod key_policy;
pub mod names;
pub mod renewal;
pub mod report;
pub mod stranded;
pub mod tree;
pub mod windows;

#[cfg(test)]
mod outage_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tree_tests;

pub use crate::ttl::{Level, Thresholds};
pub use conn::{ApplyError, DaemonConn};
pub use filter::{EventFacts, Filter, FilterError, NodeFacts};
pub use health::{FleetHealth, Health, conn_level, counts_for_health};
pub use key_policy::{KeyPolicyBreach, key_policy};
pub use names::NameConflict;
pub use renewal::NodeAlert;
pub use report::StatusReport;
pub use tree::{Row, Tree, TreeNode};
pub use windows::{
    AgentLinks, Deadline, Reach, SegmentWindow, ServerOutage, UpstreamLink, UpstreamOutage,
};

/// Events kept by the console, fleet-wide.
pub const FLEET_EVENTS: usize = 1000;

/// One daemon as the console knows it.
#[derive(Debug, Clone)]
pub struct DaemonState {
    /// Name from the fleet file.
    pub name: String,
    /// The admin endpoint, as the fleet file gives it.
    pub endpoint: String,
    /// Role from the fleet file, until the daemon says.
    pub role_hint: DaemonRole,
    /// Segment from the fleet file, until the daemon says.
    pub segment_hint: String,
    /// The SPIFFE ID the fleet file gives it: only this daemon is named by that ID, and a
    /// different claim in [`identity`](Self::identity) is flagged (see [`names`]).
    pub pinned_id: Option<String>,
    /// Its trust domain, when the fleet file gives one that is not the fleet's (a partner's
    /// or an isolated trust domain's daemon, shown beside the fleet's own).
    pub trust_domain: Option<String>,
    /// What the daemon said about itself.
    pub identity: Option<DaemonIdentity>,
    /// Its nodes (shared with the merged tree, never copied).
    pub nodes: HashMap<String, Arc<Node>>,
    /// Its upstream connectivity, when it has an upstream.
    pub upstream: Option<Connectivity>,
    /// A server's foreign trust domains and peers' receipts, when it publishes them.
    pub federation: Option<Federation>,
    /// Since when its calls upstream have failed without a success in between (its clock):
    /// the `since` of the first degraded or lost state, kept when degraded turns lost.
    upstream_failing_since: Option<i64>,
    /// Last applied revision (0: none yet).
    pub revision: u64,
    /// The console's connection to it.
    pub conn: DaemonConn,
    /// When the console last heard from it (console clock).
    pub last_heard: Option<DateTime<Utc>>,
    /// Daemon clock minus console clock, in milliseconds, at the last message.
    pub skew_ms: i64,
    /// Nodes of a snapshot whose last chunk has not arrived yet, with its revision.
    pending: Option<(u64, Vec<Node>)>,
    /// Whether a complete snapshot was applied on the current stream (deltas need one).
    synced: bool,
    /// Whether a complete snapshot was ever applied in this run (the history in the first
    /// one is replayed, not watched).
    ever_synced: bool,
    /// The newest event number of this daemon already recorded (kept here, not looked up in
    /// the bounded event list, which other daemons' events may have emptied of this one's).
    seen_seq: u64,
}

impl DaemonState {
    /// Role: what the daemon said (a role this build does not know included), or the fleet
    /// file's hint.
    pub fn role(&self) -> Wire<DaemonRole> {
        self.identity
            .as_ref()
            .map(|i| i.role_wire())
            .filter(|r| !r.is_unspecified())
            .unwrap_or(Wire::Known(self.role_hint))
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

    /// How old the shown state is: zero while live, else the time since the console lost the
    /// stream (None: never reached, or not connected yet: nothing is shown).
    pub fn staleness(&self, now: DateTime<Utc>) -> Option<i64> {
        match &self.conn {
            DaemonConn::Live => Some(0),
            DaemonConn::Lost { since, .. } => Some((now - *since).num_seconds().max(0)),
            DaemonConn::Connecting | DaemonConn::NeverReached { .. } => None,
        }
    }

    /// When the console lost the stream, while it is lost (last-known data is as of then).
    pub fn lost_since(&self) -> Option<DateTime<Utc>> {
        match &self.conn {
            DaemonConn::Lost { since, .. } => Some(*since),
            _ => None,
        }
    }

    /// The error of a lost or never-opened stream.
    pub fn conn_error(&self) -> Option<&str> {
        match &self.conn {
            DaemonConn::Lost { error, .. } | DaemonConn::NeverReached { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Since when its calls upstream have failed (degraded, then lost), or None while they
    /// succeed (its clock).
    pub fn upstream_failing_since(&self) -> Option<i64> {
        self.upstream_failing_since
    }

    /// The id of the daemon's own node (`server:<id>`, `agent:<id>`) among the nodes it
    /// published, when it said who it is.
    pub fn own_node_id(&self) -> Option<&str> {
        let me = self
            .identity
            .as_ref()
            .map(|i| i.spiffe_id.as_str())
            .filter(|s| !s.is_empty())?;
        let kind = if self.role() == DaemonRole::Agent {
            NodeKind::Agent
        } else {
            NodeKind::Server
        };
        self.nodes
            .values()
            .find(|n| n.kind_wire() == kind && n.spiffe_id == me)
            .map(|n| n.id.as_str())
    }

    /// The start time the daemon reported (0: not known), part of its events' keys.
    pub fn started_at(&self) -> i64 {
        self.identity.as_ref().map_or(0, |i| i.started_at)
    }
}

/// A fleet event with the daemon it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetEvent {
    /// The daemon it came from, or the one it is about (the console's own events).
    pub daemon: String,
    pub event: Event,
    /// A stable dedupe key: the same event has the same key in every console and across
    /// restarts (`<daemon>:<daemon start>:<seq>` for a daemon's events; see
    /// [`derive`] for the console's own).
    pub key: String,
    /// History the daemon sent in its first snapshot to this console (it happened before the
    /// console watched), rather than something that happened while watched.
    pub replayed: bool,
    /// Who recorded it, and so whose clock its time is on.
    pub recorder: Recorder,
}

/// Who recorded an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorder {
    /// The daemon: its time is on the daemon's clock.
    Daemon,
    /// The console (derived, or about its own connection): its time is on the console's
    /// clock.
    Console,
}

impl Recorder {
    /// The word for `watch` lines: `daemon`, `console`.
    pub fn as_str(self) -> &'static str {
        match self {
            Recorder::Daemon => "daemon",
            Recorder::Console => "console",
        }
    }
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
    /// Keys of the events the console derived, with when each may be forgotten (Unix seconds).
    derived: HashMap<String, i64>,
}

impl Fleet {
    /// A fleet of daemons `(name, endpoint, role hint, segment hint)`.
    pub fn new(daemons: impl IntoIterator<Item = (String, String, DaemonRole, String)>) -> Self {
        Self {
            daemons: daemons
                .into_iter()
                .map(|(name, endpoint, role_hint, segment_hint)| DaemonState {
                    name,
                    endpoint,
                    role_hint,
                    segment_hint,
                    pinned_id: None,
                    trust_domain: None,
                    identity: None,
                    nodes: HashMap::new(),
                    upstream: None,
                    federation: None,
                    upstream_failing_since: None,
                    revision: 0,
                    conn: DaemonConn::Connecting,
                    last_heard: None,
                    skew_ms: 0,
                    pending: None,
                    synced: false,
                    ever_synced: false,
                    seen_seq: 0,
                })
                .collect(),
            events: VecDeque::new(),
            generation: 0,
            events_total: 0,
            derived: HashMap::new(),
        }
    }

    /// Marks daemon `d` as one of trust domain `td`, not the fleet's own.
    pub fn set_trust_domain(&mut self, d: usize, td: impl Into<String>) {
        if let Some(ds) = self.daemons.get_mut(d) {
            ds.trust_domain = Some(td.into()).filter(|s| !s.is_empty());
        }
    }

    /// The fleet's own trust domain only: itself when every daemon is of it, else a copy
    /// without the others' daemons (what runbooks observe and act on).
    pub fn own_trust_domain(&self) -> std::borrow::Cow<'_, Fleet> {
        if self.daemons.iter().all(|d| d.trust_domain.is_none()) {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut own = self.clone();
        own.daemons.retain(|d| d.trust_domain.is_none());
        std::borrow::Cow::Owned(own)
    }

    fn push_event(&mut self, e: FleetEvent) {
        self.events_total += 1;
        self.events.push_back(e);
        while self.events.len() > FLEET_EVENTS {
            self.events.pop_front();
        }
    }

    /// Daemon clock at console time `now`, for the daemon a node came from.
    pub fn daemon_now(&self, d: usize, now: DateTime<Utc>) -> DateTime<Utc> {
        let skew = self.daemons.get(d).map(|x| x.skew_ms).unwrap_or(0);
        now + chrono::Duration::milliseconds(skew)
    }

    /// Daemons in tree order: upstream servers, downstream servers, agents (and roles this
    /// build does not know).
    fn ordered(&self) -> Vec<usize> {
        let rank = |d: usize| match self.daemons[d].role().known() {
            Some(DaemonRole::Upstream) => 0,
            Some(DaemonRole::Downstream) => 1,
            _ => 2,
        };
        let mut v: Vec<usize> = (0..self.daemons.len()).collect();
        v.sort_by_key(|&i| rank(i));
        v
    }
}
