//! The local administration API on a Unix socket: entries, join tokens, agents, bundle,
//! health. Callers are checked by their socket peer uid; every change is audited.

use std::sync::Arc;

use chrono::Duration;
use ring::rand::{SecureRandom, SystemRandom};
use tonic::{Request, Response, Status};
use trustdeck_datastore::{AttestedNode, AuditRecord, Entry};
use trustdeck_proto::admin::server_admin_server::ServerAdmin;
use trustdeck_proto::admin::*;

use crate::ctx::{ServerCtx, ds_status};

/// How long `Health` waits for the datastore before calling it unreachable.
const HEALTH_PING: std::time::Duration = std::time::Duration::from_secs(3);
use crate::entry::validate_entry;
use crate::node_api::join_token_agent_id;

/// Default join token lifetime.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::minutes(10);

/// The admin service.
pub struct AdminApi {
    ctx: Arc<ServerCtx>,
}

impl AdminApi {
    /// A service over shared state.
    pub fn new(ctx: Arc<ServerCtx>) -> Self {
        Self { ctx }
    }

    /// Any allowed caller (viewer or operator), for read-only methods.
    fn reader<T>(&self, req: &Request<T>) -> Result<String, Status> {
        Ok(self.ctx.config.admin_access.caller(req)?.actor)
    }

    /// An operator, for methods that change state.
    fn operator<T>(&self, req: &Request<T>, method: &str) -> Result<String, Status> {
        Ok(self.ctx.config.admin_access.operator(req, method)?.actor)
    }

    /// Records an operator action in the audit log and as an event; `node_id`: the node it
    /// acted on, when it is one the server publishes (an agent), else empty.
    async fn audit(
        &self,
        actor: &str,
        action: &str,
        (target, node_id): (&str, &str),
        detail: String,
        outcome: &Result<(), Status>,
    ) {
        let mut id = [0u8; 12];
        let _ = SystemRandom::new().fill(&mut id);
        let rec = AuditRecord {
            id: hex::encode(id),
            at: self.ctx.clock.now().timestamp(),
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            detail,
            outcome: match outcome {
                Ok(()) => "ok".into(),
                Err(s) => format!("refused: {}", s.message()),
            },
        };
        tracing::info!(actor, action, target, outcome = %rec.outcome, "audit");
        self.ctx.hub.event(
            if outcome.is_ok() {
                trustdeck_topology::hub::Severity::Info
            } else {
                trustdeck_topology::hub::Severity::Warning
            },
            trustdeck_proto::admin::EventKind::OperatorAction,
            format!("{actor}: {action} {target} ({})", rec.outcome),
            node_id,
            self.ctx.clock.now(),
        );
        if let Err(e) = self.ctx.ds.append_audit(&rec).await {
            tracing::error!(error = %e, "could not write audit record");
        }
    }
}

fn entry_info(e: Entry) -> EntryInfo {
    EntryInfo {
        id: e.id,
        spiffe_id: e.spiffe_id,
        parent_id: e.parent_id,
        selectors: e.selectors,
        x509_ttl_secs: e.x509_ttl_secs,
        jwt_ttl_secs: e.jwt_ttl_secs,
        downstream: e.downstream,
        dns_names: e.dns_names,
        created_at: e.created_at,
    }
}

fn agent_info(n: AttestedNode) -> AgentInfo {
    AgentInfo {
        spiffe_id: n.spiffe_id,
        attestation_type: n.attestation_type,
        cert_serial: n.cert_serial,
        cert_not_after: n.cert_not_after,
        banned: n.banned,
        selectors: n.selectors,
        created_at: n.created_at,
        updated_at: n.updated_at,
    }
}

