//! What the agent publishes on its admin `Watch` stream: its own SVID, the workload SVIDs it
//! holds, its connection to its server, and events.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{
    Connectivity, DaemonIdentity, DaemonRole, KeyBackend, KeyStorage, Node, NodeKind, NodeState,
};

use crate::agent::{Agent, ServerStatus};
use crate::cache::Cache;
use crate::config::Config;

/// Hub group of the agent's own nodes.
pub const GROUP_LOCAL: &str = "local";

/// The daemon identity for a config, of an agent started at `started_at`.
pub fn identity(config: &Config, started_at: DateTime<Utc>) -> DaemonIdentity {
    DaemonIdentity {
        name: config.name.clone(),
        role: DaemonRole::Agent.into(),
        segment: config.segment.clone(),
        spiffe_id: String::new(),
        version: env!("CARGO_PKG_VERSION").into(),
        trust_domain: config.trust_domain.to_string(),
        started_at: started_at.timestamp(),
        ..Default::default()
    }
}

/// The agent's node and the workload SVIDs in `cache`. Node ids match the server's, so the
/// console shows one node per SVID whichever daemon it hears from.
pub fn nodes(agent: &Agent, cache: &Cache) -> Vec<Node> {
    let config = agent.config();
    let Some((id, nb, na)) = agent.svid_window() else {
        return Vec::new();
    };
    let agent_node = format!("agent:{id}");
    let mut out = Vec::with_capacity(cache.svids.len() + 1);
    out.push(Node {
        id: agent_node.clone(),
        parent: format!("server:{}", config.server_spiffe_id),
        kind: NodeKind::Agent as i32,
        label: config.name.clone(),
        spiffe_id: id.to_string(),
        state: NodeState::Attested.into(),
        not_before: nb.timestamp(),
        not_after: na.timestamp(),
        key_storage: Some(KeyStorage {
            backend: KeyBackend::Disk.into(),
            detail: crate::state::key_path(&config.data_dir)
                .display()
                .to_string(),
            ..Default::default()
        }),
        segment: config.segment.clone(),
        ..Default::default()
    });
    for s in cache.svids.values() {
        out.push(Node {
            id: format!("svid:{id}#{}", s.entry_id),
            parent: agent_node.clone(),
            kind: NodeKind::WorkloadSvid as i32,
            label: trustdeck_topology::workload_label(s.spiffe_id.as_str()),
            spiffe_id: s.spiffe_id.to_string(),
            state: NodeState::Held.into(),
            not_before: s.not_before.timestamp(),
            not_after: s.not_after.timestamp(),
            key_storage: Some(KeyStorage {
                backend: KeyBackend::Memory.into(),
                detail: format!(
                    "agent {} (renews at {})",
                    config.name,
                    s.renew_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                ..Default::default()
            }),
            entry_id: s.entry_id.clone(),
            selectors: cache
                .entries
                .iter()
                .find(|e| e.id == s.entry_id)
                .map(|e| e.selectors.clone())
                .unwrap_or_default(),
            segment: config.segment.clone(),
            ..Default::default()
        });
    }
    out
}

/// The server connection as published.
pub fn connectivity(config: &Config, s: &ServerStatus) -> Connectivity {
    Connectivity {
        configured: true,
        state: s.state.into(),
        since: s.since.timestamp(),
        last_error: s.last_error.clone().unwrap_or_default(),
        peer: format!("server {}", config.server_address),
        peer_spiffe_id: config.server_spiffe_id.to_string(),
        last_bundle_sequence: 0,
        ..Default::default()
    }
}

/// The chain of a node the agent holds.
pub fn chain_of(agent: &Agent, node: &Node) -> Vec<Vec<u8>> {
    if node.kind == NodeKind::Agent as i32 {
        return agent.svid_chain();
    }
    agent
        .cache()
        .svids
        .get(&node.entry_id)
        .map(|s| s.chain.clone())
        .unwrap_or_default()
}

/// Keeps the hub current until shutdown: on every cache change, on agent SVID renewal (polled
/// each second) and on every server-status change.
pub async fn publish(agent: Arc<Agent>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut cache_rx = agent.subscribe();
    let mut status_rx = agent.subscribe_status();
    // What the published nodes were built from: rebuilt only when either changes (the 1 s
    // wake-up only notices an agent SVID renewal).
    let mut built_from = None;
    loop {
        let cache = cache_rx.borrow_and_update().clone();
        let now = agent.clock().now();
        let svid = agent.svid_window();
        if let Some((id, _, _)) = &svid {
            agent.hub().set_spiffe_id(id.as_str(), now);
        }
        let key = (cache.revision, svid);
        if built_from.as_ref() != Some(&key) {
            agent
                .hub()
                .replace_group(GROUP_LOCAL, nodes(&agent, &cache), now);
            built_from = Some(key);
        }
        let s = status_rx.borrow_and_update().clone();
        agent
            .hub()
            .set_upstream(connectivity(agent.config(), &s), now);
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = cache_rx.changed() => {}
            _ = status_rx.changed() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}
