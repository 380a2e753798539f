//! The node API served to agents over mTLS.

use std::pin::Pin;
use std::sync::Arc;

use chrono::Duration;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use trustdeck_datastore::AttestedNode;
use trustdeck_pki::csr::verify_csr;
use trustdeck_pki::x509pop;
use trustdeck_proto::admin::EventKind;
use trustdeck_proto::node::node_server::Node;
use trustdeck_proto::node::{
    AttestParams, AttestRequest, AttestResponse, AttestResult, FetchBundleRequest,
    FetchBundleResponse, MintIntermediateRequest, MintIntermediateResponse, MintJwtSvidForRequest,
    MintJwtSvidRequest, MintJwtSvidResponse, RenewAgentRequest, RenewAgentResponse,
    SignX509SvidsRequest, SignX509SvidsResponse, SvidResult, SyncEntriesRequest,
    SyncEntriesResponse, attest_request, attest_response,
};
use trustdeck_spiffe::SpiffeId;
use trustdeck_topology::hub::Severity;

use crate::ctx::{AuthedAgent, ServerCtx, ds_status};

/// Longest an attestation dialogue may take, start to end.
pub const ATTEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Most CSRs accepted in one SignX509Svids call.
pub const MAX_BATCH: usize = 1000;

/// The node API service.
pub struct NodeApi {
    ctx: Arc<ServerCtx>,
}

impl NodeApi {
    /// A service over shared state.
    pub fn new(ctx: Arc<ServerCtx>) -> Self {
        Self { ctx }
    }
}

/// `secs` as a TTL, or `default` when zero or negative.
fn ttl_or(secs: i64, default: Duration) -> Duration {
    if secs > 0 {
        Duration::try_seconds(secs.min(MAX_TTL_SECS)).unwrap_or(default)
    } else {
        default
    }
}

/// Longest TTL anything is asked for (ten years); larger requests are cut to it (and then to
/// the issuer's expiry).
pub const MAX_TTL_SECS: i64 = 10 * 366 * 24 * 3600;

/// Refuses an empty audience list or an empty audience.
fn check_audience(audience: &[String]) -> Result<(), Status> {
    if audience.is_empty() || audience.iter().any(|a| a.is_empty()) {
        Err(Status::invalid_argument("audience must not be empty"))
    } else {
        Ok(())
    }
}

/// The agent ID a join token yields.
pub fn join_token_agent_id(td: &trustdeck_spiffe::TrustDomain, token: &str) -> SpiffeId {
    SpiffeId::from_segments(td, &["trustdeck", "agent", "join_token", token])
        .unwrap_or_else(|_| td.id())
}

struct Attested {
    id: SpiffeId,
    kind: &'static str,
    selectors: Vec<String>,
    /// A join token to consume once the SVID is issued (so a failed issuance does not burn it).
    join_token: Option<String>,
}

fn entry_to_proto(e: trustdeck_datastore::Entry) -> trustdeck_proto::node::Entry {
    trustdeck_proto::node::Entry {
        id: e.id,
        spiffe_id: e.spiffe_id,
        parent_id: e.parent_id,
        selectors: e.selectors,
        x509_ttl_secs: e.x509_ttl_secs,
        jwt_ttl_secs: e.jwt_ttl_secs,
        downstream: e.downstream,
        dns_names: e.dns_names,
    }
}

type AttestStream = Pin<Box<dyn Stream<Item = Result<AttestResponse, Status>> + Send>>;

