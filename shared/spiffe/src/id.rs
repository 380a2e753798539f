//! SPIFFE IDs and trust domains, validated per the SPIFFE-ID standard.
//!
//! A SPIFFE ID is `spiffe://<trust domain><path>`:
//!
//! * the scheme is exactly `spiffe://` (lowercase);
//! * the trust domain is non-empty, at most 255 bytes, made of lowercase
//!   `a-z`, digits, `.`, `-` and `_` (so no port, userinfo, query or fragment);
//! * the path is empty or a sequence of `/segment`, each segment non-empty,
//!   neither `.` nor `..`, made of `a-z A-Z 0-9 . - _`, with no trailing slash;
//! * the whole ID is at most 2048 bytes.
//!
//! Positions reported in errors are byte offsets, counted from the start of
//! the trust domain or of the path respectively.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The exact prefix of every SPIFFE ID.
pub const SCHEME_PREFIX: &str = "spiffe://";
/// Maximum length of a trust domain name, in bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// Maximum length of a whole SPIFFE ID, in bytes.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// What was being parsed when an [`IdError`] occurred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdKind {
    /// A full SPIFFE ID (`spiffe://td/path`).
    SpiffeId,
    /// A trust domain name (`td` or `spiffe://td`).
    TrustDomain,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdKind::SpiffeId => f.write_str("SPIFFE ID"),
            IdKind::TrustDomain => f.write_str("trust domain"),
        }
    }
}

