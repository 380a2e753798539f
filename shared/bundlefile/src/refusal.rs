//! Why a file is refused. Nothing is stored when a file is refused.

use crate::envelope::{FORMAT, FileKind};

/// Why a signed bundle file or receipt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The file ends before the document does.
    #[error(
        "the file is truncated: it ends before the signed document does (copy it again from the exporting side)"
    )]
    Truncated,
    /// Not a signed bundle file or receipt at all.
    #[error("the file is not a trustdeck signed bundle or receipt: {0}")]
    Malformed(String),
    /// A format version this build does not read.
    #[error("the file's format is {found:?}; this server reads {FORMAT:?}")]
    UnsupportedFormat {
        /// The format the file names.
        found: String,
    },
    /// The bytes are not as they were signed (a changed byte, an edited payload).
    #[error("the file was altered after it was signed: {0}")]
    Tampered(String),
    /// The certificates that come with the signature do not chain.
    #[error("the signing chain in the file is broken: {0}")]
    BrokenChain(String),
    /// A bundle file where a receipt was expected, or the other way round.
    #[error("the file is a {found}, not a {expected}")]
    WrongKind {
        /// What the caller asked for.
        expected: FileKind,
        /// What the file is.
        found: FileKind,
    },
    /// The file is about another trust domain than the one asked for.
    #[error("the file is for trust domain {found:?}, not {asked:?}")]
    WrongTrustDomain {
        /// The trust domain the operator named.
        asked: String,
        /// The one the file names.
        found: String,
    },
    /// Continuity: the signer does not chain to a root already held for the trust domain.
    #[error(
        "the file is not signed by a root we hold for {trust_domain:?}: {reason} (an unknown key, or a root this side never imported)"
    )]
    UnknownSigner {
        /// The trust domain.
        trust_domain: String,
        /// What did not match.
        reason: String,
    },
    /// A certificate of the signing chain is not valid now.
    #[error("the signing authority is not valid now: {0}")]
    SignerNotValid(String),
    /// The file is not newer than what is held (a replayed older file, or the same one).
    #[error(
        "the file holds sequence {offered} of {trust_domain:?}, not newer than sequence {held} already held (a replayed or older file)"
    )]
    NotNewer {
        /// The trust domain.
        trust_domain: String,
        /// The sequence held.
        held: u64,
        /// The sequence in the file.
        offered: u64,
    },
    /// Issued longer ago than the configured maximum age.
    #[error(
        "the file was issued at {issued_at} (unix), {age_secs}s ago, older than the maximum age of {max_age_secs}s: export a fresh one"
    )]
    TooOld {
        /// When it was issued (unix seconds).
        issued_at: i64,
        /// How old it is.
        age_secs: i64,
        /// The maximum age allowed.
        max_age_secs: i64,
    },
    /// Issued in the future (beyond the allowed clock skew).
    #[error(
        "the file says it was issued at {issued_at} (unix), {ahead_secs}s in the future: check both sides' clocks"
    )]
    IssuedInFuture {
        /// When it says it was issued.
        issued_at: i64,
        /// How far ahead of now.
        ahead_secs: i64,
    },
    /// First import of a trust domain without the operator's confirmed root fingerprint.
    #[error(
        "first import of trust domain {trust_domain:?}: confirm its root with --fingerprint (the SHA-256 fingerprint the exporting side printed)"
    )]
    FingerprintRequired {
        /// The trust domain.
        trust_domain: String,
    },
    /// The confirmed fingerprint is not the one of the root that signed the file.
    #[error(
        "the fingerprint {given} is not the one of the root that signed this file for {trust_domain:?}: do not import it; check the file's origin"
    )]
    FingerprintMismatch {
        /// The trust domain.
        trust_domain: String,
        /// The fingerprint given (normalized).
        given: String,
    },
    /// The SPIFFE bundle or receipt inside a validly signed file does not parse.
    #[error("the signed content is invalid: {0}")]
    InvalidContent(String),
    /// A receipt about another trust domain's bundle than ours.
    #[error("the receipt acknowledges a bundle of {about:?}, not ours ({ours:?})")]
    NotAboutUs {
        /// Our trust domain.
        ours: String,
        /// The one the receipt is about.
        about: String,
    },
    /// A receipt from a peer whose bundle we do not hold: we cannot check its signature.
    #[error(
        "no bundle of {peer:?} is held here, so its receipt cannot be checked: import {peer:?}'s signed bundle first"
    )]
    NoPeerBundle {
        /// The peer trust domain.
        peer: String,
    },
}
