//! The agent's SVID cache: an immutable snapshot replaced on every change and published on a
//! watch channel, so every Workload API stream sees whole states.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use trustdeck_spiffe::{Bundle, SpiffeId, TrustDomain};

use crate::attestor;

/// A workload X509-SVID with its private key.
pub struct WorkloadSvid {
    /// Entry it was issued for.
    pub entry_id: String,
    /// Its SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// DER chain, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The chain as concatenated DER (Workload API wire form), built once.
    pub chain_der: Vec<u8>,
    /// PKCS#8 DER private key.
    pub key_pkcs8: Vec<u8>,
    /// Issued at (the leaf's not_before).
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// When the agent rotates it (half the TTL, minus jitter).
    pub renew_at: DateTime<Utc>,
    /// The keys its chain depends on (`chain_key_ids`), for taint and the held report.
    pub key_ids: Vec<String>,
}

impl std::fmt::Debug for WorkloadSvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadSvid")
            .field("entry_id", &self.entry_id)
            .field("spiffe_id", &self.spiffe_id)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A registration entry that applies to workloads on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEntry {
    pub id: String,
    pub spiffe_id: SpiffeId,
    /// Selectors, all of which a workload must have.
    pub selectors: Vec<String>,
    /// X509-SVID TTL in seconds (0 = server default).
    pub x509_ttl_secs: i64,
    /// JWT-SVID TTL in seconds (0 = server default).
    pub jwt_ttl_secs: i64,
    pub dns_names: Vec<String>,
    /// Foreign trust domains whose bundles the workload receives.
    pub federates_with: Vec<TrustDomain>,
}

/// A foreign trust domain's bundle, with its Workload API forms built once.
#[derive(Debug, PartialEq, Eq)]
pub struct ForeignBundle {
    pub bundle: Bundle,
    /// The X.509 authorities as concatenated DER.
    pub x509_der: Vec<u8>,
    /// The JWT authorities as a JWKS document.
    pub jwks: Vec<u8>,
}

impl ForeignBundle {
    pub fn new(bundle: Bundle) -> ForeignBundle {
        ForeignBundle {
            x509_der: bundle.x509_authorities_der_concat(),
            jwks: bundle.jwks_json().into_bytes(),
            bundle,
        }
    }
}

/// One consistent state of the cache.
#[derive(Debug)]
pub struct Cache {
    /// Increases on every published change.
    pub revision: u64,
    /// The trust bundle.
    pub bundle: Arc<Bundle>,
    /// Entries for this node's workloads, by SPIFFE ID then id.
    pub entries: Vec<LocalEntry>,
    /// SVIDs by entry id.
    pub svids: HashMap<String, Arc<WorkloadSvid>>,
    /// Whether at least one sync with the server has completed.
    pub synced: bool,
    /// Entry positions by selector, for matching without scanning every entry.
    by_selector: HashMap<String, Vec<usize>>,
    /// The bundle's X.509 authorities as concatenated DER, built once.
    pub bundle_der: Vec<u8>,
    /// Bundles of the foreign trust domains this node's entries federate with.
    pub federated: BTreeMap<TrustDomain, Arc<ForeignBundle>>,
}

impl Cache {
    /// An empty, unsynced cache.
    pub fn new(bundle: Arc<Bundle>) -> Self {
        let mut c = Self {
            revision: 0,
            bundle,
            entries: Vec::new(),
            svids: HashMap::new(),
            synced: false,
            by_selector: HashMap::new(),
            bundle_der: Vec::new(),
            federated: BTreeMap::new(),
        };
        c.reindex();
        c
    }

    /// A copy to modify into the next revision.
    pub fn next_revision(&self) -> Cache {
        Cache {
            revision: self.revision + 1,
            bundle: self.bundle.clone(),
            entries: self.entries.clone(),
            svids: self.svids.clone(),
            synced: self.synced,
            by_selector: HashMap::new(),
            bundle_der: Vec::new(),
            federated: self.federated.clone(),
        }
    }

    /// Rebuilds the derived fields after `entries` or `bundle` changed.
    pub fn reindex(&mut self) {
        self.by_selector.clear();
        for (i, e) in self.entries.iter().enumerate() {
            for s in &e.selectors {
                self.by_selector.entry(s.clone()).or_default().push(i);
            }
        }
        self.bundle_der = self.bundle.x509_authorities_der_concat();
    }

