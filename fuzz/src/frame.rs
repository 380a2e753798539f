//! The framing of multi-part fuzz inputs (evidence: certificates, public areas, a nonce, a
//! signature). Also compiled into the seed writer (`tests/examples/fuzz_seeds.rs`).

/// Splits a fuzz input into at most `max` parts, each a 2-byte big-endian length then that
/// many bytes (a length past the end takes what is there); a last odd byte is ignored.
pub fn parts(mut data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while out.len() < max && data.len() >= 2 {
        let n = u16::from_be_bytes([data[0], data[1]]) as usize;
        let rest = &data[2..];
        let n = n.min(rest.len());
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    out
}

/// The inverse of [`parts`] (for writing seeds).
pub fn frame(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        let n = u16::try_from(p.len()).expect("a seed part fits in 64 KiB");
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}
