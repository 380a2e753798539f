//! State shared by the server's APIs.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Code, Status};
use trustdeck_datastore::{AttestedNode, Datastore, DatastoreError, Entry};
use trustdeck_process::clock::Clock;
use trustdeck_proto::node::Reason;
use trustdeck_proto::reason::reason_status;
use trustdeck_spiffe::SpiffeId;

use crate::ca::CaManager;
use crate::config::Config;
use crate::ratelimit::RateLimiter;

/// Everything the APIs share.
pub struct ServerCtx {
    pub config: Config,
    pub ds: Datastore,
    /// The X.509 CA and JWT key, and the bundle.
    pub ca: Arc<CaManager>,
    /// Where every API reads the time.
    pub clock: Arc<dyn Clock>,
    /// The server's own SPIFFE ID (also the parent of node-alias entries).
    pub server_id: SpiffeId,
    /// Trusted CAs for x509pop (empty: x509pop disabled).
    pub x509pop_cas: Vec<Vec<u8>>,
    /// Signing rate limit per agent.
    pub sign_limiter: RateLimiter,
    /// Attestation rate limit per source address.
    pub attest_limiter: RateLimiter,
    /// Origin of the rate limiters' monotonic seconds ([`ServerCtx::mono`]).
    pub origin: Instant,
    /// Downstream role: the link to the upstream.
    pub upstream: Option<Arc<crate::upstream::Upstream>>,
    /// What the admin `Watch` stream publishes.
    pub hub: Arc<trustdeck_topology::Hub>,
    /// What the agents and downstreams below this server reported holding.
    pub census: crate::census::Census,
    /// The namespaces of the intermediates this server signed, and the violations found.
    pub findings: crate::namespace::Findings,
    /// What the last fetch of each federated trust domain told beyond what is stored.
    pub fetches: crate::federation::publish::Fetches,
}

impl ServerCtx {
    /// What this server may issue workload SVIDs and register entries under.
    pub fn scope(&self) -> crate::namespace::Scope {
        match &self.upstream {
            None => crate::namespace::Scope::Unrestricted,
            Some(up) => up.namespaces.scope(),
        }
    }

    /// Refuses a workload SVID or JWT-SVID for `id` outside this server's namespaces.
    pub fn check_namespace(&self, id: &SpiffeId) -> Result<(), Status> {
        let scope = self.scope();
        if scope.allows(id) {
            return Ok(());
        }
        Err(reason_status(
            Code::PermissionDenied,
            Reason::OutsideNamespace,
            format!(
                "{id} is outside this server's namespaces {}",
                scope.describe()
            ),
        ))
    }

