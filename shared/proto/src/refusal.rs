//! The rule that refused an authority operation: the server attaches an
//! [`AuthorityRefusal`] to the status with [`refusal_status`], clients read it back with
//! [`refusal_of`] and never match on the message text.

use prost::Message;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::admin::{
    AuthorityRefusal, AuthorityRefusalDetail, BundleFileRefusal, BundleFileRefusalDetail,
    FederationRefusal, FederationRefusalDetail, RunbookRefusal, RunbookRefusalDetail,
};

/// The binary metadata key carrying the encoded [`AuthorityRefusalDetail`].
pub const REFUSAL_HEADER: &str = "trustdeck-authority-refusal-bin";

/// The gRPC code of a refusal: `NotFound` for an unknown id, `FailedPrecondition` for a
/// rule the authority's state breaks.
pub fn refusal_code(refusal: AuthorityRefusal) -> Code {
    match refusal {
        AuthorityRefusal::UnknownId => Code::NotFound,
        _ => Code::FailedPrecondition,
    }
}

/// A status for `refusal` with its code, `message` and the refusal attached.
pub fn refusal_status(refusal: AuthorityRefusal, message: impl Into<String>) -> Status {
    let mut metadata = MetadataMap::new();
    let detail = AuthorityRefusalDetail {
        refusal: refusal as i32,
    };
    metadata.insert_bin(
        REFUSAL_HEADER,
        MetadataValue::from_bytes(&detail.encode_to_vec()),
    );
    Status::with_metadata(refusal_code(refusal), message, metadata)
}

/// The refusal attached to `status`; `None` when there is none or it does not decode, and
/// [`AuthorityRefusal::Unspecified`] for a value this build does not know.
pub fn refusal_of(status: &Status) -> Option<AuthorityRefusal> {
    let detail = crate::reason::detail::<AuthorityRefusalDetail>(status, REFUSAL_HEADER)?;
    Some(AuthorityRefusal::try_from(detail.refusal).unwrap_or(AuthorityRefusal::Unspecified))
}

/// The binary metadata key carrying the encoded [`RunbookRefusalDetail`].
pub const RUNBOOK_REFUSAL_HEADER: &str = "trustdeck-runbook-refusal-bin";

/// The ASCII metadata key naming the runbook step an admin call is made for:
/// `<execution id>/<runbook name>/<step id>`.
pub const RUNBOOK_STEP_HEADER: &str = "trustdeck-runbook";

/// A status for a refused runbook journal call: `NotFound` for an unknown execution,
/// `InvalidArgument` for an invalid request, else `FailedPrecondition`; `holder` names who
/// holds the target or the execution.
pub fn runbook_refusal_status(
    refusal: RunbookRefusal,
    holder: &str,
    message: impl Into<String>,
) -> Status {
    let mut metadata = MetadataMap::new();
    let detail = RunbookRefusalDetail {
        refusal: refusal as i32,
        holder: holder.to_string(),
    };
    metadata.insert_bin(
        RUNBOOK_REFUSAL_HEADER,
        MetadataValue::from_bytes(&detail.encode_to_vec()),
    );
    let code = match refusal {
        RunbookRefusal::UnknownExecution => Code::NotFound,
        RunbookRefusal::Invalid => Code::InvalidArgument,
        _ => Code::FailedPrecondition,
    };
    Status::with_metadata(code, message, metadata)
}

/// The runbook refusal attached to `status` (see [`refusal_of`]).
pub fn runbook_refusal_of(status: &Status) -> Option<RunbookRefusalDetail> {
    crate::reason::detail::<RunbookRefusalDetail>(status, RUNBOOK_REFUSAL_HEADER)
}

/// The binary metadata key carrying the encoded [`BundleFileRefusalDetail`].
pub const BUNDLE_REFUSAL_HEADER: &str = "trustdeck-bundle-refusal-bin";

/// A status for a refused signed bundle file or receipt (`FailedPrecondition`).
pub fn bundle_refusal_status(refusal: BundleFileRefusal, message: impl Into<String>) -> Status {
    let mut metadata = MetadataMap::new();
    let detail = BundleFileRefusalDetail {
        refusal: refusal as i32,
    };
    metadata.insert_bin(
        BUNDLE_REFUSAL_HEADER,
        MetadataValue::from_bytes(&detail.encode_to_vec()),
    );
    Status::with_metadata(Code::FailedPrecondition, message, metadata)
}

