//! Handing foreign trust domains' bundles down: an agent gets those its entries federate with
//! (`SyncEntriesResponse.federated_bundles`); a downstream server gets every one this server
//! holds within the limits below (`FetchBundleResponse.federated_bundles`, sent again only when
//! the set's digest changed) and hands them on to its own agents the same way, so a nested
//! segment's workloads federate like the upstream's. A downstream keeps what it was handed in
//! `<data_dir>/relayed.json`, so a restart while its upstream is away changes nothing for its
//! agents.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use trustdeck_datastore::{DatastoreError, Entry};
use trustdeck_proto::node::FederatedBundlesState;
use trustdeck_spiffe::bundle::MAX_FOREIGN_BUNDLE_BYTES;
use trustdeck_spiffe::{Bundle, TrustDomain};

use crate::ctx::ServerCtx;

/// Most foreign trust domains handed to a downstream.
pub const MAX_RELAYED: usize = 256;
/// Most bytes of foreign bundles in one answer to a downstream (below gRPC's 4 MiB).
pub const MAX_RELAYED_TOTAL_BYTES: usize = 3 << 20;
/// The file a downstream keeps what it was handed in.
pub const FILE: &str = "relayed.json";

/// Foreign bundles by trust domain name, as SPIFFE bundle JSON.
pub type ForeignBundles = BTreeMap<String, Vec<u8>>;

/// What a server hands its downstreams of `held`: in trust domain order, each document within
/// [`MAX_FOREIGN_BUNDLE_BYTES`], at most [`MAX_RELAYED`] of them and [`MAX_RELAYED_TOTAL_BYTES`]
/// in all; and the digest of that set.
pub fn to_relay(held: ForeignBundles) -> (ForeignBundles, String) {
    let mut out = ForeignBundles::new();
    let mut total = 0;
    for (td, doc) in held {
        if out.len() == MAX_RELAYED
            || doc.len() > MAX_FOREIGN_BUNDLE_BYTES
            || total + doc.len() > MAX_RELAYED_TOTAL_BYTES
        {
            tracing::debug!(trust_domain = %td, bytes = doc.len(), "foreign bundle not handed to downstreams: over the limits");
            continue;
        }
        total += doc.len();
        out.insert(td, doc);
    }
    let d = digest(&out);
    (out, d)
}

/// SHA-256 (hex) over each trust domain and document, length-prefixed, in order.
pub fn digest(b: &ForeignBundles) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (td, doc) in b {
        for part in [td.as_bytes(), doc.as_slice()] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
    }
    hex::encode(ctx.finish().as_ref())
}

#[derive(Default, serde::Serialize, serde::Deserialize, PartialEq)]
struct Held {
    digest: String,
    /// Documents by trust domain name.
    bundles: BTreeMap<String, String>,
}

/// The foreign bundles this downstream's upstream last handed it, and their digest.
#[derive(Default)]
pub struct Relayed {
    held: RwLock<Held>,
    path: Mutex<Option<PathBuf>>,
}

