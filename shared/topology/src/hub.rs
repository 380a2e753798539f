//! The daemon side of the admin `Watch` stream: a node map, the upstream connectivity and
//! recent events, published as a snapshot followed by ordered deltas.
//!
//! Producers replace a *group* of nodes at once (the hub computes what changed) or upsert
//! single nodes. Every change that alters something becomes exactly one delta message with the
//! next revision; a subscriber gets a snapshot at revision `r` and then every delta after `r`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use trustdeck_proto::admin::{
    Connectivity, ConnectivityState, DaemonIdentity, Delta, Event, EventKind, Federation, Node,
    Snapshot, WatchMessage, watch_message::Body,
};

pub use trustdeck_proto::admin::Severity;

/// Events kept for new subscribers.
pub const EVENT_HISTORY: usize = 200;
/// Nodes per snapshot message; a larger snapshot is sent in several chunks.
pub const SNAPSHOT_CHUNK: usize = 4000;
/// Deltas buffered per subscriber before it is considered lagging (and resent a snapshot).
pub const DELTA_BUFFER: usize = 8192;

struct State {
    identity: DaemonIdentity,
    nodes: HashMap<String, (Arc<str>, Node)>,
    upstream: Connectivity,
    /// A server's foreign trust domains and receipts (`None`: not published).
    federation: Option<Federation>,
    events: VecDeque<Event>,
    revision: u64,
    event_seq: u64,
}

