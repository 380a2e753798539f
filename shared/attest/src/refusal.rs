//! Why the server refuses an attestation dialogue, with the gRPC code and [`Reason`] each
//! refusal travels with. The agent gets a generic message ([`Refusal::wire_message`]); the
//! detail (paths, certificate subjects, chain errors) is for the server's log and events.

use tonic::{Code, Status};
use trustdeck_pki::csr::CsrError;
use trustdeck_pki::x509pop::X509PopError;
use trustdeck_proto::node::Reason;
use trustdeck_proto::reason::reason_status;
use trustdeck_tpm::TpmDevIdError;
use trustdeck_tpm::credential::CredentialError;

use crate::Method;

/// A refused attestation. `Display` names the problem for the server's operator; the agent
/// gets [`Refusal::wire_message`] and acts on [`Refusal::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A message missing, out of order or of the wrong kind.
    #[error("{0}")]
    Protocol(&'static str),
    /// The agent's CSR does not verify.
    #[error("agent CSR: {0}")]
    Csr(CsrError),
    /// `AttestParams.attestation_type` names no method.
    #[error("unknown attestation type {0:?} (supported: join_token, x509pop, tpm_devid)")]
    UnknownMethod(String),
    /// The method is not configured on this server.
    #[error("{0} attestation is not enabled on this server")]
    Disabled(Method),
    /// The join token is empty.
    #[error("join_token: empty token")]
    EmptyToken,
    /// The join token has characters no issued token has.
    #[error("join_token: token has characters outside [A-Za-z0-9_-]")]
    TokenCharset,
    /// The x509pop chain or proof does not verify.
    #[error("{0}")]
    X509pop(X509PopError),
    /// The DevID evidence or proof does not verify.
    #[error("{0}")]
    Tpm(TpmDevIdError),
    /// No credential can be made for the presented EK.
    #[error("tpm_devid: {0}")]
    Credential(CredentialError),
    /// The method's trust anchors on the server cannot be read (the detail names the file).
    #[error("{0} trust anchors unavailable: {1}")]
    Anchors(Method, String),
    /// The dialogue ran past its deadline.
    #[error("attestation not completed within {}s", .0.as_secs())]
    Deadline(std::time::Duration),
    /// The agent ID could not be formed from the evidence.
    #[error("{0}")]
    AgentId(trustdeck_spiffe::IdError),
    /// No random challenge could be drawn.
    #[error("random number generator failed")]
    Random,
}

impl Refusal {
    /// The gRPC status code.
    pub fn code(&self) -> Code {
        match self {
            Refusal::Protocol(_)
            | Refusal::Csr(_)
            | Refusal::UnknownMethod(_)
            | Refusal::EmptyToken
            | Refusal::TokenCharset => Code::InvalidArgument,
            Refusal::Disabled(_) | Refusal::Anchors(..) => Code::FailedPrecondition,
            Refusal::X509pop(_) | Refusal::Tpm(_) | Refusal::Credential(_) => {
                Code::PermissionDenied
            }
            Refusal::Deadline(_) => Code::DeadlineExceeded,
            Refusal::AgentId(_) | Refusal::Random => Code::Internal,
        }
    }

    /// What the agent should make of it.
    pub fn reason(&self) -> Reason {
        match self {
            Refusal::Protocol(_) | Refusal::Csr(_) => Reason::ProtocolViolation,
            Refusal::UnknownMethod(_) | Refusal::Disabled(_) | Refusal::Anchors(..) => {
                Reason::MethodUnavailable
            }
            Refusal::EmptyToken | Refusal::TokenCharset => Reason::TokenUnknown,
            Refusal::X509pop(_) | Refusal::Tpm(_) | Refusal::Credential(_) => {
                Reason::EvidenceRefused
            }
            Refusal::Deadline(_) => Reason::DeadlineExceeded,
            Refusal::AgentId(_) | Refusal::Random => Reason::Unspecified,
        }
    }

    /// What the agent is told: enough to know what to fix on its side, nothing about the
    /// server's files or the certificates it checked against.
    pub fn wire_message(&self) -> String {
        match self {
            // Fixed texts about the dialogue, or the agent's own token.
            Refusal::Protocol(_)
            | Refusal::EmptyToken
            | Refusal::TokenCharset
            | Refusal::Disabled(_)
            | Refusal::Deadline(_) => self.to_string(),
            Refusal::Csr(_) => "agent CSR does not verify".into(),
            Refusal::UnknownMethod(_) => {
                "unknown attestation type (supported: join_token, x509pop, tpm_devid)".into()
            }
            Refusal::X509pop(_) => evidence(Method::X509pop),
            Refusal::Tpm(_) | Refusal::Credential(_) => evidence(Method::TpmDevid),
            Refusal::Anchors(m, _) => format!(
                "{m} attestation is unavailable on this server (its trust anchors cannot be \
                 read); the server's log says why"
            ),
            Refusal::AgentId(_) | Refusal::Random => {
                "the server failed to complete the attestation; its log says why".into()
            }
        }
    }
}

fn evidence(m: Method) -> String {
    format!("{m} attestation evidence refused; the server's log says why")
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        reason_status(r.code(), r.reason(), r.wire_message())
    }
}
