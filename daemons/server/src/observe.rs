//! What the server publishes on its admin `Watch` stream: itself, its CA authorities (root or
//! intermediate, active, prepared, old and tainted; revoked ones leave), its JWT keys, its agents and the workload SVIDs it
//! issued to them, the intermediates it signed for downstreams, its upstream connectivity, and
//! events. Builders here are pure functions of the CA state and datastore records.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use trustdeck_datastore::{AttestedNode, DatastoreError};
use trustdeck_pki::X509Authority;
use trustdeck_proto::admin::{
    Connectivity, DaemonIdentity, DaemonRole, KeyBackend, KeyStorage, Node, NodeKind, NodeState,
};
use trustdeck_topology::Hub;

use crate::ca::CaState;
use crate::config::Config;
use crate::ctx::ServerCtx;

/// Hub group of the CA nodes (server, authorities, JWT keys).
pub const GROUP_CA: &str = "ca";
/// Hub group of agents.
pub const GROUP_AGENTS: &str = "agents";
/// Hub group of issued workload SVIDs.
pub const GROUP_SVIDS: &str = "svids";
/// Hub group of intermediates signed for downstreams.
pub const GROUP_DOWNSTREAMS: &str = "downstreams";

/// How long an expired SVID stays visible before it is dropped.
pub const EXPIRED_GRACE_SECS: i64 = 60;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The daemon identity for a config.
pub fn identity(config: &Config, spiffe_id: &str, started_at: DateTime<Utc>) -> DaemonIdentity {
    DaemonIdentity {
        name: config.name.clone(),
        role: if config.upstream.is_some() {
            DaemonRole::Downstream
        } else {
            DaemonRole::Upstream
        }
        .into(),
        segment: config.segment.clone(),
        spiffe_id: spiffe_id.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        trust_domain: config.trust_domain.to_string(),
        started_at: started_at.timestamp(),
        ..Default::default()
    }
}

/// Node id of a server.
pub fn server_node_id(spiffe_id: &str) -> String {
    format!("server:{spiffe_id}")
}

/// Node id of an agent.
pub fn agent_node_id(spiffe_id: &str) -> String {
    format!("agent:{spiffe_id}")
}

/// Node id of a workload SVID held by an agent for an entry.
pub fn svid_node_id(agent: &str, entry_id: &str) -> String {
    format!("svid:{agent}#{entry_id}")
}

/// Node id of an X.509 authority (by subject key id; by serial when it has none).
pub fn x509_node_id(der: &[u8]) -> Option<(String, trustdeck_spiffe::x509::CaInfo)> {
    let info = trustdeck_spiffe::x509::check_ca(der).ok()?;
    let id = match &info.subject_key_id {
        Some(k) => format!("x509:{}", hex(k)),
        None => format!("x509:serial:{}", info.serial_hex),
    };
    Some((id, info))
}

fn storage(s: &trustdeck_pki::KeyStorage) -> KeyStorage {
    use trustdeck_pki::KeyStorage as Pki;
    let backend = match s {
        Pki::Memory => KeyBackend::Memory,
        Pki::Disk { .. } => KeyBackend::Disk,
        Pki::Pkcs11 { .. } => KeyBackend::Pkcs11,
        Pki::Tpm { .. } => KeyBackend::Tpm,
        _ => KeyBackend::Unspecified,
    };
    KeyStorage {
        backend: backend.into(),
        detail: s.to_string(),
        ..Default::default()
    }
}

fn authority_node(
    a: &X509Authority,
    state: NodeState,
    parent: &str,
    label: &str,
    segment: &str,
) -> Option<Node> {
    let (id, info) = x509_node_id(a.cert_der())?;
    Some(Node {
        id,
        parent: parent.into(),
        kind: NodeKind::X509Authority as i32,
        label: label.into(),
        subject: info.subject,
        state: state.into(),
        not_before: info.not_before.timestamp(),
        not_after: info.not_after.timestamp(),
        key_storage: Some(storage(&a.key().storage())),
        serial: info.serial_hex,
        issuer_key_id: info.authority_key_id.map(|k| hex(&k)).unwrap_or_default(),
        segment: segment.into(),
        spiffe_id: info
            .trust_domain
            .map(|t| t.id().to_string())
            .unwrap_or_default(),
        ..Default::default()
    })
}