#[tonic::async_trait]
impl ServerAdmin for AdminApi {
    async fn create_entry(
        &self,
        request: Request<CreateEntryRequest>,
    ) -> Result<Response<EntryInfo>, Status> {
        let actor = self.operator(&request, "CreateEntry")?;
        let req = request.into_inner();
        let result = async {
            let config = &self.ctx.config;
            let new = validate_entry(&req, &config.trust_domain, &config.server_spiffe_id)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            if new.x509_ttl_secs > 0
                && Duration::seconds(new.x509_ttl_secs) >= self.ctx.config.ca_ttl
            {
                return Err(Status::invalid_argument(format!(
                    "x509_ttl {}s is not shorter than the CA TTL {}s: an SVID never outlives its issuer",
                    new.x509_ttl_secs,
                    self.ctx.config.ca_ttl.num_seconds()
                )));
            }
            self.ctx
                .ds
                .create_entry(&new, self.ctx.clock.now().timestamp())
                .await
                .map_err(ds_status)
        }
        .await;
        let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
        let target = result
            .as_ref()
            .map(|e| e.id.clone())
            .unwrap_or_else(|_| req.spiffe_id.clone());
        self.audit(
            &actor,
            "entry.create",
            (&target, ""),
            format!(
                "spiffe_id={} parent_id={} selectors={:?} downstream={}",
                req.spiffe_id, req.parent_id, req.selectors, req.downstream
            ),
            &outcome,
        )
        .await;
        Ok(Response::new(entry_info(result?)))
    }

    async fn list_entries(
        &self,
        request: Request<ListEntriesRequest>,
    ) -> Result<Response<ListEntriesResponse>, Status> {
        self.reader(&request)?;
        let f = request.into_inner();
        let entries = self.ctx.ds.list_entries().await.map_err(ds_status)?;
        let entries = entries
            .into_iter()
            .filter(|e| f.id.is_empty() || e.id == f.id)
            .filter(|e| f.spiffe_id.is_empty() || e.spiffe_id == f.spiffe_id)
            .filter(|e| f.parent_id.is_empty() || e.parent_id == f.parent_id)
            .map(entry_info)
            .collect();
        Ok(Response::new(ListEntriesResponse { entries }))
    }

    async fn delete_entry(
        &self,
        request: Request<DeleteEntryRequest>,
    ) -> Result<Response<DeleteEntryResponse>, Status> {
        let actor = self.operator(&request, "DeleteEntry")?;
        let id = request.into_inner().id;
        let result = async {
            let entry = self
                .ctx
                .ds
                .get_entry(&id)
                .await
                .map_err(ds_status)?
                .ok_or_else(|| Status::not_found(format!("no entry with id {id:?}")))?;
            self.ctx.ds.delete_entry(&id).await.map_err(ds_status)?;
            Ok(entry)
        }
        .await;
        let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
        self.audit(&actor, "entry.delete", (&id, ""), String::new(), &outcome)
            .await;
        Ok(Response::new(DeleteEntryResponse {
            deleted: Some(entry_info(result?)),
        }))
    }

    async fn create_join_token(
        &self,
        request: Request<CreateJoinTokenRequest>,
    ) -> Result<Response<CreateJoinTokenResponse>, Status> {
        let actor = self.operator(&request, "CreateJoinToken")?;
        let ttl_secs = request.into_inner().ttl_secs;
        let result = async {
            if !(0..=crate::node_api::MAX_TTL_SECS).contains(&ttl_secs) {
                return Err(Status::invalid_argument(format!(
                    "ttl must be between 0 and {}s, got {ttl_secs}",
                    crate::node_api::MAX_TTL_SECS
                )));
            }
            let ttl = if ttl_secs == 0 {
                DEFAULT_TOKEN_TTL
            } else {
                Duration::seconds(ttl_secs)
            };
            let mut raw = [0u8; 16];
            SystemRandom::new()
                .fill(&mut raw)
                .map_err(|_| Status::internal("random number generator failed"))?;
            let token = hex::encode(raw);
            let now = self.ctx.clock.now();
            let expires_at = (now + ttl).timestamp();
            self.ctx
                .ds
                .create_join_token(&token, expires_at, now.timestamp())
                .await
                .map_err(ds_status)?;
            Ok((token, expires_at))
        }
        .await;
        let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
        let agent_id = result
            .as_ref()
            .map(|(t, _)| join_token_agent_id(&self.ctx.config.trust_domain, t).to_string())
            .unwrap_or_default();
        // The token itself is a credential: the audit names the agent ID only by a prefix.
        self.audit(
            &actor,
            "token.generate",
            (
                agent_id
                    .get(..agent_id.len().saturating_sub(24))
                    .unwrap_or(""),
                "",
            ),
            format!("ttl={ttl_secs}s"),
            &outcome,
        )
        .await;
        let (token, expires_at) = result?;
        Ok(Response::new(CreateJoinTokenResponse {
            token,
            expires_at,
            agent_spiffe_id: agent_id,
        }))
    }

    async fn list_agents(
        &self,
        request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        self.reader(&request)?;
        let agents = self.ctx.ds.list_nodes().await.map_err(ds_status)?;
        Ok(Response::new(ListAgentsResponse {
            agents: agents.into_iter().map(agent_info).collect(),
        }))
    }

