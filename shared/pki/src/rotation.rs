//! CA rotation and TTL math: pure functions of `now`, no clocks, no I/O.
//!
//! The schedule follows SPIRE's: a successor is *prepared* (published in the bundle) once half
//! of the active authority's lifetime has passed, and *activated* (used for signing) when a sixth
//! of the lifetime (at most seven days) remains. SVIDs signed just before activation therefore
//! have at most a sixth of the CA lifetime left, which is why an SVID TTL above a sixth of the
//! CA TTL gets cut short.

use chrono::{DateTime, Duration, Utc};

/// Longest time before expiry at which a successor is activated.
pub const MAX_ACTIVATION_LEAD: Duration = Duration::days(7);

/// Validity window of an authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
}

impl Window {
    /// A window from two instants.
    pub fn new(not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> Self {
        Self {
            not_before,
            not_after,
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.not_after - self.not_before
    }

    /// When a successor should be prepared: half the lifetime.
    pub fn prepare_at(&self) -> DateTime<Utc> {
        self.not_before + self.lifetime() / 2
    }

    /// When the prepared successor should become active: a sixth of the lifetime (capped at
    /// seven days) before expiry.
    pub fn activate_at(&self) -> DateTime<Utc> {
        let lead = std::cmp::min(self.lifetime() / 6, MAX_ACTIVATION_LEAD);
        self.not_after - lead
    }

    /// Whether `now` is inside the window.
    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        self.not_before <= now && now < self.not_after
    }

    /// Whether `now` is past the activation point of this window itself: an authority this
    /// close to its expiry is never activated (it would need replacing at once).
    pub fn nearly_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.activate_at()
    }

    /// Time left at `now` (zero when expired).
    pub fn remaining(&self, now: DateTime<Utc>) -> Duration {
        std::cmp::max(self.not_after - now, Duration::zero())
    }
}

/// What the rotation loop should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No usable active authority and no usable prepared one: mint a new one and activate it
    /// at once (first start, or recovery after being down too long).
    MintAndActivate,
    /// Mint a successor and publish it in the bundle without signing with it.
    Prepare,
    /// Make the prepared successor active; the current one becomes old.
    Activate,
    /// Nothing to do until `until`.
    Idle {
        /// The next instant at which a decision may change.
        until: DateTime<Utc>,
    },
}

/// Decides the next rotation step from the active and prepared windows.
pub fn decide(now: DateTime<Utc>, active: Option<Window>, prepared: Option<Window>) -> Decision {
    let prepared_usable = prepared.filter(|w| w.contains(now) && !w.nearly_expired(now));
    match active.filter(|w| w.contains(now)) {
        None => match prepared_usable {
            Some(_) => Decision::Activate,
            None => Decision::MintAndActivate,
        },
        Some(a) => match prepared_usable {
            Some(_) if now >= a.activate_at() => Decision::Activate,
            Some(_) => Decision::Idle {
                until: a.activate_at(),
            },
            None if now >= a.prepare_at() => Decision::Prepare,
            None => Decision::Idle {
                until: a.prepare_at(),
            },
        },
    }
}

/// Caps a requested expiry at the issuer's.
pub fn cap_not_after(requested: DateTime<Utc>, issuer_not_after: DateTime<Utc>) -> DateTime<Utc> {
    std::cmp::min(requested, issuer_not_after)
}

/// The largest SVID TTL that a CA TTL supports without SVIDs being cut short after a
/// rotation: a sixth of the CA TTL.
pub fn max_recommended_svid_ttl(ca_ttl: Duration) -> Duration {
    ca_ttl / 6
}

/// A warning for an SVID TTL above a sixth of the CA TTL (SPIRE issues 5097 and 7199).
pub fn svid_ttl_warning(what: &str, svid_ttl: Duration, ca_ttl: Duration) -> Option<String> {
    let max = max_recommended_svid_ttl(ca_ttl);
    (svid_ttl > max).then(|| {
        format!(
            "{what} ({}s) exceeds one sixth of the CA TTL ({}s / 6 = {}s): SVIDs issued shortly \
             before a CA rotation will be cut to the CA's remaining lifetime",
            svid_ttl.num_seconds(),
            ca_ttl.num_seconds(),
            max.num_seconds()
        )
    })
}

