//! Throwaway lab components for the demo, the tests and the benchmarks: a SoftHSM2 token of
//! its own in a directory. Real HSMs are initialised by their owners' tools; no daemon uses
//! this crate.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// The SoftHSM2 module on Debian.
pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Why a lab component could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A file or directory of the lab could not be written.
    #[error("SoftHSM2: {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// `softhsm2-util` could not be run.
    #[error("softhsm2-util (install softhsm2): {0}")]
    Spawn(std::io::Error),
    /// `softhsm2-util --init-token` failed.
    #[error("softhsm2-util --init-token {label}: {stderr}")]
    InitToken { label: String, stderr: String },
}

/// Creates a SoftHSM2 token of its own under `dir` (its token directory and the config file
/// that `SOFTHSM2_CONF` must name) and initialises it with `label`, `so_pin` and `pin`.
/// Returns the config file. For labs, tests and the demo: a real HSM is initialised by its
/// owner's tools.
pub fn init_softhsm2_token(
    dir: &Path,
    label: &str,
    so_pin: &str,
    pin: &str,
) -> Result<PathBuf, LabError> {
    let io = |what: &'static str, path: &Path, source: std::io::Error| LabError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).map_err(|e| io("create", &tokens, e))?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .map_err(|e| io("write", &conf, e))?;
    let out = std::process::Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            so_pin,
            "--pin",
            pin,
        ])
        .output()
        .map_err(LabError::Spawn)?;
    if !out.status.success() {
        return Err(LabError::InitToken {
            label: label.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(conf)
}