/// The published state of one daemon.
pub struct Hub {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<WatchMessage>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

fn ms(now: DateTime<Utc>) -> i64 {
    now.timestamp_millis()
}

/// What a subscriber gets: snapshot chunks (all at the same revision, the last one with
/// `partial == false`) and a receiver of every later delta.
pub struct Subscription {
    /// Snapshot messages, in order.
    pub snapshot: Vec<WatchMessage>,
    /// Deltas after the snapshot's revision.
    pub deltas: broadcast::Receiver<Arc<WatchMessage>>,
}

impl Hub {
    /// A hub for a daemon.
    pub fn new(identity: DaemonIdentity) -> Self {
        let (tx, _) = broadcast::channel(DELTA_BUFFER);
        Self {
            state: Mutex::new(State {
                identity,
                nodes: HashMap::new(),
                upstream: Connectivity::default(),
                federation: None,
                events: VecDeque::new(),
                revision: 0,
                event_seq: 0,
            }),
            tx,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent map (every mutation is a single
        // insert/remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current revision.
    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.lock().nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One node, if present.
    pub fn node(&self, id: &str) -> Option<Node> {
        self.lock().nodes.get(id).map(|(_, n)| n.clone())
    }

    /// Every node, in no particular order.
    pub fn nodes(&self) -> Vec<Node> {
        self.lock().nodes.values().map(|(_, n)| n.clone()).collect()
    }

    /// What the daemon says about itself.
    pub fn identity(&self) -> DaemonIdentity {
        self.lock().identity.clone()
    }

    /// The upstream link as last set.
    pub fn upstream(&self) -> Connectivity {
        self.lock().upstream.clone()
    }

    fn publish(&self, st: &mut State, delta: Delta, now: DateTime<Utc>) {
        st.revision += 1;
        let mut msg = WatchMessage {
            revision: st.revision,
            daemon_time_ms: ms(now),
            body: Some(Body::Delta(delta)),
        };
        // Once here, for every subscriber of this delta.
        trustdeck_proto::vocab::fill_legacy(&mut msg);
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(Arc::new(msg));
    }

    fn push_event(st: &mut State, mut e: Event) -> Event {
        st.event_seq += 1;
        e.seq = st.event_seq;
        st.events.push_back(e.clone());
        while st.events.len() > EVENT_HISTORY {
            st.events.pop_front();
        }
        e
    }

    /// Replaces every node of `group` with `nodes`: nodes that changed or are new are upserted,
    /// nodes of the group that are missing are removed. Returns whether anything changed.
    pub fn replace_group(&self, group: &str, nodes: Vec<Node>, now: DateTime<Utc>) -> bool {
        let mut st = self.lock();
        let mut keep: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut upserts = Vec::new();
        let group: Arc<str> = Arc::from(group);
        for n in nodes {
            keep.insert(n.id.clone());
            match st.nodes.get(&n.id) {
                Some((g, old)) if *old == n && *g == group => {}
                _ => {
                    st.nodes.insert(n.id.clone(), (group.clone(), n.clone()));
                    upserts.push(n);
                }
            }
        }
        let removes: Vec<String> = st
            .nodes
            .iter()
            .filter(|(id, (g, _))| *g == group && !keep.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &removes {
            st.nodes.remove(id);
        }
        if upserts.is_empty() && removes.is_empty() {
            return false;
        }
        self.publish(
            &mut st,
            Delta {
                upserts,
                removes,
                ..Default::default()
            },
            now,
        );
        true
    }

    /// Inserts or replaces one node in `group`. Returns whether anything changed.
    pub fn upsert(&self, group: &str, node: Node, now: DateTime<Utc>) -> bool {
        let mut st = self.lock();
        if let Some((g, old)) = st.nodes.get(&node.id)
            && *old == node
            && &**g == group
        {
            return false;
        }
        st.nodes
            .insert(node.id.clone(), (Arc::from(group), node.clone()));
        self.publish(
            &mut st,
            Delta {
                upserts: vec![node],
                ..Default::default()
            },
            now,
        );
        true
    }

    /// Removes nodes by id. Returns whether anything changed.
    pub fn remove(&self, ids: &[String], now: DateTime<Utc>) -> bool {
        let mut st = self.lock();
        let removes = ids
            .iter()
            .filter(|id| st.nodes.contains_key(*id))
            .cloned()
            .collect();
        self.remove_locked(&mut st, removes, now)
    }

    /// Removes the nodes `pred` selects, in one critical section (a node upserted meanwhile is
    /// never removed by a stale decision). Returns whether anything changed.
    pub fn remove_where(&self, pred: impl Fn(&Node) -> bool, now: DateTime<Utc>) -> bool {
        let mut st = self.lock();
        let removes = st
            .nodes
            .values()
            .filter(|(_, n)| pred(n))
            .map(|(_, n)| n.id.clone())
            .collect();
        self.remove_locked(&mut st, removes, now)
    }

    /// Removes `ids` (all present) and publishes one delta, if there is anything to remove.
    fn remove_locked(&self, st: &mut State, removes: Vec<String>, now: DateTime<Utc>) -> bool {
        if removes.is_empty() {
            return false;
        }
        for id in &removes {
            st.nodes.remove(id);
        }
        self.publish(
            st,
            Delta {
                removes,
                ..Default::default()
            },
            now,
        );
        true
    }

    /// Sets the upstream connectivity; a change of state is also recorded as an event.
    pub fn set_upstream(&self, c: Connectivity, now: DateTime<Utc>) -> bool {
        let mut st = self.lock();
        if st.upstream == c {
            return false;
        }
        let mut events = Vec::new();
        let state = c.state_wire();
        // Connecting (no call completed yet) is not a change worth an event: nothing was lost.
        let changed = match state.known() {
            Some(ConnectivityState::Connected) => {
                Some((Severity::Info, EventKind::UpstreamConnected))
            }
            Some(ConnectivityState::Degraded) => {
                Some((Severity::Warning, EventKind::UpstreamDegraded))
            }
            Some(ConnectivityState::Unspecified | ConnectivityState::Connecting) => None,
            Some(ConnectivityState::Lost) | None => {
                Some((Severity::Error, EventKind::UpstreamLost))
            }
            Some(ConnectivityState::Stranded) => {
                Some((Severity::Error, EventKind::UpstreamStranded))
            }
        };
        if let Some((severity, kind)) = changed.filter(|_| st.upstream.state != c.state) {
            let mut message = format!("{} {state}", c.peer);
            if !c.last_error.is_empty() && state != ConnectivityState::Connected {
                message.push_str(&format!(": {}", c.last_error));
            }
            events.push(Self::push_event(
                &mut st,
                Event {
                    at_ms: ms(now),
                    severity: severity.into(),
                    kind: kind.into(),
                    message,
                    // The peer server's node: "server:<spiffe id>", as every daemon names it.
                    node_id: if c.peer_spiffe_id.is_empty() {
                        String::new()
                    } else {
                        format!("server:{}", c.peer_spiffe_id)
                    },
                    ..Default::default()
                },
            ));
        }
        st.upstream = c.clone();
        self.publish(
            &mut st,
            Delta {
                upstream: Some(c),
                events,
                ..Default::default()
            },
            now,
        );
        true
    }

    /// The foreign trust domains and receipts as last set.
    pub fn federation(&self) -> Option<Federation> {
        self.lock().federation.clone()
    }

    /// Sets a server's foreign trust domains and its peers' receipts, published whole.
    /// Returns whether anything changed.
    pub fn set_federation(&self, f: Federation, now: DateTime<Utc>) -> bool {
        let mut st = self.lock();
        if st.federation.as_ref() == Some(&f) {
            return false;
        }
        st.federation = Some(f.clone());
        self.publish(
            &mut st,
            Delta {
                federation: Some(f),
                ..Default::default()
            },
            now,
        );
        true
    }

    /// Sets the daemon's SPIFFE ID (an agent learns it when it attests). Returns whether
    /// anything changed.
    pub fn set_spiffe_id(&self, spiffe_id: &str, now: DateTime<Utc>) -> bool {
        let mut st = self.lock();
        if st.identity.spiffe_id == spiffe_id {
            return false;
        }
        st.identity.spiffe_id = spiffe_id.to_string();
        let identity = st.identity.clone();
        self.publish(
            &mut st,
            Delta {
                identity: Some(identity),
                ..Default::default()
            },
            now,
        );
        true
    }

    /// Records an event.
    pub fn event(
        &self,
        severity: Severity,
        kind: EventKind,
        message: impl Into<String>,
        node_id: &str,
        now: DateTime<Utc>,
    ) {
        let event = Event {
            at_ms: ms(now),
            severity: severity.into(),
            kind: kind.into(),
            message: message.into(),
            node_id: node_id.into(),
            ..Default::default()
        };
        self.record_event(event, now);
    }

    /// Records the event of audit record `audit_seq`, of `kind` (`OperatorAction`, or
    /// `Runbook` for the runbook journal's records).
    pub fn audit_event(
        &self,
        audit_seq: u64,
        kind: EventKind,
        severity: Severity,
        message: impl Into<String>,
        node_id: &str,
        now: DateTime<Utc>,
    ) {
        let event = Event {
            at_ms: ms(now),
            severity: severity.into(),
            kind: kind.into(),
            message: message.into(),
            node_id: node_id.into(),
            audit_seq,
            ..Default::default()
        };
        self.record_event(event, now);
    }

    /// Gives `event` its sequence number, keeps it in the ring and publishes it.
    fn record_event(&self, event: Event, now: DateTime<Utc>) {
        let mut st = self.lock();
        let e = Self::push_event(&mut st, event);
        self.publish(
            &mut st,
            Delta {
                events: vec![e],
                ..Default::default()
            },
            now,
        );
    }

    /// The current state as snapshot chunks, and a receiver of every later delta. Taken
    /// under one lock, so no delta is missed or repeated.
    pub fn subscribe(&self, now: DateTime<Utc>) -> Subscription {
        let st = self.lock();
        let deltas = self.tx.subscribe();
        let nodes: Vec<Node> = st.nodes.values().map(|(_, n)| n.clone()).collect();
        let mut snapshot = Vec::with_capacity(nodes.len() / SNAPSHOT_CHUNK + 1);
        let mut chunks = nodes.chunks(SNAPSHOT_CHUNK).peekable();
        let mut first = true;
        loop {
            let chunk = chunks.next();
            let last = chunks.peek().is_none();
            snapshot.push(WatchMessage {
                revision: st.revision,
                daemon_time_ms: ms(now),
                body: Some(Body::Snapshot(Snapshot {
                    identity: first.then(|| st.identity.clone()),
                    nodes: chunk.map(|c| c.to_vec()).unwrap_or_default(),
                    upstream: first.then(|| st.upstream.clone()),
                    federation: if first { st.federation.clone() } else { None },
                    events: if first {
                        st.events.iter().cloned().collect()
                    } else {
                        Vec::new()
                    },
                    partial: !last,
                })),
            });
            if let Some(m) = snapshot.last_mut() {
                trustdeck_proto::vocab::fill_legacy(m);
            }
            first = false;
            if last {
                break;
            }
        }
        Subscription { snapshot, deltas }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustdeck_proto::admin::{NodeKind, StrandedReason};

    fn node(id: &str, not_after: i64) -> Node {
        Node {
            id: id.into(),
            kind: NodeKind::Agent as i32,
            not_after,
            ..Default::default()
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn delta(m: &WatchMessage) -> &Delta {
        match &m.body {
            Some(Body::Delta(d)) => d,
            other => panic!("expected a delta, got {other:?}"),
        }
    }

    #[test]
    fn federation_is_published_whole_when_it_changes() {
        let hub = Hub::new(DaemonIdentity::default());
        let mut sub = hub.subscribe(now());
        let f = Federation {
            own_sequence: 3,
            ..Default::default()
        };
        assert!(hub.set_federation(f.clone(), now()));
        assert!(!hub.set_federation(f.clone(), now()), "unchanged: no delta");
        assert_eq!(
            delta(&sub.deltas.try_recv().unwrap()).federation,
            Some(f.clone())
        );
        assert!(sub.deltas.try_recv().is_err());
        let snap = hub.subscribe(now()).snapshot;
        match &snap[0].body {
            Some(Body::Snapshot(s)) => assert_eq!(s.federation, Some(f)),
            other => panic!("expected a snapshot, got {other:?}"),
        }
    }

    #[test]
    fn replace_group_emits_only_changes_in_order() {
        let hub = Hub::new(DaemonIdentity::default());
        let mut sub = hub.subscribe(now());
        assert!(hub.replace_group("a", vec![node("x", 1), node("y", 2)], now()));
        assert!(!hub.replace_group("a", vec![node("x", 1), node("y", 2)], now()));
        assert!(hub.replace_group("a", vec![node("x", 1), node("y", 3)], now()));
        assert!(hub.replace_group("a", vec![node("y", 3)], now()));
        let m1 = sub.deltas.try_recv().unwrap();
        let m2 = sub.deltas.try_recv().unwrap();
        let m3 = sub.deltas.try_recv().unwrap();
        assert!(sub.deltas.try_recv().is_err());
        assert_eq!((m1.revision, m2.revision, m3.revision), (1, 2, 3));
        assert_eq!(delta(&m1).upserts.len(), 2);
        assert_eq!(delta(&m2).upserts, vec![node("y", 3)]);
        assert_eq!(delta(&m3).removes, vec!["x".to_string()]);
        assert_eq!(m3.daemon_time_ms, now().timestamp_millis());
    }

    #[test]
    fn groups_do_not_remove_each_others_nodes() {
        let hub = Hub::new(DaemonIdentity::default());
        hub.replace_group("a", vec![node("x", 1)], now());
        hub.upsert("b", node("z", 1), now());
        hub.replace_group("a", vec![], now());
        assert!(hub.node("z").is_some());
        assert!(hub.node("x").is_none());
    }

    #[test]
    fn snapshot_is_chunked_and_consistent_with_deltas() {
        let hub = Hub::new(DaemonIdentity {
            name: "d".into(),
            ..Default::default()
        });
        let nodes: Vec<Node> = (0..SNAPSHOT_CHUNK * 2 + 5)
            .map(|i| node(&format!("n{i}"), i as i64))
            .collect();
        hub.replace_group("a", nodes, now());
        hub.event(Severity::Info, EventKind::Pruned, "hello", "", now());
        let mut sub = hub.subscribe(now());
        assert_eq!(sub.snapshot.len(), 3);
        let mut total = 0;
        for (i, m) in sub.snapshot.iter().enumerate() {
            assert_eq!(m.revision, 2);
            let Some(Body::Snapshot(s)) = &m.body else {
                panic!("not a snapshot")
            };
            assert_eq!(s.partial, i < 2);
            assert_eq!(s.identity.is_some(), i == 0);
            if i == 0 {
                assert_eq!(s.events.len(), 1);
            }
            total += s.nodes.len();
        }
        assert_eq!(total, SNAPSHOT_CHUNK * 2 + 5);
        hub.remove(&["n0".into()], now());
        assert_eq!(sub.deltas.try_recv().unwrap().revision, 3);
    }

    #[test]
    fn connectivity_change_is_an_event() {
        let hub = Hub::new(DaemonIdentity::default());
        let c = |state: ConnectivityState| Connectivity {
            configured: true,
            state: state.into(),
            peer: "upstream".into(),
            last_error: "connection refused".into(),
            ..Default::default()
        };
        // Starting up (no call completed yet) is published, but is no event: nothing was lost.
        assert!(hub.set_upstream(c(ConnectivityState::Connecting), now()));
        assert!(hub.set_upstream(c(ConnectivityState::Connected), now()));
        assert!(!hub.set_upstream(c(ConnectivityState::Connected), now()));
        assert!(hub.set_upstream(c(ConnectivityState::Lost), now()));
        // The reason alone changing is published, but the state is the same: no new event.
        let stranded = |reason: StrandedReason| Connectivity {
            stranded_reason: reason.into(),
            ..c(ConnectivityState::Stranded)
        };
        assert!(hub.set_upstream(stranded(StrandedReason::TokenUsed), now()));
        assert!(hub.set_upstream(stranded(StrandedReason::TokenUnknown), now()));
        assert!(hub.set_upstream(c(ConnectivityState::Lost), now()));
        let sub = hub.subscribe(now());
        let Some(Body::Snapshot(s)) = &sub.snapshot[0].body else {
            panic!()
        };
        let kinds: Vec<&str> = s.events.iter().map(|e| e.kind_wire().as_str()).collect();
        assert_eq!(
            kinds,
            vec![
                "upstream-connected",
                "upstream-lost",
                "upstream-stranded",
                "upstream-lost"
            ]
        );
        assert_eq!(s.events[2].severity_wire(), Severity::Error);
        assert_eq!(s.events[2].message, "upstream stranded: connection refused");
        assert_eq!(s.events[1].severity_wire(), Severity::Error);
        assert_eq!(s.events[1].message, "upstream lost: connection refused");
        assert_eq!(
            s.upstream.as_ref().unwrap().state_wire(),
            ConnectivityState::Lost
        );
    }

    #[test]
    fn identity_changes_are_deltas() {
        let hub = Hub::new(DaemonIdentity::default());
        let mut sub = hub.subscribe(now());
        assert!(hub.set_spiffe_id("spiffe://td/agent", now()));
        assert!(!hub.set_spiffe_id("spiffe://td/agent", now()));
        let m = sub.deltas.try_recv().unwrap();
        assert_eq!(
            delta(&m).identity.as_ref().unwrap().spiffe_id,
            "spiffe://td/agent"
        );
        assert!(sub.deltas.try_recv().is_err());
        assert_eq!(hub.identity().spiffe_id, "spiffe://td/agent");
    }

    #[test]
    fn event_history_is_bounded() {
        let hub = Hub::new(DaemonIdentity::default());
        for i in 0..EVENT_HISTORY + 10 {
            hub.event(Severity::Info, EventKind::Pruned, format!("{i}"), "", now());
        }
        let sub = hub.subscribe(now());
        let Some(Body::Snapshot(s)) = &sub.snapshot[0].body else {
            panic!()
        };
        assert_eq!(s.events.len(), EVENT_HISTORY);
        assert_eq!(s.events[0].message, "10");
    }
}
