//! The words and numbers the views and the detail share: levels, countdowns, times, kinds,
//! staleness.

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::NodeKind;
use trustdeck_topology::fleet::{Level, Tree, counts_for_health};
use trustdeck_topology::ttl::{fmt_secs, remaining_fraction};

use crate::app::App;

/// A level as a symbol and a word, so that colour never carries the meaning alone.
pub fn level_word(l: Level, left: i64) -> &'static str {
    match l {
        Level::Critical if left <= 0 => "✗ expired",
        Level::Critical => "✗ critical",
        Level::Warning => "! warning",
        Level::Ok => "✓ ok",
    }
}

/// Seconds left as a countdown (`4m 10s`), or `expired`.
pub fn left_text(left: i64) -> String {
    if left <= 0 {
        "expired".to_string()
    } else {
        fmt_secs(left)
    }
}

/// `07:14:03Z` when on the same (UTC) day as `now`, else `2027-10-25`.
pub fn short_time(secs: i64, now: DateTime<Utc>) -> String {
    match DateTime::from_timestamp(secs, 0) {
        Some(t) if t.date_naive() == now.date_naive() => t.format("%H:%M:%SZ").to_string(),
        Some(t) => t.format("%Y-%m-%d").to_string(),
        None => format!("@{secs}"),
    }
}

/// The remaining fraction `frac` as a bar of `w` cells.
pub fn bar(frac: f64, w: usize) -> String {
    let full = ((frac * w as f64).round() as usize).min(w);
    let mut s = "█".repeat(full);
    s.push_str(&"░".repeat(w - full));
    s
}

/// The level of a deadline `left` seconds away: critical once passed, a warning below
/// `warn_below` seconds.
pub fn deadline_level(left: i64, warn_below: i64) -> Level {
    if left <= 0 {
        Level::Critical
    } else if left < warn_below {
        Level::Warning
    } else {
        Level::Ok
    }
}

/// The short tag of tree node `i`: `SRV`, `ROOT`, `INT`, `JWT`, `AGT`, `SVID`.
pub fn kind_tag(tree: &Tree, i: usize) -> &'static str {
    let t = &tree.nodes[i];
    match NodeKind::try_from(t.node.kind).unwrap_or(NodeKind::Unspecified) {
        NodeKind::Server => "SRV",
        NodeKind::X509Authority => match t.parent {
            Some(p) if tree.nodes[p].parent.is_none() => "ROOT",
            Some(_) => "INT",
            None => "CA",
        },
        NodeKind::JwtAuthority => "JWT",
        NodeKind::Agent => "AGT",
        NodeKind::WorkloadSvid => "SVID",
        NodeKind::Unspecified => "?",
    }
}

/// A node kind in words.
pub fn kind_name(k: i32) -> &'static str {
    match NodeKind::try_from(k).unwrap_or(NodeKind::Unspecified) {
        NodeKind::Server => "server",
        NodeKind::X509Authority => "X.509 authority",
        NodeKind::JwtAuthority => "JWT authority",
        NodeKind::Agent => "agent",
        NodeKind::WorkloadSvid => "workload SVID",
        NodeKind::Unspecified => "unknown",
    }
}

/// `STALE 40s` when daemon `d` is not live.
pub fn stale_marker(app: &App, d: usize, now: DateTime<Utc>) -> Option<String> {
    let ds = app.fleet.daemons.get(d)?;
    if ds.is_live() {
        return None;
    }
    Some(match ds.staleness(now) {
        Some(s) => format!("STALE {}", fmt_secs(s)),
        None => "STALE".to_string(),
    })
}

/// Where a node stands in its lifetime, on its daemon's clock.
#[derive(Debug, Clone, Copy)]
pub struct NodeTtl {
    /// Its level against the thresholds.
    pub level: Level,
    /// Seconds until it expires (negative once expired).
    pub left: i64,
    /// Fraction of its lifetime left.
    pub frac: f64,
    /// Whether it counts for health (old authorities do not).
    pub counts: bool,
}

/// The lifetime of tree node `i` (None: it does not expire).
pub fn node_ttl(app: &App, i: usize, now: DateTime<Utc>) -> Option<NodeTtl> {
    let t = &app.tree().nodes[i];
    if t.node.not_after <= 0 {
        return None;
    }
    let dnow = app.fleet.daemon_now(t.source, now);
    Some(NodeTtl {
        level: app.fleet.node_level(app.tree(), i, now, &app.thresholds),
        left: t.node.not_after - dnow.timestamp(),
        frac: remaining_fraction(t.node.not_before, t.node.not_after, dnow),
        counts: counts_for_health(&t.node),
    })
}