    /// Seconds since start, for rate limiters.
    pub fn mono(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    /// Records what `reporter` (an authenticated agent or downstream) holds, replacing its
    /// last report; a report out of bounds is refused (`InvalidArgument`,
    /// [`Reason::InvalidRequest`]) and the last one kept.
    pub fn record_held(
        &self,
        reporter: &str,
        held: &trustdeck_proto::node::HeldSvids,
    ) -> Result<(), Status> {
        crate::census::validate(held).map_err(crate::node_api::wire::invalid_request)?;
        self.census.record(reporter, held.clone(), self.clock.now());
        Ok(())
    }
}

/// Maps a datastore error to a gRPC status for the admin API, naming the problem (the node
/// API tells its callers less: `node_api::wire::datastore`).
pub fn ds_status(e: DatastoreError) -> Status {
    if let Some(s) = token_refusal(&e) {
        return s;
    }
    match e {
        DatastoreError::AlreadyExists { .. } => Status::already_exists(e.to_string()),
        DatastoreError::Conflict { .. } => Status::aborted(e.to_string()),
        _ => Status::unavailable(format!("datastore: {e}")),
    }
}

/// A refused join token, with its reason; `None` for any other error.
pub fn token_refusal(e: &DatastoreError) -> Option<Status> {
    let reason = match e {
        DatastoreError::TokenNotFound => Reason::TokenUnknown,
        DatastoreError::TokenUsed { .. } => Reason::TokenUsed,
        DatastoreError::TokenExpired { .. } => Reason::TokenExpired,
        _ => return None,
    };
    Some(reason_status(Code::PermissionDenied, reason, e.to_string()))
}

/// The serial of `node`'s pending new SVID as stored (empty when none).
fn serial_of(node: &AttestedNode) -> &str {
    node.new_cert.as_ref().map_or("", |n| n.serial.as_str())
}

fn no_svid(msg: &str) -> Status {
    reason_status(Code::Unauthenticated, Reason::NoClientSvid, msg)
}

/// An agent that passed authentication on the node API.
#[derive(Debug, Clone)]
pub struct AuthedAgent {
    pub id: SpiffeId,
    /// Its datastore record (selectors, attestation time).
    pub node: AttestedNode,
}

impl ServerCtx {
    /// Authenticates the caller of a node API request as an attested, unbanned agent.
    pub async fn authenticate_agent<T>(
        &self,
        req: &tonic::Request<T>,
    ) -> Result<AuthedAgent, Status> {
        let id = trustdeck_transport::peer_spiffe_id(req).ok_or_else(|| {
            no_svid("no client SVID presented: attest first and call with the agent SVID")
        })?;
        if id.trust_domain() != &self.config.trust_domain {
            return Err(reason_status(
                Code::PermissionDenied,
                Reason::ForeignTrustDomain,
                format!(
                    "caller {id} is not in trust domain {}",
                    self.config.trust_domain
                ),
            ));
        }
        let node = self
            .ds
            .get_node(id.as_str())
            .await
            .map_err(crate::node_api::wire::datastore)?
            .ok_or_else(|| {
                reason_status(
                    Code::PermissionDenied,
                    Reason::NotAttested,
                    format!(
                        "{id} is not an attested agent (never attested, or evicted: attest again)"
                    ),
                )
            })?;
        if node.banned {
            return Err(reason_status(
                Code::PermissionDenied,
                Reason::Banned,
                format!(
                    "agent {id} is banned; an operator must evict it before it can attest again"
                ),
            ));
        }
        // The handshake checked the SVID once; a long-lived connection must not outlive it.
        // SVIDs issued before the node's current attestation (an eviction and re-attestation
        // since) are refused.
        let leaf = self.peer_leaf(req)?;
        let slack = trustdeck_pki::ca::BACKDATE + chrono::Duration::seconds(1);
        if leaf.not_before.timestamp() + slack.num_seconds() < node.created_at {
            return Err(reason_status(
                Code::PermissionDenied,
                Reason::SvidPredatesAttestation,
                format!(
                    "{id} is not an attested agent: this SVID predates its current attestation (evicted since?)"
                ),
            ));
        }
        let node = self.bind_serial(&id, node, &leaf.serial_hex).await?;
        Ok(AuthedAgent { id, node })
    }

    /// Serial binding: the current SVID is accepted; the one the last renewal issued is
    /// promoted on its first use (a renewal whose answer was lost leaves the current one
    /// working); any other is refused as superseded, so a copy of an older SVID stops working
    /// once the agent used its renewed one.
    async fn bind_serial(
        &self,
        id: &SpiffeId,
        mut node: AttestedNode,
        serial: &str,
    ) -> Result<AttestedNode, Status> {
        use crate::authz::SerialBinding;
        match crate::authz::serial_binding(&node, serial) {
            SerialBinding::Current => Ok(node),
            SerialBinding::Promote => {
                let now = self.clock.now().timestamp();
                let promoted = self
                    .ds
                    .promote_node_cert(id.as_str(), serial_of(&node), now)
                    .await
                    .map_err(crate::node_api::wire::datastore)?;
                if promoted {
                    tracing::debug!(agent = %id, serial, "agent's renewed SVID in use; promoted");
                }
                // Not promoted: a concurrent call did; either way the SVID is current now.
                if let Some(new) = node.new_cert.take() {
                    node.cert_serial = new.serial;
                    node.cert_not_after = new.not_after;
                }
                Ok(node)
            }
            SerialBinding::Superseded => {
                tracing::warn!(agent = %id, serial, current = %node.cert_serial, "call with a superseded agent SVID refused");
                Err(reason_status(
                    Code::PermissionDenied,
                    Reason::SvidSuperseded,
                    format!(
                        "{id}: this agent SVID (serial {serial}) was superseded by a newer one; \
                         only the agent's current SVID is accepted"
                    ),
                ))
            }
        }
    }

