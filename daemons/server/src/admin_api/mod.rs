//! The administration API (Unix socket, and mTLS TCP when configured): entries, join tokens,
//! agents, bundle, health, authority operations ([`authority`]). Callers are checked by socket peer uid or SPIFFE ID; every change
//! commits together with its audit record, and refused callers are audited ([`audit`]).

pub mod audit;
pub mod authority;
pub mod bundles;
pub mod federation;
mod health;
mod probe;
mod runbooks;

use std::sync::Arc;

use chrono::Duration;
use ring::rand::{SecureRandom, SystemRandom};
use tonic::{Request, Response, Status};
use trustdeck_datastore::{AttestedNode, Entry};
use trustdeck_proto::admin::server_admin_server::ServerAdmin;
use trustdeck_proto::admin::*;

pub use self::audit::RefusalAudit;
use self::audit::{Audit, Operator, audited};
use crate::ca::operations::AuthorityOp;
use crate::ctx::{ServerCtx, ds_status};
use crate::entry::validate_entry;
use crate::node_api::join_token_agent_id;

/// Default join token lifetime.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::minutes(10);

/// The admin service.
pub struct AdminApi {
    ctx: Arc<ServerCtx>,
    probes: Arc<probe::ProbeGate>,
}

impl AdminApi {
    /// A service over shared state.
    pub fn new(ctx: Arc<ServerCtx>) -> Self {
        Self {
            ctx,
            probes: Arc::default(),
        }
    }

    /// Any allowed caller (viewer or operator), for read-only methods.
    fn reader<T>(&self, req: &Request<T>, method: &str) -> Result<String, Status> {
        Ok(self.ctx.config.admin_access.caller(req, method)?.actor)
    }

    /// An operator, for methods that change state, with the runbook step the call is made
    /// for (the `trustdeck-runbook` header; ignored when malformed).
    fn operator<T>(&self, req: &Request<T>, method: &str) -> Result<Operator, Status> {
        let actor = self.ctx.config.admin_access.operator(req, method)?.actor;
        let header = req
            .metadata()
            .get(trustdeck_proto::refusal::RUNBOOK_STEP_HEADER)
            .and_then(|v| v.to_str().ok());
        Ok(Operator {
            actor,
            step: crate::runbook_journal::step_note(header),
        })
    }
}

/// What the audit record of an agent's eviction or ban names.
fn agent_audit(action: &str, id: &str) -> Audit {
    Audit {
        action: action.into(),
        target: id.into(),
        detail: String::new(),
    }
}

fn no_agent(id: &str) -> Status {
    Status::not_found(format!("no attested agent {id:?}"))
}

