//! The autonomous window of each segment. While nothing is lost: how long it keeps issuing if
//! its upstream is lost now, and when its workloads start failing if its server is lost now.
//! Once a loss has happened, the facts instead: since when, who noticed, how many SVIDs are
//! past renewal, and when the first one fails (or failed).
//!
//! Last-known data is used and marked: a server the console lost still has its intermediate
//! (its own last word, or its upstream's record of it) and its upstream link "as of" the loss;
//! a server never reached is matched to its upstream's record (see [`Tree::server_of`]).

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{ConnectivityState, DaemonRole, NodeKind, NodeState};
use trustdeck_proto::vocab::Wire;

use super::{DaemonConn, Fleet, Tree, renewal};

/// The console's link to a segment's server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// No attempt has ended yet.
    Connecting,
    Live,
    /// The console lost it at `since` (Unix seconds, console clock).
    Lost {
        since: i64,
        error: String,
    },
    /// Never reached in this run; the first attempt failed at `first_failure`.
    NeverReached {
        first_failure: i64,
        error: String,
    },
}

impl Reach {
    pub(super) fn of(conn: &DaemonConn) -> Self {
        match conn {
            DaemonConn::Connecting => Reach::Connecting,
            DaemonConn::Live => Reach::Live,
            DaemonConn::Lost { since, error } => Reach::Lost {
                since: since.timestamp(),
                error: error.clone(),
            },
            DaemonConn::NeverReached {
                first_failure,
                error,
            } => Reach::NeverReached {
                first_failure: first_failure.timestamp(),
                error: error.clone(),
            },
        }
    }

    /// The JSON name: `connecting`, `live`, `lost`, `never_reached`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reach::Connecting => "connecting",
            Reach::Live => "live",
            Reach::Lost { .. } => "lost",
            Reach::NeverReached { .. } => "never_reached",
        }
    }
}

/// A downstream's link to its upstream, as the downstream reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamLink {
    pub state: Wire<ConnectivityState>,
    /// Since when the state holds (Unix seconds, daemon clock).
    pub since: i64,
    pub error: Option<String>,
    /// Set when the downstream is not live: this is its last word, as of the moment the
    /// console lost it.
    pub as_of: Option<i64>,
}

impl UpstreamLink {
    /// Lost, or a state this build does not know (as bad as lost).
    pub fn is_lost(&self) -> bool {
        matches!(
            self.state.known(),
            Some(ConnectivityState::Lost | ConnectivityState::Unspecified) | None
        )
    }
}

/// How a segment's agents (attested to its server) report their link to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentLinks {
    /// Agents whose server this is, as far as the console knows.
    pub total: usize,
    /// Of those, how many report it lost or degraded (their calls to it fail).
    pub lost: usize,
    /// The earliest moment one of them lost it (Unix seconds, agent clock).
    pub lost_since: Option<i64>,
}

/// A moment that may have passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Still ahead (Unix seconds).
    At(i64),
    /// Passed (Unix seconds).
    Passed(i64),
}

impl Deadline {
    fn of(t: i64, now: i64) -> Self {
        if t <= now {
            Deadline::Passed(t)
        } else {
            Deadline::At(t)
        }
    }

    /// The moment.
    pub fn time(self) -> i64 {
        match self {
            Deadline::At(t) | Deadline::Passed(t) => t,
        }
    }
}

/// What a segment's server being lost means.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerOutage {
    /// The console and the server's agents reach it: if it were lost now, its workloads would
    /// start failing at `fail_at` (None: no workload SVIDs).
    IfLostNow { fail_at: Option<i64> },
    /// Lost, as a fact: by the console (`reach`), by its agents, or both.
    Lost {
        /// The console's view (live when only its agents lost it).
        reach: Reach,
        /// When its agents first reported it lost (None: none did, or none is known).
        agents_lost_at: Option<i64>,
        /// Workload SVIDs of the segment past their renewal point.
        past_renewal: usize,
        /// When its workloads start failing, or since when they have been (None: no workload
        /// SVIDs).
        failure: Option<Deadline>,
    },
}

/// What a segment's upstream being lost means.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamOutage {
    /// The root of trust: no upstream.
    Root,
    /// Nothing is known about the link (the server was never reached); X.509 issuance holds
    /// until `x509_until` if it is lost (from the upstream's record of the intermediate).
    Unknown { x509_until: Option<i64> },
    /// Connected, degraded or connecting: if it were lost now, X.509 issuance would continue
    /// until `x509_until` and JWT-SVIDs would stop at once.
    IfLostNow { x509_until: Option<i64> },
    /// The downstream reports it lost since `since` (as of `as_of` when the downstream itself
    /// is not live): X.509 continues until `x509` and JWT-SVIDs have stopped.
    Lost {
        since: i64,
        as_of: Option<i64>,
        x509: Option<Deadline>,
    },
}

/// How long one segment survives a loss, and which losses have happened.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentWindow {
    pub segment: String,
    /// The segment's server (daemon name).
    pub server: String,
    /// The server's role (upstream, downstream, or one this build does not know).
    pub role: Wire<DaemonRole>,
    /// The console's link to the server.
    pub reach: Reach,
    /// The server's upstream link as it reported it (downstream only; None when never heard).
    pub upstream: Option<UpstreamLink>,
    /// X.509 issuance continues until this instant without the upstream: the latest expiry
    /// of the intermediates the segment holds (its own last word, or the upstream's record).
    /// Downstream only.
    pub x509_until: Option<i64>,
    /// JWT-SVID issuance stops with the upstream (JWTs are signed upstream).
    pub jwt_stops_now: bool,
    /// Without the server, its workloads start failing at this instant: the earliest expiry
    /// among the SVIDs they hold.
    pub workloads_fail_at: Option<i64>,
    /// Workload SVIDs counted.
    pub workloads: usize,
    /// Workload SVIDs of the segment past their renewal point (see [`renewal`]).
    pub past_renewal: usize,
    /// How the segment's agents report their link to the server.
    pub agents: AgentLinks,
    /// Seconds since the console lost the server (None: live, or never reached).
    pub stale_secs: Option<i64>,
}