/// A SPIFFE ID or trust domain violated a rule of the SPIFFE-ID standard.
///
/// Every variant carries the offending input and what kind of value it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The input was empty.
    #[error("invalid {kind} \"\": must not be empty")]
    Empty {
        /// What was being parsed.
        kind: IdKind,
    },
    /// The input did not start with exactly `spiffe://` (lowercase scheme followed by `//`).
    #[error(
        "invalid {kind} {input:?}: scheme must be exactly \"spiffe://\" (lowercase \"spiffe\" followed by \"://\")"
    )]
    BadScheme {
        /// What was being parsed.
        kind: IdKind,
        /// The offending input.
        input: String,
    },
    /// The trust domain part was empty.
    #[error(
        "invalid {kind} {input:?}: trust domain is missing (nothing between \"spiffe://\" and the path)"
    )]
    TrustDomainMissing {
        /// What was being parsed.
        kind: IdKind,
        /// The offending input.
        input: String,
    },
    /// The trust domain was longer than 255 bytes.
    #[error("invalid {kind} {input:?}: trust domain is {len} bytes long, at most 255 are allowed")]
    TrustDomainTooLong {
        /// What was being parsed.
        kind: IdKind,
        /// The offending input.
        input: String,
        /// Length of the trust domain in bytes.
        len: usize,
    },
    /// The trust domain contained a character outside `[a-z0-9._-]`.
    #[error(
        "invalid {kind} {input:?}: trust domain character {ch:?} at position {position} is not allowed (only lowercase a-z, 0-9, '.', '-', '_')"
    )]
    TrustDomainBadChar {
        /// What was being parsed.
        kind: IdKind,
        /// The offending input.
        input: String,
        /// The offending character.
        ch: char,
        /// Byte offset of the character within the trust domain.
        position: usize,
    },
    /// The authority carried a port (`:`), which SPIFFE IDs forbid.
    #[error(
        "invalid {kind} {input:?}: a port is not allowed (found ':' at position {position} of the trust domain)"
    )]
    Port {
        /// What was being parsed.
        kind: IdKind,
        /// The offending input.
        input: String,
        /// Byte offset of ':' within the trust domain.
        position: usize,
    },
    /// The authority carried userinfo (`@`), which SPIFFE IDs forbid.
    #[error(
        "invalid {kind} {input:?}: userinfo is not allowed (found '@' at position {position} of the trust domain)"
    )]
    UserInfo {
        /// What was being parsed.
        kind: IdKind,
        /// The offending input.
        input: String,
        /// Byte offset of '@' within the trust domain.
        position: usize,
    },
    /// The ID carried a query (`?`), which SPIFFE IDs forbid.
    #[error(
        "invalid {kind} {input:?}: a query is not allowed (found '?' at position {position} after \"spiffe://\")"
    )]
    Query {
        /// What was being parsed.
        kind: IdKind,
        /// The offending input.
        input: String,
        /// Byte offset of '?' after the `spiffe://` prefix.
        position: usize,
    },
    /// The ID carried a fragment (`#`), which SPIFFE IDs forbid.
    #[error(
        "invalid {kind} {input:?}: a fragment is not allowed (found '#' at position {position} after \"spiffe://\")"
    )]
    Fragment {
        /// What was being parsed.
        kind: IdKind,
        /// The offending input.
        input: String,
        /// Byte offset of '#' after the `spiffe://` prefix.
        position: usize,
    },
    /// A path segment was empty (`//` in the path).
    #[error("invalid {kind} {input:?}: path segment {segment} is empty (\"//\" is not allowed)")]
    EmptySegment {
        /// What was being parsed.
        kind: IdKind,
        /// The offending input.
        input: String,
        /// Zero-based index of the empty segment.
        segment: usize,
    },
    /// A path segment was `.` or `..`.
    #[error(
        "invalid {kind} {input:?}: path segment {segment} is {value:?}; \".\" and \"..\" segments are not allowed"
    )]
    DotSegment {
        /// What was being parsed.
        kind: IdKind,
        /// The offending input.
        input: String,
        /// Zero-based index of the segment.
        segment: usize,
        /// The segment itself (`.` or `..`).
        value: String,
    },
    /// The path ended with `/`.
    #[error("invalid {kind} {input:?}: path must not end with a trailing slash")]
    TrailingSlash {
        /// What was being parsed.
        kind: IdKind,
        /// The offending input.
        input: String,
    },
    /// The path contained a character outside `[a-zA-Z0-9._-]`.
    #[error(
        "invalid {kind} {input:?}: path character {ch:?} at position {position} is not allowed (only a-z, A-Z, 0-9, '.', '-', '_' in segments)"
    )]
    PathBadChar {
        /// What was being parsed.
        kind: IdKind,
        /// The offending input.
        input: String,
        /// The offending character.
        ch: char,
        /// Byte offset of the character within the path.
        position: usize,
    },
    /// A path given to [`SpiffeId::new`] did not start with `/`.
    #[error("invalid {kind} path {input:?}: a non-empty path must start with '/'")]
    PathNotAbsolute {
        /// What was being parsed.
        kind: IdKind,
        /// The offending path.
        input: String,
    },
    /// The whole ID was longer than 2048 bytes.
    #[error("invalid {kind} {input:?}: it is {len} bytes long, at most 2048 are allowed")]
    TooLong {
        /// What was being parsed.
        kind: IdKind,
        /// The offending input.
        input: String,
        /// Length of the ID in bytes.
        len: usize,
    },
    /// A path was required (workload/leaf ID) but the ID is a trust domain ID.
    #[error("invalid {kind} {input:?}: a workload SPIFFE ID must have a non-empty path")]
    MissingPath {
        /// What was being parsed.
        kind: IdKind,
        /// The offending input.
        input: String,
    },
    /// A trust domain was expected but the SPIFFE ID had a path.
    #[error("invalid {kind} {input:?}: a trust domain must not have a path")]
    UnexpectedPath {
        /// What was being parsed.
        kind: IdKind,
        /// The offending input.
        input: String,
    },
}

/// A validated SPIFFE trust domain name such as `example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain {
    name: String,
}

