//! What `trustdeck status --output json` prints. Scripts read it, so its keys and values do
//! not change: every struct lists its fields in alphabetical order, the order the report has
//! always had.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::federation::Reported;
use super::{DaemonConn, Fleet, FleetHealth, Reach, SegmentWindow, Tree, key_policy};
use crate::ttl::{Level, Thresholds, rfc3339};

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// When the report was made (RFC 3339).
    pub at: String,
    pub daemons: Vec<DaemonReport>,
    /// What `trustdeck status` exits with (see [`Health::exit_code`](super::Health::exit_code)).
    pub exit_code: i32,
    /// Every foreign trust domain each server holds (federated or imported).
    pub federation: Vec<ForeignReport>,
    /// The fleet's state (`ok`, `warning`, `critical`, `unreachable`); `exit_code` follows it.
    pub health: FleetHealth,
    pub reasons: Vec<String>,
    /// Which sequence of its own bundle each server's isolated peers acknowledged.
    pub receipts: Vec<ReceiptReport>,
    /// One autonomous window per segment.
    pub segments: Vec<SegmentReport>,
    /// Every node with an expiry.
    pub tiers: Vec<TierReport>,
    /// Daemons the console cannot reach.
    pub unreachable: Vec<String>,
}

/// One daemon and the console's link to it.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonReport {
    /// The admin endpoint, as the fleet file gives it.
    pub admin: String,
    pub clock_skew_ms: i64,
    /// Why the console cannot reach it.
    pub error: Option<String>,
    /// When the first attempt failed, for a daemon never reached (RFC 3339).
    pub first_failure_at: Option<String>,
    /// Seconds since the console lost it (its data is last-known as of then).
    pub lost_seconds: Option<i64>,
    /// When the console lost it (RFC 3339).
    pub lost_since: Option<String>,
    pub name: String,
    pub reachable: bool,
    pub revision: u64,
    pub role: &'static str,
    pub segment: String,
    pub spiffe_id: Option<String>,
    /// The console's link: `live`, `lost`, `never_reached` or `connecting`.
    pub state: &'static str,
    /// Its upstream link, when it has one.
    pub upstream: Option<UpstreamReport>,
    /// Its trust domain, when the fleet file says it is not the fleet's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
}

/// One foreign trust domain as a server reports it, assessed at the report's time.
#[derive(Debug, Clone, Serialize)]
pub struct ForeignReport {
    /// When the server that reports it is not live: this is last-known as of then (RFC 3339).
    pub as_of: Option<String>,
    /// The server that holds it.
    pub daemon: String,
    /// RFC 3339.
    pub earliest_root_expiry: Option<String>,
    /// Seconds until the earliest root expires (negative once it has).
    pub earliest_root_expiry_seconds: Option<i64>,
    /// Federated only.
    pub endpoint_url: Option<String>,
    /// When the failures in a row began (RFC 3339).
    pub failing_since: Option<String>,
    /// Failed refreshes in a row.
    pub failures: u32,
    /// Whether the bundle held is still the bootstrap one.
    pub from_bootstrap: bool,
    pub last_error: Option<String>,
    /// The kind of the last failure (`connect`, `refused`, ...).
    pub last_failure: Option<&'static str>,
    /// The rule that refused the last fetch, when it was refused.
    pub last_refusal: Option<&'static str>,
    /// Federated: the last successful fetch; imported: the import (RFC 3339).
    pub last_success: Option<String>,
    /// Seconds since `last_success`.
    pub last_success_age_seconds: Option<i64>,
    /// When every root has expired (RFC 3339).
    pub latest_root_expiry: Option<String>,
    pub level: Level,
    /// When the next fetch is due (RFC 3339), federated only.
    pub next_refresh: Option<String>,
    /// `https_web` or `https_spiffe`, federated only.
    pub profile: Option<&'static str>,
    /// Why `level` is not ok.
    pub reasons: Vec<String>,
    pub refresh_interval_seconds: Option<i64>,
    /// The sequence held (None: no bundle held).
    pub sequence: Option<u64>,
    /// `federation` or `import`.
    pub source: &'static str,
    /// Whether the copy is stale (old beyond its refresh interval, or refreshes failing).
    pub stale: bool,
    pub trust_domain: String,
    /// The server's warnings (`refreshes keep failing`, ...).
    pub warnings: Vec<&'static str>,
}

