//! The signed payloads: a bundle, a receipt.
//!
//! Bundle: `{"kind":"bundle","trust_domain":"a.test","sequence":7,"issued_at":1764700000,
//! "bundle":{<SPIFFE bundle JSON>}}`. Receipt: `{"kind":"receipt","trust_domain":"b.test",
//! "holds":"a.test","sequence":7,"roots":["<sha-256 hex>",..],"issued_at":1764700000}`, read
//! "trust domain b.test holds sequence 7 of a.test's bundle, with these roots".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trustdeck_spiffe::{Bundle, BundleError, TrustDomain};

use crate::envelope::FileKind;
use crate::refusal::Refusal;

#[derive(Deserialize)]
struct KindOnly {
    kind: String,
}

/// The bundle payload as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BundlePayload {
    pub kind: String,
    pub trust_domain: String,
    pub sequence: u64,
    pub issued_at: i64,
    pub bundle: serde_json::Value,
}

/// A receipt: `trust_domain` holds sequence `sequence` of `holds`'s bundle, whose roots
/// (X.509 authorities) have these SHA-256 fingerprints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Always `receipt`.
    pub kind: String,
    /// The trust domain that imported the bundle (and signs the receipt).
    pub trust_domain: String,
    /// The trust domain whose bundle it holds.
    pub holds: String,
    /// The sequence it holds.
    pub sequence: u64,
    /// SHA-256 fingerprints (lowercase hex) of the roots it holds for `holds`.
    pub roots: Vec<String>,
    /// When the receipt was written (unix seconds).
    pub issued_at: i64,
}

impl Receipt {
    /// A receipt for `holder`, holding `bundle` (of another trust domain), at `now`.
    pub fn new(holder: &TrustDomain, bundle: &Bundle, now: DateTime<Utc>) -> Receipt {
        Receipt {
            kind: FileKind::Receipt.as_str().into(),
            trust_domain: holder.to_string(),
            holds: bundle.trust_domain.to_string(),
            sequence: bundle.sequence,
            roots: crate::root_fingerprints(bundle),
            issued_at: now.timestamp(),
        }
    }
}

/// The payload bytes of `bundle` exported at `now`.
pub fn bundle_payload(bundle: &Bundle, now: DateTime<Utc>) -> Result<Vec<u8>, BundleError> {
    let json = bundle.try_to_json()?;
    // The bundle's own JSON is valid JSON: it reads back.
    let value = serde_json::from_str(&json).unwrap_or_default();
    let p = BundlePayload {
        kind: FileKind::Bundle.as_str().into(),
        trust_domain: bundle.trust_domain.to_string(),
        sequence: bundle.sequence,
        issued_at: now.timestamp(),
        bundle: value,
    };
    Ok(serde_json::to_vec(&p).unwrap_or_default())
}

/// The payload bytes of a receipt.
pub fn receipt_payload(receipt: &Receipt) -> Vec<u8> {
    serde_json::to_vec(receipt).unwrap_or_default()
}

fn invalid(e: impl ToString) -> Refusal {
    Refusal::InvalidContent(e.to_string())
}

/// The kind of a payload.
pub(crate) fn kind(payload: &[u8]) -> Result<FileKind, Refusal> {
    let k: KindOnly = serde_json::from_slice(payload).map_err(invalid)?;
    match k.kind.as_str() {
        "bundle" => Ok(FileKind::Bundle),
        "receipt" => Ok(FileKind::Receipt),
        other => Err(invalid(format!("unknown kind {other:?}"))),
    }
}

/// A bundle payload read back (signature already checked).
pub(crate) fn read_bundle(payload: &[u8]) -> Result<BundlePayload, Refusal> {
    serde_json::from_slice(payload).map_err(invalid)
}

/// The SPIFFE bundle of a bundle payload, with the payload's sequence.
pub(crate) fn spiffe_bundle(p: &BundlePayload, td: &TrustDomain) -> Result<Bundle, Refusal> {
    let text = serde_json::to_vec(&p.bundle).map_err(invalid)?;
    let bundle = Bundle::from_json(td, &text).map_err(invalid)?;
    if bundle.sequence != p.sequence {
        return Err(invalid(format!(
            "the bundle's spiffe_sequence {} differs from the file's sequence {}",
            bundle.sequence, p.sequence
        )));
    }
    Ok(bundle)
}

/// A receipt payload read back (signature already checked).
pub(crate) fn read_receipt(payload: &[u8]) -> Result<Receipt, Refusal> {
    serde_json::from_slice(payload).map_err(invalid)
}