    /// The caller's leaf certificate, refused once it has expired.
    fn peer_leaf<T>(&self, req: &tonic::Request<T>) -> Result<trustdeck_spiffe::LeafInfo, Status> {
        let certs = trustdeck_transport::serve::peer_certs(req)
            .ok_or_else(|| no_svid("no client SVID presented"))?;
        let leaf = certs
            .first()
            .ok_or_else(|| no_svid("no client SVID presented"))?;
        let invalid = |msg| reason_status(Code::Unauthenticated, Reason::SvidInvalid, msg);
        let info = trustdeck_spiffe::x509::check_leaf(leaf.as_ref())
            .map_err(|e| invalid(format!("client SVID: {e}")))?;
        if self.clock.now() >= info.not_after {
            return Err(invalid(format!(
                "client SVID {} expired at {}",
                info.spiffe_id, info.not_after
            )));
        }
        Ok(info)
    }

    /// Authenticates the caller as a downstream server: its SVID must match an entry marked
    /// `downstream`.
    pub async fn authenticate_downstream<T>(
        &self,
        req: &tonic::Request<T>,
    ) -> Result<SpiffeId, Status> {
        let id = trustdeck_transport::peer_spiffe_id(req).ok_or_else(|| {
            no_svid("no client SVID presented: downstream servers call with their SVID")
        })?;
        self.peer_leaf(req)?;
        let entries = self
            .ds
            .list_entries()
            .await
            .map_err(crate::node_api::wire::datastore)?;
        if entries
            .iter()
            .any(|e| e.downstream && e.spiffe_id == id.as_str())
        {
            Ok(id)
        } else {
            Err(reason_status(
                Code::PermissionDenied,
                Reason::NotAuthorized,
                format!(
                    "{id} is not a downstream server: no registration entry for it is marked downstream"
                ),
            ))
        }
    }

    /// The namespaces of downstream `id`: those of its `downstream` entries, or for an entry
    /// made before namespaces existed, the default derived from its SPIFFE ID.
    pub async fn downstream_namespaces(&self, id: &SpiffeId) -> Result<Vec<String>, Status> {
        let entries = self
            .ds
            .list_entries_by_spiffe_id(id.as_str())
            .await
            .map_err(crate::node_api::wire::datastore)?;
        let scope = self.scope();
        let mut ns: Vec<String> = entries
            .iter()
            .filter(|e| e.downstream && e.spiffe_id == id.as_str())
            .flat_map(|e| {
                if e.namespaces.is_empty() {
                    crate::namespace::default_for(id, &scope)
                } else {
                    e.namespaces.clone()
                }
            })
            .collect();
        ns.sort();
        ns.dedup();
        Ok(ns)
    }

    /// The entries `agent` is authorised for.
    pub async fn agent_entries(&self, agent: &AuthedAgent) -> Result<Vec<Entry>, Status> {
        let all = self
            .ds
            .list_entries()
            .await
            .map_err(crate::node_api::wire::datastore)?;
        Ok(crate::authz::authorized_entries(
            agent.id.as_str(),
            &agent.node.selectors,
            self.server_id.as_str(),
            &all,
        )
        .into_iter()
        .cloned()
        .collect())
    }
}
