//! Signed bundle files and receipts: how the trust bundle of an isolated trust domain moves
//! by hand (seed 001 §3.3), and whether a file may be imported.
//!
//! A file is a versioned JSON envelope ([`envelope`]):
//!
//! ```json
//! {
//!   "format": "trustdeck-signed/1",
//!   "payload": "<standard base64 of the payload bytes>",
//!   "signature": "<standard base64 DER ECDSA-Sig-Value over the payload bytes>",
//!   "chain": ["<standard base64 DER: the signing CA>", "... up to a root"]
//! }
//! ```
//!
//! written pretty-printed with a final newline, and read back only when it is byte for byte
//! in that form (so that any changed byte is refused). The payload ([`payload`]) is JSON:
//! a bundle (`kind` = `bundle`: trust domain, sequence, issued_at, the SPIFFE bundle) or a
//! receipt (`kind` = `receipt`: trust domain X holds sequence N of trust domain Y, with the
//! SHA-256 fingerprints of the roots it holds). The signature is made by the exporting
//! side's active X.509 authority (ECDSA P-256 with SHA-256, as the CA keys are).
//!
//! [`decide`] says whether a file is accepted: [`decide::bundle`] and [`decide::receipt`]
//! return what to store or a typed [`Refusal`].
//!
//! No I/O and no clock: `now` is a parameter.
#![forbid(unsafe_code)]

pub mod decide;
pub mod envelope;
pub mod payload;
mod refusal;
mod verify;

pub use decide::{AcceptedBundle, Policy};
pub use envelope::{FORMAT, FileKind, kind_of, seal};
pub use payload::{Receipt, bundle_payload, receipt_payload};
pub use refusal::Refusal;
pub use verify::chain_root;

use ring::digest::{SHA256, digest};

/// The SHA-256 fingerprint of a DER certificate: 64 lowercase hex digits.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(digest(&SHA256, der).as_ref())
}

/// A fingerprint as an operator may type it (upper case, `:` separators, a `sha256:`
/// prefix) in the form [`fingerprint`] writes.
pub fn normalize_fingerprint(text: &str) -> String {
    let t = text.trim();
    let t = t
        .strip_prefix("sha256:")
        .or_else(|| t.strip_prefix("SHA256:"))
        .unwrap_or(t);
    t.chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The fingerprints of a bundle's X.509 authorities (its roots), in bundle order.
pub fn root_fingerprints(bundle: &trustdeck_spiffe::Bundle) -> Vec<String> {
    bundle
        .x509_authorities
        .iter()
        .map(|c| fingerprint(c))
        .collect()
}