/// What an entry's audit record says about it.
fn entry_detail(
    spiffe_id: &str,
    parent_id: &str,
    selectors: &[String],
    downstream: bool,
) -> String {
    format!(
        "spiffe_id={spiffe_id} parent_id={parent_id} selectors={selectors:?} downstream={downstream}"
    )
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
        namespaces: e.namespaces,
        federates_with: e.federates_with,
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
        let op = self.operator(&request, "CreateEntry")?;
        let req = request.into_inner();
        let audit = Audit {
            action: "entry.create".into(),
            target: req.spiffe_id.clone(),
            detail: entry_detail(
                &req.spiffe_id,
                &req.parent_id,
                &req.selectors,
                req.downstream,
            ),
        };
        let config = &self.ctx.config;
        let now = self.ctx.clock.now().timestamp();
        let entry = audited(&self.ctx, &op, audit, async |tx, audit| {
            let scope = self.ctx.scope();
            let new = validate_entry(&req, &config.trust_domain, &config.server_spiffe_id)
                .and_then(|new| crate::entry::within_scope(new, &req.namespaces, &scope, &config.server_spiffe_id))
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            if new.x509_ttl_secs > 0 && Duration::seconds(new.x509_ttl_secs) >= config.ca_ttl {
                return Err(Status::invalid_argument(format!(
                    "x509_ttl {}s is not shorter than the CA TTL {}s: an SVID never outlives its issuer",
                    new.x509_ttl_secs,
                    config.ca_ttl.num_seconds()
                )));
            }
            if !new.federates_with.is_empty() {
                let held = self.ctx.foreign_bundles().await.map_err(ds_status)?;
                crate::entry::require_held(&new.federates_with, &held)
                    .map_err(|e| Status::failed_precondition(e.to_string()))?;
            }
            let entry = tx.create_entry(&new, now).await.map_err(ds_status)?;
            audit.target = entry.id.clone();
            Ok(entry)
        })
        .await?;
        Ok(Response::new(entry_info(entry)))
    }

    async fn list_entries(
        &self,
        request: Request<ListEntriesRequest>,
    ) -> Result<Response<ListEntriesResponse>, Status> {
        self.reader(&request, "ListEntries")?;
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
        let op = self.operator(&request, "DeleteEntry")?;
        let id = request.into_inner().id;
        let audit = Audit {
            action: "entry.delete".into(),
            target: id.clone(),
            ..Audit::default()
        };
        let deleted = audited(&self.ctx, &op, audit, async |tx, audit| {
            let e = tx
                .delete_entry(&id)
                .await
                .map_err(ds_status)?
                .ok_or_else(|| Status::not_found(format!("no entry with id {id:?}")))?;
            audit.detail = entry_detail(&e.spiffe_id, &e.parent_id, &e.selectors, e.downstream);
            Ok(e)
        })
        .await?;
        Ok(Response::new(DeleteEntryResponse {
            deleted: Some(entry_info(deleted)),
        }))
    }

    async fn create_join_token(
        &self,
        request: Request<CreateJoinTokenRequest>,
    ) -> Result<Response<CreateJoinTokenResponse>, Status> {
        let op = self.operator(&request, "CreateJoinToken")?;
        let ttl_secs = request.into_inner().ttl_secs;
        let audit = Audit {
            action: "token.generate".into(),
            detail: format!("ttl={ttl_secs}s"),
            ..Audit::default()
        };
        let trust_domain = &self.ctx.config.trust_domain;
        let now = self.ctx.clock.now();
        let (token, expires_at, agent_id) = audited(&self.ctx, &op, audit, async |tx, audit| {
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
            let expires_at = (now + ttl).timestamp();
            tx.create_join_token(&token, expires_at, now.timestamp())
                .await
                .map_err(ds_status)?;
            let agent_id = join_token_agent_id(trust_domain, &token).to_string();
            // The token itself is a credential: the audit names the agent ID only by a prefix.
            audit.target = agent_id
                .get(..agent_id.len().saturating_sub(24))
                .unwrap_or("")
                .to_string();
            Ok((token, expires_at, agent_id))
        })
        .await?;
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
        self.reader(&request, "ListAgents")?;
        let agents = self.ctx.ds.list_nodes().await.map_err(ds_status)?;
        Ok(Response::new(ListAgentsResponse {
            agents: agents.into_iter().map(agent_info).collect(),
        }))
    }

    async fn evict_agent(
        &self,
        request: Request<AgentRequest>,
    ) -> Result<Response<AgentInfo>, Status> {
        let op = self.operator(&request, "EvictAgent")?;
        let id = request.into_inner().spiffe_id;
        let node = audited(
            &self.ctx,
            &op,
            agent_audit(audit::AGENT_EVICT, &id),
            async |tx, _| {
                tx.delete_node(&id)
                    .await
                    .map_err(ds_status)?
                    .ok_or_else(|| no_agent(&id))
            },
        )
        .await?;
        // What it held no longer counts for `revoke`.
        self.ctx.census.forget(&id);
        Ok(Response::new(agent_info(node)))
    }

    async fn ban_agent(
        &self,
        request: Request<AgentRequest>,
    ) -> Result<Response<AgentInfo>, Status> {
        let op = self.operator(&request, "BanAgent")?;
        let id = request.into_inner().spiffe_id;
        let now = self.ctx.clock.now().timestamp();
        let node = audited(
            &self.ctx,
            &op,
            agent_audit(audit::AGENT_BAN, &id),
            async |tx, _| {
                tx.set_node_banned(&id, true, now)
                    .await
                    .map_err(ds_status)?
                    .ok_or_else(|| no_agent(&id))
            },
        )
        .await?;
        Ok(Response::new(agent_info(node)))
    }

    async fn get_bundle(
        &self,
        request: Request<GetBundleRequest>,
    ) -> Result<Response<GetBundleResponse>, Status> {
        self.reader(&request, "GetBundle")?;
        let b = self.ctx.ca.bundle();
        Ok(Response::new(GetBundleResponse {
            trust_domain: b.trust_domain.to_string(),
            spiffe_json: b.to_json(),
            pem: b.to_pem(),
            sequence: b.sequence,
        }))
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        self.reader(&request, "ListAudit")?;
        let limit = match request.into_inner().limit {
            n if n <= 0 => 100,
            n => n.min(1000),
        };
        let records = self
            .ctx
            .ds
            .list_audit_links(limit)
            .await
            .map_err(ds_status)?;
        Ok(Response::new(ListAuditResponse {
            records: records
                .into_iter()
                .map(|l| AuditRecordInfo {
                    id: l.record.id,
                    at: l.record.at,
                    actor: l.record.actor,
                    action: l.record.action,
                    target: l.record.target,
                    detail: l.record.detail,
                    outcome: l.record.outcome,
                    seq: l.seq.unwrap_or(0),
                    prev_hash: l.prev_hash.unwrap_or_default(),
                    hash: l.hash.unwrap_or_default(),
                })
                .collect(),
        }))
    }

    async fn health(
        &self,
        request: Request<HealthRequest>,
    ) -> Result<Response<HealthResponse>, Status> {
        self.reader(&request, "Health")?;
        Ok(Response::new(health::health(&self.ctx).await))
    }

    async fn probe_keys(
        &self,
        request: Request<ProbeKeysRequest>,
    ) -> Result<Response<ProbeKeysResponse>, Status> {
        self.reader(&request, "ProbeKeys")?;
        Ok(Response::new(self.probes.probe(&self.ctx).await))
    }

    async fn begin_runbook(
        &self,
        request: Request<BeginRunbookRequest>,
    ) -> Result<Response<RunbookExecution>, Status> {
        let op = self.operator(&request, "BeginRunbook")?;
        runbooks::begin(&self.ctx, &op, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn claim_runbook(
        &self,
        request: Request<ClaimRunbookRequest>,
    ) -> Result<Response<RunbookExecution>, Status> {
        let op = self.operator(&request, "ClaimRunbook")?;
        runbooks::claim(&self.ctx, &op, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn record_runbook(
        &self,
        request: Request<RecordRunbookRequest>,
    ) -> Result<Response<RunbookExecution>, Status> {
        let op = self.operator(&request, "RecordRunbook")?;
        runbooks::record(&self.ctx, &op, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_runbooks(
        &self,
        request: Request<ListRunbooksRequest>,
    ) -> Result<Response<ListRunbooksResponse>, Status> {
        self.reader(&request, "ListRunbooks")?;
        runbooks::list(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn export_signed_bundle(
        &self,
        request: Request<ExportSignedBundleRequest>,
    ) -> Result<Response<ExportSignedBundleResponse>, Status> {
        let op = self.operator(&request, "ExportSignedBundle")?;
        bundles::export(&self.ctx, &op).await.map(Response::new)
    }

    async fn import_bundle_file(
        &self,
        request: Request<ImportBundleFileRequest>,
    ) -> Result<Response<ImportBundleFileResponse>, Status> {
        let op = self.operator(&request, "ImportBundleFile")?;
        let answer = bundles::import(&self.ctx, &op, request.into_inner()).await;
        crate::federation::publish::publish(&self.ctx).await;
        answer.map(Response::new)
    }

    async fn list_foreign_bundles(
        &self,
        request: Request<ListForeignBundlesRequest>,
    ) -> Result<Response<ListForeignBundlesResponse>, Status> {
        self.reader(&request, "ListForeignBundles")?;
        bundles::list(&self.ctx).await.map(Response::new)
    }

    async fn reissue_receipt(
        &self,
        request: Request<ForeignBundleRequest>,
    ) -> Result<Response<ReissueReceiptResponse>, Status> {
        let op = self.operator(&request, "ReissueReceipt")?;
        bundles::reissue_receipt(&self.ctx, &op, &request.get_ref().trust_domain)
            .await
            .map(Response::new)
    }

    async fn forget_foreign_bundle(
        &self,
        request: Request<ForeignBundleRequest>,
    ) -> Result<Response<ForeignBundleInfo>, Status> {
        let op = self.operator(&request, "ForgetForeignBundle")?;
        let answer = bundles::forget(&self.ctx, &op, &request.get_ref().trust_domain).await;
        crate::federation::publish::publish(&self.ctx).await;
        answer.map(Response::new)
    }

    async fn create_federation(
        &self,
        request: Request<CreateFederationRequest>,
    ) -> Result<Response<FederationInfo>, Status> {
        let op = self.operator(&request, "CreateFederation")?;
        let answer = federation::create(&self.ctx, &op, request.into_inner()).await;
        crate::federation::publish::publish(&self.ctx).await;
        answer.map(Response::new)
    }

    async fn list_federations(
        &self,
        request: Request<ListFederationsRequest>,
    ) -> Result<Response<ListFederationsResponse>, Status> {
        self.reader(&request, "ListFederations")?;
        federation::list(&self.ctx).await.map(Response::new)
    }

    async fn show_federation(
        &self,
        request: Request<FederationRequest>,
    ) -> Result<Response<FederationInfo>, Status> {
        self.reader(&request, "ShowFederation")?;
        let td = &request.get_ref().trust_domain;
        federation::show(&self.ctx, td).await.map(Response::new)
    }

    async fn update_federation(
        &self,
        request: Request<CreateFederationRequest>,
    ) -> Result<Response<FederationInfo>, Status> {
        let op = self.operator(&request, "UpdateFederation")?;
        let answer = federation::update(&self.ctx, &op, request.into_inner()).await;
        crate::federation::publish::publish(&self.ctx).await;
        answer.map(Response::new)
    }

    async fn delete_federation(
        &self,
        request: Request<FederationRequest>,
    ) -> Result<Response<FederationInfo>, Status> {
        let op = self.operator(&request, "DeleteFederation")?;
        let td = &request.get_ref().trust_domain;
        let answer = federation::delete(&self.ctx, &op, td).await;
        if answer.is_ok() {
            // A relationship created again starts with no failures of this one.
            self.ctx.fetches.forget(td);
        }
        crate::federation::publish::publish(&self.ctx).await;
        answer.map(Response::new)
    }

    async fn refresh_federation(
        &self,
        request: Request<FederationRequest>,
    ) -> Result<Response<RefreshFederationResponse>, Status> {
        let op = self.operator(&request, "RefreshFederation")?;
        let td = &request.get_ref().trust_domain;
        let answer = federation::refresh_now(&self.ctx, &op, td).await;
        crate::federation::publish::publish(&self.ctx).await;
        answer.map(Response::new)
    }

    async fn show_authorities(
        &self,
        request: Request<ShowAuthoritiesRequest>,
    ) -> Result<Response<ShowAuthoritiesResponse>, Status> {
        self.reader(&request, "ShowAuthorities")?;
        authority::show(&self.ctx, request.get_ref().kind()).map(Response::new)
    }

    async fn prepare_authority(
        &self,
        request: Request<AuthorityRequest>,
    ) -> Result<Response<AuthorityResponse>, Status> {
        self.authority_op(request, "PrepareAuthority", AuthorityOp::Prepare)
            .await
    }

    async fn activate_authority(
        &self,
        request: Request<AuthorityRequest>,
    ) -> Result<Response<AuthorityResponse>, Status> {
        self.authority_op(request, "ActivateAuthority", AuthorityOp::Activate)
            .await
    }

    async fn taint_authority(
        &self,
        request: Request<AuthorityRequest>,
    ) -> Result<Response<AuthorityResponse>, Status> {
        self.authority_op(request, "TaintAuthority", AuthorityOp::Taint)
            .await
    }

    async fn revoke_authority(
        &self,
        request: Request<AuthorityRequest>,
    ) -> Result<Response<AuthorityResponse>, Status> {
        self.authority_op(request, "RevokeAuthority", AuthorityOp::Revoke)
            .await
    }
}

impl AdminApi {
    /// An authority operation: operators only.
    async fn authority_op(
        &self,
        request: Request<AuthorityRequest>,
        method: &str,
        op: AuthorityOp,
    ) -> Result<Response<AuthorityResponse>, Status> {
        let caller = self.operator(&request, method)?;
        authority::operate(
            &self.ctx,
            &self.probes.slots,
            &caller,
            op,
            request.into_inner(),
        )
        .await
        .map(Response::new)
    }
}
