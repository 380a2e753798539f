//! Helpers shared by the fuzz targets: the framing of multi-part inputs, the fixed trust
//! anchors the evidence targets verify against, and the instant they verify at.

#![forbid(unsafe_code)]

use chrono::{DateTime, TimeZone, Utc};

mod frame;
pub use frame::{frame, parts};

/// The instant evidence is verified at (inside every fixture's validity).
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
        .single()
        .expect("a valid date")
}

/// Bundle JSON (trust domain `example.org`) with the JWT authority the `jwt` target validates
/// against (kid `fuzz`, P-256).
pub const JWT_BUNDLE: &[u8] = include_bytes!("../data/jwt_bundle.json");
/// The CA the `x509pop` target trusts (DER).
pub const X509POP_CA: &[u8] = include_bytes!("../data/x509pop_ca.der");
/// The DevID CA the `tpm_devid` target trusts (DER).
pub const DEVID_CA: &[u8] = include_bytes!("../data/devid_ca.der");
/// The endorsement CA the `tpm_devid` target trusts (DER).
pub const EK_CA: &[u8] = include_bytes!("../data/ek_ca.der");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_and_parts_are_inverse() {
        let p: [&[u8]; 3] = [b"ab", b"", b"xyz"];
        assert_eq!(parts(&frame(&p), 8), p.to_vec());
    }
}
