//! What the fleet below this server holds: every agent and downstream server reports its
//! live SVIDs ([`HeldSvids`]) with each sync, a report replacing the reporter's last one.
//! The server answers "how many live SVIDs chain to authority K right now" (authority
//! `revoke` refuses while any do) and passes the union upward when it is a downstream.
//!
//! Pure: no I/O, `now` a parameter. Memory is bounded by the reporters (attested nodes and
//! downstreams, each authenticated) times [`MAX_HELD`] per report.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use trustdeck_proto::held::{HELD_BUDGET_BYTES, compact, count_of};
use trustdeck_proto::node::{HeldSvid, HeldSvids, KeyKind};

/// At most this many SVIDs in one report.
pub const MAX_HELD: usize = 100_000;
/// At most this many key ids on one SVID (a chain this deep is not a SPIFFE chain).
pub const MAX_KEY_IDS: usize = 16;
/// At most this many bytes in one key id or SPIFFE ID of a report.
pub const MAX_FIELD_BYTES: usize = 2048;

/// Why a report was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CensusError {
    #[error("held-SVID report of {0} SVIDs; at most {MAX_HELD}")]
    TooMany(usize),
    #[error("held SVID {index} names {count} key ids; at most {MAX_KEY_IDS}")]
    TooManyKeyIds { index: usize, count: usize },
    #[error("held SVID {index} has a field longer than {MAX_FIELD_BYTES} bytes")]
    FieldTooLong { index: usize },
    #[error("held SVID {index} has no kind")]
    NoKind { index: usize },
}

/// Checks a report's bounds before it is stored.
pub fn validate(report: &HeldSvids) -> Result<(), CensusError> {
    if report.svids.len() > MAX_HELD {
        return Err(CensusError::TooMany(report.svids.len()));
    }
    for (index, s) in report.svids.iter().enumerate() {
        if s.key_ids.len() > MAX_KEY_IDS {
            return Err(CensusError::TooManyKeyIds {
                index,
                count: s.key_ids.len(),
            });
        }
        let long = |f: &str| f.len() > MAX_FIELD_BYTES;
        if long(&s.spiffe_id) || s.key_ids.iter().any(|k| long(k)) {
            return Err(CensusError::FieldTooLong { index });
        }
        if !matches!(s.kind(), KeyKind::X509 | KeyKind::Jwt) {
            return Err(CensusError::NoKind { index });
        }
    }
    Ok(())
}

/// The latest report of every reporter.
#[derive(Debug, Default)]
pub struct Census {
    reports: Mutex<HashMap<String, Vec<HeldSvid>>>,
}

fn live(s: &HeldSvid, now: DateTime<Utc>) -> bool {
    s.not_after > now.timestamp()
}

impl Census {
    /// Replaces `reporter`'s report (a node's or downstream's SPIFFE ID) with `report`,
    /// keeping only the SVIDs still live at `now`. The caller checked it with [`validate`].
    pub fn record(&self, reporter: &str, report: HeldSvids, now: DateTime<Utc>) {
        let svids: Vec<HeldSvid> = report.svids.into_iter().filter(|s| live(s, now)).collect();
        let mut reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        if svids.is_empty() {
            reports.remove(reporter);
        } else {
            reports.insert(reporter.to_string(), svids);
        }
    }

    /// Forgets a reporter (an evicted agent).
    pub fn forget(&self, reporter: &str) {
        let mut reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        reports.remove(reporter);
    }