impl Relayed {
    /// Reads what an earlier run kept in `data_dir` (checked as an answer is), and keeps
    /// future changes there.
    pub fn load(&self, data_dir: &Path) {
        let path = data_dir.join(FILE);
        let unreadable = |e: &dyn std::fmt::Display| {
            tracing::warn!(path = %path.display(), error = %e, "relayed foreign bundles unreadable; waiting for the upstream's");
        };
        let read = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice::<Held>(&b)
                .map_err(|e| unreadable(&e))
                .ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                unreadable(&e);
                None
            }
        };
        if let Some(h) = read {
            let given = h
                .bundles
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            let bundles = checked(given);
            // A digest that does not describe what is kept (an edited file, a bundle this
            // build refuses) is not sent: the upstream then answers the whole set.
            let kept: ForeignBundles = bundles
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                .collect();
            let digest = if digest(&kept) == h.digest {
                h.digest
            } else {
                String::new()
            };
            *self.held.write().unwrap_or_else(|p| p.into_inner()) = Held { digest, bundles };
        }
        *self.path.lock().unwrap_or_else(|p| p.into_inner()) = Some(path);
    }

    /// The digest of what is held (sent with the next poll).
    pub fn digest(&self) -> String {
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .digest
            .clone()
    }

    /// Takes in an answer: the complete set (INCLUDED), nothing new (UNCHANGED), or none from
    /// a server built before federation; whether what is held changed.
    pub fn apply(
        &self,
        state: FederatedBundlesState,
        given: HashMap<String, Vec<u8>>,
        digest: String,
    ) -> bool {
        let next = match state {
            FederatedBundlesState::Unchanged => return false,
            FederatedBundlesState::Included => Held {
                digest,
                bundles: checked(given),
            },
            // A server built before the state was sent: what it gave is the whole set.
            FederatedBundlesState::Unspecified => Held {
                digest: String::new(),
                bundles: checked(given),
            },
        };
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        if *held == next {
            return false;
        }
        *held = next;
        let path = self.path.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(path) = path
            && let Ok(text) = serde_json::to_vec(&*held)
            && let Err(e) = write_synced(&path, &text)
        {
            tracing::warn!(error = %e, path = %path.display(), "could not keep the relayed foreign bundles");
        }
        true
    }

    /// What is held now.
    pub fn snapshot(&self) -> ForeignBundles {
        let held = self.held.read().unwrap_or_else(|p| p.into_inner());
        held.bundles
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect()
    }
}

/// Writes `path` whole: a temporary file beside it, synced, renamed over it, the directory
/// synced.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The bundles of `given` that parse for the trust domain they are filed under, within the
/// limits; one left out is logged.
fn checked(given: HashMap<String, Vec<u8>>) -> BTreeMap<String, String> {
    let mut given: Vec<_> = given.into_iter().collect();
    given.sort();
    let mut kept = BTreeMap::new();
    for (name, doc) in given {
        if kept.len() == MAX_RELAYED {
            tracing::warn!(
                max = MAX_RELAYED,
                "too many foreign bundles from the upstream; the rest are left out"
            );
            break;
        }
        let parsed = TrustDomain::parse(&name)
            .map_err(|e| e.to_string())
            .and_then(|td| Bundle::from_foreign_json(&td, &doc).map_err(|e| e.to_string()))
            .and_then(|_| String::from_utf8(doc).map_err(|e| e.to_string()));
        match parsed {
            Ok(doc) => {
                kept.insert(name, doc);
            }
            Err(why) => {
                tracing::warn!(trust_domain = %name, %why, "foreign bundle from the upstream left out")
            }
        }
    }
    kept
}

/// Most bytes of foreign bundles in one answer to an agent (its entries need room too).
pub const MAX_AGENT_FEDERATED_BYTES: usize = 2 << 20;

/// The bundles of the trust domains `entries` federate with, out of `held`, in trust domain
/// order within [`MAX_AGENT_FEDERATED_BYTES`] in all; one the server does not hold, or that
/// does not fit, is left out.
pub fn for_entries(held: &ForeignBundles, entries: &[Entry]) -> HashMap<String, Vec<u8>> {
    let wanted: std::collections::BTreeSet<&String> =
        entries.iter().flat_map(|e| &e.federates_with).collect();
    let mut total = 0;
    let mut out = HashMap::new();
    for td in wanted {
        let Some(doc) = held.get(td) else { continue };
        if doc.len() > MAX_FOREIGN_BUNDLE_BYTES || total + doc.len() > MAX_AGENT_FEDERATED_BYTES {
            tracing::warn!(trust_domain = %td, bytes = doc.len(), "foreign bundle not handed to an agent: over the limits");
            continue;
        }
        total += doc.len();
        out.insert(td.clone(), doc.clone());
    }
    out
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
#[path = "deliver_tests.rs"]
mod tests;