impl SegmentWindow {
    /// Whether the segment's server is a downstream (the only kind with an upstream to lose).
    pub fn is_downstream(&self) -> bool {
        self.role == DaemonRole::Downstream
    }

    /// Whether the server is lost: by the console, or by one of its agents.
    pub fn server_lost(&self) -> bool {
        matches!(self.reach, Reach::Lost { .. } | Reach::NeverReached { .. })
            || self.agents.lost > 0
    }

    /// What the server's loss means at `now`.
    pub fn server_outage(&self, now: DateTime<Utc>) -> ServerOutage {
        if !self.server_lost() {
            return ServerOutage::IfLostNow {
                fail_at: self.workloads_fail_at,
            };
        }
        ServerOutage::Lost {
            reach: self.reach.clone(),
            agents_lost_at: self.agents.lost_since,
            past_renewal: self.past_renewal,
            failure: self
                .workloads_fail_at
                .map(|t| Deadline::of(t, now.timestamp())),
        }
    }

    /// What the upstream's loss means at `now`.
    pub fn upstream_outage(&self, now: DateTime<Utc>) -> UpstreamOutage {
        if !self.is_downstream() {
            return UpstreamOutage::Root;
        }
        match &self.upstream {
            None => UpstreamOutage::Unknown {
                x509_until: self.x509_until,
            },
            Some(u) if u.is_lost() => UpstreamOutage::Lost {
                since: u.since,
                as_of: u.as_of,
                x509: self.x509_until.map(|t| Deadline::of(t, now.timestamp())),
            },
            Some(_) => UpstreamOutage::IfLostNow {
                x509_until: self.x509_until,
            },
        }
    }
}

/// What a walk of one server's subtree found.
#[derive(Default)]
struct Held {
    x509_until: Option<i64>,
    fail_at: Option<i64>,
    workloads: usize,
    past_renewal: usize,
}

impl Fleet {
    /// Intermediates held by the server at `root` (counted when `downstream`: active and
    /// prepared as it reports them, issued as its upstream records them), and workload SVIDs
    /// anywhere below it that are not below another server.
    fn held_below(&self, tree: &Tree, root: usize, downstream: bool, now: DateTime<Utc>) -> Held {
        let mut h = Held::default();
        let mut stack = vec![root];
        while let Some(i) = stack.pop() {
            let t = &tree.nodes[i];
            let n = &t.node;
            match n.kind_wire().known() {
                Some(NodeKind::Server) if i != root => continue,
                Some(NodeKind::X509Authority)
                    if downstream
                        && matches!(
                            n.state_wire().known(),
                            Some(NodeState::Active | NodeState::Prepared | NodeState::Issued)
                        ) =>
                {
                    h.x509_until = Some(h.x509_until.map_or(n.not_after, |x| x.max(n.not_after)));
                }
                Some(NodeKind::WorkloadSvid) => {
                    h.workloads += 1;
                    h.fail_at = Some(h.fail_at.map_or(n.not_after, |x| x.min(n.not_after)));
                    let dnow = self.daemon_now(t.source, now).timestamp();
                    if renewal::svid_alert(n, dnow).is_some() {
                        h.past_renewal += 1;
                    }
                }
                _ => {}
            }
            stack.extend(t.children.iter().copied());
        }
        h
    }

    /// How the agents attested to the server at tree node `server` report their link to it:
    /// an agent's own node names its server as parent.
    fn agent_links(&self, tree: &Tree, server: usize) -> AgentLinks {
        let mut a = AgentLinks::default();
        for ds in &self.daemons {
            if ds.role() != DaemonRole::Agent {
                continue;
            }
            let Some(up) = &ds.upstream else { continue };
            let mine = ds.nodes.values().any(|n| {
                n.kind_wire() == NodeKind::Agent && tree.by_id.get(&n.parent) == Some(&server)
            });
            if !mine {
                continue;
            }
            a.total += 1;
            // Degraded already means its calls fail (lost comes after several retries).
            if matches!(
                up.state_wire().known(),
                Some(ConnectivityState::Degraded | ConnectivityState::Lost)
            ) {
                a.lost += 1;
                a.lost_since = Some(a.lost_since.map_or(up.since, |s| s.min(up.since)));
            }
        }
        a
    }

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
            let server_node = tree.server_of.get(&d).copied();
            let held = server_node
                .map(|root| self.held_below(tree, root, downstream, now))
                .unwrap_or_default();
            let agents = server_node
                .map(|s| self.agent_links(tree, s))
                .unwrap_or_default();
            let as_of = ds.lost_since().map(|t| t.timestamp());
            out.push(SegmentWindow {
                segment: ds.segment().to_string(),
                server: ds.name.clone(),
                role,
                reach: Reach::of(&ds.conn),
                upstream: ds.upstream.as_ref().map(|u| UpstreamLink {
                    state: u.state_wire(),
                    since: u.since,
                    error: Some(u.last_error.clone()).filter(|e| !e.is_empty()),
                    as_of,
                }),
                x509_until: held.x509_until,
                jwt_stops_now: downstream,
                workloads_fail_at: held.fail_at,
                workloads: held.workloads,
                past_renewal: held.past_renewal,
                agents,
                stale_secs: ds.lost_since().map(|_| ds.staleness(now).unwrap_or(0)),
            });
        }
        out
    }
}