impl TrustDomain {
    /// Parses a trust domain from `example.org` or `spiffe://example.org`
    /// (nothing may follow the trust domain in the URI form).
    pub fn parse(s: &str) -> Result<TrustDomain, IdError> {
        let kind = IdKind::TrustDomain;
        if s.is_empty() {
            return Err(IdError::Empty { kind });
        }
        if s.contains("://") || s.to_ascii_lowercase().starts_with("spiffe:") {
            let Some(rest) = s.strip_prefix(SCHEME_PREFIX) else {
                return Err(IdError::BadScheme {
                    kind,
                    input: s.to_string(),
                });
            };
            let td_end = rest.find('/').unwrap_or(rest.len());
            let td = validate_trust_domain(&rest[..td_end], s, kind)?;
            if td_end < rest.len() {
                return Err(IdError::UnexpectedPath {
                    kind,
                    input: s.to_string(),
                });
            }
            return Ok(td);
        }
        validate_trust_domain(s, s, kind)
    }

    /// The trust domain name, e.g. `example.org`.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The trust domain's own SPIFFE ID, `spiffe://<name>` (no path).
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            id: format!("{SCHEME_PREFIX}{}", self.name),
            td: self.clone(),
        }
    }
}

/// Validates a bare trust domain name; `input` is the whole original input
/// (for error messages).
fn validate_trust_domain(td: &str, input: &str, kind: IdKind) -> Result<TrustDomain, IdError> {
    let err_input = || input.to_string();
    if td.is_empty() {
        return Err(IdError::TrustDomainMissing {
            kind,
            input: err_input(),
        });
    }
    for (position, ch) in td.char_indices() {
        match ch {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            ':' => {
                return Err(IdError::Port {
                    kind,
                    input: err_input(),
                    position,
                });
            }
            '@' => {
                return Err(IdError::UserInfo {
                    kind,
                    input: err_input(),
                    position,
                });
            }
            '?' => {
                return Err(IdError::Query {
                    kind,
                    input: err_input(),
                    position,
                });
            }
            '#' => {
                return Err(IdError::Fragment {
                    kind,
                    input: err_input(),
                    position,
                });
            }
            _ => {
                return Err(IdError::TrustDomainBadChar {
                    kind,
                    input: err_input(),
                    ch,
                    position,
                });
            }
        }
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(IdError::TrustDomainTooLong {
            kind,
            input: err_input(),
            len: td.len(),
        });
    }
    Ok(TrustDomain {
        name: td.to_string(),
    })
}

/// Validates a path (`""` or `/seg/seg`); `input` is used for error messages
/// and `offset` is added to reported '?'/'#' positions (position after `spiffe://`).
fn validate_path(path: &str, input: &str, kind: IdKind, offset: usize) -> Result<(), IdError> {
    if path.is_empty() {
        return Ok(());
    }
    let err_input = || input.to_string();
    let Some(body) = path.strip_prefix('/') else {
        return Err(IdError::PathNotAbsolute {
            kind,
            input: err_input(),
        });
    };
    // Query and fragment are reported as such wherever they occur.
    for (position, ch) in path.char_indices() {
        match ch {
            '?' => {
                return Err(IdError::Query {
                    kind,
                    input: err_input(),
                    position: offset + position,
                });
            }
            '#' => {
                return Err(IdError::Fragment {
                    kind,
                    input: err_input(),
                    position: offset + position,
                });
            }
            _ => {}
        }
    }
    let segments: Vec<&str> = body.split('/').collect();
    let last = segments.len() - 1;
    let mut seg_start = 1; // byte offset of the segment within `path`
    for (index, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            if index == last {
                return Err(IdError::TrailingSlash {
                    kind,
                    input: err_input(),
                });
            }
            return Err(IdError::EmptySegment {
                kind,
                input: err_input(),
                segment: index,
            });
        }
        validate_segment_chars(segment, seg_start, input, kind, index)?;
        seg_start += segment.len() + 1;
    }
    Ok(())
}