impl NodeApi {
    async fn attest_dialogue(
        ctx: Arc<ServerCtx>,
        mut inbound: Streaming<AttestRequest>,
        tx: mpsc::Sender<Result<AttestResponse, Status>>,
        source: String,
    ) -> Result<AttestResponse, Status> {
        if let Err(wait) = ctx.attest_limiter.check(&source, ctx.mono(), 1.0) {
            return Err(Status::resource_exhausted(format!(
                "too many attestation attempts from {source}; retry in {wait:.1}s"
            )));
        }
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("attestation stream closed before params"))?;
        let Some(attest_request::Step::Params(params)) = first.step else {
            return Err(Status::invalid_argument(
                "the first attestation message must carry AttestParams",
            ));
        };
        let AttestParams {
            attestation_type,
            payload,
            csr,
        } = params;
        let csr =
            verify_csr(&csr).map_err(|e| Status::invalid_argument(format!("agent CSR: {e}")))?;
        let td = &ctx.config.trust_domain;
        let now = ctx.clock.now();
        let attested = match attestation_type.as_str() {
            "join_token" => {
                let token = payload
                    .first()
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| Status::invalid_argument("join_token: empty token"))?
                    .to_string();
                if !token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(Status::invalid_argument(
                        "join_token: token has characters outside [A-Za-z0-9_-]",
                    ));
                }
                Attested {
                    id: join_token_agent_id(td, &token),
                    kind: "join_token",
                    selectors: vec![],
                    join_token: Some(token),
                }
            }
            "x509pop" => {
                if ctx.x509pop_cas.is_empty() {
                    return Err(Status::failed_precondition(
                        "x509pop attestation is not enabled on this server",
                    ));
                }
                let node = x509pop::verify_chain(&payload, &ctx.x509pop_cas, now)
                    .map_err(|e| Status::permission_denied(e.to_string()))?;
                let mut nonce = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut nonce)
                    .map_err(|_| Status::internal("random number generator failed"))?;
                tx.send(Ok(AttestResponse {
                    step: Some(attest_response::Step::Challenge(nonce.to_vec())),
                    tpm_devid_challenge: None,
                }))
                .await
                .map_err(|_| Status::cancelled("agent went away"))?;
                let reply =
                    tokio::time::timeout(std::time::Duration::from_secs(30), inbound.message())
                        .await
                        .map_err(|_| {
                            Status::deadline_exceeded("x509pop: no challenge response within 30s")
                        })??
                        .ok_or_else(|| {
                            Status::invalid_argument(
                                "x509pop: stream closed before the challenge response",
                            )
                        })?;
                let Some(attest_request::Step::ChallengeResponse(sig)) = reply.step else {
                    return Err(Status::invalid_argument(
                        "x509pop: expected a challenge response",
                    ));
                };
                x509pop::verify_proof(&node.leaf_spki, &nonce, &sig)
                    .map_err(|e| Status::permission_denied(e.to_string()))?;
                let id = SpiffeId::from_segments(
                    td,
                    &["trustdeck", "agent", "x509pop", &node.fingerprint],
                )
                .map_err(|e| Status::internal(e.to_string()))?;
                Attested {
                    id,
                    kind: "x509pop",
                    selectors: node.selectors,
                    join_token: None,
                }
            }
            "tpm_devid" => {
                let node = crate::tpm_devid::attest(&ctx, &payload, &mut inbound, &tx).await?;
                Attested {
                    id: node.id,
                    kind: "tpm_devid",
                    selectors: node.selectors,
                    join_token: None,
                }
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown attestation type {other:?} (supported: join_token, x509pop, tpm_devid)"
                )));
            }
        };
        let existing = ctx
            .ds
            .get_node(attested.id.as_str())
            .await
            .map_err(ds_status)?;
        if existing.as_ref().is_some_and(|n| n.banned) {
            return Err(Status::permission_denied(format!(
                "agent {} is banned; an operator must evict it before it can attest again",
                attested.id
            )));
        }
        let ca = ctx
            .ca
            .x509_ca()
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let svid = ca
            .issue_x509_svid(&csr, &attested.id, &[], ctx.config.agent_svid_ttl, now)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        if let Some(token) = &attested.join_token {
            ctx.ds
                .consume_join_token(token, now.timestamp())
                .await
                .map_err(ds_status)?;
        }
        let record = AttestedNode {
            spiffe_id: attested.id.to_string(),
            attestation_type: attested.kind.into(),
            cert_serial: svid.serial_hex.clone(),
            cert_not_after: svid.not_after.timestamp(),
            banned: false,
            selectors: attested.selectors.clone(),
            created_at: existing.map(|n| n.created_at).unwrap_or(now.timestamp()),
            updated_at: now.timestamp(),
        };
        ctx.ds.upsert_node(&record).await.map_err(ds_status)?;
        tracing::info!(agent = %attested.id, method = attested.kind, %source, "agent attested");
        let node = crate::observe::agent_node(ctx.server_id.as_str(), &ctx.config.segment, &record);
        ctx.hub.upsert(crate::observe::GROUP_AGENTS, node, now);
        ctx.hub.event(
            Severity::Info,
            EventKind::AttestationOk,
            format!(
                "{} attested with {} from {source}",
                attested.id, attested.kind
            ),
            &crate::observe::agent_node_id(attested.id.as_str()),
            now,
        );
        Ok(AttestResponse {
            tpm_devid_challenge: None,
            step: Some(attest_response::Step::Result(AttestResult {
                spiffe_id: attested.id.to_string(),
                svid_chain: svid.chain,
                bundle: ctx.ca.bundle().to_json().into_bytes(),
                selectors: attested.selectors,
            })),
        })
    }

    /// Mints a JWT-SVID with the root's key: locally on the upstream, forwarded upstream on a
    /// downstream server (which fails with `Unavailable` when the upstream is unreachable).
    async fn mint_jwt(
        &self,
        sub: &SpiffeId,
        audience: &[String],
        ttl: Duration,
    ) -> Result<MintJwtSvidResponse, Status> {
        match &self.ctx.upstream {
            Some(up) => up
                .mint_jwt_for(sub.as_str(), audience, ttl)
                .await
                .map_err(|s| {
                    if s.code() == tonic::Code::InvalidArgument {
                        s
                    } else {
                        Status::unavailable(format!(
                            "JWT-SVIDs are signed upstream and the upstream is unreachable: {}",
                            s.message()
                        ))
                    }
                }),
            None => {
                let (token, exp) = self
                    .ctx
                    .ca
                    .mint_jwt_svid(sub, audience, ttl, self.ctx.clock.now())
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                Ok(MintJwtSvidResponse {
                    token,
                    expires_at: exp.timestamp(),
                })
            }
        }
    }

    fn limit(&self, agent: &AuthedAgent, cost: usize) -> Result<(), Status> {
        self.ctx
            .sign_limiter
            .check(agent.id.as_str(), self.ctx.mono(), cost as f64)
            .map_err(|wait| {
                Status::resource_exhausted(format!(
                    "rate limit for {} exceeded; retry in {wait:.2}s",
                    agent.id
                ))
            })
    }
}