/// The server node and its CA authorities and JWT keys.
pub fn ca_nodes(
    config: &Config,
    server_id: &str,
    alias: Option<String>,
    st: &CaState,
) -> Vec<Node> {
    let me = server_node_id(server_id);
    let downstream = config.upstream.is_some();
    let seg = config.segment.as_str();
    let ca_label = if downstream {
        "intermediate CA"
    } else {
        "root CA"
    };
    let mut out = Vec::new();
    let active = st.x509.active.as_ref();
    out.push(Node {
        id: me.clone(),
        parent: config
            .upstream
            .as_ref()
            .map(|u| server_node_id(u.spiffe_id.as_str()))
            .unwrap_or_default(),
        kind: NodeKind::Server as i32,
        label: config.name.clone(),
        spiffe_id: server_id.into(),
        subject: active.map(|a| a.subject().to_string()).unwrap_or_default(),
        state: if active.is_some() {
            NodeState::Serving
        } else {
            NodeState::NoCa
        }
        .into(),
        not_before: active
            .map(|a| a.window().not_before.timestamp())
            .unwrap_or(0),
        not_after: active
            .map(|a| a.window().not_after.timestamp())
            .unwrap_or(0),
        key_storage: active.map(|a| storage(&a.key().storage())),
        segment: seg.into(),
        aliases: alias.map(|a| vec![server_node_id(&a)]).unwrap_or_default(),
        ..Default::default()
    });
    let mut held: Vec<&[u8]> = Vec::new();
    for (a, state) in [
        (&st.x509.active, NodeState::Active),
        (&st.x509.prepared, NodeState::Prepared),
    ] {
        if let Some(a) = a {
            held.push(a.cert_der());
            out.extend(authority_node(a, state, &me, ca_label, seg));
        }
    }
    if !downstream {
        // Older roots still in the bundle (kept until they expire, for validation only).
        for der in &st.bundle.x509_authorities {
            if held.contains(&der.as_slice()) {
                continue;
            }
            if let Some((id, info)) = x509_node_id(der) {
                out.push(Node {
                    id,
                    parent: me.clone(),
                    kind: NodeKind::X509Authority as i32,
                    label: ca_label.into(),
                    subject: info.subject,
                    state: NodeState::Old.into(),
                    not_before: info.not_before.timestamp(),
                    not_after: info.not_after.timestamp(),
                    serial: info.serial_hex,
                    segment: seg.into(),
                    ..Default::default()
                });
            }
        }
        let mut jwt_held = Vec::new();
        for (k, state) in [
            (&st.jwt.active, NodeState::Active),
            (&st.jwt.prepared, NodeState::Prepared),
        ] {
            if let Some(k) = k {
                jwt_held.push(k.kid.clone());
                out.push(Node {
                    id: format!("jwt:{}", k.kid),
                    parent: me.clone(),
                    kind: NodeKind::JwtAuthority as i32,
                    label: "JWT key".into(),
                    subject: format!("kid {}", k.kid),
                    state: state.into(),
                    not_before: k.window.not_before.timestamp(),
                    not_after: k.window.not_after.timestamp(),
                    key_storage: Some(storage(&k.key.storage())),
                    segment: seg.into(),
                    ..Default::default()
                });
            }
        }
        for j in &st.bundle.jwt_authorities {
            if jwt_held.contains(&j.key_id) {
                continue;
            }
            out.push(Node {
                id: format!("jwt:{}", j.key_id),
                parent: me.clone(),
                kind: NodeKind::JwtAuthority as i32,
                label: "JWT key".into(),
                subject: format!("kid {}", j.key_id),
                state: NodeState::Old.into(),
                not_after: j.expires_at.map(|t| t.timestamp()).unwrap_or(0),
                segment: seg.into(),
                ..Default::default()
            });
        }
    }
    mark_tainted(&mut out, st, &me, ca_label, seg);
    out
}

