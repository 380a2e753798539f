//! The agent's half of node attestation. The pump reads the node's credentials (files, the
//! TPM) into [`Credentials`], sends the opening messages of an [`AgentDialogue`], then feeds
//! it the server's messages until it yields [`Next::Done`]. A TPM challenge comes out as
//! [`Next::AnswerTpm`]: the pump asks the TPM and hands the proof to
//! [`AgentDialogue::answered`].

use trustdeck_proto::node::{
    AttestParams, AttestRequest, AttestResponse, AttestResult, TpmDevidChallenge, TpmDevidEvidence,
    TpmDevidProof, attest_request, attest_response,
};

use crate::Method;

/// What the node proves its identity with, read from disk and from its TPM.
pub enum Credentials {
    /// A join token.
    JoinToken(String),
    /// A node certificate chain (DER, leaf first) and the leaf's key.
    X509pop {
        chain: Vec<Vec<u8>>,
        /// The leaf's key, which signs the server's nonce.
        key: Box<rcgen::KeyPair>,
    },
    /// A DevID certificate chain (DER, leaf first) and the TPM's evidence; the TPM answers
    /// the challenge.
    TpmDevid {
        chain: Vec<Vec<u8>>,
        /// EK certificate and public areas.
        evidence: TpmDevidEvidence,
    },
}

impl Credentials {
    /// The method these credentials are for.
    pub fn method(&self) -> Method {
        match self {
            Credentials::JoinToken(_) => Method::JoinToken,
            Credentials::X509pop { .. } => Method::X509pop,
            Credentials::TpmDevid { .. } => Method::TpmDevid,
        }
    }
}

/// What the agent does next.
#[derive(Debug, Clone)]
pub enum Next {
    /// Send this to the server.
    Send(AttestRequest),
    /// Have the TPM answer this challenge, then pass the proof to
    /// [`AgentDialogue::answered`].
    AnswerTpm(TpmDevidChallenge),
    /// Nothing to do: wait for the server's next message.
    Wait,
    /// Attested: the agent SVID and bundle.
    Done(AttestResult),
}

/// Why the agent gives up on a dialogue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialogueError {
    /// The server challenged in a way the method does not allow (or twice).
    #[error("server sent {challenge} challenge for {method} attestation")]
    UnexpectedChallenge {
        /// `an x509pop` or `a TPM`.
        challenge: &'static str,
        /// The method the agent is attesting with.
        method: Method,
    },
    /// A TPM proof was handed in while no TPM challenge was pending.
    #[error("no TPM challenge is pending")]
    NoPendingChallenge,
    /// The node key could not sign the nonce.
    #[error("x509pop signature: {0}")]
    Sign(rcgen::Error),
}

enum State {
    /// join_token: the result is due.
    Token,
    /// x509pop: the nonce is due.
    X509Challenge(Box<rcgen::KeyPair>),
    /// tpm_devid: the challenge is due.
    TpmChallenge,
    /// tpm_devid: the TPM is answering.
    TpmAnswering,
    /// The answer is sent; the result is due.
    Answered,
    Over,
}

/// One dialogue, agent side.
pub struct AgentDialogue {
    method: Method,
    state: State,
}

fn request(step: attest_request::Step) -> AttestRequest {
    AttestRequest { step: Some(step) }
}

impl AgentDialogue {
    /// A dialogue proving `credentials`, asking for an SVID for the key of `csr` (DER), and
    /// the messages that open it.
    pub fn new(credentials: Credentials, csr: Vec<u8>) -> (Self, Vec<AttestRequest>) {
        let method = credentials.method();
        let params = |payload| {
            request(attest_request::Step::Params(AttestParams {
                attestation_type: method.as_str().into(),
                payload,
                csr,
            }))
        };
        let (state, opening) = match credentials {
            Credentials::JoinToken(t) => (State::Token, vec![params(vec![t.into_bytes()])]),
            Credentials::X509pop { chain, key } => (State::X509Challenge(key), vec![params(chain)]),
            Credentials::TpmDevid { chain, evidence } => (
                State::TpmChallenge,
                vec![
                    params(chain),
                    request(attest_request::Step::TpmDevidEvidence(evidence)),
                ],
            ),
        };
        (AgentDialogue { method, state }, opening)
    }

    /// Takes the server's next message.
    pub fn receive(&mut self, msg: AttestResponse) -> Result<Next, DialogueError> {
        if let Some(ch) = msg.tpm_devid_challenge {
            return match std::mem::replace(&mut self.state, State::Over) {
                State::TpmChallenge => {
                    self.state = State::TpmAnswering;
                    Ok(Next::AnswerTpm(ch))
                }
                _ => Err(self.unexpected("a TPM")),
            };
        }
        match msg.step {
            Some(attest_response::Step::Challenge(nonce)) => {
                match std::mem::replace(&mut self.state, State::Over) {
                    State::X509Challenge(key) => {
                        let message = trustdeck_pki::x509pop::challenge_message(&nonce);
                        let sig = rcgen::SigningKey::sign(key.as_ref(), &message)
                            .map_err(DialogueError::Sign)?;
                        self.state = State::Answered;
                        Ok(Next::Send(request(
                            attest_request::Step::ChallengeResponse(sig),
                        )))
                    }
                    _ => Err(self.unexpected("an x509pop")),
                }
            }
            Some(attest_response::Step::Result(r)) => {
                self.state = State::Over;
                Ok(Next::Done(r))
            }
            None => Ok(Next::Wait),
        }
    }

    /// The message carrying the TPM's answer to the pending challenge.
    pub fn answered(&mut self, proof: TpmDevidProof) -> Result<AttestRequest, DialogueError> {
        match self.state {
            State::TpmAnswering => {
                self.state = State::Answered;
                Ok(request(attest_request::Step::TpmDevidProof(proof)))
            }
            _ => Err(DialogueError::NoPendingChallenge),
        }
    }

    fn unexpected(&self, challenge: &'static str) -> DialogueError {
        DialogueError::UnexpectedChallenge {
            challenge,
            method: self.method,
        }
    }
}