    /// Entries matching a workload's selectors, in cache order.
    pub fn matching<'a>(&'a self, selectors: &[String]) -> Vec<&'a LocalEntry> {
        let mut idx: Vec<usize> = selectors
            .iter()
            .filter_map(|s| self.by_selector.get(s))
            .flatten()
            .copied()
            .collect();
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter()
            .map(|i| &self.entries[i])
            .filter(|e| attestor::matches(&e.selectors, selectors))
            .collect()
    }

    /// The foreign bundles `entries` federate with that the agent holds, each once, in
    /// trust domain order.
    pub fn federated_for(&self, entries: &[&LocalEntry]) -> Vec<&ForeignBundle> {
        let mut tds: Vec<&TrustDomain> = entries.iter().flat_map(|e| &e.federates_with).collect();
        tds.sort();
        tds.dedup();
        tds.into_iter()
            .filter_map(|td| self.federated.get(td).map(|b| &**b))
            .collect()
    }
}

/// Entries that identify workloads on this node: the synced entries whose parent is not
/// another synced entry (those are for nested workloads, e.g. a downstream server's agents).
pub fn local_entries(entries: &[trustdeck_proto::node::Entry]) -> Vec<LocalEntry> {
    let ids: std::collections::HashSet<&str> =
        entries.iter().map(|e| e.spiffe_id.as_str()).collect();
    let mut out: Vec<LocalEntry> = entries
        .iter()
        .filter(|e| !ids.contains(e.parent_id.as_str()))
        .filter_map(|e| {
            Some(LocalEntry {
                id: e.id.clone(),
                spiffe_id: SpiffeId::parse(&e.spiffe_id).ok()?,
                selectors: e.selectors.clone(),
                x509_ttl_secs: e.x509_ttl_secs,
                jwt_ttl_secs: e.jwt_ttl_secs,
                dns_names: e.dns_names.clone(),
                federates_with: e
                    .federates_with
                    .iter()
                    .filter_map(|t| TrustDomain::parse(t).ok())
                    .collect(),
            })
        })
        .collect();
    out.sort_by(|a, b| (a.spiffe_id.as_str(), &a.id).cmp(&(b.spiffe_id.as_str(), &b.id)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_uses_the_index_and_requires_all_selectors() {
        let td = trustdeck_spiffe::TrustDomain::parse("td").unwrap();
        let mut c = Cache::new(Arc::new(Bundle::new(td)));
        let entry = |id: &str, sels: &[&str]| LocalEntry {
            id: id.into(),
            spiffe_id: SpiffeId::parse(&format!("spiffe://td/{id}")).unwrap(),
            selectors: sels.iter().map(|s| s.to_string()).collect(),
            x509_ttl_secs: 0,
            jwt_ttl_secs: 0,
            dns_names: vec![],
            federates_with: vec![],
        };
        c.entries = vec![
            entry("a", &["unix:uid:1"]),
            entry("b", &["unix:uid:1", "unix:path:/bin/x"]),
            entry("c", &["unix:uid:2"]),
        ];
        c.reindex();
        let w = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let ids = |v: Vec<&LocalEntry>| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(c.matching(&w(&["unix:uid:1"]))), vec!["a"]);
        assert_eq!(
            ids(c.matching(&w(&["unix:uid:1", "unix:path:/bin/x"]))),
            vec!["a", "b"]
        );
        assert!(c.matching(&w(&["unix:uid:3"])).is_empty());
    }

    fn e(id: &str, spiffe_id: &str, parent: &str) -> trustdeck_proto::node::Entry {
        trustdeck_proto::node::Entry {
            id: id.into(),
            spiffe_id: spiffe_id.into(),
            parent_id: parent.into(),
            selectors: vec!["unix:uid:1".into()],
            ..Default::default()
        }
    }

    #[test]
    fn nested_entries_are_not_local() {
        let agent = "spiffe://td/trustdeck/agent/x";
        let got = local_entries(&[
            e("2", "spiffe://td/b", agent),
            e("1", "spiffe://td/a", agent),
            e("3", "spiffe://td/c", "spiffe://td/a"),
        ]);
        let ids: Vec<_> = got.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, vec!["1", "2"]);
    }
}