/// Tainted authorities are published as such: the ones already listed (from the bundle)
/// change state, the others (a downstream's intermediates) are added. Revoked ones are in
/// neither the bundle nor a slot, so they are not published at all.
fn mark_tainted(out: &mut Vec<Node>, st: &CaState, me: &str, label: &str, seg: &str) {
    use trustdeck_datastore::{CaKind, CaStatus};
    for r in st.journal.iter().filter(|r| r.status == CaStatus::Tainted) {
        let id = crate::ca::events::record_node_id(r);
        if id.is_empty() {
            continue;
        }
        if let Some(n) = out.iter_mut().find(|n| n.id == id) {
            n.state = NodeState::Tainted.into();
            continue;
        }
        if r.kind != CaKind::X509 {
            continue;
        }
        let Some(own) = r
            .certificate_chain_pem
            .as_deref()
            .and_then(|p| trustdeck_spiffe::pem::decode_certs(p).ok())
            .and_then(|c| c.into_iter().next())
        else {
            continue;
        };
        if let Some((id, info)) = x509_node_id(&own) {
            out.push(Node {
                id,
                parent: me.into(),
                kind: NodeKind::X509Authority as i32,
                label: label.into(),
                subject: info.subject,
                state: NodeState::Tainted.into(),
                not_before: info.not_before.timestamp(),
                not_after: info.not_after.timestamp(),
                serial: info.serial_hex,
                issuer_key_id: info.authority_key_id.map(|k| hex(&k)).unwrap_or_default(),
                segment: seg.into(),
                ..Default::default()
            });
        }
    }
}

/// An attested agent.
pub fn agent_node(server_id: &str, segment: &str, n: &AttestedNode) -> Node {
    Node {
        id: agent_node_id(&n.spiffe_id),
        parent: server_node_id(server_id),
        kind: NodeKind::Agent as i32,
        label: "agent".into(),
        spiffe_id: n.spiffe_id.clone(),
        state: if n.banned {
            NodeState::Banned
        } else {
            NodeState::Attested
        }
        .into(),
        not_before: n.updated_at,
        not_after: n.cert_not_after,
        key_storage: Some(KeyStorage {
            backend: KeyBackend::Disk.into(),
            detail: format!("on the agent's node ({} attestation)", n.attestation_type),
            ..Default::default()
        }),
        serial: n.cert_serial.clone(),
        selectors: n.selectors.clone(),
        segment: segment.into(),
        ..Default::default()
    }
}

/// The key id of authority `a`: its subject key id in lowercase hex, as in its node id and
/// as agents report the issuer of the SVIDs it signs (empty when it has none).
pub fn key_id(a: &X509Authority) -> String {
    trustdeck_spiffe::x509::check_ca(a.cert_der())
        .ok()
        .and_then(|i| i.subject_key_id)
        .map(|k| hex(&k))
        .unwrap_or_default()
}

/// A workload SVID this server issued to an agent, as [`svid_node`] publishes it.
#[derive(Debug, Clone, Copy)]
pub struct IssuedSvid<'a> {
    /// The agent's SPIFFE ID.
    pub agent: &'a str,
    pub entry_id: &'a str,
    pub spiffe_id: &'a str,
    /// Serial, hex.
    pub serial: &'a str,
    pub not_before: i64,
    pub not_after: i64,
    /// The issuing authority's [`key_id`].
    pub issuer_key_id: &'a str,
    pub segment: &'a str,
}

/// The node of a workload SVID issued to an agent.
pub fn svid_node(s: &IssuedSvid<'_>) -> Node {
    Node {
        id: svid_node_id(s.agent, s.entry_id),
        parent: agent_node_id(s.agent),
        kind: NodeKind::WorkloadSvid as i32,
        label: trustdeck_topology::workload_label(s.spiffe_id),
        spiffe_id: s.spiffe_id.into(),
        state: NodeState::Issued.into(),
        not_before: s.not_before,
        not_after: s.not_after,
        key_storage: Some(KeyStorage {
            backend: KeyBackend::Agent.into(),
            detail: format!("generated and held by {}", s.agent),
            ..Default::default()
        }),
        serial: s.serial.into(),
        issuer_key_id: s.issuer_key_id.into(),
        entry_id: s.entry_id.into(),
        segment: s.segment.into(),
        ..Default::default()
    }
}

/// What the CA nodes were last built from: the CA state snapshot and the upstream alias.
pub type CaBuiltFrom = Option<(Arc<CaState>, Option<String>)>;

/// Publishes the CA nodes when the CA state or the server's upstream-facing ID changed since
/// `last` (the rotation loop calls this every tick; most ticks change nothing).
pub fn publish_ca(ctx: &ServerCtx, last: &mut CaBuiltFrom, now: DateTime<Utc>) {
    // Upstream, this server is known by its upstream-facing SVID's ID.
    let alias = ctx
        .upstream
        .as_ref()
        .and_then(|u| u.own_id())
        .map(|id| id.to_string());
    let st = ctx.ca.snapshot();
    if let Some((prev, prev_alias)) = last
        && Arc::ptr_eq(prev, &st)
        && *prev_alias == alias
    {
        return;
    }
    let nodes = ca_nodes(&ctx.config, ctx.server_id.as_str(), alias.clone(), &st);
    ctx.hub.replace_group(GROUP_CA, nodes, now);
    // Peers' receipts are read against our bundle's sequence, which this change may move.
    crate::federation::publish::own_sequence(ctx, now);
    *last = Some((st, alias));
}