    /// How many SVIDs reported and live at `now` chain to the authority `key_id` of `kind`.
    pub fn live_chaining_to(&self, kind: KeyKind, key_id: &str, now: DateTime<Utc>) -> u32 {
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        let n: u64 = reports
            .values()
            .flatten()
            .filter(|s| live(s, now) && s.kind() == kind && s.key_ids.iter().any(|k| k == key_id))
            .map(count_of)
            .sum();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Every live SVID of every report, then `own` (what this server itself holds): the
    /// report a downstream server sends its upstream, within [`HELD_BUDGET_BYTES`]
    /// ([`compact`]: merged by key ids, every SVID still counted) and at most [`MAX_HELD`]
    /// entries, those expiring last kept, so that what is cut is what stops counting first.
    pub fn forward(&self, own: Vec<HeldSvid>, now: DateTime<Utc>) -> HeldSvids {
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        let mut svids: Vec<HeldSvid> = reports
            .values()
            .flatten()
            .filter(|s| live(s, now))
            .cloned()
            .chain(own.into_iter().filter(|s| live(s, now)))
            .collect();
        if svids.len() > MAX_HELD {
            svids.sort_by_key(|s| std::cmp::Reverse(s.not_after));
            svids.truncate(MAX_HELD);
        }
        compact(HeldSvids { svids }, HELD_BUDGET_BYTES)
    }

    /// Every live reported SVID with its reporter, for checks over the whole census.
    pub fn each_live(&self, now: DateTime<Utc>, mut f: impl FnMut(&str, &HeldSvid)) {
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        for (reporter, svids) in reports.iter() {
            for s in svids.iter().filter(|s| live(s, now)) {
                f(reporter, s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + s, 0).expect("time")
    }

    fn held(kind: KeyKind, id: &str, keys: &[&str], not_after: i64) -> HeldSvid {
        HeldSvid {
            kind: kind.into(),
            spiffe_id: id.into(),
            key_ids: keys.iter().map(|k| k.to_string()).collect(),
            not_after: t(not_after).timestamp(),
            count: 0,
        }
    }

    fn report(svids: Vec<HeldSvid>) -> HeldSvids {
        HeldSvids { svids }
    }

    #[test]
    fn counts_live_svids_chaining_to_a_key_across_reporters() {
        let c = Census::default();
        c.record(
            "agent-a",
            report(vec![
                held(KeyKind::X509, "spiffe://td/w1", &["int1", "root1"], 100),
                held(KeyKind::X509, "spiffe://td/w2", &["root2"], 100),
                held(KeyKind::Jwt, "spiffe://td/w1", &["kid1"], 100),
            ]),
            t(0),
        );
        c.record(
            "downstream-b",
            report(vec![held(KeyKind::X509, "spiffe://td/w3", &["root1"], 50)]),
            t(0),
        );
        assert_eq!(c.live_chaining_to(KeyKind::X509, "root1", t(10)), 2);
        assert_eq!(c.live_chaining_to(KeyKind::X509, "int1", t(10)), 1);
        assert_eq!(c.live_chaining_to(KeyKind::Jwt, "kid1", t(10)), 1);
        assert_eq!(
            c.live_chaining_to(KeyKind::X509, "kid1", t(10)),
            0,
            "kinds do not mix"
        );
        // An SVID stops counting when it expires.
        assert_eq!(c.live_chaining_to(KeyKind::X509, "root1", t(50)), 1);
        // A new report replaces the old one; an empty one removes the reporter.
        c.record("agent-a", report(vec![]), t(60));
        assert_eq!(c.live_chaining_to(KeyKind::X509, "root1", t(60)), 0);
        c.forget("downstream-b");
        assert_eq!(c.each_count(t(0)), 0);
    }

    impl Census {
        fn each_count(&self, now: DateTime<Utc>) -> usize {
            let mut n = 0;
            self.each_live(now, |_, _| n += 1);
            n
        }
    }

    #[test]
    fn an_aggregate_entry_counts_every_svid_it_stands_for() {
        let c = Census::default();
        let mut merged = held(KeyKind::X509, "", &["int1", "root1"], 100);
        merged.count = 40_000;
        c.record(
            "downstream-b",
            report(vec![
                merged,
                held(KeyKind::X509, "spiffe://td/w", &["root1"], 100),
            ]),
            t(0),
        );
        assert_eq!(c.live_chaining_to(KeyKind::X509, "root1", t(10)), 40_001);
        assert_eq!(c.live_chaining_to(KeyKind::X509, "int1", t(10)), 40_000);
    }

    #[test]
    fn forward_is_the_union_of_live_reports_and_own() {
        let c = Census::default();
        c.record(
            "agent-a",
            report(vec![
                held(KeyKind::X509, "spiffe://td/w1", &["root1"], 100),
                held(KeyKind::X509, "spiffe://td/old", &["root0"], 5),
            ]),
            t(0),
        );
        let own = vec![
            held(KeyKind::X509, "spiffe://td", &["root1"], 200),
            held(KeyKind::X509, "spiffe://td", &["root0"], 1),
        ];
        let up = c.forward(own, t(10));
        let ids: Vec<_> = up.svids.iter().map(|s| s.spiffe_id.as_str()).collect();
        assert_eq!(ids, vec!["spiffe://td/w1", "spiffe://td"]);
    }

    #[test]
    fn reports_out_of_bounds_are_refused() {
        let ok = report(vec![held(KeyKind::X509, "spiffe://td/w", &["k"], 1)]);
        assert_eq!(validate(&ok), Ok(()));
        let many = report(vec![held(KeyKind::X509, "x", &[], 1); MAX_HELD + 1]);
        assert_eq!(validate(&many), Err(CensusError::TooMany(MAX_HELD + 1)));
        let keys: Vec<String> = (0..=MAX_KEY_IDS).map(|i| i.to_string()).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let deep = report(vec![held(KeyKind::X509, "x", &keys, 1)]);
        assert_eq!(
            validate(&deep),
            Err(CensusError::TooManyKeyIds {
                index: 0,
                count: MAX_KEY_IDS + 1
            })
        );
        let long = "k".repeat(MAX_FIELD_BYTES + 1);
        let wide = report(vec![held(KeyKind::Jwt, "x", &[&long], 1)]);
        assert_eq!(validate(&wide), Err(CensusError::FieldTooLong { index: 0 }));
        let kindless = report(vec![held(KeyKind::Unspecified, "x", &["k"], 1)]);
        assert_eq!(validate(&kindless), Err(CensusError::NoKind { index: 0 }));
    }
}
