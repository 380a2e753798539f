//! Whether a file is accepted, and what it gives to store.

use chrono::{DateTime, Duration, Utc};
use trustdeck_spiffe::{Bundle, TrustDomain};

use crate::envelope::{FileKind, Opened, open};
use crate::payload::{self, Receipt};
use crate::refusal::Refusal;
use crate::verify;

/// How far in the future a file's `issued_at` may be (clock skew between the two sides).
pub const MAX_SKEW: Duration = Duration::minutes(5);

/// The importing side's clock and rules.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Now.
    pub now: DateTime<Utc>,
    /// A file issued longer ago than this is refused.
    pub max_age: Duration,
}

/// A bundle file that may be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedBundle {
    /// The bundle, with the file's sequence.
    pub bundle: Bundle,
    /// When the exporting side wrote it.
    pub issued_at: DateTime<Utc>,
    /// The fingerprint of the root the signature chains to.
    pub anchor_fingerprint: String,
    /// Whether this was the first import of the trust domain (confirmed by fingerprint).
    pub bootstrap: bool,
}

fn expect_kind(opened: &Opened, expected: FileKind) -> Result<(), Refusal> {
    let found = payload::kind(&opened.payload)?;
    if found != expected {
        return Err(Refusal::WrongKind { expected, found });
    }
    Ok(())
}

fn fresh(issued_at: i64, policy: &Policy) -> Result<DateTime<Utc>, Refusal> {
    let at = DateTime::from_timestamp(issued_at, 0)
        .ok_or_else(|| Refusal::InvalidContent(format!("issued_at {issued_at} is out of range")))?;
    let age = policy.now - at;
    if age > policy.max_age {
        return Err(Refusal::TooOld {
            issued_at,
            age_secs: age.num_seconds(),
            max_age_secs: policy.max_age.num_seconds(),
        });
    }
    if -age > MAX_SKEW {
        return Err(Refusal::IssuedInFuture {
            issued_at,
            ahead_secs: (-age).num_seconds(),
        });
    }
    Ok(at)
}

fn wrong_td(asked: &TrustDomain, found: &str) -> Result<(), Refusal> {
    if asked.as_str() == found {
        return Ok(());
    }
    Err(Refusal::WrongTrustDomain {
        asked: asked.to_string(),
        found: found.to_string(),
    })
}

/// Decides on a bundle file for trust domain `asked`. `held` is the bundle already held for
/// it (`None`: the first import, which needs the operator's `fingerprint` of the root that
/// signed the file, as the exporting side printed it).
///
/// Accepted only when: the file is intact and signed by its chain; the trust domain is the
/// one asked for; the chain leads to a root held for it (or, on the first import, to the
/// root the fingerprint names, carried in the file's own bundle); the chain is valid now;
/// it is not older than `policy.max_age`; its sequence is newer than the held one.
pub fn bundle(
    bytes: &[u8],
    asked: &TrustDomain,
    held: Option<&Bundle>,
    fingerprint: Option<&str>,
    policy: &Policy,
) -> Result<AcceptedBundle, Refusal> {
    let opened = open(bytes)?;
    verify::signature_and_chain(&opened)?;
    expect_kind(&opened, FileKind::Bundle)?;
    let p = payload::read_bundle(&opened.payload)?;
    wrong_td(asked, &p.trust_domain)?;
    let offered = payload::spiffe_bundle(&p, asked)?;
    let td = asked.to_string();
    let (anchor, bootstrap) = match held {
        Some(h) => {
            let anchor = verify::anchor(&opened, &h.x509_authorities).ok_or_else(|| {
                Refusal::UnknownSigner {
                    trust_domain: td.clone(),
                    reason: "its chain leads to none of the roots held".into(),
                }
            })?;
            // A fingerprint the operator gives is checked here too, never ignored.
            if let Some(given) = fingerprint.map(crate::normalize_fingerprint)
                && crate::fingerprint(anchor) != given
            {
                return Err(Refusal::FingerprintMismatch {
                    trust_domain: td,
                    given,
                });
            }
            (anchor.clone(), false)
        }
        None => {
            let anchor = verify::anchor(&opened, &offered.x509_authorities).ok_or_else(|| {
                Refusal::UnknownSigner {
                    trust_domain: td.clone(),
                    reason: "its chain leads to none of the roots of the bundle it carries".into(),
                }
            })?;
            let Some(given) = fingerprint else {
                return Err(Refusal::FingerprintRequired { trust_domain: td });
            };
            let given = crate::normalize_fingerprint(given);
            if crate::fingerprint(anchor) != given {
                return Err(Refusal::FingerprintMismatch {
                    trust_domain: td,
                    given,
                });
            }
            (anchor.clone(), true)
        }
    };
    verify::valid_at(&opened, policy.now)?;
    let issued_at = fresh(p.issued_at, policy)?;
    if let Some(h) = held
        && offered.sequence <= h.sequence
    {
        return Err(Refusal::NotNewer {
            trust_domain: td,
            held: h.sequence,
            offered: offered.sequence,
        });
    }
    Ok(AcceptedBundle {
        bundle: offered,
        issued_at,
        anchor_fingerprint: crate::fingerprint(&anchor),
        bootstrap,
    })
}

/// Decides on a receipt from `peer` about our trust domain `ours`. It must be signed by a
/// root held for `peer` (`peer_bundle`; `None`: refused, import the peer's bundle first), be
/// about our bundle, not be older than `policy.max_age`, and acknowledge a sequence newer
/// than the last receipt recorded (`held_sequence`).
pub fn receipt(
    bytes: &[u8],
    peer: &TrustDomain,
    ours: &TrustDomain,
    peer_bundle: Option<&Bundle>,
    held_sequence: Option<u64>,
    policy: &Policy,
) -> Result<Receipt, Refusal> {
    let opened = open(bytes)?;
    verify::signature_and_chain(&opened)?;
    expect_kind(&opened, FileKind::Receipt)?;
    let r = payload::read_receipt(&opened.payload)?;
    wrong_td(peer, &r.trust_domain)?;
    if r.holds != ours.as_str() {
        return Err(Refusal::NotAboutUs {
            ours: ours.to_string(),
            about: r.holds,
        });
    }
    let held = peer_bundle.ok_or_else(|| Refusal::NoPeerBundle {
        peer: peer.to_string(),
    })?;
    if verify::anchor(&opened, &held.x509_authorities).is_none() {
        return Err(Refusal::UnknownSigner {
            trust_domain: peer.to_string(),
            reason: "the receipt's chain leads to none of the roots held".into(),
        });
    }
    verify::valid_at(&opened, policy.now)?;
    fresh(r.issued_at, policy)?;
    if let Some(h) = held_sequence
        && r.sequence <= h
    {
        return Err(Refusal::NotNewer {
            trust_domain: peer.to_string(),
            held: h,
            offered: r.sequence,
        });
    }
    Ok(r)
}