/// Publishes the agents from the datastore and drops SVIDs of agents that are gone or that
/// expired a while ago.
pub async fn publish_agents(ctx: &ServerCtx, now: DateTime<Utc>) -> Result<(), DatastoreError> {
    let nodes = ctx.ds.list_nodes().await?;
    let agents: std::collections::HashSet<String> =
        nodes.iter().map(|n| agent_node_id(&n.spiffe_id)).collect();
    let seg = ctx.config.segment.as_str();
    ctx.hub.replace_group(
        GROUP_AGENTS,
        nodes
            .iter()
            .map(|n| agent_node(ctx.server_id.as_str(), seg, n))
            .collect(),
        now,
    );
    let cutoff = now.timestamp() - EXPIRED_GRACE_SECS;
    ctx.hub.remove_where(
        |n| {
            n.kind == NodeKind::WorkloadSvid as i32
                && (n.not_after < cutoff || !agents.contains(&n.parent))
        },
        now,
    );
    Ok(())
}

/// Publishes an intermediate this (upstream) server signed for a downstream, replacing the
/// one signed before, with a placeholder node for the downstream server itself (its own
/// stream, when the console has it, carries more).
pub fn publish_intermediate(
    ctx: &ServerCtx,
    downstream: &str,
    chain: &[Vec<u8>],
    now: DateTime<Utc>,
) {
    let Some(leaf) = chain.first() else { return };
    let Some((id, info)) = x509_node_id(leaf) else {
        return;
    };
    let ds_node = server_node_id(downstream);
    ctx.hub.remove_where(
        |n| n.parent == ds_node && n.state_wire() == NodeState::Issued && n.id != id,
        now,
    );
    let me = server_node_id(ctx.server_id.as_str());
    ctx.hub.upsert(
        GROUP_DOWNSTREAMS,
        Node {
            id: ds_node.clone(),
            parent: me,
            kind: NodeKind::Server as i32,
            label: "downstream".into(),
            spiffe_id: downstream.into(),
            state: NodeState::Issued.into(),
            not_before: info.not_before.timestamp(),
            not_after: info.not_after.timestamp(),
            ..Default::default()
        },
        now,
    );
    ctx.hub.upsert(
        GROUP_DOWNSTREAMS,
        Node {
            id,
            parent: ds_node,
            kind: NodeKind::X509Authority as i32,
            label: "intermediate CA".into(),
            subject: info.subject,
            state: NodeState::Issued.into(),
            not_before: info.not_before.timestamp(),
            not_after: info.not_after.timestamp(),
            serial: info.serial_hex,
            issuer_key_id: info.authority_key_id.map(|k| hex(&k)).unwrap_or_default(),
            ..Default::default()
        },
        now,
    );
}

/// The upstream link's state as published.
pub fn connectivity(config: &Config, s: &crate::upstream::UpstreamStatus) -> Connectivity {
    Connectivity {
        configured: true,
        state: s.state.into(),
        since: s.since.timestamp(),
        last_error: s.last_error.clone().unwrap_or_default(),
        peer: config
            .upstream
            .as_ref()
            .map(|u| format!("upstream {}", u.address))
            .unwrap_or_default(),
        peer_spiffe_id: config
            .upstream
            .as_ref()
            .map(|u| u.spiffe_id.to_string())
            .unwrap_or_default(),
        last_bundle_sequence: s.last_bundle_sequence.unwrap_or(0),
        ..Default::default()
    }
}

/// The DER chain of a node this server can show: its own authorities and bundle roots.
pub fn chain_of(ctx: &ServerCtx, node: &Node) -> Vec<Vec<u8>> {
    let st = ctx.ca.snapshot();
    for a in [&st.x509.active, &st.x509.prepared].into_iter().flatten() {
        if x509_node_id(a.cert_der()).map(|(id, _)| id) == Some(node.id.clone()) {
            let mut c = vec![a.cert_der().to_vec()];
            c.extend(a.upstream_chain().iter().cloned());
            return c;
        }
    }
    if node.id == server_node_id(ctx.server_id.as_str())
        && let Some(a) = &st.x509.active
    {
        let mut c = vec![a.cert_der().to_vec()];
        c.extend(a.upstream_chain().iter().cloned());
        return c;
    }
    st.bundle
        .x509_authorities
        .iter()
        .find(|d| x509_node_id(d).map(|(id, _)| id) == Some(node.id.clone()))
        .map(|d| vec![d.clone()])
        .unwrap_or_default()
}

