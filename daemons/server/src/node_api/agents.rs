//! What attested agents call: agent SVID renewal, their entries and bundle, workload
//! X509-SVIDs (one result per CSR) and JWT-SVIDs.

use chrono::{DateTime, Utc};
use tonic::{Code, Request, Status};
use trustdeck_pki::X509Authority;
use trustdeck_pki::csr::verify_csr;
use trustdeck_proto::node::{
    MintJwtSvidRequest, MintJwtSvidResponse, Reason, RenewAgentRequest, RenewAgentResponse,
    SignX509SvidsRequest, SignX509SvidsResponse, SvidCsr, SvidResult, SyncEntriesRequest,
    SyncEntriesResponse,
};
use trustdeck_proto::reason::reason_status;
use trustdeck_spiffe::SpiffeId;

use super::{MAX_BATCH, NodeApi, check_audience, signer_unavailable, ttl_or};
use crate::ctx::AuthedAgent;

fn not_authorized(msg: String) -> Status {
    reason_status(Code::PermissionDenied, Reason::NotAuthorized, msg)
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
        namespaces: e.namespaces,
        federates_with: e.federates_with,
    }
}

impl NodeApi {
    pub(super) async fn renew(
        &self,
        request: Request<RenewAgentRequest>,
    ) -> Result<RenewAgentResponse, Status> {
        let agent = self.ctx.authenticate_agent(&request).await?;
        self.limit(&agent, 1)?;
        let csr = verify_csr(&request.get_ref().csr)
            .map_err(|e| Status::invalid_argument(format!("agent CSR: {e}")))?;
        let now = self.ctx.clock.now();
        let svid = self
            .ctx
            .ca
            .x509_ca()
            .map_err(signer_unavailable)?
            .issue_x509_svid(&csr, &agent.id, &[], self.ctx.config.agent_svid_ttl, now)
            .map_err(signer_unavailable)?;
        self.ctx
            .ds
            .set_node_new_cert(
                agent.id.as_str(),
                &trustdeck_datastore::NodeCert {
                    serial: svid.serial_hex.clone(),
                    not_after: svid.not_after.timestamp(),
                },
                now.timestamp(),
            )
            .await
            .map_err(super::wire::datastore)?;
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
        Ok(RenewAgentResponse {
            svid_chain: svid.chain,
        })
    }

    pub(super) async fn entries(
        &self,
        request: Request<SyncEntriesRequest>,
    ) -> Result<SyncEntriesResponse, Status> {
        let agent = self.ctx.authenticate_agent(&request).await?;
        if let Some(held) = &request.get_ref().held {
            self.ctx.record_held(agent.id.as_str(), held)?;
        }
        let entries = self.ctx.agent_entries(&agent).await?;
        let federated_bundles = if entries.iter().any(|e| !e.federates_with.is_empty()) {
            let held = self
                .ctx
                .foreign_bundles()
                .await
                .map_err(super::wire::datastore)?;
            crate::federation::deliver::for_entries(&held, &entries)
        } else {
            Default::default()
        };
        let bundle = self.ctx.ca.bundle();
        Ok(SyncEntriesResponse {
            entries: entries.into_iter().map(entry_to_proto).collect(),
            bundle: bundle.to_json().into_bytes(),
            bundle_sequence: bundle.sequence,
            tainted: Some(self.ctx.ca.tainted_keys()),
            federated_bundles,
        })
    }

    pub(super) async fn sign(
        &self,
        request: Request<SignX509SvidsRequest>,
    ) -> Result<SignX509SvidsResponse, Status> {
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
        let ca = self.ctx.ca.x509_ca().map_err(signer_unavailable)?;
        let ca_key_id = crate::observe::key_id(&ca);
        let now = self.ctx.clock.now();
        let results = csrs
            .iter()
            .map(|item| {
                self.sign_one(&agent, &entries, (&ca, &ca_key_id), item, now)
                    .unwrap_or_else(|s| refused(&agent, item, s))
            })
            .collect();
        Ok(SignX509SvidsResponse { results })
    }

    /// One workload SVID, for an entry `agent` is authorised for whose SPIFFE ID the CSR
    /// asks for.
    fn sign_one(
        &self,
        agent: &AuthedAgent,
        entries: &[trustdeck_datastore::Entry],
        (ca, ca_key_id): (&X509Authority, &str),
        item: &SvidCsr,
        now: DateTime<Utc>,
    ) -> Result<SvidResult, Status> {
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
            not_authorized(if item.entry_id.is_empty() {
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
            return Err(not_authorized(format!(
                "CSR asks for SPIFFE ID {requested} but entry {} is for {}; agent {} is not authorised for it",
                entry.id, entry.spiffe_id, agent.id
            )));
        }
        self.ctx.check_namespace(&requested)?;
        let ttl = ttl_or(entry.x509_ttl_secs, self.ctx.config.default_x509_svid_ttl);
        let svid = ca
            .issue_x509_svid(&csr, &requested, &entry.dns_names, ttl, now)
            .map_err(signer_unavailable)?;
        self.ctx.hub.upsert(
            crate::observe::GROUP_SVIDS,
            crate::observe::svid_node(&crate::observe::IssuedSvid {
                agent: agent.id.as_str(),
                entry_id: &entry.id,
                spiffe_id: requested.as_str(),
                serial: &svid.serial_hex,
                not_before: now.timestamp(),
                not_after: svid.not_after.timestamp(),
                issuer_key_id: ca_key_id,
                segment: &self.ctx.config.segment,
            }),
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
    }

    pub(super) async fn jwt_for_entry(
        &self,
        request: Request<MintJwtSvidRequest>,
    ) -> Result<MintJwtSvidResponse, Status> {
        let agent = self.ctx.authenticate_agent(&request).await?;
        let req = request.get_ref();
        check_audience(&req.audience)?;
        self.limit(&agent, 1)?;
        let entries = self.ctx.agent_entries(&agent).await?;
        let entry = entries
            .iter()
            .find(|e| e.id == req.entry_id)
            .ok_or_else(|| {
                not_authorized(format!(
                    "agent {} is not authorised for entry {:?}",
                    agent.id, req.entry_id
                ))
            })?;
        let sub = SpiffeId::parse(&entry.spiffe_id).map_err(|e| {
            super::wire::datastore(trustdeck_datastore::DatastoreError::Corrupt {
                what: format!("entry {}: {e}", entry.id),
            })
        })?;
        self.ctx.check_namespace(&sub)?;
        let ttl = ttl_or(entry.jwt_ttl_secs, self.ctx.config.default_jwt_svid_ttl);
        self.mint_jwt(&sub, &req.audience, ttl).await
    }
}

/// The result for a CSR that was refused.
fn refused(agent: &AuthedAgent, item: &SvidCsr, s: Status) -> SvidResult {
    tracing::info!(agent = %agent.id, entry = %item.entry_id, error = %s.message(), "SVID refused");
    SvidResult {
        entry_id: item.entry_id.clone(),
        spiffe_id: String::new(),
        chain: vec![],
        expires_at: 0,
        error_code: s.code() as i32,
        error_message: s.message().to_string(),
    }
}