/// When an SVID issued at `issued` with expiry `not_after` should be renewed: at half its
/// lifetime.
pub fn renew_at(issued: DateTime<Utc>, not_after: DateTime<Utc>) -> DateTime<Utc> {
    issued + (not_after - issued) / 2
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing but whitespace.
    #[error("empty duration")]
    Empty,
    /// A unit letter without a number before it.
    #[error("invalid duration {input:?}: expected a number before '{unit}'")]
    MissingNumber { input: String, unit: char },
    /// A unit other than ms, s, m, h or d.
    #[error("invalid duration {input:?}: unknown unit '{unit}' (use ms, s, m, h or d)")]
    UnknownUnit { input: String, unit: char },
    /// A number without a unit.
    #[error("invalid duration {input:?}: every number needs a unit (s, m, h or d), e.g. \"90s\"")]
    MissingUnit { input: String },
    /// Longer than a duration can hold (about 292 million years).
    #[error("invalid duration {input:?}: too long")]
    TooLong { input: String },
}

/// Parses durations like `500ms`, `90s`, `15m`, `1h`, `7d`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total = Duration::zero();
    let mut num = String::new();
    let mut saw_unit = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().map_err(|_| DurationError::MissingNumber {
            input: s.to_string(),
            unit: c,
        })?;
        num.clear();
        let d = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                Duration::try_milliseconds(n)
            }
            's' => Duration::try_seconds(n),
            'm' => Duration::try_minutes(n),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            _ => {
                return Err(DurationError::UnknownUnit {
                    input: s.to_string(),
                    unit: c,
                });
            }
        };
        total = d
            .and_then(|d| total.checked_add(&d))
            .ok_or_else(|| DurationError::TooLong {
                input: s.to_string(),
            })?;
        saw_unit = true;
    }
    if !num.is_empty() || !saw_unit {
        return Err(DurationError::MissingUnit {
            input: s.to_string(),
        });
    }
    Ok(total)
}

/// A duration as [`parse_duration`] reads it, in the largest unit that is exact: `500ms`,
/// `90s`, `5m`, `12h`, `7d`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.num_milliseconds();
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        0 => "0s".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// serde helper: writes a duration as text (see [`fmt_duration`]).
pub fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fmt_duration(*d))
}

/// serde helper: writes an optional duration as text (skip `None` with
/// `skip_serializing_if`).
pub fn ser_opt_duration<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