/// A new hub for this server.
pub fn new_hub(config: &Config, server_id: &str, now: DateTime<Utc>) -> Arc<Hub> {
    Arc::new(Hub::new(identity(config, server_id, now)))
}

/// Why an admin caller's SVID was not issued by this server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForeignSvid {
    /// Not an X509-SVID.
    #[error("client SVID: {0}")]
    Invalid(#[from] trustdeck_spiffe::x509::ProfileError),
    /// It does not name its issuer's key.
    #[error("client SVID has no authority key identifier")]
    NoAuthorityKeyId,
    /// Another CA issued it (the issuer's key id, hex).
    #[error("its SVID was not issued by this server's CA (issuer key id {0})")]
    OtherIssuer(String),
}

/// Whether `leaf` was issued directly by one of this server's own X.509 authorities (any in
/// its CA journal, so SVIDs from before a rotation still count). Admin callers over mTLS must
/// be: an intermediate elsewhere in the trust domain can mint any SPIFFE ID.
pub fn issued_by_own_ca(st: &CaState, leaf: &[u8]) -> Result<(), ForeignSvid> {
    let info = trustdeck_spiffe::x509::check_leaf(leaf)?;
    let aki = info.authority_key_id.ok_or(ForeignSvid::NoAuthorityKeyId)?;
    let own = st
        .journal
        .iter()
        .filter(|r| r.kind == trustdeck_datastore::CaKind::X509)
        .filter_map(|r| r.certificate_chain_pem.as_deref())
        .filter_map(|pem| trustdeck_spiffe::pem::decode_certs(pem).ok())
        .filter_map(|certs| certs.into_iter().next())
        .filter_map(|der| trustdeck_spiffe::x509::check_ca(&der).ok())
        .any(|ca| ca.subject_key_id.as_deref() == Some(aki.as_slice()));
    if own {
        Ok(())
    } else {
        Err(ForeignSvid::OtherIssuer(hex(&aki)))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use trustdeck_pki::csr::{make_csr, verify_csr};
    use trustdeck_pki::keys::{KeyManager, MemoryKeyManager};
    use trustdeck_spiffe::SpiffeId;

    use super::*;

    #[test]
    fn an_issued_svid_names_its_issuers_key_as_the_agent_does() {
        let keys = MemoryKeyManager::new();
        let td = trustdeck_spiffe::TrustDomain::parse("td.test").expect("td");
        let now = DateTime::from_timestamp(1_900_000_000, 0).expect("now");
        let ca = X509Authority::self_signed(
            &td,
            keys.generate("ca").expect("key"),
            "test CA",
            now,
            Duration::hours(1),
        )
        .expect("ca");
        let kid = key_id(&ca);
        let (node_id, _) = x509_node_id(ca.cert_der()).expect("node id");
        assert_eq!(node_id, format!("x509:{kid}"), "the authority's node id");
        let id = SpiffeId::parse("spiffe://td.test/prod/api").expect("id");
        let csr = make_csr(&keys.generate("w").expect("key"), Some(&id)).expect("csr");
        let svid = ca
            .issue_x509_svid(
                &verify_csr(&csr).expect("csr"),
                &id,
                &[],
                Duration::minutes(5),
                now,
            )
            .expect("svid");
        // What the agent reports for its copy of the same SVID.
        let leaf = trustdeck_spiffe::x509::summarize(&svid.chain[0]).expect("leaf");
        assert_eq!(leaf.authority_key_id.as_deref(), Some(kid.as_str()));
        let n = svid_node(&IssuedSvid {
            agent: "spiffe://td.test/agent/a",
            entry_id: "e1",
            spiffe_id: id.as_str(),
            serial: &svid.serial_hex,
            not_before: now.timestamp(),
            not_after: svid.not_after.timestamp(),
            issuer_key_id: &kid,
            segment: "root",
        });
        assert_eq!(n.issuer_key_id, kid);
        assert_eq!(n.id, "svid:spiffe://td.test/agent/a#e1");
    }
}
