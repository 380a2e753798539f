//! The agent engine's errors, and how a failed node-API call is classified: by the
//! [`Reason`] the server attaches and the status code, never by the message text.

use std::path::PathBuf;

use tonic::{Code, Status};
use trustdeck_proto::admin::StrandedReason;
use trustdeck_proto::node::Reason;
use trustdeck_proto::reason::reason_of;

use crate::credentials::CredentialError;
use crate::state::StateError;

/// Appended to the refusal of a used join token: what the operator has to do.
const TOKEN_USED_HINT: &str =
    "; a join token works once: this agent was evicted or lost its SVID, give it a new join token";

/// Errors of the agent engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The server refused attestation for a reason retrying will not fix.
    #[error("node attestation refused: {message}")]
    AttestationRefused {
        /// The server's reason (unspecified for a refusal made on this side).
        reason: Reason,
        message: String,
    },
    /// The server could not be reached or failed.
    #[error("server {addr} unreachable: {message} ({code:?})")]
    Unreachable {
        /// The server's node API address.
        addr: String,
        /// The gRPC status code.
        code: Code,
        /// The server's reason, when it answered (`DatastoreUnavailable`: it runs, its
        /// database does not answer yet).
        reason: Reason,
        message: String,
    },
    /// The server ended the attestation stream without a result or a refusal.
    #[error("server {addr} unreachable: attestation stream ended without a result")]
    AttestationCutShort {
        /// The server's node API address.
        addr: String,
    },
    /// The agent is not (or no longer) attested: evicted, or its SVID expired.
    #[error("agent is not attested: {0}")]
    NotAttested(String),
    /// The server no longer accepts the SVID the agent presented: a newer SVID of this agent
    /// was used since (its renewed one, lost here after its first use, or a copy elsewhere).
    /// The agent attests again; with a spent join token that strands it (`TokenUsed`).
    #[error("agent SVID superseded: {0}")]
    SvidSuperseded(String),
    /// The agent is banned.
    #[error("agent is banned: {0}")]
    Banned(String),
    /// The node's attestation credentials could not be read or used.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The agent's half of the attestation dialogue failed locally.
    #[error(transparent)]
    Dialogue(trustdeck_attest::agent::DialogueError),
    /// The data directory could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The bootstrap trust bundle could not be read.
    #[error("trust_bundle_path {}: {source}", path.display())]
    BootstrapBundleFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The bootstrap trust bundle does not parse.
    #[error("trust_bundle_path {}: {source}", path.display())]
    BootstrapBundle {
        path: PathBuf,
        source: trustdeck_spiffe::BundleError,
    },
    /// A blocking task (file I/O) did not finish.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The trust bundle has no usable X.509 authority.
    #[error("trust bundle: {0}")]
    Roots(trustdeck_transport::TlsError),
    /// The agent SVID or the connection to the server could not be set up.
    #[error(transparent)]
    Tls(trustdeck_transport::TlsError),
    /// No key could be generated.
    #[error(transparent)]
    Key(#[from] trustdeck_pki::KeyError),
    /// No CSR could be built.
    #[error(transparent)]
    Csr(#[from] trustdeck_pki::CsrError),
    /// The server returned no SVID.
    #[error("empty SVID chain")]
    EmptySvidChain,
    /// The server returned an SVID that is not one.
    #[error("SVID: {0}")]
    Svid(trustdeck_spiffe::ProfileError),
    /// A socket could not be set up.
    #[error("{what} {}: {source}", path.display())]
    Socket {
        /// The step that failed (`bind`, `chmod`, ...).
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Another agent serves the socket.
    #[error("socket {} is in use by another running agent", .0.display())]
    SocketInUse(PathBuf),
    /// The admin API's TCP listener could not be set up.
    #[error("bind admin API on {addr}: {source}")]
    AdminListener {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

impl AgentError {
    /// A failed node-API call: banned, not (or no longer) attested, or else the server
    /// counts as unreachable. Unknown reasons (from a newer server) fall back to the code.
    pub(crate) fn from_status(addr: &str, s: Status) -> Self {
        let msg = s.message().to_string();
        match reason_of(&s) {
            Reason::Banned => AgentError::Banned(msg),
            Reason::SvidSuperseded => AgentError::SvidSuperseded(msg),
            _ if matches!(s.code(), Code::PermissionDenied | Code::Unauthenticated) => {
                AgentError::NotAttested(msg)
            }
            reason => AgentError::Unreachable {
                addr: addr.to_string(),
                code: s.code(),
                reason,
                message: msg,
            },
        }
    }

    /// A failed attestation: what the server refuses (evidence, a used token, a ban) is
    /// final; the rest as [`from_status`](Self::from_status).
    pub(crate) fn from_attest_status(addr: &str, s: Status) -> Self {
        match s.code() {
            Code::PermissionDenied | Code::InvalidArgument | Code::FailedPrecondition => {
                let mut message = s.message().to_string();
                let reason = reason_of(&s);
                if reason == Reason::TokenUsed {
                    message.push_str(TOKEN_USED_HINT);
                }
                AgentError::AttestationRefused { reason, message }
            }
            _ => AgentError::from_status(addr, s),
        }
    }

    /// Why this error leaves the agent stranded: the server refused its join token for a
    /// reason no retry can fix (read from the typed reason, never the text).
    pub fn stranded_reason(&self) -> Option<StrandedReason> {
        match self {
            AgentError::AttestationRefused { reason, .. } => match reason {
                Reason::TokenUsed => Some(StrandedReason::TokenUsed),
                Reason::TokenExpired => Some(StrandedReason::TokenExpired),
                Reason::TokenUnknown => Some(StrandedReason::TokenUnknown),
                _ => None,
            },
            _ => None,
        }
    }

    /// The server runs but its datastore does not answer: worth retrying soon, as it may
    /// come back any moment, rather than backing off like for a server that is gone.
    pub fn server_datastore_down(&self) -> bool {
        matches!(
            self,
            AgentError::Unreachable {
                reason: Reason::DatastoreUnavailable,
                ..
            }
        )
    }

    /// The server refused a call for the caller's rate limit: it runs and answers, the
    /// work left is retried after the normal sync interval (never dropped, not backed off).
    pub fn rate_limited(&self) -> bool {
        matches!(
            self,
            AgentError::Unreachable {
                reason: Reason::RateLimited,
                ..
            }
        )
    }

    /// Whether an agent that fails its first attestation with this error should stop
    /// rather than retry in the background: the server refused it, or something is wrong
    /// on this node. A DevID key its TPM no longer loads (cleared or replaced) is not: the
    /// agent waits, reachable, for the operator's re-provisioning (`rebootstrap-tpm-node`).
    pub fn is_fatal_at_start(&self) -> bool {
        match self {
            AgentError::Credentials(c) => !c.devid_not_loadable(),
            _ => !matches!(
                self,
                AgentError::Unreachable { .. }
                    | AgentError::AttestationCutShort { .. }
                    | AgentError::NotAttested(_)
                    | AgentError::SvidSuperseded(_)
                    | AgentError::Banned(_)
            ),
        }
    }
}

impl From<trustdeck_attest::agent::DialogueError> for AgentError {
    fn from(e: trustdeck_attest::agent::DialogueError) -> Self {
        use trustdeck_attest::agent::DialogueError;
        match e {
            DialogueError::UnexpectedChallenge { .. } => AgentError::AttestationRefused {
                reason: Reason::Unspecified,
                message: e.to_string(),
            },
            e => AgentError::Dialogue(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustdeck_proto::reason::reason_status;

    const ADDR: &str = "server:8081";

    #[test]
    fn the_servers_reason_decides_not_the_message() {
        let banned = reason_status(Code::PermissionDenied, Reason::Banned, "go away");
        assert!(matches!(
            AgentError::from_status(ADDR, banned),
            AgentError::Banned(m) if m == "go away"
        ));
        // The word alone means nothing.
        let text = Status::permission_denied("agent x is banned");
        assert!(matches!(
            AgentError::from_status(ADDR, text),
            AgentError::NotAttested(_)
        ));
        let evicted = reason_status(Code::PermissionDenied, Reason::NotAttested, "who?");
        assert!(matches!(
            AgentError::from_status(ADDR, evicted),
            AgentError::NotAttested(_)
        ));
        let superseded = reason_status(Code::PermissionDenied, Reason::SvidSuperseded, "old SVID");
        let e = AgentError::from_status(ADDR, superseded);
        assert!(matches!(&e, AgentError::SvidSuperseded(m) if m == "old SVID"));
        assert!(!e.is_fatal_at_start());
        assert_eq!(e.stranded_reason(), None);
        let limited = reason_status(Code::ResourceExhausted, Reason::RateLimited, "slow down");
        assert!(matches!(
            AgentError::from_status(ADDR, limited),
            AgentError::Unreachable { .. }
        ));
    }

    #[test]
    fn a_used_join_token_says_what_to_do() {
        let used = reason_status(Code::PermissionDenied, Reason::TokenUsed, "token spent");
        let e = AgentError::from_attest_status(ADDR, used);
        assert!(
            matches!(&e, AgentError::AttestationRefused { message: m, .. } if m.starts_with("token spent; ") && m.ends_with("give it a new join token")),
            "{e}"
        );
        assert!(e.is_fatal_at_start());
        let expired = reason_status(Code::PermissionDenied, Reason::TokenExpired, "too late");
        let e = AgentError::from_attest_status(ADDR, expired);
        assert!(matches!(
            &e,
            AgentError::AttestationRefused { message: m, .. } if m == "too late"
        ));
        assert_eq!(e.stranded_reason(), Some(StrandedReason::TokenExpired));
        let down = Status::unavailable("no CA");
        let e = AgentError::from_attest_status(ADDR, down);
        assert!(!e.is_fatal_at_start());
    }

    #[test]
    fn a_cleared_tpm_waits_for_the_operator_a_bad_credential_file_stops_the_agent() {
        use trustdeck_tpm::device::DeviceError;
        let cleared = AgentError::from(CredentialError::from(DeviceError::DevIdNotLoadable {
            reason: "integrity check failed".into(),
        }));
        assert!(!cleared.is_fatal_at_start(), "{cleared}");
        let no_tpm = AgentError::from(CredentialError::from(DeviceError::Open {
            tcti: "device:/dev/tpmrm0".into(),
            reason: "no such device".into(),
        }));
        assert!(no_tpm.is_fatal_at_start(), "{no_tpm}");
        assert!(AgentError::from(CredentialError::NoToken).is_fatal_at_start());
    }

    #[test]
    fn only_a_refused_join_token_strands_the_agent() {
        let strands = |reason, code| {
            AgentError::from_attest_status(ADDR, reason_status(code, reason, "x")).stranded_reason()
        };
        use StrandedReason as S;
        assert_eq!(
            strands(Reason::TokenUsed, Code::PermissionDenied),
            Some(S::TokenUsed)
        );
        assert_eq!(
            strands(Reason::TokenUnknown, Code::PermissionDenied),
            Some(S::TokenUnknown)
        );
        assert_eq!(strands(Reason::Banned, Code::PermissionDenied), None);
        // A reason on an error that is not a refusal, and the words alone, strand nothing.
        assert_eq!(strands(Reason::TokenUsed, Code::Unavailable), None);
        let text = Status::permission_denied("join token already used");
        assert_eq!(
            AgentError::from_attest_status(ADDR, text).stranded_reason(),
            None
        );
        assert_eq!(
            AgentError::from_attest_status(ADDR, Status::unavailable("down")).stranded_reason(),
            None
        );
    }

    #[test]
    fn a_generic_refusal_is_reported_by_its_reason() {
        // What the server sends now: a reason and a message without its detail.
        let evidence =
            trustdeck_attest::Refusal::X509pop(trustdeck_pki::x509pop::X509PopError::Untrusted {
                subject: "CN=node-1".into(),
                reason: "not signed by CN=Node CA".into(),
            });
        let e = AgentError::from_attest_status(ADDR, evidence.into());
        assert!(
            matches!(&e, AgentError::AttestationRefused { message: m, .. } if m.contains("x509pop attestation evidence refused") && !m.contains("CN=")),
            "{e}"
        );
        assert!(e.is_fatal_at_start());
        // The datastore is down: not a refusal, retried.
        let down = reason_status(
            Code::Unavailable,
            Reason::DatastoreUnavailable,
            "datastore unavailable, retry",
        );
        let e = AgentError::from_attest_status(ADDR, down);
        assert!(matches!(e, AgentError::Unreachable { .. }), "{e}");
        assert!(e.server_datastore_down());
        assert!(!e.is_fatal_at_start());
        assert!(
            !AgentError::from_status(ADDR, Status::unavailable("gone")).server_datastore_down()
        );
    }

    #[test]
    fn reasons_this_build_does_not_know_fall_back_to_the_code() {
        use prost::Message;
        let mut s = Status::permission_denied("new rule");
        let future = trustdeck_proto::node::ReasonDetail { reason: 4_242 }.encode_to_vec();
        s.metadata_mut().insert_bin(
            trustdeck_proto::reason::REASON_HEADER,
            tonic::metadata::MetadataValue::from_bytes(&future),
        );
        assert!(matches!(
            AgentError::from_status(ADDR, s),
            AgentError::NotAttested(_)
        ));
    }
}
