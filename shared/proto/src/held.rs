//! Keeping a held-SVID report ([`HeldSvids`]) within a message budget, so that an agent with
//! many SVIDs, or a downstream forwarding its fleet's reports, never sends a sync or a bundle
//! fetch the server cannot decode.

use std::collections::HashMap;

use prost::Message;

use crate::node::{HeldSvid, HeldSvids};

/// What a held-SVID report may take on the wire: well inside gRPC's default 4 MiB limit on
/// a decoded message, with room for the rest of the request.
pub const HELD_BUDGET_BYTES: usize = 1 << 20;

/// How many SVIDs `s` stands for.
pub fn count_of(s: &HeldSvid) -> u64 {
    u64::from(s.count.max(1))
}

/// `report` within `budget` encoded bytes. When it does not fit, the SVIDs with the same kind
/// and key ids become one entry counting them (no SPIFFE ID, the latest expiry of them), so
/// every SVID still counts toward the authorities it chains to; if even that does not fit,
/// the entries expiring first are left out.
pub fn compact(report: HeldSvids, budget: usize) -> HeldSvids {
    if report.encoded_len() <= budget {
        return report;
    }
    let mut groups: Vec<HeldSvid> = Vec::new();
    let mut index: HashMap<(i32, Vec<String>), usize> = HashMap::new();
    for s in report.svids {
        match index.get(&(s.kind, s.key_ids.clone())) {
            Some(&i) => {
                let g = &mut groups[i];
                g.count = u32::try_from(count_of(g) + count_of(&s)).unwrap_or(u32::MAX);
                g.not_after = g.not_after.max(s.not_after);
            }
            None => {
                index.insert((s.kind, s.key_ids.clone()), groups.len());
                groups.push(HeldSvid {
                    spiffe_id: String::new(),
                    count: s.count.max(1),
                    ..s
                });
            }
        }
    }
    let mut out = HeldSvids { svids: groups };
    if out.encoded_len() > budget {
        out.svids.sort_by_key(|s| std::cmp::Reverse(s.not_after));
        let mut used = 0;
        let keep = out
            .svids
            .iter()
            .take_while(|s| {
                // Each repeated entry costs its length, a tag byte and a length prefix.
                let len = s.encoded_len();
                used += len + 1 + prost::length_delimiter_len(len);
                used <= budget
            })
            .count();
        out.svids.truncate(keep);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::KeyKind;

    fn svid(i: usize, keys: &[&str], not_after: i64) -> HeldSvid {
        HeldSvid {
            kind: KeyKind::X509.into(),
            spiffe_id: format!("spiffe://example.org/prod/gcp/workload-{i}"),
            key_ids: keys.iter().map(|k| k.to_string()).collect(),
            not_after,
            count: 0,
        }
    }

    fn total(r: &HeldSvids, key: &str) -> u64 {
        r.svids
            .iter()
            .filter(|s| s.key_ids.iter().any(|k| k == key))
            .map(count_of)
            .sum()
    }

    #[test]
    fn a_report_that_fits_is_untouched() {
        let r = HeldSvids {
            svids: vec![svid(1, &["int", "root"], 10), svid(2, &["int", "root"], 20)],
        };
        assert_eq!(compact(r.clone(), HELD_BUDGET_BYTES), r);
    }

    #[test]
    fn a_large_report_merges_by_key_ids_and_keeps_every_count() {
        let int = "a".repeat(64);
        let root = "b".repeat(64);
        let other = "c".repeat(64);
        let mut svids: Vec<HeldSvid> = (0..30_000)
            .map(|i| svid(i, &[&int, &root], 100 + i as i64))
            .collect();
        svids.extend((0..5_000).map(|i| svid(i, &[&other, &root], 7)));
        let r = HeldSvids { svids };
        assert!(
            r.encoded_len() > HELD_BUDGET_BYTES,
            "the test needs a large report"
        );
        let c = compact(r, HELD_BUDGET_BYTES);
        assert!(c.encoded_len() <= HELD_BUDGET_BYTES);
        assert_eq!(c.svids.len(), 2);
        assert_eq!(total(&c, &root), 35_000);
        assert_eq!(total(&c, &int), 30_000);
        assert_eq!(total(&c, &other), 5_000);
        let merged = c.svids.iter().find(|s| s.key_ids[0] == int).unwrap();
        assert_eq!(
            merged.not_after,
            100 + 29_999,
            "the latest expiry of the group"
        );
        assert!(merged.spiffe_id.is_empty());
    }

    #[test]
    fn what_still_does_not_fit_drops_the_entries_expiring_first() {
        // Distinct key ids everywhere: nothing merges.
        let keys: Vec<String> = (0..200).map(|i| format!("{i:064}")).collect();
        let svids: Vec<HeldSvid> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| svid(i, &[k], i as i64))
            .collect();
        let r = HeldSvids { svids };
        let budget = r.encoded_len() / 2;
        let c = compact(r, budget);
        assert!(c.encoded_len() <= budget, "{} > {budget}", c.encoded_len());
        assert!(c.svids.len() >= 90, "{}", c.svids.len());
        let first_kept = 200 - c.svids.len() as i64;
        assert!(
            c.svids.iter().all(|s| s.not_after >= first_kept),
            "the latest are kept"
        );
    }
}
