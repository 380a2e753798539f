//! The foreign trust domains' bundles of a sync answer: those this node's entries federate
//! with, parsed once and kept as the cache's `federated`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use trustdeck_spiffe::{Bundle, TrustDomain};

use crate::cache::{ForeignBundle, LocalEntry};

/// Held foreign bundles, by trust domain.
pub type Federated = BTreeMap<TrustDomain, Arc<ForeignBundle>>;

/// The bundles of `given` (the server's answer, complete) that `entries` federate with; one
/// unchanged from `current` keeps its `Arc`. A document that is too large or does not parse
/// for its trust domain is left out, and logged.
pub fn from_answer(
    given: &HashMap<String, Vec<u8>>,
    entries: &[LocalEntry],
    current: &Federated,
) -> Federated {
    let mut out = Federated::new();
    for td in entries.iter().flat_map(|e| &e.federates_with) {
        if out.contains_key(td) {
            continue;
        }
        let Some(doc) = given.get(td.as_str()) else {
            continue;
        };
        match Bundle::from_foreign_json(td, doc) {
            Ok(b) => {
                let kept = match current.get(td) {
                    Some(c) if c.bundle == b => c.clone(),
                    _ => Arc::new(ForeignBundle::new(b)),
                };
                out.insert(td.clone(), kept);
            }
            Err(why) => {
                tracing::warn!(trust_domain = %td.as_str(), error = %why, "foreign bundle from the server left out")
            }
        }
    }
    out
}

/// Whether `a` and `b` hold the same bundles.
pub fn same(a: &Federated, b: &Federated) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ta, ba), (tb, bb))| ta == tb && ba.bundle == bb.bundle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustdeck_spiffe::SpiffeId;
    use trustdeck_spiffe::bundle::MAX_FOREIGN_BUNDLE_BYTES;

    fn td(s: &str) -> TrustDomain {
        TrustDomain::parse(s).unwrap()
    }

    fn entry(federates_with: &[&str]) -> LocalEntry {
        LocalEntry {
            id: "e".into(),
            spiffe_id: SpiffeId::parse("spiffe://home.test/w").unwrap(),
            selectors: vec![],
            x509_ttl_secs: 0,
            jwt_ttl_secs: 0,
            dns_names: vec![],
            federates_with: federates_with.iter().map(|s| td(s)).collect(),
        }
    }

    fn doc(name: &str, seq: u64) -> Vec<u8> {
        let mut b = Bundle::new(td(name));
        b.sequence = seq;
        b.to_json().into_bytes()
    }

    #[test]
    fn only_wanted_parseable_bounded_bundles_are_kept() {
        let given: HashMap<String, Vec<u8>> = [
            ("a.test".to_string(), doc("a.test", 1)),
            ("b.test".to_string(), b"{oops".to_vec()),
            ("c.test".to_string(), doc("c.test", 1)),
            (
                "d.test".to_string(),
                vec![b' '; MAX_FOREIGN_BUNDLE_BYTES + 1],
            ),
        ]
        .into();
        let entries = [entry(&["a.test", "b.test", "d.test"]), entry(&["a.test"])];
        let got = from_answer(&given, &entries, &Federated::new());
        assert_eq!(
            got.keys().map(|t| t.as_str()).collect::<Vec<_>>(),
            ["a.test"]
        );
        assert_eq!(got[&td("a.test")].bundle.sequence, 1);
    }

    #[test]
    fn an_unchanged_bundle_keeps_its_arc_and_a_new_sequence_is_a_change() {
        let entries = [entry(&["a.test"])];
        let first = from_answer(
            &[("a.test".to_string(), doc("a.test", 1))].into(),
            &entries,
            &Federated::new(),
        );
        let again = from_answer(
            &[("a.test".to_string(), doc("a.test", 1))].into(),
            &entries,
            &first,
        );
        assert!(Arc::ptr_eq(&first[&td("a.test")], &again[&td("a.test")]));
        assert!(same(&first, &again));
        let newer = from_answer(
            &[("a.test".to_string(), doc("a.test", 2))].into(),
            &entries,
            &first,
        );
        assert!(!same(&first, &newer));
        let none = from_answer(&HashMap::new(), &entries, &first);
        assert!(
            none.is_empty() && !same(&first, &none),
            "a trust domain left out is dropped"
        );
    }
}
