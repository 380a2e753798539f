//! What the agent publishes on its admin `Watch` stream: its own SVID, the workload SVIDs it
//! holds, its connection to its server, and events.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{
    Connectivity, DaemonIdentity, DaemonRole, KeyBackend, KeyStorage, Node, NodeKind, NodeState,
};

use trustdeck_spiffe::SpiffeId;

use crate::agent::{Agent, ServerStatus};
use crate::cache::{Cache, WorkloadSvid};
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
    let Some((id, nb, na)) = agent.svid_window() else {
        return Vec::new();
    };
    let own = OwnSvid {
        id: &id,
        not_before: nb,
        not_after: na,
        chain: &agent.svid_chain(),
    };
    nodes_of(agent.config(), &own, cache)
}

/// The agent SVID as published.
pub struct OwnSvid<'a> {
    pub id: &'a SpiffeId,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// DER chain, leaf first.
    pub chain: &'a [Vec<u8>],
}

/// The serial and issuer key id of a chain's leaf, formatted as the server formats them
/// (lowercase hex, as in node ids); empty when the leaf cannot be read.
fn cert_ids(chain: &[Vec<u8>]) -> (String, String) {
    chain
        .first()
        .and_then(|leaf| trustdeck_spiffe::x509::summarize(leaf).ok())
        .map(|s| (s.serial_hex, s.authority_key_id.unwrap_or_default()))
        .unwrap_or_default()
}

/// [`nodes`] from the agent's config and SVID.
pub fn nodes_of(config: &Config, own: &OwnSvid<'_>, cache: &Cache) -> Vec<Node> {
    let agent_node = format!("agent:{}", own.id);
    let mut out = Vec::with_capacity(cache.svids.len() + 1);
    let (serial, issuer_key_id) = cert_ids(own.chain);
    out.push(Node {
        id: agent_node.clone(),
        parent: format!("server:{}", config.server_spiffe_id),
        kind: NodeKind::Agent as i32,
        label: config.name.clone(),
        spiffe_id: own.id.to_string(),
        state: NodeState::Attested.into(),
        not_before: own.not_before.timestamp(),
        not_after: own.not_after.timestamp(),
        key_storage: Some(KeyStorage {
            backend: KeyBackend::Disk.into(),
            detail: crate::state::key_path(&config.data_dir)
                .display()
                .to_string(),
            ..Default::default()
        }),
        serial,
        issuer_key_id,
        segment: config.segment.clone(),
        ..Default::default()
    });
    for s in cache.svids.values() {
        out.push(workload_node(config, &agent_node, own.id, s, cache));
    }
    out
}

fn workload_node(
    config: &Config,
    agent_node: &str,
    agent_id: &SpiffeId,
    s: &WorkloadSvid,
    cache: &Cache,
) -> Node {
    let (serial, issuer_key_id) = cert_ids(&s.chain);
    Node {
        id: format!("svid:{agent_id}#{}", s.entry_id),
        parent: agent_node.into(),
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
        serial,
        issuer_key_id,
        entry_id: s.entry_id.clone(),
        selectors: cache
            .entries
            .iter()
            .find(|e| e.id == s.entry_id)
            .map(|e| e.selectors.clone())
            .unwrap_or_default(),
        segment: config.segment.clone(),
        ..Default::default()
    }
}

