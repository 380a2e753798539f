//! The server's half of node attestation. [`open`] reads the agent's first message; the pump
//! then gathers what the method needs (the `tpm_devid` trust bundles are files) into a
//! [`Policy`] and runs a [`ServerDialogue`] until it reports [`Turn::Done`]. Nothing is
//! stored here: the caller checks bans, issues the SVID and records the node.

use chrono::{DateTime, Utc};
use ring::rand::{SecureRandom, SystemRandom};
use trustdeck_pki::csr::{VerifiedCsr, verify_csr};
use trustdeck_pki::x509pop::{self, X509PopNode};
use trustdeck_proto::node::{
    AttestParams, AttestRequest, AttestResponse, TpmDevidChallenge, TpmDevidEvidence,
    TpmDevidProof, attest_request, attest_response,
};
use trustdeck_spiffe::{SpiffeId, TrustDomain};
use trustdeck_tpm::VerifiedDevice;
use trustdeck_tpm::verify::{self, Bundle, Evidence};

use crate::{Method, Refusal};

/// Longest a dialogue may take, from the agent's first message to the result.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// What the server trusts.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// The trust domain agent IDs are minted in.
    pub trust_domain: &'a TrustDomain,
    /// CAs of x509pop node certificates; empty when x509pop is disabled.
    pub x509pop_cas: &'a [Vec<u8>],
    /// The `tpm_devid` trust anchors; `None` when `tpm_devid` is disabled.
    pub tpm: Option<TpmAnchors<'a>>,
}

/// CAs of DevID certificates and of TPM endorsement key certificates.
#[derive(Debug, Clone, Copy)]
pub struct TpmAnchors<'a> {
    /// The DevID CA bundle.
    pub devid: Bundle<'a>,
    /// The endorsement CA bundle.
    pub endorsement: Bundle<'a>,
}

/// The random values of one dialogue: never reused, so an answer from another dialogue
/// cannot match. Not `Clone` (one dialogue owns them), and `Debug` shows neither value.
pub struct Fresh {
    /// The nonce the node signs (x509pop, tpm_devid).
    pub nonce: [u8; 32],
    /// The credential secret the node's TPM must release (tpm_devid).
    pub secret: [u8; 32],
}

impl std::fmt::Debug for Fresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fresh { .. }")
    }
}

impl Fresh {
    /// Draws both from the system's secure random source.
    pub fn generate() -> Result<Fresh, Refusal> {
        let rng = SystemRandom::new();
        let mut f = Fresh {
            nonce: [0; 32],
            secret: [0; 32],
        };
        rng.fill(&mut f.nonce).map_err(|_| Refusal::Random)?;
        rng.fill(&mut f.secret).map_err(|_| Refusal::Random)?;
        Ok(f)
    }
}

/// The agent's opening message, checked: a known method and a CSR whose signature verifies.
#[derive(Debug, Clone)]
pub struct Opening {
    method: Method,
    payload: Vec<Vec<u8>>,
    csr: VerifiedCsr,
}

impl Opening {
    /// The method the agent asks for.
    pub fn method(&self) -> Method {
        self.method
    }
}

/// Reads the first message of a dialogue, which must carry `AttestParams`.
pub fn open(first: AttestRequest) -> Result<Opening, Refusal> {
    let Some(attest_request::Step::Params(params)) = first.step else {
        return Err(Refusal::Protocol(
            "the first attestation message must carry AttestParams",
        ));
    };
    let AttestParams {
        attestation_type,
        payload,
        csr,
    } = params;
    let csr = verify_csr(&csr).map_err(Refusal::Csr)?;
    let method =
        Method::from_name(&attestation_type).ok_or(Refusal::UnknownMethod(attestation_type))?;
    Ok(Opening {
        method,
        payload,
        csr,
    })
}

/// A node that completed its dialogue.
#[derive(Debug, Clone)]
pub struct Attested {
    /// Its agent ID.
    pub id: SpiffeId,
    /// How it attested.
    pub method: Method,
    /// Selectors from its evidence.
    pub selectors: Vec<String>,
    /// A join token to consume once the SVID is issued (so a failed issuance does not burn it).
    pub join_token: Option<String>,
    /// The CSR for its agent SVID.
    pub csr: VerifiedCsr,
}