    async fn evict_agent(
        &self,
        request: Request<AgentRequest>,
    ) -> Result<Response<AgentInfo>, Status> {
        let actor = self.operator(&request, "EvictAgent")?;
        let id = request.into_inner().spiffe_id;
        let result = async {
            let node = self
                .ctx
                .ds
                .get_node(&id)
                .await
                .map_err(ds_status)?
                .ok_or_else(|| Status::not_found(format!("no attested agent {id:?}")))?;
            self.ctx.ds.delete_node(&id).await.map_err(ds_status)?;
            Ok(node)
        }
        .await;
        let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
        let node = crate::observe::agent_node_id(&id);
        self.audit(&actor, "agent.evict", (&id, &node), String::new(), &outcome)
            .await;
        Ok(Response::new(agent_info(result?)))
    }

    async fn ban_agent(
        &self,
        request: Request<AgentRequest>,
    ) -> Result<Response<AgentInfo>, Status> {
        let actor = self.operator(&request, "BanAgent")?;
        let id = request.into_inner().spiffe_id;
        let result = async {
            let now = self.ctx.clock.now().timestamp();
            let found = self
                .ctx
                .ds
                .set_node_banned(&id, true, now)
                .await
                .map_err(ds_status)?;
            if !found {
                return Err(Status::not_found(format!("no attested agent {id:?}")));
            }
            self.ctx
                .ds
                .get_node(&id)
                .await
                .map_err(ds_status)?
                .ok_or_else(|| Status::not_found(format!("no attested agent {id:?}")))
        }
        .await;
        let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
        let node = crate::observe::agent_node_id(&id);
        self.audit(&actor, "agent.ban", (&id, &node), String::new(), &outcome)
            .await;
        Ok(Response::new(agent_info(result?)))
    }

    async fn get_bundle(
        &self,
        request: Request<GetBundleRequest>,
    ) -> Result<Response<GetBundleResponse>, Status> {
        self.reader(&request)?;
        let b = self.ctx.ca.bundle();
        Ok(Response::new(GetBundleResponse {
            trust_domain: b.trust_domain.to_string(),
            spiffe_json: b.to_json(),
            pem: b.to_pem(),
            sequence: b.sequence,
        }))
    }

    async fn health(
        &self,
        request: Request<HealthRequest>,
    ) -> Result<Response<HealthResponse>, Status> {
        self.reader(&request)?;
        let st = self.ctx.ca.snapshot();
        let now = self.ctx.clock.now();
        let mut warnings = self.ctx.config.warnings.clone();
        let x509 = st.x509.active.as_ref();
        let jwt_ok = self.ctx.upstream.is_some()
            || st
                .jwt
                .active
                .as_ref()
                .is_some_and(|k| k.window.contains(now));
        let serving = x509.is_some_and(|a| a.window().contains(now)) && jwt_ok;
        if let Some(up) = &self.ctx.upstream {
            let s = up.status();
            if s.state != trustdeck_proto::admin::ConnectivityState::Connected {
                warnings.push(format!(
                    "upstream {} since {}: {}",
                    s.state,
                    s.since.to_rfc3339(),
                    s.last_error.unwrap_or_default()
                ));
            }
        }
        if !serving {
            warnings.push("no valid active CA: issuance is failing".into());
        }
        let datastore_reachable = match tokio::time::timeout(HEALTH_PING, self.ctx.ds.ping()).await
        {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                warnings.push(format!("datastore: {e}"));
                false
            }
            Err(_) => {
                warnings.push(format!(
                    "datastore: no answer within {} s",
                    HEALTH_PING.as_secs()
                ));
                false
            }
        };
        let serving = serving && datastore_reachable;
        Ok(Response::new(HealthResponse {
            serving,
            trust_domain: self.ctx.config.trust_domain.to_string(),
            active_x509_authority: x509.map(|a| a.subject().to_string()).unwrap_or_default(),
            active_x509_not_after: x509.map(|a| a.window().not_after.timestamp()).unwrap_or(0),
            active_jwt_not_after: st
                .jwt
                .active
                .as_ref()
                .map(|k| k.window.not_after.timestamp())
                .unwrap_or(0),
            bundle_sequence: st.bundle.sequence,
            warnings,
            datastore_reachable,
        }))
    }
}
