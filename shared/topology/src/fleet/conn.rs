//! The console's side of each daemon's `Watch` stream: snapshots (possibly in chunks) and
//! ordered deltas applied to the daemon's state, and the connection's own state (connecting,
//! live, never reached, lost) with the events the console records when it loses a stream and
//! when it has it again.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{
    Connectivity, ConnectivityState, Event, EventKind, Severity, WatchMessage, watch_message::Body,
};
use trustdeck_proto::vocab::Wire;

use super::{DaemonState, Fleet, FleetEvent, Recorder};

/// The console's connection to one daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonConn {
    /// No attempt has ended yet.
    Connecting,
    /// Receiving the stream.
    Live,
    /// Every attempt in this run failed: nothing was ever received, so nothing is shown as
    /// last-known and nothing was lost.
    NeverReached {
        /// When the first attempt failed (console clock).
        first_failure: DateTime<Utc>,
        /// The latest reason it could not be opened.
        error: String,
    },
    /// The stream broke or could not be reopened; the last-known state is kept.
    Lost {
        /// When the console noticed the loss (console clock): last-known data is as of then,
        /// and ages count from then.
        since: DateTime<Utc>,
        /// The latest reason it could not be (re)opened.
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

impl Fleet {
    /// Applies one stream message from daemon `d`, received at `now` (console clock).
    pub fn apply(
        &mut self,
        d: usize,
        mut msg: WatchMessage,
        now: DateTime<Utc>,
    ) -> Result<(), ApplyError> {
        trustdeck_proto::vocab::adopt_legacy(&mut msg);
        let ds = self.daemons.get_mut(d).ok_or(ApplyError::NoDaemon(d))?;
        ds.last_heard = Some(now);
        ds.skew_ms = msg.daemon_time_ms - now.timestamp_millis();
        let before = ds.conn.clone();
        // Only the history in the first snapshot of this run is a replay: after a reconnection
        // the snapshot's new events happened while the console was watching (if blind).
        let replayed = !ds.ever_synced;
        let new_events = match msg.body.ok_or(ApplyError::Empty)? {
            Body::Snapshot(s) => ds.apply_snapshot(msg.revision, s),
            Body::Delta(delta) => ds.apply_delta(msg.revision, delta)?,
        };
        let ds = &self.daemons[d];
        let (name, started) = (ds.name.clone(), ds.started_at());
        let own_node = ds.own_node_id().unwrap_or_default().to_string();
        let reconnected = matches!(before, DaemonConn::Lost { .. }) && ds.is_live();
        for event in new_events {
            self.push_event(FleetEvent {
                key: format!("{name}:{started}:{}", event.seq),
                daemon: name.clone(),
                event,
                replayed,
                recorder: Recorder::Daemon,
            });
        }
        if let (true, DaemonConn::Lost { since, .. }) = (reconnected, before) {
            let away = crate::ttl::fmt_secs((now - since).num_seconds().max(0));
            let mut e = console_event(
                &name,
                format!("console:reconnected:{name}:{}", now.timestamp()),
                (Severity::Info, EventKind::ConsoleReconnected),
                format!("console has {name}'s stream again, after {away} without it"),
                now,
            );
            e.event.node_id = own_node;
            self.push_event(e);
        }
        self.generation += 1;
        Ok(())
    }

    /// Records the console's connection state to daemon `d`. A failure before the daemon was
    /// ever reached in this run makes it never-reached, not lost.
    pub fn set_conn(&mut self, d: usize, conn: DaemonConn, now: DateTime<Utc>) {
        let Some(ds) = self.daemons.get_mut(d) else {
            return;
        };
        let conn = match (conn, &ds.conn) {
            (DaemonConn::Lost { since, error }, was) if !ds.ever_synced => {
                DaemonConn::NeverReached {
                    first_failure: match was {
                        DaemonConn::NeverReached { first_failure, .. } => *first_failure,
                        _ => since,
                    },
                    error,
                }
            }
            // Still lost: keep when it started, show the latest reason.
            (DaemonConn::Lost { error, .. }, DaemonConn::Lost { since, .. }) => DaemonConn::Lost {
                since: *since,
                error,
            },
            (c, _) => c,
        };
        if ds.conn == conn {
            return;
        }
        let first_failure = match (&ds.conn, &conn) {
            (DaemonConn::Live, DaemonConn::Lost { error, .. }) => {
                Some(format!("console lost its stream from {}: {error}", ds.name))
            }
            (DaemonConn::Connecting, DaemonConn::NeverReached { error, .. }) => {
                Some(format!("console cannot reach {}: {error}", ds.name))
            }
            _ => None,
        };
        if matches!(
            conn,
            DaemonConn::Lost { .. } | DaemonConn::NeverReached { .. }
        ) {
            ds.pending = None;
            ds.synced = false;
        }
        ds.conn = conn;
        if let Some(message) = first_failure {
            let name = ds.name.clone();
            let mut e = console_event(
                &name,
                format!("console:unreachable:{name}:{}", now.timestamp()),
                (Severity::Error, EventKind::ConsoleUnreachable),
                message,
                now,
            );
            e.event.node_id = ds.own_node_id().unwrap_or_default().to_string();
            self.push_event(e);
        }
        self.generation += 1;
    }
}

/// An event the console records itself, about daemon `daemon`.
pub(super) fn console_event(
    daemon: &str,
    key: String,
    (severity, kind): (Severity, EventKind),
    message: String,
    now: DateTime<Utc>,
) -> FleetEvent {
    FleetEvent {
        daemon: daemon.to_string(),
        event: Event {
            at_ms: now.timestamp_millis(),
            severity: severity.into(),
            kind: kind.into(),
            message,
            ..Default::default()
        },
        key,
        replayed: false,
        recorder: Recorder::Console,
    }
}

/// Whether calls over a link in `state` fail: degraded (retrying) or lost (several in a row).
pub fn link_failing(state: Wire<ConnectivityState>) -> bool {
    matches!(
        state.known(),
        Some(ConnectivityState::Degraded | ConnectivityState::Lost)
    )
}

impl DaemonState {
    /// Applies one snapshot message (a chunk, when `partial`); returns the events to record.
    fn apply_snapshot(&mut self, revision: u64, s: trustdeck_proto::admin::Snapshot) -> Vec<Event> {
        let (rev, mut nodes) = match self.pending.take() {
            Some((rev, nodes)) if rev == revision => (rev, nodes),
            _ => (revision, Vec::new()),
        };
        // A daemon that restarted numbers its events from 1 again: everything in its history
        // is new. Told by its start time, or (from a daemon that does not say) by its history
        // ending below what was seen.
        let restarted = match (&self.identity, &s.identity) {
            (Some(old), Some(new)) => new.started_at != 0 && new.started_at != old.started_at,
            _ => false,
        };
        if let Some(id) = s.identity {
            self.identity = Some(id);
            nodes.clear();
            // The first chunk carries it: a daemon that publishes none has none.
            self.federation = s.federation;
        }
        if let Some(u) = s.upstream {
            self.set_upstream(u);
        }
        // Only events newer than the ones already shown (a resubscription repeats the
        // daemon's history).
        let seen = match s.events.iter().map(|e| e.seq).max() {
            _ if restarted => 0,
            Some(newest) if newest < self.seen_seq => 0,
            _ => self.seen_seq,
        };
        let events: Vec<Event> = s.events.into_iter().filter(|e| e.seq > seen).collect();
        self.seen_seq = events.iter().map(|e| e.seq).fold(seen, u64::max);
        nodes.extend(s.nodes);
        if s.partial {
            self.pending = Some((rev, nodes));
        } else {
            self.nodes = nodes
                .into_iter()
                .map(|n| (n.id.clone(), Arc::new(n)))
                .collect();
            self.revision = rev;
            self.synced = true;
            self.ever_synced = true;
            self.conn = DaemonConn::Live;
        }
        events
    }

    /// Records its upstream link, and since when its calls upstream have been failing.
    fn set_upstream(&mut self, u: Connectivity) {
        let failing = u.configured && link_failing(u.state_wire());
        self.upstream_failing_since = match self.upstream_failing_since {
            Some(t) if failing => Some(t),
            _ => failing.then_some(u.since),
        };
        self.upstream = u.configured.then_some(u);
    }

    /// Applies one delta; it must follow the last revision of a synced stream.
    fn apply_delta(
        &mut self,
        revision: u64,
        delta: trustdeck_proto::admin::Delta,
    ) -> Result<Vec<Event>, ApplyError> {
        if !self.synced || revision != self.revision + 1 {
            return Err(ApplyError::Gap {
                have: self.revision,
                got: revision,
            });
        }
        self.revision = revision;
        for id in delta.removes {
            self.nodes.remove(&id);
        }
        for n in delta.upserts {
            self.nodes.insert(n.id.clone(), Arc::new(n));
        }
        if let Some(u) = delta.upstream {
            self.set_upstream(u);
        }
        if let Some(id) = delta.identity {
            self.identity = Some(id);
        }
        if let Some(f) = delta.federation {
            self.federation = Some(f);
        }
        self.seen_seq = delta
            .events
            .iter()
            .map(|e| e.seq)
            .fold(self.seen_seq, u64::max);
        Ok(delta.events)
    }
}