/// What the server does next.
#[derive(Debug, Clone)]
pub enum Turn {
    /// Send this and wait for the agent's answer.
    Send(Box<AttestResponse>),
    /// Wait for the agent's next message.
    Wait,
    /// The node is attested; the dialogue is over.
    Done(Box<Attested>),
}

/// The agent ID a join token yields.
pub fn join_token_agent_id(td: &TrustDomain, token: &str) -> SpiffeId {
    SpiffeId::from_segments(td, &["trustdeck", "agent", "join_token", token])
        .unwrap_or_else(|_| td.id())
}

fn agent_id(td: &TrustDomain, method: Method, fingerprint: &str) -> Result<SpiffeId, Refusal> {
    SpiffeId::from_segments(td, &["trustdeck", "agent", method.as_str(), fingerprint])
        .map_err(Refusal::AgentId)
}

enum State {
    /// x509pop: the nonce is sent, the signature is due.
    X509Proof(X509PopNode),
    /// tpm_devid: the evidence is due.
    TpmEvidence(Vec<Vec<u8>>),
    /// tpm_devid: the challenge is sent, the proof is due.
    TpmProof(Box<VerifiedDevice>),
    Over,
}

/// One dialogue, server side.
pub struct ServerDialogue<'a> {
    policy: Policy<'a>,
    fresh: Fresh,
    deadline: DateTime<Utc>,
    csr: Option<VerifiedCsr>,
    state: State,
}