fn validate_segment_chars(
    segment: &str,
    seg_start: usize,
    input: &str,
    kind: IdKind,
    index: usize,
) -> Result<(), IdError> {
    if segment.is_empty() {
        return Err(IdError::EmptySegment {
            kind,
            input: input.to_string(),
            segment: index,
        });
    }
    if segment == "." || segment == ".." {
        return Err(IdError::DotSegment {
            kind,
            input: input.to_string(),
            segment: index,
            value: segment.to_string(),
        });
    }
    for (pos, ch) in segment.char_indices() {
        if !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_')) {
            return Err(IdError::PathBadChar {
                kind,
                input: input.to_string(),
                ch,
                position: seg_start + pos,
            });
        }
    }
    Ok(())
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl FromStr for TrustDomain {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrustDomain::parse(s)
    }
}

impl Serialize for TrustDomain {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for TrustDomain {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        TrustDomain::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A validated SPIFFE ID such as `spiffe://example.org/ns/prod/sa/web`.
///
/// A path-less ID (`spiffe://example.org`) is the trust domain's own ID; it
/// is a valid `SpiffeId` (see [`SpiffeId::is_trust_domain_id`]) but not a
/// valid workload identity (see [`SpiffeId::require_path`]).
#[derive(Debug, Clone)]
pub struct SpiffeId {
    id: String,
    td: TrustDomain,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID.
    pub fn parse(s: &str) -> Result<SpiffeId, IdError> {
        let kind = IdKind::SpiffeId;
        if s.is_empty() {
            return Err(IdError::Empty { kind });
        }
        if s.len() > MAX_SPIFFE_ID_LEN {
            return Err(IdError::TooLong {
                kind,
                input: s.to_string(),
                len: s.len(),
            });
        }
        let Some(rest) = s.strip_prefix(SCHEME_PREFIX) else {
            return Err(IdError::BadScheme {
                kind,
                input: s.to_string(),
            });
        };
        let td_end = rest.find('/').unwrap_or(rest.len());
        let td = validate_trust_domain(&rest[..td_end], s, kind)?;
        validate_path(&rest[td_end..], s, kind, td_end)?;
        Ok(SpiffeId {
            id: s.to_string(),
            td,
        })
    }

    /// Builds a SPIFFE ID from a trust domain and a path (`""` or starting with `/`).
    pub fn new(td: &TrustDomain, path: &str) -> Result<SpiffeId, IdError> {
        let kind = IdKind::SpiffeId;
        let id = format!("{SCHEME_PREFIX}{}{path}", td.as_str());
        if !path.is_empty() && !path.starts_with('/') {
            return Err(IdError::PathNotAbsolute {
                kind,
                input: path.to_string(),
            });
        }
        if id.len() > MAX_SPIFFE_ID_LEN {
            return Err(IdError::TooLong {
                kind,
                len: id.len(),
                input: id,
            });
        }
        validate_path(path, &id, kind, td.as_str().len())?;
        Ok(SpiffeId { id, td: td.clone() })
    }

    /// Builds a SPIFFE ID from a trust domain and path segments; each segment
    /// is validated on its own (so a segment may not contain `/`).
    pub fn from_segments(td: &TrustDomain, segments: &[&str]) -> Result<SpiffeId, IdError> {
        let kind = IdKind::SpiffeId;
        let mut path = String::new();
        for segment in segments {
            path.push('/');
            path.push_str(segment);
        }
        let id = format!("{SCHEME_PREFIX}{}{path}", td.as_str());
        let mut seg_start = 1;
        for (index, segment) in segments.iter().enumerate() {
            validate_segment_chars(segment, seg_start, &id, kind, index)?;
            seg_start += segment.len() + 1;
        }
        if id.len() > MAX_SPIFFE_ID_LEN {
            return Err(IdError::TooLong {
                kind,
                len: id.len(),
                input: id,
            });
        }
        Ok(SpiffeId { id, td: td.clone() })
    }

    /// The trust domain of this ID.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.td
    }