/// The bundle file refusal attached to `status` (see [`refusal_of`]).
pub fn bundle_refusal_of(status: &Status) -> Option<BundleFileRefusal> {
    let detail = crate::reason::detail::<BundleFileRefusalDetail>(status, BUNDLE_REFUSAL_HEADER)?;
    Some(BundleFileRefusal::try_from(detail.refusal).unwrap_or(BundleFileRefusal::Unspecified))
}

/// The binary metadata key carrying the encoded [`FederationRefusalDetail`].
pub const FEDERATION_REFUSAL_HEADER: &str = "trustdeck-federation-refusal-bin";

/// A status for a refused federation call: `NotFound` for an unknown trust domain,
/// `AlreadyExists` for a second relationship, `InvalidArgument` for invalid settings, else
/// `FailedPrecondition`.
pub fn federation_refusal_status(refusal: FederationRefusal, message: impl Into<String>) -> Status {
    let mut metadata = MetadataMap::new();
    let detail = FederationRefusalDetail {
        refusal: refusal as i32,
    };
    metadata.insert_bin(
        FEDERATION_REFUSAL_HEADER,
        MetadataValue::from_bytes(&detail.encode_to_vec()),
    );
    let code = match refusal {
        FederationRefusal::UnknownTrustDomain => Code::NotFound,
        FederationRefusal::AlreadyExists => Code::AlreadyExists,
        FederationRefusal::Invalid => Code::InvalidArgument,
        _ => Code::FailedPrecondition,
    };
    Status::with_metadata(code, message, metadata)
}

/// The federation refusal attached to `status` (see [`refusal_of`]).
pub fn federation_refusal_of(status: &Status) -> Option<FederationRefusal> {
    let detail =
        crate::reason::detail::<FederationRefusalDetail>(status, FEDERATION_REFUSAL_HEADER)?;
    Some(FederationRefusal::try_from(detail.refusal).unwrap_or(FederationRefusal::Unspecified))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn over_the_wire(s: &Status) -> Status {
        let mut headers = tonic::codegen::http::HeaderMap::new();
        s.add_header(&mut headers).expect("headers");
        Status::from_header_map(&headers).expect("status")
    }

    #[test]
    fn the_refusal_the_server_attaches_is_the_one_the_client_reads() {
        for (r, code) in [
            (AuthorityRefusal::UnknownId, Code::NotFound),
            (AuthorityRefusal::IsActive, Code::FailedPrecondition),
            (AuthorityRefusal::InUse, Code::FailedPrecondition),
            (AuthorityRefusal::IdRequired, Code::FailedPrecondition),
        ] {
            let back = over_the_wire(&refusal_status(r, "no"));
            assert_eq!(refusal_of(&back), Some(r));
            assert_eq!(back.code(), code);
            assert_eq!(back.message(), "no");
        }
    }

    #[test]
    fn a_bundle_file_refusal_survives_the_wire() {
        let back = over_the_wire(&bundle_refusal_status(BundleFileRefusal::Tampered, "no"));
        assert_eq!(bundle_refusal_of(&back), Some(BundleFileRefusal::Tampered));
        assert_eq!(back.code(), Code::FailedPrecondition);
        assert_eq!(refusal_of(&back), None, "not an authority refusal");
        assert_eq!(bundle_refusal_of(&Status::not_found("x")), None);
    }

    #[test]
    fn missing_garbled_or_unknown_refusals() {
        assert_eq!(refusal_of(&Status::not_found("x")), None);
        let mut garbled = Status::failed_precondition("x");
        garbled
            .metadata_mut()
            .insert_bin(REFUSAL_HEADER, MetadataValue::from_bytes(&[0xff, 0xff]));
        assert_eq!(refusal_of(&over_the_wire(&garbled)), None);
        let mut newer = Status::failed_precondition("x");
        let future = AuthorityRefusalDetail { refusal: 9_999 }.encode_to_vec();
        newer
            .metadata_mut()
            .insert_bin(REFUSAL_HEADER, MetadataValue::from_bytes(&future));
        assert_eq!(
            refusal_of(&over_the_wire(&newer)),
            Some(AuthorityRefusal::Unspecified)
        );
    }
}
