//! The merged tree: every daemon's nodes in one forest, a node reported by several daemons
//! taken from its holder (live or last-known), the same shape whether its daemons are live or
//! not, each node's segment, and the rows a view shows (collapse, filter).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use trustdeck_proto::admin::{DaemonRole, Node, NodeKind, NodeState};

use super::Fleet;
use super::filter::{Filter, NodeFacts};

/// A node in the merged tree.
#[derive(Debug, Clone)]
pub struct TreeNode {
    pub node: Arc<Node>,
    /// Index of the daemon it came from.
    pub source: usize,
    /// Children, in sibling order.
    pub children: Vec<usize>,
    pub parent: Option<usize>,
    /// The segment whose server the node is under (the nearest server at or above it): the
    /// segment whose loss stops its renewal. A node agent's SVIDs, issued by the upstream,
    /// count under the upstream's segment in every view and in the JSON.
    pub segment: Arc<str>,
}

/// The merged tree.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub nodes: Vec<TreeNode>,
    /// Top-level nodes, sorted like children.
    pub roots: Vec<usize>,
    /// Index into [`nodes`](Self::nodes) by node id (aliases included).
    pub by_id: HashMap<String, usize>,
    /// The server node of each server daemon (by daemon index): the node it publishes about
    /// itself, or, for a server never reached in this run, the placeholder its upstream
    /// publishes for it.
    pub server_of: HashMap<usize, usize>,
}

/// A visible row of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Index in [`Tree::nodes`].
    pub idx: usize,
    /// Depth (0 for top level).
    pub depth: u16,
    pub has_children: bool,
    /// Whether its children are shown.
    pub expanded: bool,
}

/// Sibling order: authorities, JWT keys, servers, agents, workloads, kinds this build does
/// not know.
fn kind_rank(n: &Node) -> u8 {
    match n.kind_wire().known() {
        Some(NodeKind::X509Authority) => 0,
        Some(NodeKind::JwtAuthority) => 1,
        Some(NodeKind::Server) => 2,
        Some(NodeKind::Agent) => 3,
        Some(NodeKind::WorkloadSvid) => 4,
        Some(NodeKind::Unspecified) | None => 5,
    }
}

impl Fleet {
    /// Whether daemon `d`'s record of `n` is its holder's: the agent for an SVID or itself,
    /// the server that signs with an authority (active, prepared, old), a server itself; not
    /// the record of what a server issued to another daemon.
    fn holds(&self, d: usize, n: &Node) -> bool {
        match n.kind_wire().known() {
            Some(NodeKind::WorkloadSvid | NodeKind::Agent) => {
                self.daemons[d].role() == DaemonRole::Agent
            }
            _ => n.state_wire() != NodeState::Issued,
        }
    }

    /// Which daemon each node id is taken from, without the ids another node's aliases
    /// replace; and those aliases as `(alias, id)`. A server's record of a ban wins; else the
    /// holder's record wins, live or stale (a stale one is last-known and marked so by its
    /// daemon's loss): a row says the same thing about a node whether its holder is live or
    /// not. Another daemon's record (an
    /// upstream's of the intermediate it issued) fills in for a holder never heard from in
    /// this run; among equals a live record wins, then the most specific daemon. A stale
    /// node's aliases count too: a downstream the console lost keeps its place, and no
    /// placeholder appears for it.
    fn choose_sources(&self) -> (HashMap<&str, usize>, Vec<(String, String)>) {
        let mut chosen: HashMap<&str, (usize, (bool, bool, bool))> = HashMap::new();
        for d in self.ordered() {
            let live = self.daemons[d].is_live();
            for (id, n) in &self.daemons[d].nodes {
                // A ban is the server's decision: it wins over the banned agent's own word.
                let banned = n.state_wire() == NodeState::Banned;
                let rank = (banned, self.holds(d, n), live);
                match chosen.get(id.as_str()) {
                    Some(&(_, prev)) if prev > rank => {}
                    _ => {
                        chosen.insert(id.as_str(), (d, rank));
                    }
                }
            }
        }
        let mut chosen: HashMap<&str, usize> =
            chosen.into_iter().map(|(id, (d, _))| (id, d)).collect();
        let mut aliases: Vec<(String, String)> = Vec::new();
        for (&id, &d) in &chosen {
            for a in &self.daemons[d].nodes[id].aliases {
                aliases.push((a.clone(), id.to_string()));
            }
        }
        for (a, _) in &aliases {
            chosen.remove(a.as_str());
        }
        (chosen, aliases)
    }

