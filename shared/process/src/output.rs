//! A command's output on stdout.
//!
//! The convention every trustdeck CLI follows: when the reader of stdout goes away
//! (`trustdeck-server entry show | head -1`), the command ends quietly with exit status 0, the
//! rest of its output discarded. Rust ignores SIGPIPE, so `println!` would panic (exit 101)
//! instead. Any other write error is reported on stderr with exit status 1.

use std::io::{ErrorKind, Write};

/// What to do after a write to stdout failed with `kind`: `None` to end quietly (the reader
/// is gone), or the message of a real failure.
pub fn write_failure(kind: ErrorKind, detail: &str) -> Option<String> {
    (kind != ErrorKind::BrokenPipe).then(|| format!("cannot write to stdout: {detail}"))
}

/// Writes `args` to stdout and flushes; a closed pipe ends the process with status 0.
pub fn print(args: std::fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|()| o.flush()) {
        match write_failure(e.kind(), &e.to_string()) {
            None => std::process::exit(0),
            Some(message) => {
                eprintln!("{message}");
                std::process::exit(1);
            }
        }
    }
}

/// `print!` that follows the closed-pipe convention of [`print`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::print(format_args!($($arg)*))
    };
}

/// `println!` that follows the closed-pipe convention of [`print`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_quiet_and_other_failures_are_named() {
        assert_eq!(write_failure(ErrorKind::BrokenPipe, "EPIPE"), None);
        assert_eq!(
            write_failure(ErrorKind::StorageFull, "no space").as_deref(),
            Some("cannot write to stdout: no space")
        );
    }
}