#[tonic::async_trait]
impl Node for NodeApi {
    type AttestStream = AttestStream;

    async fn attest(
        &self,
        request: Request<Streaming<AttestRequest>>,
    ) -> Result<Response<Self::AttestStream>, Status> {
        let source = request
            .extensions()
            .get::<trustdeck_transport::PeerInfo>()
            .and_then(|p| p.addr)
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let ctx = self.ctx.clone();
        let ctx_events = self.ctx.clone();
        tokio::spawn(async move {
            let result = tokio::time::timeout(
                ATTEST_DEADLINE,
                Self::attest_dialogue(ctx, inbound, tx.clone(), source.clone()),
            )
            .await
            .unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(format!(
                    "attestation not completed within {}s",
                    ATTEST_DEADLINE.as_secs()
                )))
            });
            if let Err(e) = &result {
                tracing::warn!(%source, error = %e.message(), "attestation failed");
                ctx_events.hub.event(
                    Severity::Warning,
                    EventKind::AttestationFailed,
                    format!("attestation from {source} refused: {}", e.message()),
                    "",
                    ctx_events.clock.now(),
                );
            }
            let _ = tx.send(result).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn renew_agent(
        &self,
        request: Request<RenewAgentRequest>,
    ) -> Result<Response<RenewAgentResponse>, Status> {
        let agent = self.ctx.authenticate_agent(&request).await?;
        self.limit(&agent, 1)?;
        let csr = verify_csr(&request.get_ref().csr)
            .map_err(|e| Status::invalid_argument(format!("agent CSR: {e}")))?;
        let now = self.ctx.clock.now();
        let ca = self
            .ctx
            .ca
            .x509_ca()
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let svid = ca
            .issue_x509_svid(&csr, &agent.id, &[], self.ctx.config.agent_svid_ttl, now)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        self.ctx
            .ds
            .update_node_cert(
                agent.id.as_str(),
                &svid.serial_hex,
                svid.not_after.timestamp(),
                now.timestamp(),
            )
            .await
            .map_err(ds_status)?;
        if let Some(mut n) = self
            .ctx
            .hub
            .node(&crate::observe::agent_node_id(agent.id.as_str()))
        {
            n.serial = svid.serial_hex.clone();
            n.not_before = now.timestamp();
            n.not_after = svid.not_after.timestamp();
            self.ctx.hub.upsert(crate::observe::GROUP_AGENTS, n, now);
        }
        Ok(Response::new(RenewAgentResponse {
            svid_chain: svid.chain,
        }))
    }

