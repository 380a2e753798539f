//! PEM (RFC 7468) encoding and decoding.
//!
//! Decoding is line based: a block starts with `-----BEGIN LABEL-----` and
//! ends with `-----END LABEL-----`; text outside blocks is ignored.

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose::STANDARD};

/// Standard-alphabet decoder that accepts padded and unpadded input.
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Label of X.509 certificate blocks.
pub const CERTIFICATE: &str = "CERTIFICATE";
/// Label of PKCS#8 private key blocks.
pub const PRIVATE_KEY: &str = "PRIVATE KEY";

/// A PEM text could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// A block was opened but never closed by its END line.
    #[error("PEM block #{index} ({label:?}): missing \"-----END {label}-----\" line")]
    MissingEnd {
        /// Zero-based index of the block.
        index: usize,
        /// Label of the BEGIN line.
        label: String,
    },
    /// The END line's label differed from the BEGIN line's.
    #[error("PEM block #{index}: BEGIN label {begin:?} does not match END label {end:?}")]
    LabelMismatch {
        /// Zero-based index of the block.
        index: usize,
        /// Label of the BEGIN line.
        begin: String,
        /// Label of the END line.
        end: String,
    },
    /// A BEGIN or END line was malformed (e.g. empty label).
    #[error("PEM block #{index}: malformed boundary line {line:?}")]
    BadBoundary {
        /// Zero-based index of the block.
        index: usize,
        /// The offending line.
        line: String,
    },
    /// The block body was not valid base64.
    #[error("PEM block #{index} ({label:?}): invalid base64: {reason}")]
    BadBase64 {
        /// Zero-based index of the block.
        index: usize,
        /// Label of the block.
        label: String,
        /// What the base64 decoder reported.
        reason: String,
    },
    /// The block body was empty.
    #[error("PEM block #{index} ({label:?}): no data between BEGIN and END")]
    EmptyBlock {
        /// Zero-based index of the block.
        index: usize,
        /// Label of the block.
        label: String,
    },
    /// No CERTIFICATE block was found.
    #[error("no \"CERTIFICATE\" PEM block found (labels present: {found:?})")]
    NoCertificates {
        /// Labels of the blocks that were present.
        found: Vec<String>,
    },
    /// No PKCS#8 PRIVATE KEY block was found.
    #[error(
        "no PKCS#8 \"PRIVATE KEY\" PEM block found (labels present: {found:?}; convert legacy \"EC PRIVATE KEY\"/\"RSA PRIVATE KEY\" to PKCS#8)"
    )]
    NoPrivateKey {
        /// Labels of the blocks that were present.
        found: Vec<String>,
    },
    /// More than one PRIVATE KEY block was found.
    #[error("expected exactly one \"PRIVATE KEY\" PEM block, found {count}")]
    MultiplePrivateKeys {
        /// How many were found.
        count: usize,
    },
    /// Concatenated DER certificates did not parse.
    #[error("DER certificate #{index} at byte {offset} is malformed: {reason}")]
    BadDer {
        /// Zero-based index of the certificate.
        index: usize,
        /// Byte offset where it starts.
        offset: usize,
        /// What the parser reported.
        reason: String,
    },
}

/// Splits concatenated DER certificates (the Workload API's wire form for chains and bundles)
/// into one DER blob each.
pub fn split_der(der: &[u8]) -> Result<Vec<Vec<u8>>, PemError> {
    let mut out = Vec::new();
    let mut rest = der;
    while !rest.is_empty() {
        let offset = der.len() - rest.len();
        let (after, _) =
            x509_parser::parse_x509_certificate(rest).map_err(|e| PemError::BadDer {
                index: out.len(),
                offset,
                reason: e.to_string(),
            })?;
        out.push(rest[..rest.len() - after.len()].to_vec());
        rest = after;
    }
    Ok(out)
}

/// One decoded PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The label, e.g. `CERTIFICATE`.
    pub label: String,
    /// The decoded DER bytes.
    pub der: Vec<u8>,
}

/// Encodes DER bytes as one PEM block with 64-character lines.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // base64 output is ASCII, so byte chunks are valid UTF-8 boundaries.
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Encodes DER certificates as concatenated CERTIFICATE blocks.
pub fn encode_certs(ders: &[Vec<u8>]) -> String {
    ders.iter().map(|d| encode(CERTIFICATE, d)).collect()
}

fn boundary_label<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix)?.strip_suffix("-----")
}

