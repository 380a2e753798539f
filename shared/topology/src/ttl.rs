//! Remaining-lifetime math and thresholds, as pure functions of `now`.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Health level, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Within thresholds.
    #[default]
    Ok,
    /// A warning threshold is crossed.
    Warning,
    /// A critical threshold is crossed (or something already expired or is lost).
    Critical,
}

impl Level {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }
}

/// When a certificate's remaining lifetime counts as a warning or critical, as a fraction of
/// its whole lifetime. The defaults sit below the rotation points (SVIDs renew at 1/2, CAs
/// hand over at 5/6), so a fleet that rotates on schedule is healthy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Remaining fraction below which a tier is a warning.
    pub warn_fraction: f64,
    /// Remaining fraction below which a tier is critical.
    pub crit_fraction: f64,
    /// Flag CA keys outside an HSM (tier 0 critical, tier 1 warning).
    pub key_policy: bool,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            warn_fraction: 0.10,
            crit_fraction: 0.05,
            key_policy: true,
        }
    }
}

/// Remaining fraction of the lifetime `[not_before, not_after]` at `now`, in `[0, 1]`.
pub fn remaining_fraction(not_before: i64, not_after: i64, now: DateTime<Utc>) -> f64 {
    let life = (not_after - not_before).max(1) as f64;
    ((not_after - now.timestamp()) as f64 / life).clamp(0.0, 1.0)
}

/// Seconds until `not_after` (negative once expired).
pub fn remaining_secs(not_after: i64, now: DateTime<Utc>) -> i64 {
    not_after - now.timestamp()
}

/// The level of a certificate's remaining lifetime.
pub fn level(not_before: i64, not_after: i64, now: DateTime<Utc>, th: &Thresholds) -> Level {
    if remaining_secs(not_after, now) <= 0 {
        return Level::Critical;
    }
    let f = remaining_fraction(not_before, not_after, now);
    if f < th.crit_fraction {
        Level::Critical
    } else if f < th.warn_fraction {
        Level::Warning
    } else {
        Level::Ok
    }
}

/// A compact duration: `2d 03h`, `3h 12m`, `12m 05s`, `45s`; negative as `-12m 05s`.
pub fn fmt_secs(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let s = secs.unsigned_abs();
    let (d, h, m, sec) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60, s % 60);
    let body = if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    };
    format!("{sign}{body}")
}

/// An absolute time as the console shows it: `2026-11-24 06:12:03Z`.
pub fn fmt_time(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("@{secs}"))
}

/// RFC 3339, for JSON output.
pub fn rfc3339(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn levels_follow_fractions() {
        let th = Thresholds::default();
        assert_eq!(level(0, 1000, at(500), &th), Level::Ok);
        assert_eq!(level(0, 1000, at(850), &th), Level::Ok); // a CA just before hand-over
        assert_eq!(level(0, 1000, at(920), &th), Level::Warning);
        assert_eq!(level(0, 1000, at(960), &th), Level::Critical);
        assert_eq!(level(0, 1000, at(1000), &th), Level::Critical);
        assert_eq!(level(0, 1000, at(5000), &th), Level::Critical);
    }

    #[test]
    fn fraction_is_clamped() {
        assert_eq!(remaining_fraction(100, 200, at(0)), 1.0);
        assert_eq!(remaining_fraction(100, 200, at(150)), 0.5);
        assert_eq!(remaining_fraction(100, 200, at(300)), 0.0);
        assert_eq!(remaining_fraction(100, 100, at(100)), 0.0);
    }

    #[test]
    fn durations_are_compact() {
        assert_eq!(fmt_secs(45), "45s");
        assert_eq!(fmt_secs(725), "12m 05s");
        assert_eq!(fmt_secs(3 * 3600 + 12 * 60), "3h 12m");
        assert_eq!(fmt_secs(2 * 86_400 + 3 * 3600 + 5), "2d 03h");
        assert_eq!(fmt_secs(-725), "-12m 05s");
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