    /// Merges every daemon's nodes into one tree. A node reported by several daemons is taken
    /// from its holder, live or stale (an agent about its own SVIDs beats its server; see
    /// `choose_sources`).
    pub fn tree(&self) -> Tree {
        let (chosen, aliases) = self.choose_sources();
        let mut tree = Tree::default();
        let mut ids: Vec<(&str, usize)> = chosen.into_iter().collect();
        ids.sort_unstable();
        tree.nodes.reserve(ids.len());
        tree.by_id.reserve(ids.len());
        for (id, d) in ids {
            let node = self.daemons[d].nodes[id].clone();
            tree.by_id.insert(id.to_string(), tree.nodes.len());
            tree.nodes.push(TreeNode {
                node,
                source: d,
                children: Vec::new(),
                parent: None,
                segment: Arc::from(""),
            });
        }
        for (a, real) in aliases {
            if let Some(&i) = tree.by_id.get(&real) {
                tree.by_id.entry(a).or_insert(i);
            }
        }
        self.find_servers(&mut tree);
        for i in 0..tree.nodes.len() {
            if let Some(&p) = tree.by_id.get(&tree.nodes[i].node.parent)
                && p != i
            {
                tree.nodes[i].parent = Some(p);
            }
        }
        // Daemon data is not trusted to be a tree: a node on a parent cycle becomes a root.
        break_cycles(&mut tree.nodes);
        for i in 0..tree.nodes.len() {
            match tree.nodes[i].parent {
                Some(p) => tree.nodes[p].children.push(i),
                None => tree.roots.push(i),
            }
        }
        sort_siblings(&mut tree);
        // The fleet's own trust domain first, other trust domains' trees below it (the sort
        // is stable: each keeps its order).
        let foreign = |i: &usize| {
            self.daemons
                .get(tree.nodes[*i].source)
                .is_some_and(|d| d.trust_domain.is_some())
        };
        let mut roots = std::mem::take(&mut tree.roots);
        roots.sort_by_key(foreign);
        tree.roots = roots;
        self.assign_segments(&mut tree);
        tree
    }

    /// Fills [`Tree::server_of`]. A server never reached in this run is matched to the
    /// placeholder its upstream publishes for it, and the nodes of its segment's agents that
    /// name it as their parent hang below that placeholder.
    fn find_servers(&self, tree: &mut Tree) {
        let mut claimed: HashSet<usize> = HashSet::new();
        let mut unknown: Vec<usize> = Vec::new();
        for (d, ds) in self.daemons.iter().enumerate() {
            if ds.role() == DaemonRole::Agent {
                continue;
            }
            let own = ds
                .identity
                .as_ref()
                .filter(|i| !i.spiffe_id.is_empty())
                .and_then(|i| tree.by_id.get(&format!("server:{}", i.spiffe_id)).copied());
            match own {
                Some(i) => {
                    tree.server_of.insert(d, i);
                    claimed.insert(i);
                }
                None if ds.identity.is_none() => unknown.push(d),
                None => {}
            }
        }
        if unknown.is_empty() {
            return;
        }
        // Placeholders: servers published by another server (issued an intermediate) and
        // claimed by no daemon.
        let placeholders: Vec<usize> = (0..tree.nodes.len())
            .filter(|&i| {
                let t = &tree.nodes[i];
                t.node.kind_wire() == NodeKind::Server
                    && t.node.state_wire() == NodeState::Issued
                    && !claimed.contains(&i)
            })
            .collect();
        for &d in &unknown {
            let seg = self.daemons[d].segment();
            // The placeholder whose SPIFFE ID is an SVID held by an agent of this segment
            // (the node agent that gives the downstream its identity).
            let by_agent = placeholders.iter().copied().find(|&p| {
                !claimed.contains(&p)
                    && tree.nodes.iter().any(|t| {
                        t.node.kind_wire() == NodeKind::WorkloadSvid
                            && t.node.spiffe_id == tree.nodes[p].node.spiffe_id
                            && self.daemons[t.source].role() == DaemonRole::Agent
                            && self.daemons[t.source].segment() == seg
                    })
            });
            let free: Vec<usize> = placeholders
                .iter()
                .copied()
                .filter(|p| !claimed.contains(p))
                .collect();
            let only = (unknown.len() == 1 && free.len() == 1).then(|| free[0]);
            if let Some(p) = by_agent.or(only) {
                claimed.insert(p);
                tree.server_of.insert(d, p);
                self.adopt_orphans(tree, d, p);
            }
        }
    }

    /// Nodes of daemon `d`'s segment whose parent is a server the tree does not have (the
    /// never-reached server's own ID) hang below its placeholder `p`.
    fn adopt_orphans(&self, tree: &mut Tree, d: usize, p: usize) {
        let seg = self.daemons[d].segment();
        let missing: Vec<String> = tree
            .nodes
            .iter()
            .filter(|t| {
                t.node.parent.starts_with("server:")
                    && !tree.by_id.contains_key(&t.node.parent)
                    && self.daemons[t.source].segment() == seg
            })
            .map(|t| t.node.parent.clone())
            .collect();
        for id in missing {
            tree.by_id.insert(id, p);
        }
    }

