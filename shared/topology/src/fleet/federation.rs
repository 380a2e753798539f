//! Other trust domains as the servers report them (the `federation` of their `Watch` stream):
//! what an operator reads of each foreign bundle, computed from `now`: the age of the last
//! success, whether the copy is stale, how long until its roots expire, and its level.
//!
//! Rules (seed 004's "bootstrap bundle staleness"):
//! - stale: a federated bundle whose last success is older than [`STALE_FACTOR`] refresh
//!   intervals, or whose refreshes keep failing ([`FAILING_AFTER`] in a row, or the server's
//!   own "refreshes keep failing" warning);
//! - warning: stale, or any warning this build does not know;
//! - critical: every root expired, or all expire within the current refresh interval (the
//!   next refresh may come too late), or the partner signs with a root our copy lacks (its
//!   SVIDs fail here now); an imported bundle whose roots all expire within a third of what
//!   they had left when it was imported, at most [`IMPORT_WARNING_SECS`], is a warning (a
//!   new file must be carried: a week ahead for roots of a year, hours ahead for a day's).

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{
    FetchFailureKind, ForeignBundleSource, ForeignTrustDomain, FreshnessWarning, PeerReceipt,
};
use trustdeck_proto::vocab::Wire;

use super::Fleet;
use crate::ttl::{Level, fmt_secs};

/// A federated bundle is stale once its last success is this many refresh intervals old.
pub const STALE_FACTOR: i64 = 3;
/// Failed refreshes in a row that make a federated bundle stale (the server's default for
/// its "refreshes keep failing" warning).
pub const FAILING_AFTER: u32 = 3;
/// An imported bundle whose roots all expire within this long (or within a third of what
/// they had left at its import, when that is shorter) is a warning.
pub const IMPORT_WARNING_SECS: i64 = 7 * 24 * 3600;

/// How long ahead of its roots' expiry an import is warned: a third of what they had left
/// when it was imported (`age` seconds ago, `left` seconds to go), at most
/// [`IMPORT_WARNING_SECS`].
fn import_warning_secs(age: Option<i64>, left: i64) -> i64 {
    match age {
        Some(a) => ((a + left) / 3).min(IMPORT_WARNING_SECS),
        None => IMPORT_WARNING_SECS,
    }
}

/// What an operator reads of one foreign trust domain at `now` (the daemon's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// Seconds since the last success (an import: since it was imported).
    pub age: Option<i64>,
    /// Whether our copy is stale (see the module's rules).
    pub stale: bool,
    /// Seconds until the earliest root expires (negative once it has).
    pub earliest_expiry_in: Option<i64>,
    /// Seconds until the last root expires (negative once all have).
    pub all_expire_in: Option<i64>,
    pub level: Level,
    /// Why the level is not ok, in words.
    pub reasons: Vec<String>,
}

/// Whether it is federated (fetched from an endpoint) rather than imported by hand.
pub fn is_federated(td: &ForeignTrustDomain) -> bool {
    td.source_wire() == ForeignBundleSource::Federation
}

/// The words of the last failure: its kind, the refusal or HTTP status, and the text.
pub fn failure_words(td: &ForeignTrustDomain) -> String {
    let kind = td.last_failure_wire();
    let what = match kind.known() {
        Some(FetchFailureKind::Refused) => format!("refused: {}", td.last_refusal_wire()),
        Some(FetchFailureKind::HttpStatus) => format!("HTTP {}", td.last_http_status),
        _ => kind.to_string(),
    };
    match (what.is_empty(), td.last_error.is_empty()) {
        (true, _) => td.last_error.clone(),
        (false, true) => what,
        (false, false) => format!("{what}: {}", td.last_error),
    }
}

