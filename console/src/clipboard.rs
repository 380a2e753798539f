//! OSC 52: the terminal sets the clipboard from an escape sequence, which also works over SSH
//! and, wrapped in a DCS passthrough, inside tmux. Pure: the terminal edge writes the bytes.

use base64::Engine as _;

/// Most bytes copied: terminals drop longer sequences (xterm's default limit is near 100 kB of
/// base64; tmux passes less).
pub const MAX_COPY: usize = 74_994;

/// Why a text cannot be copied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    #[error("{len} bytes is too long to copy (at most {MAX_COPY})")]
    TooLong {
        /// The text's length.
        len: usize,
    },
}

/// The OSC 52 sequence that puts `text` into the clipboard; inside tmux (`tmux: true`) wrapped
/// for passthrough (every ESC doubled inside `ESC P tmux; … ESC \`).
pub fn osc52(text: &str, tmux: bool) -> Result<String, CopyError> {
    if text.len() > MAX_COPY {
        return Err(CopyError::TooLong { len: text.len() });
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    let seq = format!("\x1b]52;c;{b64}\x07");
    Ok(if tmux {
        format!("\x1bPtmux;{}\x1b\\", seq.replace('\x1b', "\x1b\x1b"))
    } else {
        seq
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_sequence() {
        assert_eq!(
            osc52("3f:1a", false).expect("short"),
            "\x1b]52;c;M2Y6MWE=\x07"
        );
    }

    #[test]
    fn tmux_passthrough_doubles_escapes() {
        assert_eq!(
            osc52("3f:1a", true).expect("short"),
            "\x1bPtmux;\x1b\x1b]52;c;M2Y6MWE=\x07\x1b\\"
        );
    }

    #[test]
    fn too_long_is_refused() {
        let long = "x".repeat(MAX_COPY + 1);
        assert_eq!(
            osc52(&long, false),
            Err(CopyError::TooLong { len: MAX_COPY + 1 })
        );
        assert!(osc52(&"x".repeat(MAX_COPY), false).is_ok());
    }
}
