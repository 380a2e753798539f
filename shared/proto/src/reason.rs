//! Machine-readable reasons on node-API errors: the server attaches a [`Reason`] to a status
//! with [`reason_status`], callers read it back with [`reason_of`] and never match on the
//! message text, which stays free to change.

use prost::Message;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::node::{Reason, ReasonDetail};

/// The binary metadata key carrying the encoded [`ReasonDetail`].
pub const REASON_HEADER: &str = "trustdeck-reason-bin";

/// A status with `code`, `message` and `reason` attached.
pub fn reason_status(code: Code, reason: Reason, message: impl Into<String>) -> Status {
    let mut metadata = MetadataMap::new();
    let detail = ReasonDetail {
        reason: reason as i32,
    };
    metadata.insert_bin(
        REASON_HEADER,
        MetadataValue::from_bytes(&detail.encode_to_vec()),
    );
    Status::with_metadata(code, message, metadata)
}

/// The reason attached to `status`; [`Reason::Unspecified`] when there is none, it does not
/// decode, or it is a value this build does not know (sent by a newer server).
pub fn reason_of(status: &Status) -> Reason {
    detail::<ReasonDetail>(status, REASON_HEADER)
        .and_then(|d| Reason::try_from(d.reason).ok())
        .unwrap_or(Reason::Unspecified)
}

/// The message of type `M` a status carries in the binary metadata entry `header`; `None`
/// when there is none or it does not decode.
pub(crate) fn detail<M: Message + Default>(status: &Status, header: &str) -> Option<M> {
    status
        .metadata()
        .get_bin(header)
        .and_then(|v| v.to_bytes().ok())
        .and_then(|b| M::decode(b.as_ref()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the client sees: the status written to and read back from gRPC headers.
    fn over_the_wire(s: &Status) -> Status {
        let mut headers = tonic::codegen::http::HeaderMap::new();
        s.add_header(&mut headers).expect("headers");
        Status::from_header_map(&headers).expect("status")
    }

    #[test]
    fn the_reason_the_server_attaches_is_the_one_the_client_reads() {
        for reason in [Reason::Banned, Reason::TokenUsed, Reason::RateLimited] {
            let s = reason_status(Code::PermissionDenied, reason, "no");
            let back = over_the_wire(&s);
            assert_eq!(reason_of(&back), reason);
            assert_eq!(back.code(), Code::PermissionDenied);
            assert_eq!(back.message(), "no");
        }
    }

    #[test]
    fn missing_garbled_or_unknown_reasons_are_unspecified() {
        assert_eq!(
            reason_of(&Status::permission_denied("banned")),
            Reason::Unspecified
        );
        let mut garbled = Status::permission_denied("x");
        garbled
            .metadata_mut()
            .insert_bin(REASON_HEADER, MetadataValue::from_bytes(&[0xff, 0xff]));
        assert_eq!(reason_of(&over_the_wire(&garbled)), Reason::Unspecified);
        // A value from a newer server.
        let mut newer = Status::permission_denied("x");
        let future = ReasonDetail { reason: 9_999 }.encode_to_vec();
        newer
            .metadata_mut()
            .insert_bin(REASON_HEADER, MetadataValue::from_bytes(&future));
        assert_eq!(reason_of(&over_the_wire(&newer)), Reason::Unspecified);
    }
}
