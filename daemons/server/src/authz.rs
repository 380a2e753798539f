//! Which registration entries an agent is authorised for. Pure.
//!
//! An agent gets the entries whose parent is its own SPIFFE ID, the entries whose parent is a
//! *node alias* it matches (an entry parented to the server whose selectors are all among the
//! agent's attestation selectors), and, transitively, the entries parented to any of those.

use std::collections::HashSet;

use trustdeck_datastore::Entry;

/// How deep parent chains are followed.
pub const MAX_DEPTH: usize = 8;

/// The entries `agent_id` is authorised for, in `entries` order.
pub fn authorized_entries<'a>(
    agent_id: &str,
    node_selectors: &[String],
    server_id: &str,
    entries: &'a [Entry],
) -> Vec<&'a Entry> {
    let mut parents: HashSet<&str> = HashSet::from([agent_id]);
    let mut aliases = HashSet::new();
    for e in entries {
        if e.parent_id == server_id
            && !e.selectors.is_empty()
            && e.selectors.iter().all(|s| node_selectors.contains(s))
        {
            parents.insert(e.spiffe_id.as_str());
            aliases.insert(e.id.as_str());
        }
    }
    let mut chosen: HashSet<&str> = HashSet::new();
    let mut frontier = parents.clone();
    for _ in 0..MAX_DEPTH {
        let mut next = HashSet::new();
        for e in entries {
            if aliases.contains(e.id.as_str()) || chosen.contains(e.id.as_str()) {
                continue;
            }
            if frontier.contains(e.parent_id.as_str()) {
                chosen.insert(e.id.as_str());
                if !parents.contains(e.spiffe_id.as_str()) {
                    next.insert(e.spiffe_id.as_str());
                }
            }
        }
        if next.is_empty() {
            break;
        }
        parents.extend(next.iter().copied());
        frontier = next;
    }
    entries
        .iter()
        .filter(|e| chosen.contains(e.id.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, spiffe_id: &str, parent: &str, selectors: &[&str]) -> Entry {
        Entry {
            id: id.into(),
            spiffe_id: spiffe_id.into(),
            parent_id: parent.into(),
            selectors: selectors.iter().map(|s| s.to_string()).collect(),
            x509_ttl_secs: 0,
            jwt_ttl_secs: 0,
            downstream: false,
            dns_names: vec![],
            created_at: 0,
        }
    }

    const SERVER: &str = "spiffe://td/trustdeck/server";
    const AGENT: &str = "spiffe://td/trustdeck/agent/join_token/abc";

    #[test]
    fn direct_alias_and_nested() {
        let entries = vec![
            entry("1", "spiffe://td/web", AGENT, &["unix:uid:1000"]),
            entry(
                "2",
                "spiffe://td/other",
                "spiffe://td/trustdeck/agent/x",
                &["unix:uid:1"],
            ),
            entry(
                "3",
                "spiffe://td/node/gcp",
                SERVER,
                &["x509pop:subject:cn:n1"],
            ),
            entry(
                "4",
                "spiffe://td/db",
                "spiffe://td/node/gcp",
                &["unix:uid:5"],
            ),
            entry(
                "5",
                "spiffe://td/sidecar",
                "spiffe://td/web",
                &["unix:uid:6"],
            ),
            entry("6", "spiffe://td/nope", SERVER, &["x509pop:subject:cn:n2"]),
            entry(
                "7",
                "spiffe://td/nope-child",
                "spiffe://td/nope",
                &["unix:uid:7"],
            ),
        ];
        let got: Vec<&str> =
            authorized_entries(AGENT, &["x509pop:subject:cn:n1".into()], SERVER, &entries)
                .iter()
                .map(|e| e.id.as_str())
                .collect();
        assert_eq!(got, vec!["1", "4", "5"]);
        let none = authorized_entries("spiffe://td/trustdeck/agent/zzz", &[], SERVER, &entries);
        assert!(none.is_empty());
    }

    #[test]
    fn cycles_terminate() {
        let entries = vec![
            entry("1", "spiffe://td/a", AGENT, &["unix:uid:1"]),
            entry("2", "spiffe://td/b", "spiffe://td/a", &["unix:uid:1"]),
            entry("3", "spiffe://td/a", "spiffe://td/b", &["unix:uid:2"]),
        ];
        assert_eq!(authorized_entries(AGENT, &[], SERVER, &entries).len(), 3);
    }
}