    async fn sync_entries(
        &self,
        request: Request<SyncEntriesRequest>,
    ) -> Result<Response<SyncEntriesResponse>, Status> {
        let agent = self.ctx.authenticate_agent(&request).await?;
        let entries = self.ctx.agent_entries(&agent).await?;
        let bundle = self.ctx.ca.bundle();
        Ok(Response::new(SyncEntriesResponse {
            entries: entries.into_iter().map(entry_to_proto).collect(),
            bundle: bundle.to_json().into_bytes(),
            bundle_sequence: bundle.sequence,
        }))
    }

    async fn sign_x509_svids(
        &self,
        request: Request<SignX509SvidsRequest>,
    ) -> Result<Response<SignX509SvidsResponse>, Status> {
        let agent = self.ctx.authenticate_agent(&request).await?;
        let csrs = &request.get_ref().csrs;
        if csrs.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_BATCH} CSRs per call, got {}",
                csrs.len()
            )));
        }
        self.limit(&agent, csrs.len().max(1))?;
        let entries = self.ctx.agent_entries(&agent).await?;
        let ca = self
            .ctx
            .ca
            .x509_ca()
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let now = self.ctx.clock.now();
        let mut results = Vec::with_capacity(csrs.len());
        for item in csrs {
            let outcome = (|| -> Result<SvidResult, Status> {
                let csr = verify_csr(&item.csr).map_err(|e| {
                    Status::invalid_argument(format!("CSR for entry {:?}: {e}", item.entry_id))
                })?;
                let requested = csr.spiffe_id.clone().ok_or_else(|| {
                    Status::invalid_argument("workload CSR must carry the SPIFFE ID as a URI SAN")
                })?;
                let entry = if item.entry_id.is_empty() {
                    entries.iter().find(|e| e.spiffe_id == requested.as_str())
                } else {
                    entries.iter().find(|e| e.id == item.entry_id)
                };
                let entry = entry.ok_or_else(|| {
                    Status::permission_denied(if item.entry_id.is_empty() {
                        format!(
                            "agent {} is not authorised for SPIFFE ID {requested}",
                            agent.id
                        )
                    } else {
                        format!(
                            "agent {} is not authorised for entry {:?}",
                            agent.id, item.entry_id
                        )
                    })
                })?;
                if entry.spiffe_id != requested.as_str() {
                    return Err(Status::permission_denied(format!(
                        "CSR asks for SPIFFE ID {requested} but entry {} is for {}; agent {} is not authorised for it",
                        entry.id, entry.spiffe_id, agent.id
                    )));
                }
                let ttl = ttl_or(entry.x509_ttl_secs, self.ctx.config.default_x509_svid_ttl);
                let svid = ca
                    .issue_x509_svid(&csr, &requested, &entry.dns_names, ttl, now)
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                self.ctx.hub.upsert(
                    crate::observe::GROUP_SVIDS,
                    crate::observe::svid_node(
                        agent.id.as_str(),
                        &entry.id,
                        requested.as_str(),
                        &svid.serial_hex,
                        now.timestamp(),
                        svid.not_after.timestamp(),
                        &self.ctx.config.segment,
                    ),
                    now,
                );
                Ok(SvidResult {
                    entry_id: entry.id.clone(),
                    spiffe_id: requested.to_string(),
                    chain: svid.chain,
                    expires_at: svid.not_after.timestamp(),
                    error_code: 0,
                    error_message: String::new(),
                })
            })();
            results.push(outcome.unwrap_or_else(|s| {
                tracing::info!(agent = %agent.id, entry = %item.entry_id, error = %s.message(), "SVID refused");
                SvidResult {
                    entry_id: item.entry_id.clone(),
                    spiffe_id: String::new(),
                    chain: vec![],
                    expires_at: 0,
                    error_code: s.code() as i32,
                    error_message: s.message().to_string(),
                }
            }));
        }
        Ok(Response::new(SignX509SvidsResponse { results }))
    }

    async fn mint_jwt_svid(
        &self,
        request: Request<MintJwtSvidRequest>,
    ) -> Result<Response<MintJwtSvidResponse>, Status> {
        let agent = self.ctx.authenticate_agent(&request).await?;
        let req = request.get_ref();
        check_audience(&req.audience)?;
        self.limit(&agent, 1)?;
        let entries = self.ctx.agent_entries(&agent).await?;
        let entry = entries
            .iter()
            .find(|e| e.id == req.entry_id)
            .ok_or_else(|| {
                Status::permission_denied(format!(
                    "agent {} is not authorised for entry {:?}",
                    agent.id, req.entry_id
                ))
            })?;
        let sub = SpiffeId::parse(&entry.spiffe_id)
            .map_err(|e| Status::internal(format!("stored entry {}: {e}", entry.id)))?;
        let ttl = ttl_or(entry.jwt_ttl_secs, self.ctx.config.default_jwt_svid_ttl);
        Ok(Response::new(
            self.mint_jwt(&sub, &req.audience, ttl).await?,
        ))
    }

    async fn fetch_bundle(
        &self,
        request: Request<FetchBundleRequest>,
    ) -> Result<Response<FetchBundleResponse>, Status> {
        if let Err(e) = self.ctx.authenticate_agent(&request).await {
            // Downstream servers poll the bundle too.
            if self.ctx.authenticate_downstream(&request).await.is_err() {
                return Err(e);
            }
        }
        let b = self.ctx.ca.bundle();
        Ok(Response::new(FetchBundleResponse {
            bundle: b.to_json().into_bytes(),
            sequence: b.sequence,
        }))
    }

    async fn mint_intermediate(
        &self,
        request: Request<MintIntermediateRequest>,
    ) -> Result<Response<MintIntermediateResponse>, Status> {
        let caller = self.ctx.authenticate_downstream(&request).await?;
        let req = request.into_inner();
        let csr = verify_csr(&req.csr)
            .map_err(|e| Status::invalid_argument(format!("intermediate CSR: {e}")))?;
        let ttl = ttl_or(req.ttl_secs, self.ctx.config.ca_ttl);
        let now = self.ctx.clock.now();
        let ca = self
            .ctx
            .ca
            .x509_ca()
            .map_err(|e| Status::unavailable(e.to_string()))?;
        // The subject names the downstream; RFC 5280 caps a CN at 64 bytes (paths are ASCII).
        let mut cn = format!("trustdeck CA {}", caller.path());
        cn.truncate(64);
        let issued = ca
            .sign_intermediate(&csr, &cn, ttl, now)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        tracing::info!(downstream = %caller, not_after = %issued.not_after, "intermediate CA signed");
        crate::observe::publish_intermediate(&self.ctx, caller.as_str(), &issued.chain, now);
        self.ctx.hub.event(
            Severity::Info,
            EventKind::IntermediateSigned,
            format!(
                "signed an intermediate CA for {caller}, valid until {}",
                issued.not_after
            ),
            &crate::observe::server_node_id(caller.as_str()),
            now,
        );
        Ok(Response::new(MintIntermediateResponse {
            chain: issued.chain,
            bundle: self.ctx.ca.bundle().to_json().into_bytes(),
        }))
    }

    async fn mint_jwt_svid_for(
        &self,
        request: Request<MintJwtSvidForRequest>,
    ) -> Result<Response<MintJwtSvidResponse>, Status> {
        self.ctx.authenticate_downstream(&request).await?;
        let req = request.into_inner();
        check_audience(&req.audience)?;
        let sub = SpiffeId::parse(&req.spiffe_id)
            .map_err(|e| Status::invalid_argument(format!("spiffe_id: {e}")))?;
        if sub.trust_domain() != &self.ctx.config.trust_domain {
            return Err(Status::permission_denied(format!(
                "{sub} is not in trust domain {}",
                self.ctx.config.trust_domain
            )));
        }
        // A downstream may ask for less than this server's JWT-SVID TTL, never more.
        let default = self.ctx.config.default_jwt_svid_ttl;
        let ttl = std::cmp::min(ttl_or(req.ttl_secs, default), default);
        Ok(Response::new(
            self.mint_jwt(&sub, &req.audience, ttl).await?,
        ))
    }
}
