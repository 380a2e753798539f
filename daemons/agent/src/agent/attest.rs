//! Node attestation, agent side: reads the credentials, then pumps messages between the
//! server's stream and a `trustdeck_attest::agent::AgentDialogue` until it yields the agent
//! SVID, which is installed.

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use trustdeck_attest::agent::{AgentDialogue, Next};
use trustdeck_proto::admin::EventKind;
use trustdeck_proto::node::{AttestRequest, AttestResult};
use trustdeck_spiffe::Bundle;
use trustdeck_topology::hub::Severity;

use super::svid::key_and_csr;
use super::{Agent, AgentError};
use crate::credentials::{self, TpmProver};

impl Agent {
    /// Attests the node with the configured method and installs the resulting SVID; the
    /// outcome is an admin-stream event.
    pub async fn attest(&self) -> Result<(), AgentError> {
        let r = self.attest_once().await;
        let addr = &self.config.server_address;
        let (sev, kind, msg) = match &r {
            Ok(()) => (
                Severity::Info,
                EventKind::AttestationOk,
                format!(
                    "attested to {addr} as {}",
                    self.agent_id().map(|i| i.to_string()).unwrap_or_default()
                ),
            ),
            Err(e) => (
                Severity::Warning,
                EventKind::AttestationFailed,
                format!("attestation to {addr} failed: {e}"),
            ),
        };
        // About the agent's own node once it has one, else about the server it tried.
        let node = match self.agent_id() {
            Some(id) if r.is_ok() => format!("agent:{id}"),
            _ => format!("server:{}", self.config.server_spiffe_id),
        };
        self.hub.event(sev, kind, msg, &node, self.clock.now());
        r
    }

    async fn attest_once(&self) -> Result<(), AgentError> {
        let (creds, prover) = credentials::load(&self.config.node_attestation).await?;
        let method = creds.method();
        let (pkcs8, csr) = key_and_csr(None)?;
        let (dialogue, opening) = AgentDialogue::new(creds, csr);
        let r = self.converse(dialogue, opening, prover.as_ref()).await?;
        self.install_svid(&r.svid_chain, &pkcs8).await?;
        self.take_tainted(r.tainted.clone().unwrap_or_default(), self.clock.now());
        if let Ok(b) = Bundle::from_json(&self.config.trust_domain, &r.bundle) {
            self.apply_bundle(b).await;
        }
        tracing::info!(agent = %r.spiffe_id, %method, "node attested");
        Ok(())
    }

    /// Runs the dialogue over an `Attest` stream; the TPM, when there is one, answers its
    /// challenge.
    async fn converse(
        &self,
        mut dialogue: AgentDialogue,
        opening: Vec<AttestRequest>,
        prover: Option<&TpmProver>,
    ) -> Result<AttestResult, AgentError> {
        let addr = self.config.server_address.as_str();
        let refused = |s| AgentError::from_attest_status(addr, s);
        let (tx, rx) = mpsc::channel(4);
        for m in opening {
            let _ = tx.send(m).await;
        }
        let mut inbound = self
            .client()
            .attest(ReceiverStream::new(rx))
            .await
            .map_err(refused)?
            .into_inner();
        while let Some(msg) = inbound.next().await {
            let reply = match dialogue.receive(msg.map_err(refused)?)? {
                Next::Send(m) => m,
                Next::AnswerTpm(ch) => {
                    let Some(prover) = prover else {
                        return Err(AgentError::Dialogue(
                            trustdeck_attest::agent::DialogueError::NoPendingChallenge,
                        ));
                    };
                    dialogue.answered(prover.answer(ch).await?)?
                }
                Next::Wait => continue,
                Next::Done(r) => return Ok(r),
            };
            let _ = tx.send(reply).await;
        }
        Err(AgentError::AttestationCutShort {
            addr: addr.to_string(),
        })
    }
}
