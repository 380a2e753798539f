//! The issuer path of a certificate node, from its issuer up to a root: each hop found by key
//! id among the X.509 authorities of the merged tree (`x509:<key id>`) or, failing that, in the
//! DER chain its daemon sent; and where the path ends (a root, or the point where it leaves
//! what the console knows).

use std::collections::HashSet;

use trustdeck_proto::admin::{Node, NodeKind};
use trustdeck_spiffe::x509::CertSummary;
use trustdeck_topology::fleet::Tree;

/// One issuer on the path.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop<'a> {
    /// Its subject key id (lowercase hex).
    pub key_id: String,
    /// Its node in the merged tree, when a daemon reports it.
    pub node: Option<usize>,
    /// Its certificate from the DER chain, when the daemon sent it.
    pub cert: Option<&'a CertSummary>,
}

/// Where the path stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The last certificate is a root: it names no issuer, or itself.
    Root,
    /// The last certificate is not an authority and its issuer is not known (no key id yet).
    NoIssuer,
    /// The issuer with this key id is neither in the fleet nor in the chain.
    Unknown(String),
    /// The issuers name each other in a loop at this key id.
    Loop(String),
}

/// The issuers of a node, nearest first, and where they end.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerPath<'a> {
    pub hops: Vec<Hop<'a>>,
    pub end: End,
}

/// The key id of an X.509 authority node (`x509:<key id>`).
fn own_key(n: &Node) -> Option<&str> {
    n.id.strip_prefix("x509:")
        .filter(|k| !k.starts_with("serial:"))
}

fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The issuer path of `start` (the leaf of `chain`, leaf first, when the daemon sent one).
pub fn issuer_path<'a>(tree: &Tree, start: &Node, chain: &'a [CertSummary]) -> IssuerPath<'a> {
    let leaf = chain.first();
    let mut own = own_key(start)
        .map(str::to_string)
        .or_else(|| leaf.and_then(|c| c.subject_key_id.clone()));
    let mut issuer =
        nonempty(&start.issuer_key_id).or_else(|| leaf.and_then(|c| c.authority_key_id.clone()));
    let mut authority = start.kind_wire().known() == Some(NodeKind::X509Authority)
        || leaf.is_some_and(|c| c.ca.is_some_and(|(ca, _)| ca));
    let mut seen: HashSet<String> = own.iter().cloned().collect();
    let mut hops = Vec::new();
    let end = loop {
        let Some(k) = issuer.take() else {
            break if authority { End::Root } else { End::NoIssuer };
        };
        if own.as_deref() == Some(k.as_str()) {
            break End::Root;
        }
        if !seen.insert(k.clone()) {
            break End::Loop(k);
        }
        let node = tree.by_id.get(&format!("x509:{k}")).copied();
        let cert = chain[1.min(chain.len())..]
            .iter()
            .find(|c| c.subject_key_id.as_deref() == Some(k.as_str()));
        if node.is_none() && cert.is_none() {
            break End::Unknown(k);
        }
        issuer = node
            .and_then(|i| nonempty(&tree.nodes[i].node.issuer_key_id))
            .or_else(|| cert.and_then(|c| c.authority_key_id.clone()));
        authority = true;
        own = Some(k.clone());
        hops.push(Hop {
            key_id: k,
            node,
            cert,
        });
    };
    IssuerPath { hops, end }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use trustdeck_spiffe::x509::KeyType;
    use trustdeck_topology::fleet::TreeNode;

    use super::*;

    fn tree(nodes: Vec<Node>) -> Tree {
        let mut t = Tree::default();
        for n in nodes {
            t.by_id.insert(n.id.clone(), t.nodes.len());
            t.nodes.push(TreeNode {
                node: n.into(),
                source: 0,
                children: Vec::new(),
                parent: None,
                segment: "".into(),
            });
        }
        t
    }

    fn ca(key: &str, issuer: &str) -> Node {
        Node {
            id: format!("x509:{key}"),
            kind: NodeKind::X509Authority as i32,
            issuer_key_id: issuer.into(),
            ..Default::default()
        }
    }

    fn svid(issuer: &str) -> Node {
        Node {
            id: "svid:a#e".into(),
            kind: NodeKind::WorkloadSvid as i32,
            issuer_key_id: issuer.into(),
            ..Default::default()
        }
    }

    fn cert(ski: &str, aki: &str, ca: bool) -> CertSummary {
        CertSummary {
            subject: format!("CN={ski}"),
            issuer: format!("CN={aki}"),
            serial_hex: "01".into(),
            not_before: DateTime::UNIX_EPOCH,
            not_after: DateTime::UNIX_EPOCH,
            key_type: KeyType::EcdsaP256,
            subject_key_id: Some(ski.into()),
            authority_key_id: (!aki.is_empty()).then(|| aki.into()),
            uri_sans: Vec::new(),
            dns_sans: Vec::new(),
            ca: Some((ca, None)),
            key_usage: None,
        }
    }

    fn keys<'p>(p: &'p IssuerPath<'_>) -> Vec<(&'p str, bool, bool)> {
        p.hops
            .iter()
            .map(|h| (h.key_id.as_str(), h.node.is_some(), h.cert.is_some()))
            .collect()
    }

    #[test]
    fn an_svid_climbs_the_fleets_authorities_to_a_root() {
        let t = tree(vec![ca("11", "aa"), ca("aa", "")]);
        let p = issuer_path(&t, &svid("11"), &[]);
        assert_eq!(keys(&p), vec![("11", true, false), ("aa", true, false)]);
        assert_eq!(p.end, End::Root);
    }

    #[test]
    fn the_chain_fills_in_what_the_fleet_does_not_say() {
        // The SVID node names no issuer and the intermediate names none either: the DER says.
        let t = tree(vec![ca("11", ""), ca("aa", "aa")]);
        let chain = [cert("0f", "11", false), cert("11", "aa", true)];
        let p = issuer_path(&t, &svid(""), &chain);
        assert_eq!(keys(&p), vec![("11", true, true), ("aa", true, false)]);
        assert_eq!(p.end, End::Root, "a self-signed root ends the path");
    }

    #[test]
    fn the_path_says_where_it_leaves_what_the_console_knows() {
        let t = tree(vec![ca("11", "")]);
        let chain = [cert("0f", "11", false), cert("11", "5e", true)];
        let p = issuer_path(&t, &svid(""), &chain);
        assert_eq!(keys(&p), vec![("11", true, true)]);
        assert_eq!(p.end, End::Unknown("5e".into()));
        // An issuer only the chain has is a hop, not the end.
        let chain = [cert("0f", "77", false), cert("77", "", true)];
        let p = issuer_path(&tree(vec![]), &svid(""), &chain);
        assert_eq!(keys(&p), vec![("77", false, true)]);
        assert_eq!(p.end, End::Root);
    }

    #[test]
    fn roots_loops_and_unknown_issuers_end_the_path() {
        let t = tree(vec![ca("aa", ""), ca("b1", "b2"), ca("b2", "b1")]);
        let root = t.nodes[0].node.as_ref().clone();
        assert_eq!(issuer_path(&t, &root, &[]).hops, vec![]);
        assert_eq!(issuer_path(&t, &root, &[]).end, End::Root);
        assert_eq!(
            issuer_path(&t, &svid("b1"), &[]).end,
            End::Loop("b1".into())
        );
        assert_eq!(issuer_path(&t, &svid(""), &[]).end, End::NoIssuer);
    }
}
