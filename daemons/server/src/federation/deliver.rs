//! Handing foreign trust domains' bundles down: an agent gets those its entries federate with
//! (`SyncEntriesResponse.federated_bundles`); a downstream server gets every one this server
//! holds (`FetchBundleResponse.federated_bundles`) and hands them on to its own agents the
//! same way, so a nested segment's workloads federate like the upstream's.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use trustdeck_datastore::{DatastoreError, Entry};
use trustdeck_spiffe::{Bundle, TrustDomain};

use crate::ctx::ServerCtx;

/// Most foreign trust domains a downstream keeps from its upstream's answer.
pub const MAX_RELAYED: usize = 256;
/// The largest relayed bundle document kept.
pub const MAX_RELAYED_BYTES: usize = 256 * 1024;

/// Foreign bundles by trust domain name, as SPIFFE bundle JSON.
pub type ForeignBundles = BTreeMap<String, Vec<u8>>;

/// The foreign bundles this downstream's upstream last relayed. Kept in memory: after a
/// restart they come back with the first answer of the upstream.
#[derive(Default)]
pub struct Relayed(RwLock<ForeignBundles>);

impl Relayed {
    /// Replaces what is held with `given` (complete on every answer), keeping only bundles
    /// that parse for the trust domain they are filed under, within [`MAX_RELAYED`] and
    /// [`MAX_RELAYED_BYTES`]; whether anything changed.
    pub fn replace(&self, given: HashMap<String, Vec<u8>>) -> bool {
        let mut kept = ForeignBundles::new();
        let mut given: Vec<_> = given.into_iter().collect();
        given.sort();
        for (name, doc) in given {
            if kept.len() == MAX_RELAYED {
                tracing::warn!(
                    max = MAX_RELAYED,
                    "upstream relayed too many foreign bundles; the rest are left out"
                );
                break;
            }
            match usable(&name, &doc) {
                Ok(()) => {
                    kept.insert(name, doc);
                }
                Err(why) => {
                    tracing::warn!(trust_domain = %name, %why, "foreign bundle from the upstream left out")
                }
            }
        }
        let mut held = self.0.write().unwrap_or_else(|p| p.into_inner());
        let changed = *held != kept;
        *held = kept;
        changed
    }

    /// What is held now.
    pub fn snapshot(&self) -> ForeignBundles {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn usable(name: &str, doc: &[u8]) -> Result<(), String> {
    if doc.len() > MAX_RELAYED_BYTES {
        return Err(format!(
            "{} bytes, more than {MAX_RELAYED_BYTES}",
            doc.len()
        ));
    }
    let td = TrustDomain::parse(name).map_err(|e| e.to_string())?;
    Bundle::from_json(&td, doc)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The bundles of the trust domains `entries` federate with, out of `held`; one the server
/// does not hold is left out.
pub fn for_entries(held: &ForeignBundles, entries: &[Entry]) -> HashMap<String, Vec<u8>> {
    entries
        .iter()
        .flat_map(|e| &e.federates_with)
        .filter_map(|td| held.get(td).map(|doc| (td.clone(), doc.clone())))
        .collect()
}

impl ServerCtx {
    /// Every foreign bundle this server holds: those its upstream relayed, overridden by its
    /// own datastore's (federation relationships and imports of this server).
    pub async fn foreign_bundles(&self) -> Result<ForeignBundles, DatastoreError> {
        let mut all = match &self.upstream {
            Some(up) => up.relayed.snapshot(),
            None => ForeignBundles::new(),
        };
        for b in self.ds.list_foreign_bundles().await? {
            all.insert(b.trust_domain, b.document.into_bytes());
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_json(td: &str) -> Vec<u8> {
        Bundle::new(TrustDomain::parse(td).unwrap())
            .to_json()
            .into_bytes()
    }

    #[test]
    fn relayed_bundles_are_checked_bounded_and_replaced_whole() {
        let r = Relayed::default();
        let mut given = HashMap::new();
        given.insert("a.test".to_string(), bundle_json("a.test"));
        given.insert("Not A Domain".to_string(), bundle_json("a.test"));
        given.insert("b.test".to_string(), b"{not json".to_vec());
        given.insert("c.test".to_string(), vec![b' '; MAX_RELAYED_BYTES + 1]);
        assert!(r.replace(given.clone()));
        assert_eq!(r.snapshot().keys().collect::<Vec<_>>(), ["a.test"]);
        assert!(!r.replace(given), "the same answer changes nothing");
        let flood: HashMap<_, _> = (0..MAX_RELAYED + 10)
            .map(|i| (format!("t{i}.test"), bundle_json(&format!("t{i}.test"))))
            .collect();
        assert!(r.replace(flood));
        assert_eq!(r.snapshot().len(), MAX_RELAYED);
        assert!(r.replace(HashMap::new()));
        assert!(
            r.snapshot().is_empty(),
            "a trust domain left out is dropped"
        );
    }

    #[test]
    fn entries_get_the_bundles_they_federate_with_that_are_held() {
        let held: ForeignBundles = [("a.test", "A"), ("b.test", "B")]
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .into();
        let entry = |f: &[&str]| Entry {
            id: String::new(),
            spiffe_id: String::new(),
            parent_id: String::new(),
            selectors: vec![],
            x509_ttl_secs: 0,
            jwt_ttl_secs: 0,
            downstream: false,
            dns_names: vec![],
            namespaces: vec![],
            federates_with: f.iter().map(|s| s.to_string()).collect(),
            created_at: 0,
        };
        let got = for_entries(
            &held,
            &[
                entry(&["a.test", "gone.test"]),
                entry(&["a.test"]),
                entry(&[]),
            ],
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got["a.test"], b"A");
        assert!(for_entries(&held, &[entry(&[])]).is_empty());
    }
}
