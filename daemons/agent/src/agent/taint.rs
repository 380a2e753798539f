//! Re-issue after a taint: which SVIDs chain to a key the server says is tainted, when each
//! is (re-)issued, and what the agent reports. Pure: the time is passed in.
//!
//! A tainted SVID is re-issued at the first round that sees the tainted set (in batches of
//! the sync round's size, one right after the other). A re-issued SVID whose chain still
//! holds a tainted key (the server that signs it has not replaced its intermediate yet) is
//! kept, since it is valid, and re-issued again after [`retry_delay`] (doubling up to
//! [`MAX_RETRY`], then every [`MAX_RETRY`]) until clean: it never gives up, since what is
//! left chaining to a tainted key blocks its revocation. A new tainted set starts every count
//! afresh. A
//! re-issue that fails (rate limited, server gone) is not counted: the SVID stays due.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use trustdeck_proto::node::{HeldSvid, HeldSvids, KeyKind, TaintedKeys};

/// The key under which the agent's own SVID is tracked (no entry id is empty).
pub const AGENT_SVID: &str = "";
/// The first wait before re-issuing an SVID that came back still tainted; doubled per try.
pub const FIRST_RETRY: Duration = Duration::milliseconds(500);
/// The longest such wait.
pub const MAX_RETRY: Duration = Duration::seconds(30);

/// The wait after the `attempts`-th re-issue that came back still tainted (from 1).
pub fn retry_delay(attempts: u32) -> Duration {
    let factor = 1i64 << attempts.saturating_sub(1).min(16);
    std::cmp::min(FIRST_RETRY * factor as i32, MAX_RETRY)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    attempts: u32,
    next_at: DateTime<Utc>,
}

/// The tainted set the server last published, and the SVIDs re-issued still tainted.
#[derive(Debug, Default)]
pub struct TaintTracker {
    tainted: TaintedKeys,
    pending: HashMap<String, Pending>,
}

impl TaintTracker {
    /// Takes the server's tainted set; a different one forgets every retry count.
    /// Returns whether it changed.
    pub fn set(&mut self, t: TaintedKeys) -> bool {
        if same_set(&self.tainted, &t) {
            return false;
        }
        self.tainted = t;
        self.pending.clear();
        true
    }

    /// The tainted set as last taken.
    pub fn tainted(&self) -> &TaintedKeys {
        &self.tainted
    }

    /// The tainted X.509 keys among `key_ids` (a chain's `chain_key_ids`).
    pub fn tainted_in<'a>(&self, key_ids: &'a [String]) -> Vec<&'a String> {
        key_ids
            .iter()
            .filter(|k| self.tainted.x509_key_ids.contains(k))
            .collect()
    }

    /// Whether a chain with `key_ids` holds a tainted key.
    pub fn chain_tainted(&self, key_ids: &[String]) -> bool {
        !self.tainted_in(key_ids).is_empty()
    }

    /// Whether the SVID `id` with chain `key_ids` is to be re-issued at `now`: its chain is
    /// tainted and it has not come back tainted too often or too recently.
    pub fn due(&self, id: &str, key_ids: &[String], now: DateTime<Utc>) -> bool {
        if !self.chain_tainted(key_ids) {
            return false;
        }
        match self.pending.get(id) {
            None => true,
            Some(p) => now >= p.next_at,
        }
    }

    /// Records that `id` was re-issued at `now`, its new chain holding `new_key_ids`.
    pub fn reissued(&mut self, id: &str, new_key_ids: &[String], now: DateTime<Utc>) {
        if !self.chain_tainted(new_key_ids) {
            self.pending.remove(id);
            return;
        }
        let attempts = self.pending.get(id).map_or(0, |p| p.attempts) + 1;
        self.pending.insert(
            id.to_string(),
            Pending {
                attempts,
                next_at: now + retry_delay(attempts),
            },
        );
    }

    /// Forgets the SVIDs not in `live` (entries deleted).
    pub fn retain(&mut self, live: impl Fn(&str) -> bool) {
        self.pending.retain(|id, _| id == AGENT_SVID || live(id));
    }

    /// When the next retry of an SVID that came back still tainted falls due.
    pub fn next_retry(&self) -> Option<DateTime<Utc>> {
        self.pending.values().map(|p| p.next_at).min()
    }

    /// How many of the SVIDs re-issued (their old chains' key ids) chained to each tainted
    /// key, in the tainted set's order; keys none chained to are left out.
    pub fn counts_by_key<'a>(
        &self,
        old_chains: impl IntoIterator<Item = &'a [String]>,
    ) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = self
            .tainted
            .x509_key_ids
            .iter()
            .map(|k| (k.clone(), 0))
            .collect();
        for chain in old_chains {
            for (k, n) in counts.iter_mut() {
                if chain.contains(k) {
                    *n += 1;
                }
            }
        }
        counts.retain(|(_, n)| *n > 0);
        counts
    }
}

