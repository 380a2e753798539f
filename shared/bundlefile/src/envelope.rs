//! The envelope: format, payload, signature and chain, as JSON text.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::refusal::Refusal;

/// The format (and version) this build writes and reads.
pub const FORMAT: &str = "trustdeck-signed/1";

/// What a file carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A trust domain's bundle, signed by its X.509 authority.
    Bundle,
    /// An acknowledgement that a peer holds a bundle.
    Receipt,
}

impl FileKind {
    /// The payload's `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Bundle => "bundle",
            FileKind::Receipt => "receipt",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            FileKind::Bundle => "signed bundle file",
            FileKind::Receipt => "signed receipt",
        };
        f.write_str(text)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: String,
    payload: String,
    signature: String,
    chain: Vec<String>,
}

/// An envelope read back: the exact payload bytes, the signature and the chain (DER, the
/// signing CA first). Nothing in it is checked yet but its form.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The payload bytes, as signed.
    pub payload: Vec<u8>,
    /// DER ECDSA-Sig-Value.
    pub signature: Vec<u8>,
    /// DER certificates, the signing CA first.
    pub chain: Vec<Vec<u8>>,
}

fn write(env: &Envelope) -> Vec<u8> {
    // Serializing plain strings and a list cannot fail.
    let mut text = serde_json::to_vec_pretty(env).unwrap_or_default();
    text.push(b'\n');
    text
}

/// The file's bytes for a signed payload.
pub fn seal(payload: &[u8], signature: &[u8], chain: &[Vec<u8>]) -> Vec<u8> {
    write(&Envelope {
        format: FORMAT.to_string(),
        payload: STANDARD.encode(payload),
        signature: STANDARD.encode(signature),
        chain: chain.iter().map(|c| STANDARD.encode(c)).collect(),
    })
}

fn b64(what: &str, text: &str) -> Result<Vec<u8>, Refusal> {
    STANDARD
        .decode(text)
        .map_err(|e| Refusal::Tampered(format!("{what} is not valid base64: {e}")))
}

/// Reads an envelope; only the exact bytes [`seal`] writes are accepted.
pub fn open(bytes: &[u8]) -> Result<Opened, Refusal> {
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() {
            Refusal::Truncated
        } else if looks_like_envelope(bytes) {
            Refusal::Tampered(format!("it no longer parses: {e}"))
        } else {
            Refusal::Malformed(e.to_string())
        }
    })?;
    if env.format != FORMAT {
        return Err(Refusal::UnsupportedFormat { found: env.format });
    }
    let canonical = write(&env);
    if canonical.len() > bytes.len() && canonical.starts_with(bytes) {
        return Err(Refusal::Truncated);
    }
    if canonical != bytes {
        return Err(Refusal::Tampered(
            "its bytes are not exactly as they were written (spacing, encoding or an edited byte)"
                .into(),
        ));
    }
    if env.chain.is_empty() {
        return Err(Refusal::BrokenChain("it carries no certificate".into()));
    }
    Ok(Opened {
        payload: b64("the payload", &env.payload)?,
        signature: b64("the signature", &env.signature)?,
        chain: env
            .chain
            .iter()
            .map(|c| b64("a chain certificate", c))
            .collect::<Result<_, _>>()?,
    })
}

/// Whether the bytes start as a file [`seal`] wrote (so a parse failure is damage, not a
/// wrong file).
fn looks_like_envelope(bytes: &[u8]) -> bool {
    bytes.starts_with(b"{\n  \"format\": \"trustdeck-signed/")
}

/// What a file carries (to choose how to decide on it), once it is intact: its signature
/// checks against its own chain, so a changed byte is [`Refusal::Tampered`] here too, never
/// content that does not parse. Whether the signer is trusted is the decision's.
pub fn kind_of(bytes: &[u8]) -> Result<FileKind, Refusal> {
    let opened = open(bytes)?;
    crate::verify::signature_and_chain(&opened)?;
    crate::payload::kind(&opened.payload)
}