/// Decodes every PEM block in `text`, in order. Text outside blocks is ignored.
pub fn decode(text: &str) -> Result<Vec<PemBlock>, PemError> {
    let mut blocks = Vec::new();
    // (label, accumulated base64) of the open block, if any.
    let mut open: Option<(String, String)> = None;
    for raw_line in text.lines() {
        let line = raw_line.trim();
        let index = blocks.len();
        match open.take() {
            None => {
                if line.starts_with("-----BEGIN") {
                    let label = boundary_label(line, "-----BEGIN ")
                        .filter(|l| !l.trim().is_empty())
                        .ok_or_else(|| PemError::BadBoundary {
                            index,
                            line: line.to_string(),
                        })?;
                    open = Some((label.to_string(), String::new()));
                }
            }
            Some((label, mut body)) => {
                if line.starts_with("-----END") {
                    let end =
                        boundary_label(line, "-----END ").ok_or_else(|| PemError::BadBoundary {
                            index,
                            line: line.to_string(),
                        })?;
                    if end != label {
                        return Err(PemError::LabelMismatch {
                            index,
                            begin: label,
                            end: end.to_string(),
                        });
                    }
                    if body.is_empty() {
                        return Err(PemError::EmptyBlock { index, label });
                    }
                    let der = STANDARD_LENIENT.decode(body.as_bytes()).map_err(|e| {
                        PemError::BadBase64 {
                            index,
                            label: label.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                    blocks.push(PemBlock { label, der });
                } else if line.starts_with("-----BEGIN") {
                    return Err(PemError::MissingEnd { index, label });
                } else {
                    body.extend(line.chars().filter(|c| !c.is_whitespace()));
                    open = Some((label, body));
                }
            }
        }
    }
    if let Some((label, _)) = open {
        return Err(PemError::MissingEnd {
            index: blocks.len(),
            label,
        });
    }
    Ok(blocks)
}

/// Decodes the DER of every CERTIFICATE block (other blocks are ignored);
/// fails if there is none.
pub fn decode_certs(text: &str) -> Result<Vec<Vec<u8>>, PemError> {
    let blocks = decode(text)?;
    let found: Vec<String> = blocks.iter().map(|b| b.label.clone()).collect();
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.label == CERTIFICATE)
        .map(|b| b.der)
        .collect();
    if certs.is_empty() {
        return Err(PemError::NoCertificates { found });
    }
    Ok(certs)
}

/// Decodes the single PKCS#8 `PRIVATE KEY` block (other blocks are ignored).
pub fn decode_private_key(text: &str) -> Result<Vec<u8>, PemError> {
    let blocks = decode(text)?;
    let found: Vec<String> = blocks.iter().map(|b| b.label.clone()).collect();
    let mut keys: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.label == PRIVATE_KEY)
        .map(|b| b.der)
        .collect();
    match keys.len() {
        0 => Err(PemError::NoPrivateKey { found }),
        1 => Ok(keys.remove(0)),
        count => Err(PemError::MultiplePrivateKeys { count }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_uses_64_char_lines() {
        let der: Vec<u8> = (0..=255u8).collect();
        let pem = encode("CERTIFICATE", &der);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(*lines.last().unwrap(), "-----END CERTIFICATE-----");
        for l in &lines[1..lines.len() - 2] {
            assert_eq!(l.len(), 64);
        }
        // 256 bytes -> 344 base64 chars -> 5 full lines + 24.
        assert_eq!(lines.len(), 2 + 6);
        assert_eq!(lines[lines.len() - 2].len(), 344 - 5 * 64);
        assert!(pem.ends_with("-----\n"));
    }

    #[test]
    fn round_trip_multiple_blocks_with_noise() {
        let a = vec![1u8, 2, 3];
        let b: Vec<u8> = (0..100).collect();
        let key = vec![9u8; 40];
        let text = format!(
            "leading text\n{}between\r\n{}{}trailing",
            encode(CERTIFICATE, &a),
            encode(PRIVATE_KEY, &key).replace('\n', "\r\n"),
            encode(CERTIFICATE, &b)
        );
        let blocks = decode(&text).unwrap();
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[1].label, "PRIVATE KEY");
        assert_eq!(decode_certs(&text).unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(decode_private_key(&text).unwrap(), key);
        assert_eq!(
            decode_certs(&encode_certs(&[a.clone(), b.clone()])).unwrap(),
            vec![a, b]
        );
    }

    #[test]
    fn errors_name_block_and_problem() {
        let good = encode(CERTIFICATE, &[1, 2, 3]);
        let missing_end = format!("{good}-----BEGIN CERTIFICATE-----\nAQID\n");
        let e = decode(&missing_end).unwrap_err();
        assert_eq!(
            e,
            PemError::MissingEnd {
                index: 1,
                label: "CERTIFICATE".into()
            }
        );
        assert!(e.to_string().contains("#1"));
        assert!(e.to_string().contains("-----END CERTIFICATE-----"));

        let nested = "-----BEGIN A-----\nAQID\n-----BEGIN B-----\nAQID\n-----END B-----\n";
        assert!(matches!(
            decode(nested),
            Err(PemError::MissingEnd { index: 0, .. })
        ));

        let mismatch = "-----BEGIN CERTIFICATE-----\nAQID\n-----END PRIVATE KEY-----\n";
        let e = decode(mismatch).unwrap_err();
        assert!(matches!(e, PemError::LabelMismatch { index: 0, .. }));
        assert!(e.to_string().contains("\"PRIVATE KEY\""));

        let bad = format!("{good}-----BEGIN CERTIFICATE-----\nAQ*D\n-----END CERTIFICATE-----\n");
        let e = decode(&bad).unwrap_err();
        assert!(matches!(e, PemError::BadBase64 { index: 1, .. }), "{e:?}");
        assert!(e.to_string().contains("invalid base64"));

        let empty = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
        assert!(matches!(decode(empty), Err(PemError::EmptyBlock { .. })));

        let key_only = encode(PRIVATE_KEY, &[1]);
        let e = decode_certs(&key_only).unwrap_err();
        assert_eq!(
            e,
            PemError::NoCertificates {
                found: vec!["PRIVATE KEY".into()]
            }
        );
        assert!(matches!(
            decode_certs("no pem here"),
            Err(PemError::NoCertificates { .. })
        ));
        let legacy = encode("EC PRIVATE KEY", &[1]);
        let e = decode_private_key(&legacy).unwrap_err();
        assert!(matches!(e, PemError::NoPrivateKey { .. }));
        assert!(e.to_string().contains("EC PRIVATE KEY"));
        let two = format!("{key_only}{key_only}");
        assert_eq!(
            decode_private_key(&two),
            Err(PemError::MultiplePrivateKeys { count: 2 })
        );
        assert!(matches!(
            decode("-----BEGIN -----\nAQID\n-----END -----\n"),
            Err(PemError::BadBoundary { .. })
        ));
    }
}