/// An isolated peer's receipt for a server's bundle.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptReport {
    /// Whether the peer holds an older sequence than the server's own.
    pub behind: bool,
    /// The server whose bundle it acknowledged.
    pub daemon: String,
    /// The server's own bundle sequence.
    pub own_sequence: u64,
    pub peer_trust_domain: String,
    /// RFC 3339.
    pub received_at: String,
    /// The sequence the peer holds.
    pub sequence: u64,
}

/// A daemon's upstream link as it reports it.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamReport {
    pub last_bundle_sequence: u64,
    pub last_error: String,
    pub peer: String,
    /// RFC 3339.
    pub since: String,
    pub state: &'static str,
    /// Set when `state` is `stranded`: what the agent needs and the recovery.
    pub stranded: Option<super::stranded::StrandedReport>,
}

/// A segment's autonomous window, and the losses that have happened.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentReport {
    /// Agents attested to the segment's server that report it lost.
    pub agents_lost: usize,
    /// When the first of them lost it (RFC 3339).
    pub agents_lost_since: Option<String>,
    /// Agents attested to the segment's server, as far as the console knows.
    pub agents_total: usize,
    pub if_server_lost: IfServerLost,
    /// Downstream segments only.
    pub if_upstream_lost: Option<IfUpstreamLost>,
    pub role: &'static str,
    pub segment: String,
    /// The segment's server (daemon name).
    pub server: String,
    /// Whether the server is lost (by the console or by its agents): `if_server_lost` is then
    /// what is happening, not a what-if.
    pub server_lost: bool,
    /// The console's link to the server: `live`, `lost`, `never_reached` or `connecting`.
    pub server_state: &'static str,
    /// Seconds since the console lost the server (None: live, or never reached).
    pub stale_seconds: Option<i64>,
    /// Workload SVIDs of the segment past their renewal point.
    pub svids_past_renewal: usize,
    /// The upstream link's state.
    pub upstream: Option<&'static str>,
    /// Set when the server is not live: the upstream link is its last word as of then
    /// (RFC 3339).
    pub upstream_as_of: Option<String>,
    pub upstream_error: Option<String>,
    /// Whether the server reports its upstream lost: `if_upstream_lost` is then what is
    /// happening, not a what-if.
    pub upstream_lost: bool,
    /// RFC 3339.
    pub upstream_since: Option<String>,
}

/// The segment's upstream lost now.
#[derive(Debug, Clone, Serialize)]
pub struct IfUpstreamLost {
    pub jwt_stops_now: bool,
    /// Seconds from the report's time to `x509_until`.
    pub x509_seconds: Option<i64>,
    /// X.509 issuance continues until then (RFC 3339).
    pub x509_until: Option<String>,
}

/// The segment's server lost now (or since it was lost: see `server_lost`).
#[derive(Debug, Clone, Serialize)]
pub struct IfServerLost {
    /// Seconds from the report's time to `workloads_fail_at` (negative once passed).
    pub seconds: Option<i64>,
    pub workload_svids: usize,
    /// RFC 3339.
    pub workloads_fail_at: Option<String>,
}

/// One node with an expiry.
#[derive(Debug, Clone, Serialize)]
pub struct TierReport {
    /// `renewal-overdue`, `expired` or `server-lost` (an agent whose link to its server is
    /// lost), when the node has one.
    pub alert: Option<&'static str>,
    /// When the node's daemon is not live: it is last-known as of then (RFC 3339).
    pub as_of: Option<String>,
    /// The daemon it was taken from.
    pub daemon: String,
    pub id: String,
    pub key_policy: Option<KeyPolicyReport>,
    pub key_storage: Option<KeyStorageReport>,
    pub kind: &'static str,
    pub label: String,
    pub level: Level,
    /// RFC 3339.
    pub not_after: String,
    /// RFC 3339.
    pub not_before: String,
    pub parent: String,
    /// On the daemon's clock.
    pub seconds_remaining: i64,
    /// The segment whose server it is under (a node agent's SVIDs count under the segment of
    /// the server that issues them), as in every view.
    pub segment: String,
    pub spiffe_id: String,
    /// Whether the daemon it came from is unreachable now.
    pub stale: bool,
    pub state: &'static str,
    pub subject: String,
}