impl<'a> ServerDialogue<'a> {
    /// Starts the dialogue `opening` asks for, to end by `deadline`; `now` is when the
    /// evidence in it is judged.
    pub fn start(
        opening: Opening,
        policy: Policy<'a>,
        fresh: Fresh,
        deadline: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(Self, Turn), Refusal> {
        let Opening {
            method,
            payload,
            csr,
        } = opening;
        let mut d = ServerDialogue {
            policy,
            fresh,
            deadline,
            csr: Some(csr),
            state: State::Over,
        };
        let turn = match method {
            Method::JoinToken => d.join_token(&payload)?,
            Method::X509pop => d.x509pop_challenge(&payload, now)?,
            Method::TpmDevid => {
                if policy.tpm.is_none() {
                    return Err(Refusal::Disabled(Method::TpmDevid));
                }
                d.state = State::TpmEvidence(payload);
                Turn::Wait
            }
        };
        Ok((d, turn))
    }

    /// When the dialogue must be over.
    pub fn deadline(&self) -> DateTime<Utc> {
        self.deadline
    }

    /// Takes the agent's next message, received at `now`.
    pub fn receive(&mut self, msg: AttestRequest, now: DateTime<Utc>) -> Result<Turn, Refusal> {
        if now >= self.deadline {
            self.state = State::Over;
            return Err(Refusal::Deadline(DEADLINE));
        }
        let step = msg.step;
        match (std::mem::replace(&mut self.state, State::Over), step) {
            (State::X509Proof(node), Some(attest_request::Step::ChallengeResponse(sig))) => {
                self.x509pop_verify(&node, &sig)
            }
            (State::X509Proof(_), _) => {
                Err(Refusal::Protocol("x509pop: expected a challenge response"))
            }
            (State::TpmEvidence(chain), Some(attest_request::Step::TpmDevidEvidence(e))) => {
                self.tpm_challenge(&chain, e, now)
            }
            (State::TpmEvidence(_), _) => Err(Refusal::Protocol(
                "tpm_devid: expected TpmDevidEvidence after AttestParams",
            )),
            (State::TpmProof(device), Some(attest_request::Step::TpmDevidProof(p))) => {
                self.tpm_verify(&device, p)
            }
            (State::TpmProof(_), _) => Err(Refusal::Protocol(
                "tpm_devid: expected TpmDevidProof in answer to the challenge",
            )),
            (State::Over, _) => Err(Refusal::Protocol("the attestation dialogue is over")),
        }
    }

    /// The refusal when the agent closes its stream before the message now due.
    pub fn closed(&self) -> Refusal {
        Refusal::Protocol(match self.state {
            State::X509Proof(_) => "x509pop: stream closed before the challenge response",
            State::TpmEvidence(_) => "tpm_devid: stream closed before the TPM evidence",
            State::TpmProof(_) => "tpm_devid: stream closed before the challenge response",
            State::Over => "attestation stream closed",
        })
    }

    fn done(&mut self, attested: impl FnOnce(VerifiedCsr) -> Attested) -> Result<Turn, Refusal> {
        let csr = self
            .csr
            .take()
            .ok_or(Refusal::Protocol("the attestation dialogue is over"))?;
        Ok(Turn::Done(Box::new(attested(csr))))
    }

    fn join_token(&mut self, payload: &[Vec<u8>]) -> Result<Turn, Refusal> {
        let token = payload
            .first()
            .and_then(|p| std::str::from_utf8(p).ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::EmptyToken)?
            .to_string();
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Refusal::TokenCharset);
        }
        let id = join_token_agent_id(self.policy.trust_domain, &token);
        self.done(|csr| Attested {
            id,
            method: Method::JoinToken,
            selectors: vec![],
            join_token: Some(token),
            csr,
        })
    }

    fn x509pop_challenge(
        &mut self,
        chain: &[Vec<u8>],
        now: DateTime<Utc>,
    ) -> Result<Turn, Refusal> {
        if self.policy.x509pop_cas.is_empty() {
            return Err(Refusal::Disabled(Method::X509pop));
        }
        let node =
            x509pop::verify_chain(chain, self.policy.x509pop_cas, now).map_err(Refusal::X509pop)?;
        self.state = State::X509Proof(node);
        Ok(Turn::Send(Box::new(AttestResponse {
            step: Some(attest_response::Step::Challenge(self.fresh.nonce.to_vec())),
            tpm_devid_challenge: None,
        })))
    }

    fn x509pop_verify(&mut self, node: &X509PopNode, sig: &[u8]) -> Result<Turn, Refusal> {
        x509pop::verify_proof(&node.leaf_spki, &self.fresh.nonce, sig).map_err(Refusal::X509pop)?;
        let id = agent_id(self.policy.trust_domain, Method::X509pop, &node.fingerprint)?;
        let selectors = node.selectors.clone();
        self.done(|csr| Attested {
            id,
            method: Method::X509pop,
            selectors,
            join_token: None,
            csr,
        })
    }

    fn tpm_challenge(
        &mut self,
        devid_chain: &[Vec<u8>],
        e: TpmDevidEvidence,
        now: DateTime<Utc>,
    ) -> Result<Turn, Refusal> {
        let anchors = self.policy.tpm.ok_or(Refusal::Disabled(Method::TpmDevid))?;
        let evidence = Evidence {
            devid_chain,
            ek_cert: &e.ek_cert,
            ek_public: &e.ek_public,
            devid_public: &e.devid_public,
        };
        let device = verify::verify_evidence(evidence, anchors.devid, anchors.endorsement, now)
            .map_err(Refusal::Tpm)?;
        let credential = trustdeck_tpm::credential::make_credential(
            &device.ek,
            &device.devid_name,
            &self.fresh.secret,
        )
        .map_err(Refusal::Credential)?;
        self.state = State::TpmProof(Box::new(device));
        Ok(Turn::Send(Box::new(AttestResponse {
            step: None,
            tpm_devid_challenge: Some(TpmDevidChallenge {
                nonce: self.fresh.nonce.to_vec(),
                credential_blob: credential.id_object,
                encrypted_secret: credential.encrypted_secret,
            }),
        })))
    }

    fn tpm_verify(&mut self, device: &VerifiedDevice, p: TpmDevidProof) -> Result<Turn, Refusal> {
        verify::verify_proof(&device.devid_spki, &self.fresh.nonce, &p.signature)
            .map_err(Refusal::Tpm)?;
        verify::verify_secret(&self.fresh.secret, &p.activated_secret).map_err(Refusal::Tpm)?;
        let id = agent_id(
            self.policy.trust_domain,
            Method::TpmDevid,
            &device.fingerprint,
        )?;
        let selectors = device.selectors.clone();
        self.done(|csr| Attested {
            id,
            method: Method::TpmDevid,
            selectors,
            join_token: None,
            csr,
        })
    }
}
