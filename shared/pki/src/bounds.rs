//! The allowed range of every configured lifetime and interval.
//!
//! A value outside its range is refused where it is read (config check or request), so no time
//! arithmetic on it can overflow and no daemon is started with a lifetime it cannot work with.
//! The ranges keep any instant computed from them (`now + ttl`) far inside what `chrono` and
//! X.509 times can hold.

use chrono::Duration;

use crate::rotation::fmt_duration;

/// The inclusive range a duration must fall in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

/// A CA or JWT key lifetime. The minimum leaves room for an SVID of at least a second under
/// a CA backdated for clock skew ([`crate::ca::BACKDATE`]).
pub const AUTHORITY_TTL: DurationRange = DurationRange {
    min: Duration::seconds(10),
    max: Duration::days(36_500),
};

/// An SVID lifetime (X.509 or JWT, agent or workload). X.509 times have second precision.
pub const SVID_TTL: DurationRange = DurationRange {
    min: Duration::seconds(1),
    max: Duration::days(3650),
};

/// A polling or check interval of a daemon loop.
pub const INTERVAL: DurationRange = DurationRange {
    min: Duration::milliseconds(10),
    max: Duration::hours(1),
};

/// How often a server signs a checkpoint of its audit chain (when the chain moved): short
/// enough for a test, long enough that a checkpoint a day is possible.
pub const AUDIT_CHECKPOINT_INTERVAL: DurationRange = DurationRange {
    min: Duration::milliseconds(100),
    max: Duration::days(1),
};

/// How long one datastore call may wait for the database (a connection, a statement): long
/// enough for a loaded database, short enough that callers hear "unavailable" promptly.
pub const DATASTORE_WAIT: DurationRange = DurationRange {
    min: Duration::milliseconds(500),
    max: Duration::seconds(60),
};

/// A duration outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{key} = {} is out of range: allowed {} to {}",
    fmt_duration(*value),
    fmt_duration(range.min),
    fmt_duration(range.max)
)]
pub struct OutOfRange {
    /// The config key or request field.
    pub key: String,
    pub value: Duration,
    pub range: DurationRange,
}

impl DurationRange {
    /// `value` when it is inside the range; otherwise an error naming `key` and the range.
    pub fn check(&self, key: &str, value: Duration) -> Result<Duration, OutOfRange> {
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(OutOfRange {
                key: key.to_string(),
                value,
                range: *self,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_passes_outside_names_key_and_range() {
        assert_eq!(
            SVID_TTL.check("x", Duration::seconds(1)),
            Ok(Duration::seconds(1))
        );
        assert!(SVID_TTL.check("x", Duration::days(3650)).is_ok());
        let e = SVID_TTL.check("x509_ttl", Duration::zero()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x509_ttl = 0s is out of range: allowed 1s to 3650d"
        );
        let e = AUTHORITY_TTL
            .check("ca_ttl", Duration::hours(999_999_999_999))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "ca_ttl = 999999999999h is out of range: allowed 10s to 36500d"
        );
        assert!(INTERVAL.check("i", Duration::milliseconds(9)).is_err());
        assert!(INTERVAL.check("i", Duration::milliseconds(-5)).is_err());
    }
}
