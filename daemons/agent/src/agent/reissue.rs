//! The agent's side of a taint (decisions in [`super::taint`]): take the server's tainted
//! set, drop cached JWT-SVIDs of tainted kids, renew the agent SVID at once when its chain
//! is tainted, pick the workload SVIDs to re-issue and record the outcome with an event;
//! and the held-SVID report sent with every sync.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{EventKind, Severity};
use trustdeck_proto::node::{HeldSvids, TaintedKeys};

use super::taint::{AGENT_SVID, TaintTracker, held_report, held_x509};
use super::{Agent, AgentError};
use crate::cache::{Cache, WorkloadSvid};

impl Agent {
    fn tracker(&self) -> std::sync::MutexGuard<'_, TaintTracker> {
        self.taint.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the tainted set the server sent (with an attestation or a sync) and drops the
    /// cached JWT-SVIDs signed by a tainted kid: the next request mints one anew.
    pub(super) fn take_tainted(&self, t: TaintedKeys, now: DateTime<Utc>) {
        let kids = t.jwt_kids.clone();
        if self.tracker().set(t) {
            tracing::info!(tainted = ?self.tracker().tainted(), "server published tainted keys");
        }
        if kids.is_empty() {
            return;
        }
        let dropped = self
            .jwt_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drop_kids(&kids);
        if dropped > 0 {
            let msg = format!(
                "dropped {dropped} cached JWT-SVIDs signed by tainted kid(s) {}; the next request mints anew",
                kids.join(", ")
            );
            tracing::info!("{msg}");
            self.hub
                .event(Severity::Info, EventKind::TaintReissued, msg, "", now);
        }
    }

    /// Renews the agent SVID at once when its chain holds a tainted key (and a retry is due).
    pub(super) async fn renew_if_tainted(&self, now: DateTime<Utc>) -> Result<(), AgentError> {
        let old = self
            .svid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| s.key_ids.clone());
        let Some(old) = old.filter(|k| self.tracker().due(AGENT_SVID, k, now)) else {
            return Ok(());
        };
        self.renew_agent_svid().await?;
        let new = self
            .svid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| s.key_ids.clone())
            .unwrap_or_default();
        self.tracker().reissued(AGENT_SVID, &new, now);
        self.reissue_event("agent SVID", &[old], now);
        Ok(())
    }

    /// The entry ids of the workload SVIDs in `cache` to re-issue now for a taint.
    pub(super) fn taint_due(&self, cache: &Cache, now: DateTime<Utc>) -> HashSet<String> {
        let tr = self.tracker();
        cache
            .svids
            .iter()
            .filter(|(id, s)| tr.due(id, &s.key_ids, now))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Records the re-issue of the SVIDs of `due` among `fresh` (replacing those in `cache`)
    /// and forgets the SVIDs of entries no longer synced.
    pub(super) fn taint_reissued(
        &self,
        cache: &Cache,
        due: &HashSet<String>,
        fresh: &[Arc<WorkloadSvid>],
        live: impl Fn(&str) -> bool,
        now: DateTime<Utc>,
    ) {
        let mut old = Vec::new();
        {
            let mut tr = self.tracker();
            for s in fresh.iter().filter(|s| due.contains(&s.entry_id)) {
                tr.reissued(&s.entry_id, &s.key_ids, now);
                if let Some(prev) = cache.svids.get(&s.entry_id) {
                    old.push(prev.key_ids.clone());
                }
            }
            tr.retain(live);
        }
        if !old.is_empty() {
            self.reissue_event("workload SVIDs", &old, now);
        }
    }

    /// An event (and a log line) per tainted key the re-issued SVIDs (`old` chains) chained to.
    fn reissue_event(&self, what: &str, old: &[Vec<String>], now: DateTime<Utc>) {
        let counts = self
            .tracker()
            .counts_by_key(old.iter().map(|k| k.as_slice()));
        for (key, n) in counts {
            let msg = format!("re-issued {n} {what} chaining to tainted key {key}");
            tracing::info!("{msg}");
            self.hub
                .event(Severity::Info, EventKind::TaintReissued, msg, "", now);
        }
    }

    /// What the agent holds now: its own SVID, its workload X.509-SVIDs and its cached
    /// JWT-SVIDs.
    pub(super) fn held(&self, now: DateTime<Utc>) -> HeldSvids {
        let own = self
            .svid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| held_x509(s.id.as_str(), &s.key_ids, s.not_after));
        let cache = self.cache();
        let workloads = cache
            .svids
            .values()
            .map(|s| held_x509(s.spiffe_id.as_str(), &s.key_ids, s.not_after));
        let jwts: Vec<(String, i64)> = self
            .jwt_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .held()
            .map(|(k, t)| (k.to_string(), t))
            .collect();
        held_report(own.into_iter().chain(workloads), jwts, now)
    }

    /// When the next re-issue of an SVID that came back still tainted falls due.
    pub(super) fn next_taint_retry(&self) -> Option<DateTime<Utc>> {
        self.tracker().next_retry()
    }
}
