//! What the runbooks ask of the topology model: daemons by fleet name, active authorities,
//! who talks to whom, what chains to what. Pure lookups over a [`Fleet`].

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{ConnectivityState, DaemonRole, Node, NodeKind, NodeState};
use trustdeck_topology::{DaemonState, Fleet};

use crate::model::AuthKind;

/// The daemon of the fleet file named `name`.
pub fn daemon<'a>(fleet: &'a Fleet, name: &str) -> Option<&'a DaemonState> {
    fleet.daemons.iter().find(|d| d.name == name)
}

/// Its role, when known.
pub fn role(d: &DaemonState) -> Option<DaemonRole> {
    d.role().known()
}

/// The fleet's daemons whose role is one of `roles`.
pub fn of_role<'a>(
    fleet: &'a Fleet,
    roles: &'a [DaemonRole],
) -> impl Iterator<Item = &'a DaemonState> + 'a {
    fleet
        .daemons
        .iter()
        .filter(move |d| role(d).is_some_and(|r| roles.contains(&r)))
}

/// Whether it is a server (upstream or downstream).
pub fn is_server(d: &DaemonState) -> bool {
    matches!(role(d), Some(DaemonRole::Upstream | DaemonRole::Downstream))
}

fn authority_kind(k: AuthKind) -> NodeKind {
    match k {
        AuthKind::X509 => NodeKind::X509Authority,
        AuthKind::Jwt => NodeKind::JwtAuthority,
    }
}

/// Its own authorities of `kind` (the holder's records, not what it issued), as
/// `(id without prefix, state)`.
pub fn authorities(d: &DaemonState, kind: AuthKind) -> Vec<(String, NodeState, &Node)> {
    d.nodes
        .values()
        .filter(|n| n.kind_wire() == authority_kind(kind))
        .filter_map(|n| {
            let state = n.state_wire().known()?;
            if state == NodeState::Issued {
                return None;
            }
            let id = n.id.strip_prefix(kind.node_prefix())?;
            Some((id.to_string(), state, n.as_ref()))
        })
        .collect()
}

/// The id of its active authority of `kind`.
pub fn active(d: &DaemonState, kind: AuthKind) -> Option<String> {
    authorities(d, kind)
        .into_iter()
        .find(|(_, s, _)| *s == NodeState::Active)
        .map(|(id, _, _)| id)
}

/// The fleet name of the server `d` talks to (an agent's server, a downstream's upstream),
/// from the SPIFFE ID its link pins.
pub fn server_of(fleet: &Fleet, d: &DaemonState) -> Option<String> {
    let want = d.upstream.as_ref().map(|u| u.peer_spiffe_id.as_str())?;
    if want.is_empty() {
        return None;
    }
    fleet
        .daemons
        .iter()
        .filter(|s| is_server(s))
        .find(|s| {
            s.pinned_id.as_deref() == Some(want)
                || s.identity.as_ref().is_some_and(|i| i.spiffe_id == want)
        })
        .map(|s| s.name.clone())
}

/// The server that holds authority `id`, and its kind.
pub fn holder_of(fleet: &Fleet, id: &str) -> Option<(String, AuthKind)> {
    fleet.daemons.iter().filter(|d| is_server(d)).find_map(|d| {
        [AuthKind::X509, AuthKind::Jwt].into_iter().find_map(|k| {
            authorities(d, k)
                .iter()
                .any(|(a, _, _)| a == id)
                .then(|| (d.name.clone(), k))
        })
    })
}

/// Whether its link to its server is connected.
pub fn link_connected(d: &DaemonState) -> bool {
    d.upstream
        .as_ref()
        .is_some_and(|u| u.state_wire() == ConnectivityState::Connected)
}

/// The X.509 key ids `node` chains to, itself first, following `issuer_key_id` through
/// every authority the fleet knows (at most 16 links).
pub fn chain_of(fleet: &Fleet, node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(id) = node.id.strip_prefix("x509:") {
        out.push(id.to_string());
    }
    let mut issuer = node.issuer_key_id.clone();
    while !issuer.is_empty() && out.len() < 16 && !out.contains(&issuer) {
        out.push(issuer.clone());
        let key = format!("x509:{issuer}");
        issuer = fleet
            .daemons
            .iter()
            .find_map(|d| d.nodes.get(&key))
            .map(|n| n.issuer_key_id.clone())
            .unwrap_or_default();
    }
    out
}

/// The valid SVIDs an agent holds (its own and its workloads').
pub fn held_svids(d: &DaemonState, now: DateTime<Utc>) -> Vec<&Node> {
    d.nodes
        .values()
        .filter(|n| {
            matches!(
                n.kind_wire().known(),
                Some(NodeKind::Agent | NodeKind::WorkloadSvid)
            ) && n.not_after > now.timestamp()
        })
        .map(|n| n.as_ref())
        .collect()
}
