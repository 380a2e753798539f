//! Which registration entries an agent is authorised for, and which of its SVIDs the server
//! accepts. Pure.
//!
//! An agent gets the entries whose parent is its own SPIFFE ID, the entries whose parent is a
//! *node alias* it matches (an entry parented to the server whose selectors are all among the
//! agent's attestation selectors), and, transitively, the entries parented to any of those.

use std::collections::HashSet;

use trustdeck_datastore::{AttestedNode, Entry};

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

/// What the serial of the SVID an agent called with means (SPIRE's `serial_number` /
/// `new_serial_number`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialBinding {
    /// The agent's current SVID.
    Current,
    /// The SVID its last renewal issued, used for the first time: promote it.
    Promote,
    /// Any other SVID of the same attestation (an older one, or one a renewal replaced
    /// before it was used): refused.
    Superseded,
}

/// How the server treats a call made with the SVID whose serial is `presented`.
pub fn serial_binding(node: &AttestedNode, presented: &str) -> SerialBinding {
    let presented = normal_serial(presented);
    if node
        .new_cert
        .as_ref()
        .is_some_and(|n| normal_serial(&n.serial) == presented)
    {
        SerialBinding::Promote
    } else if normal_serial(&node.cert_serial) == presented {
        SerialBinding::Current
    } else {
        SerialBinding::Superseded
    }
}

/// A serial's hex without leading zeros, lowercase (the issuer writes its bytes' hex; a
/// certificate parser drops leading zeros).
fn normal_serial(hex: &str) -> String {
    let t = hex.trim_start_matches('0');
    t.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustdeck_datastore::NodeCert;

    fn node(current: &str, new: Option<&str>) -> AttestedNode {
        AttestedNode {
            spiffe_id: AGENT.into(),
            attestation_type: "join_token".into(),
            cert_serial: current.into(),
            cert_not_after: 100,
            new_cert: new.map(|s| NodeCert {
                serial: s.into(),
                not_after: 200,
            }),
            banned: false,
            selectors: vec![],
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn only_the_current_and_the_pending_serial_are_accepted() {
        use SerialBinding as B;
        let settled = node("0a1b", None);
        assert_eq!(serial_binding(&settled, "a1b"), B::Current);
        assert_eq!(serial_binding(&settled, "0A1B"), B::Current);
        assert_eq!(serial_binding(&settled, "a1c"), B::Superseded);
        assert_eq!(serial_binding(&settled, ""), B::Superseded);
        let pending = node("0a1b", Some("00ff"));
        assert_eq!(serial_binding(&pending, "a1b"), B::Current);
        assert_eq!(serial_binding(&pending, "ff"), B::Promote);
        assert_eq!(serial_binding(&pending, "fe"), B::Superseded);
        // After promotion the old current one is superseded.
        let promoted = node("00ff", None);
        assert_eq!(serial_binding(&promoted, "a1b"), B::Superseded);
        assert_eq!(serial_binding(&promoted, "ff"), B::Current);
    }

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
            namespaces: vec![],
            federates_with: vec![],
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