/// A key-policy breach.
#[derive(Debug, Clone, Serialize)]
pub struct KeyPolicyReport {
    pub breach: String,
    pub level: Level,
}

/// Where a node's key lives.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStorageReport {
    pub backend: &'static str,
    pub detail: String,
}

impl Fleet {
    /// What `trustdeck status --output json` prints.
    pub fn status_report(&self, now: DateTime<Utc>, th: &Thresholds) -> StatusReport {
        let tree = self.tree();
        let health = self.health(&tree, now, th);
        StatusReport {
            at: rfc3339(now.timestamp()),
            daemons: self.daemons.iter().map(|d| daemon_report(d, now)).collect(),
            exit_code: health.exit_code(),
            federation: self
                .foreign()
                .iter()
                .map(|r| self.foreign_report(r, now))
                .collect(),
            health: health.state(),
            reasons: health.reasons,
            receipts: self
                .receipts()
                .iter()
                .map(|r| ReceiptReport {
                    behind: super::federation::receipt_behind(r.receipt, r.own_sequence),
                    daemon: self.daemons[r.daemon].name.clone(),
                    own_sequence: r.own_sequence,
                    peer_trust_domain: r.receipt.peer_trust_domain.clone(),
                    received_at: rfc3339(r.receipt.received_at),
                    sequence: r.receipt.sequence,
                })
                .collect(),
            segments: self
                .windows(&tree, now)
                .iter()
                .map(|w| segment_report(w, now))
                .collect(),
            tiers: (0..tree.nodes.len())
                .filter(|&i| tree.nodes[i].node.not_after > 0)
                .map(|i| self.tier_report(&tree, i, now, th))
                .collect(),
            unreachable: health.unreachable,
        }
    }

    fn foreign_report(&self, r: &Reported<'_>, now: DateTime<Utc>) -> ForeignReport {
        let td = r.td;
        let a = self.assess_foreign(r, now);
        let federated = super::federation::is_federated(td);
        let time = |t: i64| (t > 0).then(|| rfc3339(t));
        let failing = td.consecutive_failures > 0;
        ForeignReport {
            as_of: self.daemons[r.daemon]
                .lost_since()
                .map(|t| rfc3339(t.timestamp())),
            daemon: self.daemons[r.daemon].name.clone(),
            earliest_root_expiry: time(td.earliest_root_expiry),
            earliest_root_expiry_seconds: a.earliest_expiry_in,
            endpoint_url: federated.then(|| td.endpoint_url.clone()),
            failing_since: time(td.failing_since),
            failures: td.consecutive_failures,
            from_bootstrap: td.from_bootstrap,
            last_error: (failing && !td.last_error.is_empty()).then(|| td.last_error.clone()),
            last_failure: failing.then(|| td.last_failure_wire().as_str()),
            last_refusal: (!td.last_refusal_wire().is_unspecified())
                .then(|| td.last_refusal_wire().as_str()),
            last_success: time(td.last_success_at),
            last_success_age_seconds: a.age,
            latest_root_expiry: time(td.latest_root_expiry),
            level: a.level,
            next_refresh: federated.then(|| rfc3339(td.next_refresh_at)),
            profile: federated.then(|| td.profile_wire().as_str()),
            reasons: a.reasons,
            refresh_interval_seconds: federated.then_some(td.refresh_interval_seconds),
            sequence: td.has_bundle.then_some(td.sequence),
            source: td.source_wire().as_str(),
            stale: a.stale,
            trust_domain: td.trust_domain.clone(),
            warnings: td.warnings_wire().iter().map(|w| w.as_str()).collect(),
        }
    }