    /// Every node's segment: the nearest server's at or above it (a server's own segment, or
    /// the segment of the daemon matched to it).
    fn assign_segments(&self, tree: &mut Tree) {
        let by_node: HashMap<usize, usize> = tree.server_of.iter().map(|(&d, &i)| (i, d)).collect();
        let mut stack: Vec<(usize, Arc<str>)> = tree
            .roots
            .iter()
            .map(|&i| (i, Arc::from(tree.nodes[i].node.segment.as_str())))
            .collect();
        while let Some((i, inherited)) = stack.pop() {
            let t = &tree.nodes[i];
            let seg: Arc<str> = if t.node.kind_wire() == NodeKind::Server {
                match by_node.get(&i) {
                    Some(&d) => Arc::from(self.daemons[d].segment()),
                    None if !t.node.segment.is_empty() => Arc::from(t.node.segment.as_str()),
                    None => inherited,
                }
            } else if inherited.is_empty() {
                Arc::from(t.node.segment.as_str())
            } else {
                inherited
            };
            for &c in &tree.nodes[i].children {
                stack.push((c, seg.clone()));
            }
            tree.nodes[i].segment = seg;
        }
    }
}

/// Siblings: authorities, JWT keys, servers, agents, workloads; then by segment, label and id.
/// Compared by reference: no string is copied.
fn sort_siblings(tree: &mut Tree) {
    let nodes = &tree.nodes;
    let cmp = |a: &usize, b: &usize| {
        let (x, y) = (&nodes[*a].node, &nodes[*b].node);
        (kind_rank(x), &x.segment, &x.label, &x.id).cmp(&(
            kind_rank(y),
            &y.segment,
            &y.label,
            &y.id,
        ))
    };
    let mut roots = std::mem::take(&mut tree.roots);
    roots.sort_by(cmp);
    let mut children: Vec<Vec<usize>> = tree
        .nodes
        .iter()
        .map(|t| {
            let mut c = t.children.clone();
            c.sort_by(cmp);
            c
        })
        .collect();
    for (t, c) in tree.nodes.iter_mut().zip(children.iter_mut()) {
        t.children = std::mem::take(c);
    }
    tree.roots = roots;
}

/// Cuts parent links so that no walk up the tree loops: each node is walked up until a root or
/// an already-checked node; a node met twice on one walk is on a cycle and loses its parent.
fn break_cycles(nodes: &mut [TreeNode]) {
    // 0 unvisited, 1 on the current walk, 2 done.
    let mut mark = vec![0u8; nodes.len()];
    for start in 0..nodes.len() {
        let mut path = Vec::new();
        let mut i = start;
        loop {
            if mark[i] == 2 {
                break;
            }
            if mark[i] == 1 {
                nodes[i].parent = None;
                break;
            }
            mark[i] = 1;
            path.push(i);
            match nodes[i].parent {
                Some(p) => i = p,
                None => break,
            }
        }
        for j in path {
            mark[j] = 2;
        }
    }
}

impl Tree {
    /// Which nodes a filter keeps: the matching ones and their ancestors.
    fn kept_by(&self, matches: &dyn Fn(usize) -> bool) -> Vec<bool> {
        let mut keep = vec![false; self.nodes.len()];
        for i in 0..self.nodes.len() {
            if matches(i) {
                let mut j = Some(i);
                while let Some(k) = j {
                    if keep[k] {
                        break;
                    }
                    keep[k] = true;
                    j = self.nodes[k].parent;
                }
            }
        }
        keep
    }

    /// Visible rows: every node whose ancestors are all expanded (`collapsed` holds node ids),
    /// restricted, when `filter` is not empty, to nodes matching it (by label, SPIFFE ID, id,
    /// segment, state; see [`Filter`]) and their ancestors. A filter that does not parse
    /// matches nothing.
    pub fn rows(&self, collapsed: &HashSet<String>, filter: &str) -> Vec<Row> {
        if filter.trim().is_empty() {
            return self.rows_matching(collapsed, None);
        }
        let f = Filter::parse(filter).ok();
        let matches = |i: usize| {
            let n = &self.nodes[i].node;
            f.as_ref().is_some_and(|f| {
                f.matches_node(&NodeFacts {
                    node: n,
                    name: &n.label,
                    daemon: "",
                    level: None,
                })
            })
        };
        self.rows_matching(collapsed, Some(&matches))
    }

    /// Visible rows: every node whose ancestors are all expanded (`collapsed` holds node ids),
    /// restricted, when `matches` is given, to the nodes it accepts and their ancestors (which
    /// are then all expanded).
    pub fn rows_matching(
        &self,
        collapsed: &HashSet<String>,
        matches: Option<&dyn Fn(usize) -> bool>,
    ) -> Vec<Row> {
        let keep = matches.map(|m| self.kept_by(m));
        let mut rows = Vec::new();
        let mut stack: Vec<(usize, u16)> = self.roots.iter().rev().map(|&i| (i, 0)).collect();
        while let Some((i, depth)) = stack.pop() {
            if let Some(k) = &keep
                && !k[i]
            {
                continue;
            }
            let t = &self.nodes[i];
            let expanded = !collapsed.contains(&t.node.id) || keep.is_some();
            rows.push(Row {
                idx: i,
                depth,
                has_children: !t.children.is_empty(),
                expanded,
            });
            if expanded {
                stack.extend(t.children.iter().rev().map(|&c| (c, depth + 1)));
            }
        }
        rows
    }
}
