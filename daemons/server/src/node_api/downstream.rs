//! What downstream servers call (intermediate CA, JWT-SVIDs for their workloads, the
//! bundle), and JWT-SVID minting, which a downstream forwards to its own upstream.

use chrono::Duration;
use tonic::{Code, Request, Status};
use trustdeck_pki::csr::verify_csr;
use trustdeck_proto::admin::EventKind;
use trustdeck_proto::node::{
    FederatedBundlesState, FetchBundleRequest, FetchBundleResponse, MintIntermediateRequest,
    MintIntermediateResponse, MintJwtSvidForRequest, MintJwtSvidResponse, Reason,
};
use trustdeck_proto::reason::reason_status;
use trustdeck_spiffe::SpiffeId;
use trustdeck_topology::hub::Severity;

use super::{NodeApi, check_audience, signer_unavailable, ttl_or};

impl NodeApi {
    /// Mints a JWT-SVID with the root's key: locally on the upstream, forwarded upstream on a
    /// downstream server (which fails with `Unavailable` when the upstream is unreachable).
    pub(super) async fn mint_jwt(
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
                    if s.code() == Code::InvalidArgument {
                        // Re-made, so no reason the upstream attached reaches our agents as
                        // if this server had said it.
                        Status::invalid_argument(s.message())
                    } else {
                        signer_unavailable(format!(
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
                    .map_err(signer_unavailable)?;
                Ok(MintJwtSvidResponse {
                    token,
                    expires_at: exp.timestamp(),
                })
            }
        }
    }

    pub(super) async fn bundle(
        &self,
        request: Request<FetchBundleRequest>,
    ) -> Result<FetchBundleResponse, Status> {
        let (caller, downstream) = match self.ctx.authenticate_agent(&request).await {
            Ok(agent) => (agent.id, false),
            // Downstream servers poll the bundle too.
            Err(e) => (
                self.ctx
                    .authenticate_downstream(&request)
                    .await
                    .map_err(|_| e)?,
                true,
            ),
        };
        // What the caller's fleet holds (a downstream forwards its own census).
        if let Some(held) = &request.get_ref().held {
            self.ctx.record_held(caller.as_str(), held)?;
        }
        let (namespaces, federated) = if downstream {
            let held = self
                .ctx
                .foreign_bundles()
                .await
                .map_err(super::wire::datastore)?;
            let (relay, digest) = crate::federation::deliver::to_relay(held);
            let federated = if request.get_ref().federated_digest == digest {
                (Default::default(), FederatedBundlesState::Unchanged, digest)
            } else {
                let all = relay.into_iter().collect();
                (all, FederatedBundlesState::Included, digest)
            };
            (self.ctx.downstream_namespaces(&caller).await?, federated)
        } else {
            Default::default()
        };
        let (federated_bundles, federated_state, federated_digest) = federated;
        let b = self.ctx.ca.bundle();
        Ok(FetchBundleResponse {
            bundle: b.to_json().into_bytes(),
            sequence: b.sequence,
            tainted: Some(self.ctx.ca.tainted_keys()),
            namespaces,
            has_namespaces: downstream,
            federated_bundles,
            federated_state: federated_state.into(),
            federated_digest,
        })
    }

    pub(super) async fn intermediate(
        &self,
        request: Request<MintIntermediateRequest>,
    ) -> Result<MintIntermediateResponse, Status> {
        let caller = self.ctx.authenticate_downstream(&request).await?;
        let namespaces = self.ctx.downstream_namespaces(&caller).await?;
        let req = request.into_inner();
        let csr = verify_csr(&req.csr)
            .map_err(|e| Status::invalid_argument(format!("intermediate CSR: {e}")))?;
        let ttl = ttl_or(req.ttl_secs, self.ctx.config.ca_ttl);
        let now = self.ctx.clock.now();
        // The subject names the downstream; RFC 5280 caps a CN at 64 bytes (paths are ASCII).
        let mut cn = format!("trustdeck CA {}", caller.path());
        cn.truncate(64);
        let issued = self
            .ctx
            .ca
            .x509_ca()
            .map_err(signer_unavailable)?
            .sign_intermediate(&csr, &cn, ttl, now)
            .map_err(signer_unavailable)?;
        tracing::info!(downstream = %caller, not_after = %issued.not_after, "intermediate CA signed");
        crate::observe::publish_intermediate(&self.ctx, caller.as_str(), &issued.chain, now);
        if let Some(key_id) = issued
            .chain
            .first()
            .and_then(|c| trustdeck_spiffe::x509::check_ca(c).ok())
            .and_then(|i| i.subject_key_id)
        {
            self.ctx.findings.issued(&hex::encode(key_id), &namespaces);
        }
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
        Ok(MintIntermediateResponse {
            chain: issued.chain,
            bundle: self.ctx.ca.bundle().to_json().into_bytes(),
            tainted: Some(self.ctx.ca.tainted_keys()),
            namespaces,
        })
    }

    pub(super) async fn jwt_for_downstream(
        &self,
        request: Request<MintJwtSvidForRequest>,
    ) -> Result<MintJwtSvidResponse, Status> {
        let caller = self.ctx.authenticate_downstream(&request).await?;
        let namespaces = self.ctx.downstream_namespaces(&caller).await?;
        let req = request.into_inner();
        check_audience(&req.audience)?;
        let sub = SpiffeId::parse(&req.spiffe_id)
            .map_err(|e| Status::invalid_argument(format!("spiffe_id: {e}")))?;
        if sub.trust_domain() != &self.ctx.config.trust_domain {
            return Err(reason_status(
                Code::PermissionDenied,
                Reason::NotAuthorized,
                format!(
                    "{sub} is not in trust domain {}",
                    self.ctx.config.trust_domain
                ),
            ));
        }
        if !namespaces
            .iter()
            .any(|n| crate::namespace::contains(n, sub.path()))
        {
            return Err(reason_status(
                Code::PermissionDenied,
                Reason::OutsideNamespace,
                format!(
                    "{sub} is outside the namespaces of downstream {caller}: {}",
                    namespaces.join(", ")
                ),
            ));
        }
        // A downstream's own namespaces bind what its upstream asks for too.
        self.ctx.check_namespace(&sub)?;
        // A downstream may ask for less than this server's JWT-SVID TTL, never more.
        let default = self.ctx.config.default_jwt_svid_ttl;
        let ttl = std::cmp::min(ttl_or(req.ttl_secs, default), default);
        self.mint_jwt(&sub, &req.audience, ttl).await
    }
}
