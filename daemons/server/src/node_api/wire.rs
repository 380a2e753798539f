//! What a node-API caller is told when the server fails it: a code, a [`Reason`] and a
//! generic message. The detail (database errors, file paths, certificate subjects) goes to
//! the server log and the admin stream only.

use tonic::{Code, Status};
use trustdeck_datastore::DatastoreError;
use trustdeck_proto::node::Reason;
use trustdeck_proto::reason::reason_status;

/// The message a caller gets when the datastore cannot be used.
pub const DATASTORE_UNAVAILABLE: &str = "datastore unavailable, retry";

/// A datastore error as a node-API answer: a refused join token keeps its reason (it is the
/// caller's own token); anything else is [`Reason::DatastoreUnavailable`], logged here.
pub fn datastore(e: DatastoreError) -> Status {
    crate::ctx::token_refusal(&e).unwrap_or_else(|| {
        tracing::warn!(error = %e, "node API: datastore error");
        reason_status(
            Code::Unavailable,
            Reason::DatastoreUnavailable,
            DATASTORE_UNAVAILABLE,
        )
    })
}

/// The message a caller gets when the server cannot sign.
pub const SIGNER_UNAVAILABLE: &str = "the server cannot sign right now, retry";

/// The server cannot sign now (no usable CA, the upstream unreachable): the caller learns
/// that and the reason, not which key or link failed.
pub fn signer_unavailable() -> Status {
    reason_status(
        Code::Unavailable,
        Reason::SignerUnavailable,
        SIGNER_UNAVAILABLE,
    )
}

/// A request field out of bounds: `InvalidArgument` with [`Reason::InvalidRequest`], the
/// message naming the limit.
pub fn invalid_request(e: impl std::fmt::Display) -> Status {
    reason_status(Code::InvalidArgument, Reason::InvalidRequest, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustdeck_proto::reason::reason_of;

    #[test]
    fn driver_errors_reach_the_caller_as_a_generic_typed_reason() {
        let detail = "error communicating with database: Connection reset by peer";
        let errors = [
            DatastoreError::Query {
                op: "get_node",
                cause: sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    detail,
                )),
            },
            DatastoreError::Open {
                url: "sqlite:///var/lib/trustdeck/server.db".into(),
                reason: detail.into(),
            },
            DatastoreError::Corrupt {
                what: "node row spiffe://x/y".into(),
            },
            DatastoreError::Conflict {
                what: "node spiffe://x/y".into(),
            },
            DatastoreError::Unavailable { op: "list entries" },
        ];
        for e in errors {
            let s = datastore(e);
            assert_eq!(s.code(), Code::Unavailable);
            assert_eq!(reason_of(&s), Reason::DatastoreUnavailable);
            assert_eq!(s.message(), DATASTORE_UNAVAILABLE);
        }
    }

    #[test]
    fn a_refused_join_token_keeps_its_reason() {
        for (e, reason) in [
            (DatastoreError::TokenNotFound, Reason::TokenUnknown),
            (DatastoreError::TokenUsed { used_at: 1 }, Reason::TokenUsed),
            (
                DatastoreError::TokenExpired { expired_at: 1 },
                Reason::TokenExpired,
            ),
        ] {
            let s = datastore(e);
            assert_eq!((s.code(), reason_of(&s)), (Code::PermissionDenied, reason));
        }
    }
}
