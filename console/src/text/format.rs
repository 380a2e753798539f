//! The words and numbers the views and the detail share: levels, countdowns, times, kinds,
//! staleness.

use chrono::{DateTime, Datelike, Utc};
use trustdeck_proto::admin::NodeKind;
use trustdeck_topology::fleet::{Level, Tree, counts_for_health};
use trustdeck_topology::ttl::{fmt_secs, remaining_fraction};

use super::Role;
use super::glyphs::Glyphs;
use crate::app::App;

/// A level as a symbol and a word, so that colour never carries the meaning alone.
pub fn level_word(l: Level, left: i64, g: &Glyphs) -> String {
    let word = match l {
        Level::Critical if left <= 0 => "expired",
        Level::Critical => "critical",
        Level::Warning => "warning",
        Level::Ok => "ok",
    };
    g.tagged(g.level(l), word)
}

/// Seconds left as a countdown (`4m 10s`), or `expired`.
pub fn left_text(left: i64) -> String {
    if left <= 0 {
        "expired".to_string()
    } else {
        fmt_secs(left)
    }
}

/// A time in 10 columns: `07:14:03Z` on the same (UTC) day as `now`, `00:33Z +1d` within a
/// day after it (past midnight: the date alone would hide that it is near), else
/// `2027-10-25`.
pub fn short_time(secs: i64, now: DateTime<Utc>) -> String {
    let ahead = secs - now.timestamp();
    match DateTime::from_timestamp(secs, 0) {
        Some(t) if t.date_naive() == now.date_naive() => t.format("%H:%M:%SZ").to_string(),
        Some(t) if (1..DAY).contains(&ahead) => t.format("%H:%MZ +1d").to_string(),
        Some(t) => t.format("%Y-%m-%d").to_string(),
        None => format!("@{secs}"),
    }
}

/// A time of day that is never dropped: `07:14Z` (`07:14:03Z` with `seconds`) on the same
/// (UTC) day as `now`, else with its date, `11-25 07:14Z` (or the year too,
/// `2027-11-25 07:14Z`, in another year).
pub fn clock_time(secs: i64, now: DateTime<Utc>, seconds: bool) -> String {
    let hm = if seconds { "%H:%M:%SZ" } else { "%H:%MZ" };
    match DateTime::from_timestamp(secs, 0) {
        Some(t) if t.date_naive() == now.date_naive() => t.format(hm).to_string(),
        Some(t) if t.year() == now.year() => t.format(&format!("%m-%d {hm}")).to_string(),
        Some(t) => t.format(&format!("%Y-%m-%d {hm}")).to_string(),
        None => format!("@{secs}"),
    }
}

const DAY: i64 = 86_400;

/// The remaining fraction `frac` as a bar of `w` cells.
pub fn bar(frac: f64, w: usize, g: &Glyphs) -> String {
    let full = ((frac * w as f64).round() as usize).min(w);
    let mut s = g.bar_full.repeat(full);
    s.push_str(&g.bar_empty.repeat(w - full));
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

/// `STALE 40s` when daemon `d` is not live: its data is last-known, as of the moment the
/// console lost it (the age counts from then).
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

/// The state cell of tree node `i`: its alert (`renewal overdue`, `expired`, `server lost`),
/// else `STALE …` when its daemon is not live, else its state.
pub fn state_cell(app: &App, i: usize, now: DateTime<Utc>) -> (String, Role) {
    let t = &app.tree().nodes[i];
    if let Some(a) = app.fleet.node_alert(app.tree(), i, now) {
        return (a.as_str().to_string(), Role::Level(a.level()));
    }
    match stale_marker(app, t.source, now) {
        Some(s) => (s, Role::Stale),
        None => (t.node.state_wire().as_str().to_string(), Role::Plain),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn short_time_keeps_a_near_expiry_readable_past_midnight() {
        let now = at("2026-11-24T23:40:00Z");
        let t = |s: &str| at(s).timestamp();
        assert_eq!(short_time(t("2026-11-24T23:50:00Z"), now), "23:50:00Z");
        // 53 minutes away, but tomorrow: not just the date.
        assert_eq!(short_time(t("2026-11-25T00:33:00Z"), now), "00:33Z +1d");
        assert_eq!(short_time(t("2026-11-25T23:39:00Z"), now), "23:39Z +1d");
        assert_eq!(short_time(t("2026-11-26T00:00:00Z"), now), "2026-11-26");
        assert_eq!(short_time(t("2026-11-23T12:00:00Z"), now), "2026-11-23");
        assert!(short_time(t("2026-11-25T23:39:00Z"), now).len() <= 10);
    }

    #[test]
    fn clock_time_always_has_the_time_of_day() {
        let now = at("2026-11-24T23:40:00Z");
        let t = |s: &str| at(s).timestamp();
        assert_eq!(clock_time(t("2026-11-24T23:50:10Z"), now, false), "23:50Z");
        assert_eq!(
            clock_time(t("2026-11-24T23:50:10Z"), now, true),
            "23:50:10Z"
        );
        assert_eq!(
            clock_time(t("2026-11-25T07:14:00Z"), now, true),
            "11-25 07:14:00Z"
        );
        assert_eq!(
            clock_time(t("2027-01-02T07:14:00Z"), now, false),
            "2027-01-02 07:14Z"
        );
    }
}
