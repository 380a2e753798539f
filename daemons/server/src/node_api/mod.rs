//! The node API served to agents and downstream servers over mTLS. Each RPC is a thin
//! method here over its module:
//! - [`attest`]: the attestation pump (the dialogues are `trustdeck_attest::server`), then
//!   admission (bans, SVID issuance, the node record);
//! - [`agents`]: what attested agents call (renewal, entries, workload SVIDs, JWT-SVIDs);
//! - [`downstream`]: what downstream servers call (intermediate CA, JWT-SVIDs, bundle).
//!
//! Errors an agent or a downstream must act on carry a `Reason` ([`reason_status`]).

mod agents;
mod attest;
mod downstream;
pub mod wire;

use std::sync::Arc;

use chrono::Duration;
use tonic::{Code, Request, Response, Status, Streaming};
use trustdeck_proto::node::node_server::Node;
use trustdeck_proto::node::{
    AttestRequest, FetchBundleRequest, FetchBundleResponse, MintIntermediateRequest,
    MintIntermediateResponse, MintJwtSvidForRequest, MintJwtSvidRequest, MintJwtSvidResponse,
    Reason, RenewAgentRequest, RenewAgentResponse, SignX509SvidsRequest, SignX509SvidsResponse,
    SyncEntriesRequest, SyncEntriesResponse,
};
use trustdeck_proto::reason::reason_status;

use crate::ctx::{AuthedAgent, ServerCtx};

pub use attest::AttestStream;
pub use trustdeck_attest::server::DEADLINE as ATTEST_DEADLINE;
pub use trustdeck_attest::server::join_token_agent_id;

/// Most CSRs accepted in one SignX509Svids call.
pub const MAX_BATCH: usize = 1000;

/// Longest TTL anything is asked for (ten years); larger requests are cut to it (and then to
/// the issuer's expiry).
pub const MAX_TTL_SECS: i64 = 10 * 366 * 24 * 3600;

/// The node API service.
pub struct NodeApi {
    ctx: Arc<ServerCtx>,
}

impl NodeApi {
    /// A service over shared state.
    pub fn new(ctx: Arc<ServerCtx>) -> Self {
        Self { ctx }
    }

    /// Takes `cost` from `agent`'s signing budget.
    fn limit(&self, agent: &AuthedAgent, cost: usize) -> Result<(), Status> {
        self.ctx
            .sign_limiter
            .check(agent.id.as_str(), self.ctx.mono(), cost as f64)
            .map_err(|wait| {
                reason_status(
                    Code::ResourceExhausted,
                    Reason::RateLimited,
                    format!("rate limit for {} exceeded; retry in {wait:.2}s", agent.id),
                )
            })
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

/// Refuses an audience list outside the limits an agent applies to its workloads.
fn check_audience(audience: &[String]) -> Result<(), Status> {
    trustdeck_spiffe::audience::check_audiences(audience).map_err(wire::invalid_request)
}

/// The server cannot sign now (no usable CA, or the signer failed): logged, and a generic
/// answer.
fn signer_unavailable(e: impl std::fmt::Display) -> Status {
    tracing::warn!(error = %e, "node API: cannot sign");
    wire::signer_unavailable()
}

#[tonic::async_trait]
impl Node for NodeApi {
    type AttestStream = AttestStream;

    async fn attest(
        &self,
        request: Request<Streaming<AttestRequest>>,
    ) -> Result<Response<Self::AttestStream>, Status> {
        Ok(Response::new(self.attest_stream(request)))
    }

    async fn renew_agent(
        &self,
        request: Request<RenewAgentRequest>,
    ) -> Result<Response<RenewAgentResponse>, Status> {
        self.renew(request).await.map(Response::new)
    }

    async fn sync_entries(
        &self,
        request: Request<SyncEntriesRequest>,
    ) -> Result<Response<SyncEntriesResponse>, Status> {
        self.entries(request).await.map(Response::new)
    }

    async fn sign_x509_svids(
        &self,
        request: Request<SignX509SvidsRequest>,
    ) -> Result<Response<SignX509SvidsResponse>, Status> {
        self.sign(request).await.map(Response::new)
    }

    async fn mint_jwt_svid(
        &self,
        request: Request<MintJwtSvidRequest>,
    ) -> Result<Response<MintJwtSvidResponse>, Status> {
        self.jwt_for_entry(request).await.map(Response::new)
    }

    async fn fetch_bundle(
        &self,
        request: Request<FetchBundleRequest>,
    ) -> Result<Response<FetchBundleResponse>, Status> {
        self.bundle(request).await.map(Response::new)
    }

    async fn mint_intermediate(
        &self,
        request: Request<MintIntermediateRequest>,
    ) -> Result<Response<MintIntermediateResponse>, Status> {
        self.intermediate(request).await.map(Response::new)
    }

    async fn mint_jwt_svid_for(
        &self,
        request: Request<MintJwtSvidForRequest>,
    ) -> Result<Response<MintJwtSvidResponse>, Status> {
        self.jwt_for_downstream(request).await.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustdeck_proto::reason::reason_of;

    #[test]
    fn jwt_audiences_have_the_agents_limits() {
        let flood: Vec<String> = (0..100_000).map(|i| format!("aud-{i}")).collect();
        let huge = vec!["a".repeat(2048)];
        let bulky: Vec<String> = (0..9).map(|_| "a".repeat(1024)).collect();
        for (auds, says) in [
            (flood, "too many audiences"),
            (huge, "at most 1024"),
            (bulky, "total"),
            (vec![], "must not be empty"),
            (vec!["a".into(), String::new()], "audience 1 is empty"),
        ] {
            let s = check_audience(&auds).unwrap_err();
            assert_eq!(s.code(), Code::InvalidArgument);
            assert_eq!(reason_of(&s), Reason::InvalidRequest);
            assert!(s.message().contains(says), "{}", s.message());
        }
        let most: Vec<String> = (0..64).map(|i| format!("aud-{i}")).collect();
        assert!(check_audience(&most).is_ok());
    }
}