/// The server connection as published, with the sequence of the bundle the agent holds (a
/// runbook waits on it until a new authority reached every agent).
pub fn connectivity(config: &Config, s: &ServerStatus, bundle_sequence: u64) -> Connectivity {
    Connectivity {
        configured: true,
        state: s.state.into(),
        since: s.since.timestamp(),
        last_error: s.last_error.clone().unwrap_or_default(),
        peer: format!("server {}", config.server_address),
        peer_spiffe_id: config.server_spiffe_id.to_string(),
        last_bundle_sequence: bundle_sequence,
        stranded_reason: s.stranded.map_or(0, i32::from),
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
            .set_upstream(connectivity(agent.config(), &s, cache.bundle.sequence), now);
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = cache_rx.changed() => {}
            _ = status_rx.changed() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Duration;
    use trustdeck_pki::csr::{make_csr, verify_csr};
    use trustdeck_pki::keys::{KeyManager, MemoryKeyManager, SoftwareKey};
    use trustdeck_pki::{SigningKey, X509Authority};
    use trustdeck_spiffe::{Bundle, TrustDomain};

    use super::*;

    const CONFIG: &str = r#"
trust_domain = "example.org"
server_address = "127.0.0.1:8081"
trust_bundle_path = "/etc/trustdeck/bundle.pem"
data_dir = "/var/lib/trustdeck/agent"
name = "gcp-workloads-1"

[node_attestation]
type = "join_token"
token = "abc"
"#;

    fn issue(ca: &X509Authority, id: &SpiffeId, now: DateTime<Utc>) -> Vec<Vec<u8>> {
        let key: Arc<dyn SigningKey> = Arc::new(SoftwareKey::ephemeral().unwrap().0);
        let csr = verify_csr(&make_csr(&key, Some(id)).unwrap()).unwrap();
        ca.issue_x509_svid(&csr, id, &[], Duration::minutes(10), now)
            .unwrap()
            .chain
    }

    /// Both the agent SVID and a workload SVID carry the leaf's serial and its issuer's key
    /// id, in the form the server publishes (so the console can copy the serial and walk the
    /// issuer path).
    #[test]
    fn svid_nodes_carry_serial_and_issuer_key_id() {
        let td = TrustDomain::parse("example.org").unwrap();
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let ca_key = MemoryKeyManager::new().generate("ca").unwrap();
        let ca = X509Authority::self_signed(&td, ca_key, "CA", now, Duration::hours(1)).unwrap();
        let ca_key_id = trustdeck_spiffe::x509::summarize(ca.cert_der())
            .unwrap()
            .subject_key_id
            .unwrap();
        let agent_id = SpiffeId::parse("spiffe://example.org/trustdeck/agent/x").unwrap();
        let agent_chain = issue(&ca, &agent_id, now);
        let workload = SpiffeId::parse("spiffe://example.org/prod/api").unwrap();
        let chain = issue(&ca, &workload, now);
        let mut cache = Cache::new(Arc::new(Bundle::new(td)));
        cache.svids.insert(
            "e1".into(),
            Arc::new(WorkloadSvid {
                entry_id: "e1".into(),
                spiffe_id: workload,
                chain_der: chain.concat(),
                chain: chain.clone(),
                key_pkcs8: Vec::new(),
                not_before: now,
                not_after: now + Duration::minutes(10),
                renew_at: now + Duration::minutes(5),
                key_ids: Vec::new(),
            }),
        );
        let config = Config::parse(CONFIG, "a.toml").unwrap();
        let own = OwnSvid {
            id: &agent_id,
            not_before: now,
            not_after: now + Duration::minutes(10),
            chain: &agent_chain,
        };
        let got = nodes_of(&config, &own, &cache);
        assert_eq!(got.len(), 2);
        for (node, chain) in got.iter().zip([&agent_chain, &chain]) {
            let leaf = trustdeck_spiffe::x509::check_leaf(&chain[0]).unwrap();
            assert_eq!(node.serial, leaf.serial_hex, "{}", node.id);
            assert!(!node.serial.is_empty());
            assert_eq!(node.issuer_key_id, ca_key_id, "{}", node.id);
        }
    }

    /// A stranded agent says so, and why, on its admin stream.
    #[test]
    fn a_stranded_link_is_published_with_its_reason() {
        use trustdeck_proto::admin::{ConnectivityState, StrandedReason};
        let config = Config::parse(CONFIG, "a.toml").unwrap();
        let status = ServerStatus {
            state: ConnectivityState::Stranded,
            since: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            last_error: Some("node attestation refused: token spent".into()),
            stranded: Some(StrandedReason::TokenUsed),
        };
        let c = connectivity(&config, &status, 7);
        assert_eq!(
            c.last_bundle_sequence, 7,
            "the held bundle's sequence is published"
        );
        assert_eq!(c.state_wire(), ConnectivityState::Stranded);
        assert_eq!(c.stranded_reason_wire(), StrandedReason::TokenUsed);
        assert_eq!(c.peer_spiffe_id, config.server_spiffe_id.to_string());
        let connected = ServerStatus {
            state: ConnectivityState::Connected,
            stranded: None,
            ..status
        };
        assert_eq!(
            connectivity(&config, &connected, 7).stranded_reason_wire(),
            StrandedReason::Unspecified
        );
    }
}
