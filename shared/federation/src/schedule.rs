//! When a partner's bundle is fetched next.
//!
//! Every [`refresh_interval`]: the bundle's `spiffe_refresh_hint` when it has one above zero,
//! else SPIRE's rule (`pkg/common/bundleutil/refreshhint.go`): a tenth of the shortest
//! lifetime (notAfter − notBefore) among its X.509 authorities; either way at least
//! [`RefreshPolicy::minimum`] (SPIRE: one minute). After failures the next try comes sooner,
//! doubling from [`RefreshPolicy::backoff_start`] up to the interval ([`retry_delay`]).

use chrono::Duration;
use trustdeck_spiffe::Bundle;

/// SPIRE's smallest refresh interval (`MinimumRefreshHint`).
pub const SPIRE_MINIMUM_REFRESH: Duration = Duration::minutes(1);

/// No refresh interval is longer, whatever a partner's hint says (the most the bundle
/// endpoint here serves as its own hint).
pub const MAXIMUM_REFRESH: Duration = Duration::days(7);

/// The knobs of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// No refresh interval is shorter (SPIRE: one minute; tests and demos lower it).
    pub minimum: Duration,
    /// The first retry after a failure comes this soon; each further failure doubles it, up
    /// to the refresh interval.
    pub backoff_start: Duration,
    /// After this many failures in a row, "refreshes keep failing" is shown.
    pub failing_after: u32,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            minimum: SPIRE_MINIMUM_REFRESH,
            backoff_start: Duration::seconds(5),
            failing_after: 3,
        }
    }
}

/// Where a refresh interval came from (shown to the operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalSource {
    /// The bundle's `spiffe_refresh_hint`.
    Hint,
    /// A tenth of the shortest X.509 authority lifetime.
    ShortestRoot,
    /// The policy's minimum (raised to it, or nothing else to go by).
    Minimum,
    /// [`MAXIMUM_REFRESH`] (a longer hint or lifetime, lowered to it).
    Maximum,
}

/// How often a partner's bundle is fetched, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// The interval.
    pub every: Duration,
    /// Where it came from.
    pub source: IntervalSource,
}

/// The refresh interval for a partner whose bundle we hold is `held` (`None`: nothing held,
/// the minimum).
pub fn refresh_interval(held: Option<&Bundle>, policy: &RefreshPolicy) -> Interval {
    let by = |every: Duration, source| {
        if every > MAXIMUM_REFRESH {
            // A partner's hint never puts its next refresh out of reach (seed 004: a stale
            // bundle breaks federation at the partner's next rotation).
            Interval {
                every: MAXIMUM_REFRESH,
                source: IntervalSource::Maximum,
            }
        } else if every < policy.minimum {
            Interval {
                every: policy.minimum,
                source: IntervalSource::Minimum,
            }
        } else {
            Interval { every, source }
        }
    };
    let Some(b) = held else {
        return by(Duration::zero(), IntervalSource::Minimum);
    };
    if let Some(hint) = b.refresh_hint_secs.filter(|h| *h > 0) {
        let secs = i64::try_from(hint).unwrap_or(i64::MAX / 1000);
        let every = Duration::try_seconds(secs).unwrap_or(Duration::MAX);
        return by(every, IntervalSource::Hint);
    }
    let shortest = b
        .x509_authorities
        .iter()
        .filter_map(|der| trustdeck_spiffe::x509::cert_validity(der).ok())
        .map(|(nb, na)| na - nb)
        .min();
    match shortest {
        Some(l) => by(l / 10, IntervalSource::ShortestRoot),
        None => by(Duration::zero(), IntervalSource::Minimum),
    }
}

/// How long after the `failures`-th failure in a row (1 for the first) the next try comes:
/// `backoff_start` doubled per further failure, never longer than `interval`.
pub fn retry_delay(failures: u32, interval: Duration, policy: &RefreshPolicy) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let delay = policy
        .backoff_start
        .checked_mul(1 << doublings)
        .unwrap_or(interval);
    delay.min(interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn a_huge_hint_is_capped() {
        let td = trustdeck_spiffe::TrustDomain::parse("partner.example").expect("td");
        let mut held = trustdeck_spiffe::bundle::Bundle::new(td);
        held.refresh_hint_secs = Some(10_000_000_000_000);
        let i = refresh_interval(Some(&held), &policy());
        assert_eq!(
            (i.every, i.source),
            (MAXIMUM_REFRESH, IntervalSource::Maximum)
        );
    }

    fn policy() -> RefreshPolicy {
        RefreshPolicy::default()
    }

    #[test]
    fn the_hint_is_used_when_present() {
        let b = bundle(&td("p.test"), &[], 1, Some(300));
        assert_eq!(
            refresh_interval(Some(&b), &policy()),
            Interval {
                every: Duration::seconds(300),
                source: IntervalSource::Hint
            }
        );
    }

    #[test]
    fn a_hint_below_the_minimum_is_raised_to_it() {
        let b = bundle(&td("p.test"), &[], 1, Some(5));
        assert_eq!(
            refresh_interval(Some(&b), &policy()),
            Interval {
                every: Duration::minutes(1),
                source: IntervalSource::Minimum
            }
        );
        let fast = RefreshPolicy {
            minimum: Duration::seconds(1),
            ..policy()
        };
        assert_eq!(
            refresh_interval(Some(&b), &fast).every,
            Duration::seconds(5)
        );
    }

    #[test]
    fn without_a_hint_a_tenth_of_the_shortest_root_lifetime() {
        let t = td("p.test");
        let (long, _) = root(&t, Duration::days(10));
        let (short, _) = root(&t, Duration::hours(20));
        let b = bundle(&t, &[&long, &short], 1, None);
        assert_eq!(
            refresh_interval(Some(&b), &policy()),
            Interval {
                every: Duration::hours(2),
                source: IntervalSource::ShortestRoot
            }
        );
        // A zero hint counts as none (as in SPIRE).
        let zero = bundle(&t, &[&long], 1, Some(0));
        assert_eq!(
            refresh_interval(Some(&zero), &policy()).every,
            Duration::days(1)
        );
    }

    #[test]
    fn without_a_hint_at_least_a_minute() {
        let t = td("p.test");
        let (r, _) = root(&t, Duration::minutes(5));
        let b = bundle(&t, &[&r], 1, None);
        assert_eq!(
            refresh_interval(Some(&b), &policy()),
            Interval {
                every: Duration::minutes(1),
                source: IntervalSource::Minimum
            }
        );
        let jwt_only = bundle(&t, &[], 1, None);
        assert_eq!(
            refresh_interval(Some(&jwt_only), &policy()).every,
            Duration::minutes(1)
        );
        assert_eq!(
            refresh_interval(None, &policy()).every,
            Duration::minutes(1)
        );
    }

    #[test]
    fn retries_back_off_up_to_the_interval() {
        let every = Duration::minutes(5);
        let got: Vec<i64> = (1..=8)
            .map(|n| retry_delay(n, every, &policy()).num_seconds())
            .collect();
        assert_eq!(got, vec![5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(retry_delay(u32::MAX, every, &policy()), every);
        assert_eq!(
            retry_delay(1, Duration::seconds(2), &policy()),
            Duration::seconds(2)
        );
    }
}
