//! What one Workload API request may ask for. Every input a workload controls is bounded, so
//! no caller can make the agent hold memory in proportion to what it sends.

use thiserror::Error;
pub use trustdeck_transport::limits::{UidCounter, UidPermit, max_connections_per_uid};

/// Largest request body the Workload API decodes (tonic answers a larger one `OutOfRange`).
pub const MAX_REQUEST_BYTES: usize = 128 * 1024;
pub use trustdeck_spiffe::audience::{
    AudienceError, MAX_AUDIENCE_BYTES, MAX_AUDIENCES, MAX_AUDIENCES_TOTAL_BYTES,
};
/// Bytes of a SPIFFE ID a request names (the SPIFFE ID specification's URI limit).
pub const MAX_SPIFFE_ID_BYTES: usize = 2048;
/// Bytes of a JWT-SVID given to `ValidateJWTSVID`.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// HTTP/2 streams one Workload API connection may hold open at once.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;
/// Workload API response streams the processes of one uid may hold open at once, over all
/// their connections.
pub const MAX_STREAMS_PER_UID: usize = 1024;

/// A request outside the limits (answered `InvalidArgument`).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LimitError {
    /// The audiences of a request (the limits the server applies too).
    #[error(transparent)]
    Audience(#[from] AudienceError),
    #[error("spiffe_id is {bytes} bytes, at most {MAX_SPIFFE_ID_BYTES}")]
    SpiffeIdTooLong { bytes: usize },
    #[error("svid is {bytes} bytes, at most {MAX_TOKEN_BYTES}")]
    TokenTooLarge { bytes: usize },
    #[error("uid {uid} holds {max} Workload API streams open already; close some first")]
    TooManyStreams { uid: u32, max: usize },
}

impl From<LimitError> for tonic::Status {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::TooManyStreams { .. } => tonic::Status::resource_exhausted(e.to_string()),
            _ => tonic::Status::invalid_argument(e.to_string()),
        }
    }
}

/// A place for one more response stream of `uid` in `streams`.
pub fn acquire_stream(streams: &UidCounter, uid: u32) -> Result<UidPermit, LimitError> {
    streams.acquire(uid).ok_or(LimitError::TooManyStreams {
        uid,
        max: streams.max(),
    })
}

/// Checks the audiences of a `FetchJWTSVID` request: at least one, none empty, each and all
/// together within the limits.
pub fn check_audiences(audience: &[String]) -> Result<(), LimitError> {
    Ok(trustdeck_spiffe::audience::check_audiences(audience)?)
}

/// Checks a SPIFFE ID named by a request.
pub fn check_spiffe_id(id: &str) -> Result<(), LimitError> {
    if id.len() > MAX_SPIFFE_ID_BYTES {
        return Err(LimitError::SpiffeIdTooLong { bytes: id.len() });
    }
    Ok(())
}

/// Checks a `ValidateJWTSVID` request: one audience and a token, both within the limits.
pub fn check_validation(audience: &str, svid: &str) -> Result<(), LimitError> {
    if audience.is_empty() {
        return Err(AudienceError::NoAudience.into());
    }
    trustdeck_spiffe::audience::check_one(0, audience)?;
    if svid.len() > MAX_TOKEN_BYTES {
        return Err(LimitError::TokenTooLarge { bytes: svid.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_are_checked_and_refused_as_invalid_argument() {
        let many: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
        let e = check_audiences(&many).unwrap_err();
        assert_eq!(
            e,
            LimitError::Audience(AudienceError::TooManyAudiences { count: 100_000 })
        );
        let s: tonic::Status = e.into();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(s.message(), "too many audiences: 100000, at most 64");
        assert_eq!(check_audiences(&["a".into()]), Ok(()));
    }

    #[test]
    fn places_are_counted_per_uid_and_freed_on_drop() {
        let c = UidCounter::new(2);
        let a = acquire_stream(&c, 7).expect("first");
        let _b = c.acquire(7).expect("second");
        let e = acquire_stream(&c, 7).err().expect("third refused");
        assert_eq!(e, LimitError::TooManyStreams { uid: 7, max: 2 });
        assert_eq!(
            tonic::Status::from(e).code(),
            tonic::Code::ResourceExhausted
        );
        assert!(c.acquire(7).is_none());
        let _other = c.acquire(8).expect("another uid has its own count");
        drop(a);
        let _c = c.acquire(7).expect("a place freed by a closed stream");
    }

    #[test]
    fn one_uid_holds_at_most_a_quarter_of_the_descriptors_in_connections() {
        assert_eq!(max_connections_per_uid(1024), 128);
        assert_eq!(max_connections_per_uid(20), 8);
        assert_eq!(max_connections_per_uid(1 << 20), 1024);
    }

    #[test]
    fn ids_and_tokens_are_bounded() {
        assert_eq!(check_spiffe_id("spiffe://td/x"), Ok(()));
        assert!(check_spiffe_id(&"x".repeat(MAX_SPIFFE_ID_BYTES + 1)).is_err());
        assert_eq!(check_validation("a", "t"), Ok(()));
        assert_eq!(
            check_validation("", "t"),
            Err(AudienceError::NoAudience.into())
        );
        assert!(check_validation(&"a".repeat(MAX_AUDIENCE_BYTES + 1), "t").is_err());
        assert_eq!(
            check_validation("a", &"t".repeat(MAX_TOKEN_BYTES + 1)),
            Err(LimitError::TokenTooLarge {
                bytes: MAX_TOKEN_BYTES + 1
            })
        );
    }
}