    fn tier_report(
        &self,
        tree: &Tree,
        i: usize,
        now: DateTime<Utc>,
        th: &Thresholds,
    ) -> TierReport {
        let t = &tree.nodes[i];
        let n = &t.node;
        let ds = &self.daemons[t.source];
        TierReport {
            alert: self.node_alert(tree, i, now).map(|a| a.key()),
            as_of: ds.lost_since().map(|t| rfc3339(t.timestamp())),
            daemon: ds.name.clone(),
            id: n.id.clone(),
            key_policy: key_policy(ds.role(), n).map(|b| KeyPolicyReport {
                breach: b.to_string(),
                level: b.level,
            }),
            key_storage: n.key_storage.as_ref().map(|k| KeyStorageReport {
                backend: k.backend_wire().as_str(),
                detail: k.detail.clone(),
            }),
            kind: n.kind_wire().as_str(),
            label: n.label.clone(),
            level: self.node_level(tree, i, now, th),
            not_after: rfc3339(n.not_after),
            not_before: rfc3339(n.not_before),
            parent: n.parent.clone(),
            seconds_remaining: n.not_after - self.daemon_now(t.source, now).timestamp(),
            segment: t.segment.to_string(),
            spiffe_id: n.spiffe_id.clone(),
            stale: !ds.is_live(),
            state: n.state_wire().as_str(),
            subject: n.subject.clone(),
        }
    }
}

fn daemon_report(ds: &super::DaemonState, now: DateTime<Utc>) -> DaemonReport {
    let first_failure = match &ds.conn {
        DaemonConn::NeverReached { first_failure, .. } => Some(rfc3339(first_failure.timestamp())),
        _ => None,
    };
    DaemonReport {
        admin: ds.endpoint.clone(),
        clock_skew_ms: ds.skew_ms,
        error: ds.conn_error().map(str::to_string),
        first_failure_at: first_failure,
        lost_seconds: ds.lost_since().map(|t| (now - t).num_seconds().max(0)),
        lost_since: ds.lost_since().map(|t| rfc3339(t.timestamp())),
        name: ds.name.clone(),
        reachable: ds.is_live(),
        revision: ds.revision,
        role: ds.role().as_str(),
        segment: ds.segment().to_string(),
        spiffe_id: ds.identity.as_ref().map(|i| i.spiffe_id.clone()),
        state: Reach::of(&ds.conn).as_str(),
        upstream: ds.upstream.as_ref().map(|u| UpstreamReport {
            last_bundle_sequence: u.last_bundle_sequence,
            last_error: u.last_error.clone(),
            peer: u.peer.clone(),
            since: rfc3339(u.since),
            state: u.state_wire().as_str(),
            stranded: super::stranded::report(u),
        }),
        trust_domain: ds.trust_domain.clone(),
    }
}

fn segment_report(w: &SegmentWindow, now: DateTime<Utc>) -> SegmentReport {
    let from_now = |t: i64| t - now.timestamp();
    let up = w.upstream.as_ref();
    SegmentReport {
        agents_lost: w.agents.lost,
        agents_lost_since: w.agents.lost_since.map(rfc3339),
        agents_total: w.agents.total,
        if_server_lost: IfServerLost {
            seconds: w.workloads_fail_at.map(from_now),
            workload_svids: w.workloads,
            workloads_fail_at: w.workloads_fail_at.map(rfc3339),
        },
        if_upstream_lost: w.is_downstream().then(|| IfUpstreamLost {
            jwt_stops_now: w.jwt_stops_now,
            x509_seconds: w.x509_until.map(from_now),
            x509_until: w.x509_until.map(rfc3339),
        }),
        role: w.role.as_str(),
        segment: w.segment.clone(),
        server: w.server.clone(),
        server_lost: w.server_lost(),
        server_state: w.reach.as_str(),
        stale_seconds: w.stale_secs,
        svids_past_renewal: w.past_renewal,
        upstream: up.map(|u| u.state.as_str()),
        upstream_as_of: up.and_then(|u| u.as_of).map(rfc3339),
        upstream_error: up.and_then(|u| u.error.clone()),
        upstream_lost: up.is_some_and(|u| u.is_lost()),
        upstream_since: up.map(|u| rfc3339(u.since)),
    }
}
