//! The attestation RPC: a pump between the agent's stream and a
//! `trustdeck_attest::server::ServerDialogue`, then admission of the attested node.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Status, Streaming};
use trustdeck_attest::server::{self, Attested, DEADLINE, Fresh, Policy, ServerDialogue, Turn};
use trustdeck_attest::{Method, Refusal};
use trustdeck_datastore::AttestedNode;
use trustdeck_proto::admin::EventKind;
use trustdeck_proto::node::{AttestRequest, AttestResponse, AttestResult, Reason, attest_response};
use trustdeck_proto::reason::reason_status;
use trustdeck_topology::hub::Severity;

use super::NodeApi;
use crate::ctx::ServerCtx;
use crate::tpm_devid::TpmBundles;

/// The server's half of an attestation stream.
pub type AttestStream = Pin<Box<dyn Stream<Item = Result<AttestResponse, Status>> + Send>>;

impl NodeApi {
    /// Runs the dialogue in a task bounded by [`DEADLINE`]; a refusal ends the stream and is
    /// an admin-stream event.
    pub(super) fn attest_stream(&self, request: Request<Streaming<AttestRequest>>) -> AttestStream {
        let source = request
            .extensions()
            .get::<trustdeck_transport::PeerInfo>()
            .and_then(|p| p.addr)
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            // The agent, once its dialogue has proven who it is (a later refusal names it).
            let mut agent = None;
            let result = tokio::time::timeout(
                DEADLINE,
                attest(ctx.clone(), inbound, tx.clone(), source.clone(), &mut agent),
            )
            .await
            .unwrap_or_else(|_| Err(Refusal::Deadline(DEADLINE).into()));
            let result = result.map_err(|e| {
                tracing::warn!(%source, error = %e.detail, "attestation failed");
                let node = agent
                    .as_deref()
                    .map(crate::observe::agent_node_id)
                    .unwrap_or_default();
                ctx.hub.event(
                    Severity::Warning,
                    EventKind::AttestationFailed,
                    format!("attestation from {source} refused: {}", e.detail),
                    &node,
                    ctx.clock.now(),
                );
                e.wire
            });
            let _ = tx.send(result).await;
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

/// A failed attestation: what the agent is told, and the detail for the log and the event.
#[derive(Debug)]
struct Failed {
    wire: Status,
    detail: String,
}

impl From<Refusal> for Failed {
    fn from(r: Refusal) -> Self {
        Failed {
            detail: r.to_string(),
            wire: r.into(),
        }
    }
}

/// A status whose message the agent may see in full (its own stream, its own ID or token).
impl From<Status> for Failed {
    fn from(wire: Status) -> Self {
        Failed {
            detail: wire.message().to_string(),
            wire,
        }
    }
}

impl Failed {
    /// The datastore failed: a generic reason for the agent (a refused token keeps its own).
    fn datastore(e: trustdeck_datastore::DatastoreError) -> Self {
        Failed {
            detail: format!("datastore: {e}"),
            wire: super::wire::datastore(e),
        }
    }

    /// The CA could not sign the agent's SVID.
    fn signer(e: impl std::fmt::Display) -> Self {
        Failed {
            detail: format!("cannot sign the agent SVID: {e}"),
            wire: super::wire::signer_unavailable(),
        }
    }
}

/// One attestation from `source`: the agent's parameters, the method's dialogue, admission.
/// `agent` is set to the agent's SPIFFE ID once the dialogue has proven it.
async fn attest(
    ctx: Arc<ServerCtx>,
    mut inbound: Streaming<AttestRequest>,
    tx: mpsc::Sender<Result<AttestResponse, Status>>,
    source: String,
    agent: &mut Option<String>,
) -> Result<AttestResponse, Failed> {
    let started = ctx.clock.now();
    if let Err(wait) = ctx.attest_limiter.check(&source, ctx.mono(), 1.0) {
        return Err(reason_status(
            Code::ResourceExhausted,
            Reason::RateLimited,
            format!("too many attestation attempts from {source}; retry in {wait:.1}s"),
        )
        .into());
    }
    let first = inbound
        .message()
        .await?
        .ok_or(Refusal::Protocol("attestation stream closed before params"))?;
    let opening = server::open(first)?;
    let tpm = match opening.method() {
        Method::TpmDevid => {
            Some(TpmBundles::read(ctx.config.node_attestation.tpm_devid.as_ref()).await?)
        }
        Method::JoinToken | Method::X509pop => None,
    };
    let policy = Policy {
        trust_domain: &ctx.config.trust_domain,
        x509pop_cas: &ctx.x509pop_cas,
        tpm: tpm.as_ref().map(TpmBundles::anchors),
    };
    let deadline = started + chrono::Duration::from_std(DEADLINE).unwrap_or_default();
    let (mut dialogue, mut turn) = ServerDialogue::start(
        opening,
        policy,
        Fresh::generate()?,
        deadline,
        ctx.clock.now(),
    )?;
    let attested = loop {
        match turn {
            Turn::Done(a) => break *a,
            Turn::Send(m) => tx
                .send(Ok(*m))
                .await
                .map_err(|_| Status::cancelled("agent went away"))?,
            Turn::Wait => {}
        }
        let msg = inbound.message().await?.ok_or_else(|| dialogue.closed())?;
        turn = dialogue.receive(msg, ctx.clock.now())?;
    };
    *agent = Some(attested.id.to_string());
    admit(&ctx, attested, &source).await
}

/// Admits an attested node unless it is banned: issues its SVID, consumes its join token,
/// records it and publishes it.
async fn admit(ctx: &ServerCtx, a: Attested, source: &str) -> Result<AttestResponse, Failed> {
    let now = ctx.clock.now();
    let existing = ctx
        .ds
        .get_node(a.id.as_str())
        .await
        .map_err(Failed::datastore)?;
    if existing.as_ref().is_some_and(|n| n.banned) {
        return Err(reason_status(
            Code::PermissionDenied,
            Reason::Banned,
            format!(
                "agent {} is banned; an operator must evict it before it can attest again",
                a.id
            ),
        )
        .into());
    }
    let svid = ctx
        .ca
        .x509_ca()
        .map_err(Failed::signer)?
        .issue_x509_svid(&a.csr, &a.id, &[], ctx.config.agent_svid_ttl, now)
        .map_err(Failed::signer)?;
    if let Some(token) = &a.join_token {
        ctx.ds
            .consume_join_token(token, now.timestamp())
            .await
            .map_err(Failed::datastore)?;
    }
    let record = AttestedNode {
        spiffe_id: a.id.to_string(),
        attestation_type: a.method.as_str().into(),
        cert_serial: svid.serial_hex.clone(),
        cert_not_after: svid.not_after.timestamp(),
        new_cert: None,
        banned: false,
        selectors: a.selectors.clone(),
        created_at: existing.map(|n| n.created_at).unwrap_or(now.timestamp()),
        updated_at: now.timestamp(),
    };
    ctx.ds
        .upsert_node(&record)
        .await
        .map_err(Failed::datastore)?;
    publish(ctx, &a, &record, source, now);
    Ok(AttestResponse {
        tpm_devid_challenge: None,
        step: Some(attest_response::Step::Result(AttestResult {
            spiffe_id: a.id.to_string(),
            svid_chain: svid.chain,
            bundle: ctx.ca.bundle().to_json().into_bytes(),
            selectors: a.selectors,
            tainted: Some(ctx.ca.tainted_keys()),
        })),
    })
}

/// The admitted node on the admin stream, and the event.
fn publish(
    ctx: &ServerCtx,
    a: &Attested,
    record: &AttestedNode,
    source: &str,
    now: chrono::DateTime<chrono::Utc>,
) {
    tracing::info!(agent = %a.id, method = %a.method, %source, "agent attested");
    let node = crate::observe::agent_node(ctx.server_id.as_str(), &ctx.config.segment, record);
    ctx.hub.upsert(crate::observe::GROUP_AGENTS, node, now);
    ctx.hub.event(
        Severity::Info,
        EventKind::AttestationOk,
        format!("{} attested with {} from {source}", a.id, a.method),
        &crate::observe::agent_node_id(a.id.as_str()),
        now,
    );
}
