//! The console's side of each daemon's `Watch` stream: snapshots (possibly in chunks) and
//! ordered deltas applied to the daemon's state, and the connection's own state (connecting,
//! live, lost) with the event the console records when it loses a stream.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{Event, EventKind, Severity, WatchMessage, watch_message::Body};

use super::{DaemonState, Fleet};

/// The console's connection to one daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonConn {
    /// Not connected yet.
    Connecting,
    /// Receiving the stream.
    Live,
    /// The stream broke or could not be opened; the last-known state is kept.
    Lost {
        /// When the stream was lost (console clock).
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
        let new_events = match msg.body.ok_or(ApplyError::Empty)? {
            Body::Snapshot(s) => {
                let seen = if s.events.is_empty() {
                    0
                } else {
                    seen_seq(&self.events, &ds.name)
                };
                ds.apply_snapshot(msg.revision, s, seen)
            }
            Body::Delta(delta) => ds.apply_delta(msg.revision, delta)?,
        };
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
        let lost_now = matches!(ds.conn, DaemonConn::Live | DaemonConn::Connecting);
        if let DaemonConn::Lost { error, .. } = &conn
            && lost_now
        {
            let name = ds.name.clone();
            let message = format!("console lost its stream from {name}: {error}");
            ds.conn = conn;
            ds.pending = None;
            ds.synced = false;
            self.push_event(
                name,
                Event {
                    at_ms: now.timestamp_millis(),
                    severity: Severity::Error.into(),
                    kind: EventKind::ConsoleUnreachable.into(),
                    message,
                    ..Default::default()
                },
            );
        } else {
            ds.conn = conn;
        }
        self.generation += 1;
    }
}

/// The newest event number already shown for daemon `name`.
fn seen_seq(events: &std::collections::VecDeque<super::FleetEvent>, name: &str) -> u64 {
    events
        .iter()
        .filter(|e| e.daemon == name)
        .map(|e| e.event.seq)
        .max()
        .unwrap_or(0)
}

impl DaemonState {
    /// Applies one snapshot message (a chunk, when `partial`); returns the events to record.
    /// `seen` is the newest event number of this daemon already recorded.
    fn apply_snapshot(
        &mut self,
        revision: u64,
        s: trustdeck_proto::admin::Snapshot,
        seen: u64,
    ) -> Vec<Event> {
        let (rev, mut nodes) = match self.pending.take() {
            Some((rev, nodes)) if rev == revision => (rev, nodes),
            _ => (revision, Vec::new()),
        };
        if let Some(id) = s.identity {
            self.identity = Some(id);
            nodes.clear();
        }
        if let Some(u) = s.upstream {
            self.upstream = u.configured.then_some(u);
        }
        // Only events newer than the ones already shown (a resubscription repeats the
        // daemon's history). A daemon that restarted numbers its events from 1 again: its
        // history ending below what was seen means everything in it is new.
        let newest = s.events.iter().map(|e| e.seq).max().unwrap_or(0);
        let seen = if newest < seen { 0 } else { seen };
        let events = s.events.into_iter().filter(|e| e.seq > seen).collect();
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
            self.conn = DaemonConn::Live;
        }
        events
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
            self.upstream = u.configured.then_some(u);
        }
        if let Some(id) = delta.identity {
            self.identity = Some(id);
        }
        Ok(delta.events)
    }
}
