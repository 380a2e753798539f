//! The events the console records itself, from what the daemons report and `now`: an SVID's
//! renewal overdue, an SVID expired, and a downstream that cannot mint JWT-SVIDs while its
//! upstream is lost. Each is recorded once: per certificate for SVIDs (a renewed SVID is a new
//! certificate), per loss for JWT, however long the condition holds; a key is forgotten an
//! hour after its condition stopped holding, so the set stays as small as what held in the
//! last hour. Their keys are deterministic, so a restarted `watch`
//! gives the same event the same key:
//!
//! - `console:svid-renewal-late:<node id>:<not_after>`
//! - `console:svid-expired:<node id>:<not_after>`
//! - `console:jwt-unavailable:<daemon>:<upstream lost since>`
//!
//! The console's connection events (`console-unreachable`, `console-reconnected`, recorded in
//! [`conn`](super::conn)) are keyed `console:<what>:<daemon>:<when the console saw it>`: they
//! are one console's observations, and another console sees them at other moments.

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{DaemonRole, EventKind, Severity};

use super::conn::console_event;
use super::renewal::NodeAlert;
use super::{Fleet, Tree};
use crate::ttl::fmt_time;

/// How long a derived key is remembered after its condition last held.
const FORGET_AFTER_SECS: i64 = 3600;

impl Fleet {
    /// Records the events that hold at `now` and were not recorded yet; returns how many.
    /// Pure: the console calls it once per second, and so does `watch`.
    pub fn derive_events(&mut self, tree: &Tree, now: DateTime<Utc>) -> usize {
        let secs = now.timestamp();
        self.derived.retain(|_, forget| *forget > secs);
        let forget = secs + FORGET_AFTER_SECS;
        let mut new = Vec::new();
        for t in &tree.nodes {
            let n = &t.node;
            // The SVID's own alert: an agent whose row shows its lost server still has a
            // renewal that is overdue, and that is the event.
            let dnow = self.daemon_now(t.source, now).timestamp();
            let Some(alert) = super::renewal::svid_alert(n, dnow) else {
                continue;
            };
            let (kind, severity, what) = match alert {
                NodeAlert::RenewalOverdue { since } => (
                    EventKind::SvidRenewalLate,
                    Severity::Warning,
                    format!("renewal overdue since {}", fmt_time(since)),
                ),
                NodeAlert::Expired { at } => (
                    EventKind::SvidExpired,
                    Severity::Error,
                    format!("expired at {} without renewal", fmt_time(at)),
                ),
                NodeAlert::ServerLost { .. } => continue,
            };
            let key = format!("console:{kind}:{}:{}", n.id, n.not_after);
            if self.derived.insert(key.clone(), forget).is_some() {
                continue;
            }
            let who = if n.spiffe_id.is_empty() {
                &n.label
            } else {
                &n.spiffe_id
            };
            let mut e = console_event(
                &self.daemons[t.source].name,
                key.clone(),
                (severity, kind),
                format!("{who}: {what}"),
                now,
            );
            e.event.node_id = n.id.clone();
            new.push(e);
        }
        for ds in &self.daemons {
            if ds.role() != DaemonRole::Downstream {
                continue;
            }
            let Some(up) = ds
                .upstream
                .as_ref()
                .filter(|u| super::conn_level(u.state_wire()) == crate::ttl::Level::Critical)
            else {
                continue;
            };
            let key = format!(
                "console:{}:{}:{}",
                EventKind::JwtUnavailable,
                ds.name,
                up.since
            );
            if self.derived.insert(key.clone(), forget).is_some() {
                continue;
            }
            let e = console_event(
                &ds.name,
                key.clone(),
                (Severity::Warning, EventKind::JwtUnavailable),
                format!(
                    "{} cannot mint JWT-SVIDs: its upstream is lost since {}",
                    ds.name,
                    fmt_time(up.since)
                ),
                now,
            );
            new.push(e);
        }
        let count = new.len();
        for e in new {
            self.push_event(e);
        }
        if count > 0 {
            self.generation += 1;
        }
        count
    }
}