/// At most this many SVIDs in one held report (the server's bound; the agent's own caches
/// hold far fewer: entries the server sends, JWT-SVIDs within the cache's bytes).
pub const MAX_HELD: usize = 100_000;

/// An X.509-SVID as the held report names it.
pub fn held_x509(spiffe_id: &str, key_ids: &[String], not_after: DateTime<Utc>) -> HeldSvid {
    HeldSvid {
        kind: KeyKind::X509.into(),
        spiffe_id: spiffe_id.to_string(),
        key_ids: key_ids.to_vec(),
        not_after: not_after.timestamp(),
        count: 0,
    }
}

/// What the agent reports holding: its own SVID, then its workload X.509-SVIDs, then its
/// cached JWT-SVIDs (kid, expiry), those expired at `now` left out, at most [`MAX_HELD`].
pub fn held_report(
    x509: impl IntoIterator<Item = HeldSvid>,
    jwts: impl IntoIterator<Item = (String, i64)>,
    now: DateTime<Utc>,
) -> HeldSvids {
    let now = now.timestamp();
    let jwts = jwts.into_iter().map(|(kid, not_after)| HeldSvid {
        kind: KeyKind::Jwt.into(),
        spiffe_id: String::new(),
        key_ids: if kid.is_empty() { vec![] } else { vec![kid] },
        not_after,
        count: 0,
    });
    let report = HeldSvids {
        svids: x509
            .into_iter()
            .chain(jwts)
            .filter(|s| s.not_after > now)
            .take(MAX_HELD)
            .collect(),
    };
    trustdeck_proto::held::compact(report, trustdeck_proto::held::HELD_BUDGET_BYTES)
}