/// serde helper: a duration written as text (`"90s"`).
pub fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// serde helper: an optional duration written as text.
pub fn de_opt_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    let s = <Option<String> as serde::Deserialize>::deserialize(d)?;
    s.map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn durations_written_as_text_read_back() {
        for (d, text) in [
            (Duration::milliseconds(1500), "1500ms"),
            (Duration::seconds(90), "90s"),
            (Duration::minutes(5), "5m"),
            (Duration::hours(12), "12h"),
            (Duration::days(7), "7d"),
            (Duration::zero(), "0s"),
        ] {
            assert_eq!(fmt_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }

    #[test]
    fn window_thresholds() {
        let w = Window::new(t(0), t(600));
        assert_eq!(w.prepare_at(), t(300));
        assert_eq!(w.activate_at(), t(500));
        // Long lifetimes cap the activation lead at seven days.
        let year = Window::new(t(0), t(0) + Duration::days(365));
        assert_eq!(year.activate_at(), t(0) + Duration::days(358));
        assert_eq!(w.remaining(t(700)), Duration::zero());
        assert_eq!(w.remaining(t(100)), Duration::seconds(500));
    }

    #[test]
    fn full_rotation_cycle_with_injected_clock() {
        let a = Window::new(t(0), t(600));
        assert_eq!(decide(t(0), None, None), Decision::MintAndActivate);
        assert_eq!(
            decide(t(10), Some(a), None),
            Decision::Idle { until: t(300) }
        );
        assert_eq!(
            decide(t(299), Some(a), None),
            Decision::Idle { until: t(300) }
        );
        assert_eq!(decide(t(300), Some(a), None), Decision::Prepare);
        let b = Window::new(t(300), t(900));
        assert_eq!(
            decide(t(300), Some(a), Some(b)),
            Decision::Idle { until: t(500) }
        );
        assert_eq!(
            decide(t(499), Some(a), Some(b)),
            Decision::Idle { until: t(500) }
        );
        assert_eq!(decide(t(500), Some(a), Some(b)), Decision::Activate);
        // After activation b is active, nothing prepared.
        assert_eq!(
            decide(t(500), Some(b), None),
            Decision::Idle { until: t(600) }
        );
        assert_eq!(decide(t(600), Some(b), None), Decision::Prepare);
    }

    #[test]
    fn recovery_after_downtime() {
        let a = Window::new(t(0), t(600));
        let b = Window::new(t(300), t(900));
        // Down past the active's expiry but the prepared one still valid: activate it.
        assert_eq!(decide(t(650), Some(a), Some(b)), Decision::Activate);
        // Down past both: mint a fresh one.
        assert_eq!(decide(t(1000), Some(a), Some(b)), Decision::MintAndActivate);
        assert_eq!(decide(t(1000), Some(a), None), Decision::MintAndActivate);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::seconds(90));
        assert_eq!(
            parse_duration("250ms").unwrap(),
            Duration::milliseconds(250)
        );
        assert_eq!(
            parse_duration("1m500ms").unwrap(),
            Duration::milliseconds(60_500)
        );
        assert!(parse_duration("90").is_err());
        assert_eq!(parse_duration(" "), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("h"),
            Err(DurationError::MissingNumber { unit: 'h', .. })
        ));
        let e = parse_duration("5x").unwrap_err();
        assert!(matches!(e, DurationError::UnknownUnit { unit: 'x', .. }));
        assert!(e.to_string().contains("unknown unit 'x'"));
    }

    /// Found by the `duration` fuzz target: a number too large for its unit panicked.
    #[test]
    fn durations_out_of_range_are_errors() {
        for s in [
            "215555555551d",
            "9223372036854775807h",
            "106751991167d106751991167d",
        ] {
            let e = parse_duration(s).unwrap_err();
            assert!(matches!(e, DurationError::TooLong { .. }), "{s}: {e}");
        }
        assert_eq!(
            parse_duration("9223372036854775807ms").unwrap(),
            Duration::milliseconds(i64::MAX)
        );
    }

    #[test]
    fn a_nearly_expired_successor_is_never_activated() {
        let a = Window::new(t(0), t(600));
        // Prepared successor that (capped by its issuer) is already in its last sixth.
        let short = Window::new(t(300), t(310));
        assert!(short.nearly_expired(t(500)));
        assert_eq!(decide(t(500), Some(a), Some(short)), Decision::Prepare);
        assert_eq!(
            decide(t(650), Some(a), Some(short)),
            Decision::MintAndActivate
        );
    }

    #[test]
    fn ttl_relationships() {
        assert_eq!(cap_not_after(t(100), t(50)), t(50));
        assert_eq!(cap_not_after(t(10), t(50)), t(10));
        assert!(
            svid_ttl_warning("x509 SVID TTL", Duration::hours(1), Duration::hours(6)).is_none()
        );
        let w = svid_ttl_warning("x509 SVID TTL", Duration::hours(2), Duration::hours(6)).unwrap();
        assert!(w.contains("7200s") && w.contains("3600s"), "{w}");
        assert_eq!(renew_at(t(0), t(3600)), t(1800));
    }
}
