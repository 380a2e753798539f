//! Limits on the audiences of a JWT-SVID request, the same at every hop (the Workload API of
//! an agent, the node API of a server), so no caller can make either hold or sign memory in
//! proportion to what it sends.

/// Audiences in one request.
pub const MAX_AUDIENCES: usize = 64;
/// Bytes of one audience.
pub const MAX_AUDIENCE_BYTES: usize = 1024;
/// Bytes of all audiences of one request together.
pub const MAX_AUDIENCES_TOTAL_BYTES: usize = 8 * 1024;

/// An audience list outside the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudienceError {
    /// No audience at all.
    #[error("audience must not be empty")]
    NoAudience,
    /// One audience is the empty string.
    #[error("audience {index} is empty")]
    EmptyAudience {
        /// Its position in the list.
        index: usize,
    },
    /// More than [`MAX_AUDIENCES`].
    #[error("too many audiences: {count}, at most {MAX_AUDIENCES}")]
    TooManyAudiences {
        /// How many were asked for.
        count: usize,
    },
    /// One audience longer than [`MAX_AUDIENCE_BYTES`].
    #[error("audience {index} is {bytes} bytes, at most {MAX_AUDIENCE_BYTES}")]
    AudienceTooLong {
        /// Its position in the list.
        index: usize,
        /// Its length.
        bytes: usize,
    },
    /// All together longer than [`MAX_AUDIENCES_TOTAL_BYTES`].
    #[error("audiences total {bytes} bytes, at most {MAX_AUDIENCES_TOTAL_BYTES}")]
    AudiencesTooLarge {
        /// Their total length.
        bytes: usize,
    },
}

/// Checks an audience list: at least one, none empty, each and all together within the
/// limits.
pub fn check_audiences(audience: &[String]) -> Result<(), AudienceError> {
    if audience.is_empty() {
        return Err(AudienceError::NoAudience);
    }
    if audience.len() > MAX_AUDIENCES {
        return Err(AudienceError::TooManyAudiences {
            count: audience.len(),
        });
    }
    for (index, a) in audience.iter().enumerate() {
        check_one(index, a)?;
    }
    let bytes = audience.iter().map(String::len).sum();
    if bytes > MAX_AUDIENCES_TOTAL_BYTES {
        return Err(AudienceError::AudiencesTooLarge { bytes });
    }
    Ok(())
}

/// Checks the audience at `index` of a list: not empty, within [`MAX_AUDIENCE_BYTES`].
pub fn check_one(index: usize, audience: &str) -> Result<(), AudienceError> {
    if audience.is_empty() {
        return Err(AudienceError::EmptyAudience { index });
    }
    if audience.len() > MAX_AUDIENCE_BYTES {
        return Err(AudienceError::AudienceTooLong {
            index,
            bytes: audience.len(),
        });
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
        assert_eq!(check_audiences(&[]), Err(AudienceError::NoAudience));
        let mut one_empty = auds(3, 4);
        one_empty[1].clear();
        assert_eq!(
            check_audiences(&one_empty),
            Err(AudienceError::EmptyAudience { index: 1 })
        );
        assert_eq!(
            check_audiences(&auds(MAX_AUDIENCES + 1, 1)),
            Err(AudienceError::TooManyAudiences {
                count: MAX_AUDIENCES + 1
            })
        );
        assert_eq!(
            check_audiences(&auds(2, MAX_AUDIENCE_BYTES + 1)),
            Err(AudienceError::AudienceTooLong {
                index: 0,
                bytes: MAX_AUDIENCE_BYTES + 1
            })
        );
        assert_eq!(
            check_audiences(&auds(9, MAX_AUDIENCE_BYTES)),
            Err(AudienceError::AudiencesTooLarge {
                bytes: 9 * MAX_AUDIENCE_BYTES
            })
        );
    }

    #[test]
    fn the_message_names_the_limit() {
        assert_eq!(
            AudienceError::TooManyAudiences { count: 100_000 }.to_string(),
            "too many audiences: 100000, at most 64"
        );
    }
}
