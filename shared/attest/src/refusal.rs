//! Why the server refuses an attestation dialogue, with the gRPC code and [`Reason`] each
//! refusal travels with.

use tonic::{Code, Status};
use trustdeck_pki::csr::CsrError;
use trustdeck_pki::x509pop::X509PopError;
use trustdeck_proto::node::Reason;
use trustdeck_proto::reason::reason_status;
use trustdeck_tpm::TpmDevIdError;
use trustdeck_tpm::credential::CredentialError;

use crate::Method;

/// A refused attestation. The message names the problem for the operator; callers act on
/// [`Refusal::reason`].
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
            Refusal::Disabled(_) => Code::FailedPrecondition,
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
            Refusal::UnknownMethod(_) | Refusal::Disabled(_) => Reason::MethodUnavailable,
            Refusal::EmptyToken | Refusal::TokenCharset => Reason::TokenUnknown,
            Refusal::X509pop(_) | Refusal::Tpm(_) | Refusal::Credential(_) => {
                Reason::EvidenceRefused
            }
            Refusal::Deadline(_) => Reason::DeadlineExceeded,
            Refusal::AgentId(_) | Refusal::Random => Reason::Unspecified,
        }
    }
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        reason_status(r.code(), r.reason(), r.to_string())
    }
}
