//! What one Workload API request may ask for. Every input a workload controls is bounded, so
//! no caller can make the agent hold memory in proportion to what it sends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use thiserror::Error;

/// Largest request body the Workload API decodes (tonic answers a larger one `OutOfRange`).
pub const MAX_REQUEST_BYTES: usize = 128 * 1024;
/// Audiences in one `FetchJWTSVID` request.
pub const MAX_AUDIENCES: usize = 64;
/// Bytes of one audience.
pub const MAX_AUDIENCE_BYTES: usize = 1024;
/// Bytes of all audiences of one request together.
pub const MAX_AUDIENCES_TOTAL_BYTES: usize = 8 * 1024;
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
    #[error("audience must not be empty")]
    NoAudience,
    #[error("audience {index} is empty")]
    EmptyAudience { index: usize },
    #[error("too many audiences: {count}, at most {MAX_AUDIENCES}")]
    TooManyAudiences { count: usize },
    #[error("audience {index} is {bytes} bytes, at most {MAX_AUDIENCE_BYTES}")]
    AudienceTooLong { index: usize, bytes: usize },
    #[error("audiences total {bytes} bytes, at most {MAX_AUDIENCES_TOTAL_BYTES}")]
    AudiencesTooLarge { bytes: usize },
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

/// Counts the response streams open per uid.
#[derive(Clone)]
pub struct StreamCounter {
    max: usize,
    open: Arc<Mutex<HashMap<u32, usize>>>,
}

/// One open stream of a uid; dropping it (with the stream) frees the place.
pub struct StreamPermit {
    uid: u32,
    open: Arc<Mutex<HashMap<u32, usize>>>,
}

impl StreamCounter {
    /// A counter allowing `max` streams per uid.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// A place for one more stream of `uid`, unless it holds `max` already.
    pub fn acquire(&self, uid: u32) -> Result<StreamPermit, LimitError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(uid).or_default();
        if *n >= self.max {
            return Err(LimitError::TooManyStreams { uid, max: self.max });
        }
        *n += 1;
        Ok(StreamPermit {
            uid,
            open: self.open.clone(),
        })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.uid);
            }
        }
    }
}

/// Checks the audiences of a `FetchJWTSVID` request: at least one, none empty, each and all
/// together within the limits.
pub fn check_audiences(audience: &[String]) -> Result<(), LimitError> {
    if audience.is_empty() {
        return Err(LimitError::NoAudience);
    }
    if audience.len() > MAX_AUDIENCES {
        return Err(LimitError::TooManyAudiences {
            count: audience.len(),
        });
    }
    for (index, a) in audience.iter().enumerate() {
        if a.is_empty() {
            return Err(LimitError::EmptyAudience { index });
        }
        if a.len() > MAX_AUDIENCE_BYTES {
            return Err(LimitError::AudienceTooLong {
                index,
                bytes: a.len(),
            });
        }
    }
    let bytes = audience.iter().map(String::len).sum();
    if bytes > MAX_AUDIENCES_TOTAL_BYTES {
        return Err(LimitError::AudiencesTooLarge { bytes });
    }
    Ok(())
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
        return Err(LimitError::NoAudience);
    }
    if audience.len() > MAX_AUDIENCE_BYTES {
        return Err(LimitError::AudienceTooLong {
            index: 0,
            bytes: audience.len(),
        });
    }
    if svid.len() > MAX_TOKEN_BYTES {
        return Err(LimitError::TokenTooLarge { bytes: svid.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auds(n: usize, len: usize) -> Vec<String> {
        (0..n).map(|_| "a".repeat(len)).collect()
    }

    #[test]
    fn audiences_within_the_limits_pass() {
        assert_eq!(check_audiences(&auds(1, 1)), Ok(()));
        assert_eq!(check_audiences(&auds(MAX_AUDIENCES, 128)), Ok(()));
        assert_eq!(check_audiences(&auds(8, MAX_AUDIENCE_BYTES)), Ok(()));
    }

    #[test]
    fn audiences_outside_the_limits_are_refused() {
        assert_eq!(check_audiences(&[]), Err(LimitError::NoAudience));
        let mut one_empty = auds(3, 4);
        one_empty[1].clear();
        assert_eq!(
            check_audiences(&one_empty),
            Err(LimitError::EmptyAudience { index: 1 })
        );
        assert_eq!(
            check_audiences(&auds(MAX_AUDIENCES + 1, 1)),
            Err(LimitError::TooManyAudiences {
                count: MAX_AUDIENCES + 1
            })
        );
        assert_eq!(
            check_audiences(&auds(2, MAX_AUDIENCE_BYTES + 1)),
            Err(LimitError::AudienceTooLong {
                index: 0,
                bytes: MAX_AUDIENCE_BYTES + 1
            })
        );
        assert_eq!(
            check_audiences(&auds(9, MAX_AUDIENCE_BYTES)),
            Err(LimitError::AudiencesTooLarge {
                bytes: 9 * MAX_AUDIENCE_BYTES
            })
        );
    }

    #[test]
    fn the_message_names_the_limit() {
        let s: tonic::Status = LimitError::TooManyAudiences { count: 100_000 }.into();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(s.message(), "too many audiences: 100000, at most 64");
    }

    #[test]
    fn streams_are_counted_per_uid_and_freed_on_drop() {
        let c = StreamCounter::new(2);
        let a = c.acquire(7).expect("first");
        let _b = c.acquire(7).expect("second");
        let e = c.acquire(7).err().expect("third refused");
        assert_eq!(e, LimitError::TooManyStreams { uid: 7, max: 2 });
        assert_eq!(
            tonic::Status::from(e).code(),
            tonic::Code::ResourceExhausted
        );
        let _other = c.acquire(8).expect("another uid has its own count");
        drop(a);
        let _c = c.acquire(7).expect("a place freed by a closed stream");
        assert_eq!(c.open.lock().unwrap().len(), 2);
    }

    #[test]
    fn ids_and_tokens_are_bounded() {
        assert_eq!(check_spiffe_id("spiffe://td/x"), Ok(()));
        assert!(check_spiffe_id(&"x".repeat(MAX_SPIFFE_ID_BYTES + 1)).is_err());
        assert_eq!(check_validation("a", "t"), Ok(()));
        assert_eq!(check_validation("", "t"), Err(LimitError::NoAudience));
        assert!(check_validation(&"a".repeat(MAX_AUDIENCE_BYTES + 1), "t").is_err());
        assert_eq!(
            check_validation("a", &"t".repeat(MAX_TOKEN_BYTES + 1)),
            Err(LimitError::TokenTooLarge {
                bytes: MAX_TOKEN_BYTES + 1
            })
        );
    }
}