/// The assessment of `td` at `now` (the daemon's clock).
pub fn assess(td: &ForeignTrustDomain, now: DateTime<Utc>) -> Assessment {
    let now = now.timestamp();
    let federated = is_federated(td);
    let interval = td.refresh_interval_seconds.max(0);
    let age = (td.last_success_at > 0).then(|| (now - td.last_success_at).max(0));
    let warnings = td.warnings_wire();
    let failing = td.consecutive_failures >= FAILING_AFTER
        || warnings.contains(&Wire::Known(FreshnessWarning::RefreshesFailing));
    let too_old = interval > 0 && age.is_some_and(|a| a > STALE_FACTOR * interval);
    let stale = federated && (failing || too_old);
    let expiry = |t: i64| (t > 0).then(|| t - now);
    let (earliest, all) = (
        expiry(td.earliest_root_expiry),
        expiry(td.latest_root_expiry),
    );
    let mut level = Level::Ok;
    let mut reasons = Vec::new();
    let mut add = |l: Level, r: String| {
        level = level.max(l);
        reasons.push(r);
    };
    match all {
        Some(left) if left <= 0 => add(Level::Critical, "every root expired".into()),
        Some(left) if federated && left <= interval => add(
            Level::Critical,
            format!(
                "every root expires in {}, before the next refresh",
                fmt_secs(left)
            ),
        ),
        Some(left) if !federated && left <= import_warning_secs(age, left) => add(
            Level::Warning,
            format!(
                "every root expires in {}: import a newer bundle",
                fmt_secs(left)
            ),
        ),
        _ => {}
    }
    for w in &warnings {
        match w.known() {
            Some(FreshnessWarning::MissingSigningRoot) => add(
                Level::Critical,
                format!(
                    "the partner signs with a root our copy lacks ({})",
                    td.missing_root_issuer
                ),
            ),
            Some(FreshnessWarning::NoRelationship) => add(
                Level::Warning,
                "its federation relationship was deleted: nothing refreshes it \
                 (create it again, or `bundle forget`)"
                    .into(),
            ),
            // Told below with the failures.
            Some(FreshnessWarning::RefreshesFailing | FreshnessWarning::Unspecified) => {}
            None => add(Level::Warning, format!("warning {w}")),
        }
    }
    if failing {
        let why = match failure_words(td) {
            w if w.is_empty() => String::new(),
            w => format!(" ({w})"),
        };
        add(
            Level::Warning,
            format!("{} refreshes failed in a row{why}", td.consecutive_failures),
        );
    } else if too_old && let Some(a) = age {
        add(
            Level::Warning,
            format!(
                "stale: last success {} ago, refresh interval {}",
                fmt_secs(a),
                fmt_secs(interval)
            ),
        );
    }
    Assessment {
        age,
        stale,
        earliest_expiry_in: earliest,
        all_expire_in: all,
        level,
        reasons,
    }
}

/// A peer's receipt beside our current sequence.
pub fn receipt_behind(r: &PeerReceipt, own_sequence: u64) -> bool {
    r.sequence < own_sequence
}

/// One foreign trust domain with the daemon that reported it.
#[derive(Debug, Clone, Copy)]
pub struct Reported<'a> {
    /// Index of the daemon in the fleet.
    pub daemon: usize,
    pub td: &'a ForeignTrustDomain,
}

/// One receipt with the daemon that reported it and that daemon's own sequence.
#[derive(Debug, Clone, Copy)]
pub struct ReportedReceipt<'a> {
    pub daemon: usize,
    pub receipt: &'a PeerReceipt,
    pub own_sequence: u64,
}

impl Fleet {
    /// Every foreign trust domain every server reports, in fleet order.
    pub fn foreign(&self) -> Vec<Reported<'_>> {
        self.daemons
            .iter()
            .enumerate()
            .flat_map(|(daemon, d)| {
                d.federation
                    .iter()
                    .flat_map(|f| f.trust_domains.iter())
                    .map(move |td| Reported { daemon, td })
            })
            .collect()
    }

    /// Every receipt every server reports, in fleet order.
    pub fn receipts(&self) -> Vec<ReportedReceipt<'_>> {
        self.daemons
            .iter()
            .enumerate()
            .flat_map(|(daemon, d)| {
                d.federation.iter().flat_map(move |f| {
                    f.receipts.iter().map(move |receipt| ReportedReceipt {
                        daemon,
                        receipt,
                        own_sequence: f.own_sequence,
                    })
                })
            })
            .collect()
    }

    /// The assessment of `r` at console time `now`, on its daemon's clock.
    pub fn assess_foreign(&self, r: &Reported<'_>, now: DateTime<Utc>) -> Assessment {
        assess(r.td, self.daemon_now(r.daemon, now))
    }
}

#[cfg(test)]
#[path = "federation_tests.rs"]
mod tests;