fn same_set(a: &TaintedKeys, b: &TaintedKeys) -> bool {
    let eq = |x: &[String], y: &[String]| {
        x.len() == y.len() && x.iter().all(|k| y.contains(k)) && y.iter().all(|k| x.contains(k))
    };
    eq(&a.x509_key_ids, &b.x509_key_ids) && eq(&a.jwt_kids, &b.jwt_kids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::milliseconds(ms)
    }

    fn keys(ks: &[&str]) -> Vec<String> {
        ks.iter().map(|k| k.to_string()).collect()
    }

    fn tainted(x: &[&str], j: &[&str]) -> TaintedKeys {
        TaintedKeys {
            x509_key_ids: keys(x),
            jwt_kids: keys(j),
        }
    }

    #[test]
    fn only_chains_holding_a_tainted_key_are_due() {
        let mut tr = TaintTracker::default();
        assert!(tr.set(tainted(&["root1"], &[])));
        assert!(tr.due("a", &keys(&["int1", "root1"]), t(0)));
        assert!(!tr.due("b", &keys(&["int2", "root2"]), t(0)));
        assert!(!tr.due("c", &[], t(0)));
        // The same set again (in another order) changes nothing.
        assert!(!tr.set(tainted(&["root1"], &[])));
        let mut two = TaintTracker::default();
        two.set(tainted(&["a", "b"], &[]));
        assert!(!two.set(tainted(&["b", "a"], &[])));
    }

    #[test]
    fn a_clean_reissue_ends_it_and_a_still_tainted_one_is_retried_with_backoff() {
        let mut tr = TaintTracker::default();
        tr.set(tainted(&["root1"], &[]));
        let old = keys(&["int1", "root1"]);
        tr.reissued("a", &keys(&["int2", "root2"]), t(0));
        assert!(tr.next_retry().is_none());
        // "b" comes back still under the tainted root (its intermediate not yet replaced).
        tr.reissued("b", &old, t(0));
        assert!(!tr.due("b", &old, t(499)));
        assert!(tr.due("b", &old, t(500)));
        assert_eq!(tr.next_retry(), Some(t(500)));
        tr.reissued("b", &old, t(500));
        assert!(!tr.due("b", &old, t(1499)));
        assert!(tr.due("b", &old, t(1500)));
        tr.reissued("b", &keys(&["int3", "root2"]), t(1500));
        assert!(tr.next_retry().is_none());
    }

    #[test]
    fn retries_slow_down_never_stop_and_a_new_tainted_set_starts_afresh() {
        let mut tr = TaintTracker::default();
        tr.set(tainted(&["root1"], &[]));
        let old = keys(&["int1", "root1"]);
        let mut now = t(0);
        for tries in 1..=20u32 {
            assert!(tr.due("b", &old, now), "try {tries}");
            tr.reissued("b", &old, now);
            let wait = retry_delay(tries);
            assert!(wait <= MAX_RETRY);
            assert!(!tr.due("b", &old, now + wait - Duration::milliseconds(1)));
            assert_eq!(tr.next_retry(), Some(now + wait));
            now += wait;
        }
        assert_eq!(
            retry_delay(20),
            MAX_RETRY,
            "at most one re-issue per MAX_RETRY"
        );
        assert!(tr.chain_tainted(&old));
        tr.reissued("b", &old, now);
        assert!(!tr.due("b", &old, now));
        tr.set(tainted(&["root1", "int9"], &[]));
        assert!(tr.due("b", &old, now), "a new tainted set retries at once");
    }

    #[test]
    fn the_retry_wait_doubles_up_to_its_cap() {
        let waits: Vec<i64> = (1..=9).map(|a| retry_delay(a).num_milliseconds()).collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn deleted_entries_are_forgotten_but_the_agent_svid_is_not() {
        let mut tr = TaintTracker::default();
        tr.set(tainted(&["root1"], &[]));
        let old = keys(&["root1"]);
        tr.reissued("gone", &old, t(0));
        tr.reissued("kept", &old, t(0));
        tr.reissued(AGENT_SVID, &old, t(0));
        tr.retain(|id| id == "kept");
        assert!(tr.due("gone", &old, t(0)));
        assert!(!tr.due("kept", &old, t(0)));
        assert!(!tr.due(AGENT_SVID, &old, t(0)));
    }

    #[test]
    fn the_held_report_names_every_live_svid_by_its_keys_and_is_bounded() {
        let now = t(0);
        let x = [
            held_x509("spiffe://td/agent", &keys(&["i", "r"]), t(60_000)),
            held_x509("spiffe://td/w", &keys(&["i", "r"]), t(60_000)),
            held_x509("spiffe://td/expired", &keys(&["i", "r"]), t(-1000)),
        ];
        let jwts = [("kid1".to_string(), t(60_000).timestamp())];
        let r = held_report(x, jwts, now);
        let ids: Vec<_> = r.svids.iter().map(|s| s.spiffe_id.as_str()).collect();
        assert_eq!(ids, ["spiffe://td/agent", "spiffe://td/w", ""]);
        assert_eq!(r.svids[0].kind(), KeyKind::X509);
        assert_eq!(r.svids[0].key_ids, keys(&["i", "r"]));
        assert_eq!(r.svids[2].kind(), KeyKind::Jwt);
        assert_eq!(r.svids[2].key_ids, keys(&["kid1"]));
        let many = (0..MAX_HELD + 10).map(|i| (format!("k{i}"), t(60_000).timestamp()));
        let bounded = held_report([], many, now);
        assert!(bounded.svids.len() <= MAX_HELD);
        assert!(prost::Message::encoded_len(&bounded) <= trustdeck_proto::held::HELD_BUDGET_BYTES);
        // Many SVIDs under the same keys merge into one entry that still counts them all.
        let same = (0..MAX_HELD)
            .map(|i| held_x509(&format!("spiffe://td/w{i}"), &keys(&["i", "r"]), t(60_000)));
        let merged = held_report(same, [], now);
        assert_eq!(merged.svids.len(), 1);
        assert_eq!(merged.svids[0].count as usize, MAX_HELD);
    }

    #[test]
    fn reissues_are_counted_per_tainted_key() {
        let mut tr = TaintTracker::default();
        tr.set(tainted(&["root1", "int1", "unused"], &[]));
        let a = keys(&["int1", "root1"]);
        let b = keys(&["int2", "root1"]);
        let c = keys(&["int1", "root0"]);
        let counts = tr.counts_by_key([a.as_slice(), b.as_slice(), c.as_slice()]);
        assert_eq!(
            counts,
            vec![("root1".to_string(), 2), ("int1".to_string(), 2)]
        );
    }
}