    /// The path: `""` for a trust domain ID, otherwise `/a/b`.
    pub fn path(&self) -> &str {
        &self.id[SCHEME_PREFIX.len() + self.td.as_str().len()..]
    }

    /// The path segments (empty for a trust domain ID).
    pub fn segments(&self) -> Vec<&str> {
        let path = self.path();
        if path.is_empty() {
            Vec::new()
        } else {
            path[1..].split('/').collect()
        }
    }

    /// True when this is a trust domain ID (`spiffe://td`, no path).
    pub fn is_trust_domain_id(&self) -> bool {
        self.path().is_empty()
    }

    /// Fails with [`IdError::MissingPath`] for a trust domain ID; workload
    /// identities (leaf SVIDs, JWT-SVID subjects) must have a path.
    pub fn require_path(&self) -> Result<(), IdError> {
        if self.is_trust_domain_id() {
            return Err(IdError::MissingPath {
                kind: IdKind::SpiffeId,
                input: self.id.clone(),
            });
        }
        Ok(())
    }

    /// True when this ID belongs to `td`.
    pub fn is_member_of(&self, td: &TrustDomain) -> bool {
        &self.td == td
    }

    /// The full URI, e.g. `spiffe://example.org/a`.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl PartialEq for SpiffeId {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for SpiffeId {}

impl Hash for SpiffeId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl PartialOrd for SpiffeId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SpiffeId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.id.cmp(&other.id)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.id)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        SpiffeId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> IdError {
        match SpiffeId::parse(s) {
            Ok(id) => panic!("{s:?} unexpectedly parsed as {id}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("{s:?}")),
                    "message {msg:?} does not quote the input {s:?}"
                );
                e
            }
        }
    }

    #[test]
    fn valid_ids() {
        let id = SpiffeId::parse("spiffe://example.org").unwrap();
        assert!(id.is_trust_domain_id());
        assert_eq!(id.path(), "");
        assert_eq!(id.trust_domain().as_str(), "example.org");
        assert!(id.require_path().is_err());

        let id = SpiffeId::parse("spiffe://example.org/a/b-c_d.e").unwrap();
        assert!(!id.is_trust_domain_id());
        assert_eq!(id.path(), "/a/b-c_d.e");
        assert_eq!(id.segments(), vec!["a", "b-c_d.e"]);
        assert_eq!(id.as_str(), "spiffe://example.org/a/b-c_d.e");
        assert_eq!(id.to_string(), "spiffe://example.org/a/b-c_d.e");
        id.require_path().unwrap();

        let id = SpiffeId::parse("spiffe://my-td_1.example.0rg/Upper/CASE/..a/.b/a..").unwrap();
        assert_eq!(id.trust_domain().as_str(), "my-td_1.example.0rg");
        assert_eq!(id.path(), "/Upper/CASE/..a/.b/a..");
    }

    #[test]
    fn trust_domain_length_limit() {
        let td255 = "a".repeat(255);
        let id = SpiffeId::parse(&format!("spiffe://{td255}/x")).unwrap();
        assert_eq!(id.trust_domain().as_str().len(), 255);
        TrustDomain::parse(&td255).unwrap();

        let td256 = "a".repeat(256);
        let input = format!("spiffe://{td256}/x");
        assert!(matches!(
            err(&input),
            IdError::TrustDomainTooLong { len: 256, .. }
        ));
        assert!(matches!(
            TrustDomain::parse(&td256),
            Err(IdError::TrustDomainTooLong { len: 256, .. })
        ));
    }

    #[test]
    fn id_length_limit() {
        let prefix = "spiffe://example.org/";
        let ok = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
        assert_eq!(ok.len(), 2048);
        SpiffeId::parse(&ok).unwrap();
        let too_long = format!("{prefix}{}", "a".repeat(2049 - prefix.len()));
        assert!(matches!(err(&too_long), IdError::TooLong { len: 2049, .. }));
        let td = TrustDomain::parse("example.org").unwrap();
        assert!(SpiffeId::new(&td, &ok[prefix.len() - 1..]).is_ok());
        assert!(matches!(
            SpiffeId::new(&td, &too_long[prefix.len() - 1..]),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn bad_schemes() {
        for s in [
            "SPIFFE://example.org/a",
            "Spiffe://example.org/a",
            "http://example.org/a",
            "spiffe:example.org/a",
            "spiffe:/example.org/a",
            "example.org/a",
        ] {
            assert!(
                matches!(err(s), IdError::BadScheme { .. }),
                "{s}: {:?}",
                SpiffeId::parse(s)
            );
        }
        assert!(matches!(SpiffeId::parse(""), Err(IdError::Empty { .. })));
    }

    #[test]
    fn bad_trust_domains() {
        assert!(matches!(
            err("spiffe://"),
            IdError::TrustDomainMissing { .. }
        ));
        assert!(matches!(
            err("spiffe:///path"),
            IdError::TrustDomainMissing { .. }
        ));
        let e = err("spiffe://Ex.org/a");
        assert_eq!(
            e,
            IdError::TrustDomainBadChar {
                kind: IdKind::SpiffeId,
                input: "spiffe://Ex.org/a".into(),
                ch: 'E',
                position: 0
            }
        );
        assert_eq!(
            e.to_string(),
            "invalid SPIFFE ID \"spiffe://Ex.org/a\": trust domain character 'E' at position 0 is not allowed (only lowercase a-z, 0-9, '.', '-', '_')"
        );
        assert!(matches!(
            err("spiffe://example.ORG/a"),
            IdError::TrustDomainBadChar {
                ch: 'O',
                position: 8,
                ..
            }
        ));
        assert!(matches!(
            err("spiffe://example.org:8080/a"),
            IdError::Port { position: 11, .. }
        ));
        assert!(matches!(
            err("spiffe://user@example.org/a"),
            IdError::UserInfo { position: 4, .. }
        ));
        assert!(matches!(
            err("spiffe://example.org?a"),
            IdError::Query { .. }
        ));
        assert!(matches!(
            err("spiffe://example.org#a"),
            IdError::Fragment { .. }
        ));
        assert!(matches!(
            err("spiffe://exa mple.org/a"),
            IdError::TrustDomainBadChar {
                ch: ' ',
                position: 3,
                ..
            }
        ));
    }

    #[test]
    fn bad_paths() {
        assert!(matches!(
            err("spiffe://example.org/a?b=c"),
            IdError::Query { .. }
        ));
        assert!(matches!(
            err("spiffe://example.org/a#frag"),
            IdError::Fragment { .. }
        ));
        assert!(matches!(
            err("spiffe://example.org//a"),
            IdError::EmptySegment { segment: 0, .. }
        ));
        assert!(matches!(
            err("spiffe://example.org/a//b"),
            IdError::EmptySegment { segment: 1, .. }
        ));
        assert!(matches!(
            err("spiffe://example.org/a/./b"),
            IdError::DotSegment { segment: 1, .. }
        ));
        assert!(matches!(
            err("spiffe://example.org/a/.."),
            IdError::DotSegment { segment: 1, .. }
        ));
        assert!(matches!(
            err("spiffe://example.org/."),
            IdError::DotSegment { segment: 0, .. }
        ));
        assert!(matches!(
            err("spiffe://example.org/a/"),
            IdError::TrailingSlash { .. }
        ));
        assert!(matches!(
            err("spiffe://example.org/"),
            IdError::TrailingSlash { .. }
        ));
        assert!(matches!(
            err("spiffe://example.org/a%20b"),
            IdError::PathBadChar {
                ch: '%',
                position: 2,
                ..
            }
        ));
        assert!(matches!(
            err("spiffe://example.org/a b"),
            IdError::PathBadChar {
                ch: ' ',
                position: 2,
                ..
            }
        ));
        assert!(matches!(
            err("spiffe://example.org/a/b:c"),
            IdError::PathBadChar {
                ch: ':',
                position: 4,
                ..
            }
        ));
        assert!(matches!(
            err("spiffe://example.org/é"),
            IdError::PathBadChar { ch: 'é', .. }
        ));
    }

    #[test]
    fn trust_domain_parse_forms() {
        let td = TrustDomain::parse("example.org").unwrap();
        assert_eq!(td.as_str(), "example.org");
        assert_eq!(td.to_string(), "example.org");
        assert_eq!(td.id().as_str(), "spiffe://example.org");
        assert!(td.id().is_trust_domain_id());
        assert_eq!(TrustDomain::parse("spiffe://example.org").unwrap(), td);
        assert_eq!("example.org".parse::<TrustDomain>().unwrap(), td);
        assert!(matches!(
            TrustDomain::parse("spiffe://example.org/a"),
            Err(IdError::UnexpectedPath { .. })
        ));
        assert!(matches!(
            TrustDomain::parse("https://example.org"),
            Err(IdError::BadScheme { .. })
        ));
        let e = TrustDomain::parse("Example.org").unwrap_err();
        assert!(matches!(
            e,
            IdError::TrustDomainBadChar {
                ch: 'E',
                position: 0,
                ..
            }
        ));
        assert!(
            e.to_string()
                .starts_with("invalid trust domain \"Example.org\"")
        );
        assert!(matches!(
            TrustDomain::parse("example.org:443"),
            Err(IdError::Port { .. })
        ));
        assert!(matches!(TrustDomain::parse(""), Err(IdError::Empty { .. })));
    }

    #[test]
    fn constructors() {
        let td = TrustDomain::parse("example.org").unwrap();
        let id = SpiffeId::new(&td, "/ns/prod").unwrap();
        assert_eq!(id.as_str(), "spiffe://example.org/ns/prod");
        assert_eq!(SpiffeId::new(&td, "").unwrap(), td.id());
        assert!(matches!(
            SpiffeId::new(&td, "ns"),
            Err(IdError::PathNotAbsolute { .. })
        ));
        assert!(matches!(
            SpiffeId::new(&td, "/a/"),
            Err(IdError::TrailingSlash { .. })
        ));
        let id2 = SpiffeId::from_segments(&td, &["ns", "prod"]).unwrap();
        assert_eq!(id, id2);
        assert!(matches!(
            SpiffeId::from_segments(&td, &["a/b"]),
            Err(IdError::PathBadChar {
                ch: '/',
                position: 2,
                ..
            })
        ));
        assert!(matches!(
            SpiffeId::from_segments(&td, &["a", ""]),
            Err(IdError::EmptySegment { segment: 1, .. })
        ));
        assert!(matches!(
            SpiffeId::from_segments(&td, &[".."]),
            Err(IdError::DotSegment { .. })
        ));
        assert_eq!(SpiffeId::from_segments(&td, &[]).unwrap(), td.id());
    }

    #[test]
    fn serde_and_ordering() {
        let id = SpiffeId::parse("spiffe://example.org/a").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"spiffe://example.org/a\"");
        let back: SpiffeId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        let bad: Result<SpiffeId, _> = serde_json::from_str("\"spiffe://example.org/a/\"");
        assert!(bad.unwrap_err().to_string().contains("trailing slash"));
        let td: TrustDomain = serde_json::from_str("\"example.org\"").unwrap();
        assert_eq!(serde_json::to_string(&td).unwrap(), "\"example.org\"");
        assert!(serde_json::from_str::<TrustDomain>("\"EXAMPLE\"").is_err());

        let a = SpiffeId::parse("spiffe://a.org/x").unwrap();
        let b = SpiffeId::parse("spiffe://b.org/a").unwrap();
        assert!(a < b);
        assert_eq!("spiffe://a.org/x".parse::<SpiffeId>().unwrap(), a);
    }
}
