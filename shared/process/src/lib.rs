//! Process plumbing shared by trustdeck's binaries: reading TOML config files with errors that
//! name the file and position, logging to stderr, shutting down on signals with a bound, and
//! the [`clock::Clock`] every daemon reads time from, and [`output`]: a CLI's stdout, ending
//! quietly when its reader goes away.
#![forbid(unsafe_code)]

pub mod clock;
pub mod output;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long open connections and streams may take to finish after SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or mistyped keys.
    #[error("config {path} is invalid: {message}")]
    Parse {
        path: String,
        /// What toml said, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("config {path}: {message}")]
    Invalid { path: String, message: String },
}

impl ConfigError {
    /// The check that refuses config `source` for `message`.
    pub fn invalid(source: &str) -> impl Fn(String) -> ConfigError + '_ {
        move |message| ConfigError::Invalid {
            path: source.to_string(),
            message,
        }
    }
}

/// Reads config file `path` and parses it with `parse(text, name)`.
pub fn load_config<T>(
    path: &Path,
    parse: impl FnOnce(&str, &str) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let text = read_config(path)?;
    parse(&text, &path.display().to_string())
}

/// A path in a daemon's config breaks a rule every daemon applies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRule {
    /// A directory or file the daemon resolves must not depend on its working directory.
    #[error("{key} {path:?} must be an absolute path")]
    NotAbsolute { key: &'static str, path: PathBuf },
    /// `sun_path` holds 108 bytes; 100 leaves room for the terminator and temporary names.
    #[error("{key} {path:?} must be absolute and at most 100 bytes (Unix socket limit)")]
    Socket { key: &'static str, path: PathBuf },
}

/// Checks that `path` (config key `key`) is absolute.
pub fn absolute_path(key: &'static str, path: &Path) -> Result<(), PathRule> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(PathRule::NotAbsolute {
            key,
            path: path.to_path_buf(),
        })
    }
}

/// Checks that `path` (config key `key`) can be a Unix socket: absolute, at most 100 bytes.
pub fn socket_path(key: &'static str, path: &Path) -> Result<(), PathRule> {
    if path.is_absolute() && path.as_os_str().len() <= 100 {
        Ok(())
    } else {
        Err(PathRule::Socket {
            key,
            path: path.to_path_buf(),
        })
    }
}

/// Reads a config file.
pub fn read_config(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses TOML text; `source` names it in errors.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    source: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: source.to_string(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// Logs to stderr, filtered by `TRUSTDECK_LOG` (default `info`); colour only on a terminal and
/// without `NO_COLOR`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRUSTDECK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::env::var_os("NO_COLOR").is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .init();
}

/// Resolves on SIGINT or SIGTERM.
pub async fn terminated() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

/// Waits for SIGINT/SIGTERM, or for `task_ended` (one of the daemon's own tasks stopping by
/// itself, which is logged as an error); either way the caller shuts the daemon down next.
pub async fn until_terminated(
    task_ended: impl Future<Output = ()>,
    daemon: &str,
) -> std::io::Result<()> {
    tokio::select! {
        r = terminated() => r?,
        _ = task_ended => tracing::error!("{daemon}: one of its tasks ended unexpectedly"),
    }
    tracing::info!("shutting down");
    Ok(())
}

/// Runs a graceful shutdown for at most [`SHUTDOWN_GRACE`]: a peer that never closes does not
/// keep the process alive.
pub async fn shutdown_within_grace(shutdown: impl Future<Output = ()>) {
    if tokio::time::timeout(SHUTDOWN_GRACE, shutdown)
        .await
        .is_err()
    {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; exiting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rules_name_the_key() {
        assert!(absolute_path("data_dir", Path::new("/var/lib/x")).is_ok());
        let e = absolute_path("data_dir", Path::new("rel")).unwrap_err();
        assert!(matches!(
            e,
            PathRule::NotAbsolute {
                key: "data_dir",
                ..
            }
        ));
        assert!(socket_path("admin_socket", Path::new("/run/a.sock")).is_ok());
        let long = format!("/{}", "a".repeat(100));
        for bad in ["rel.sock", long.as_str()] {
            let e = socket_path("admin_socket", Path::new(bad)).unwrap_err();
            assert!(matches!(
                e,
                PathRule::Socket {
                    key: "admin_socket",
                    ..
                }
            ));
            assert!(e.to_string().starts_with("admin_socket "));
        }
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct C {
        a: u32,
    }

    #[test]
    fn toml_errors_name_the_source_and_position() {
        let e = parse_toml::<C>("a = 1\nb = 2\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.toml") && e.contains("line 2") && e.contains('b'),
            "{e}"
        );
        let e = read_config(Path::new("/nonexistent/trustdeck.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/trustdeck.toml"), "{e}");
    }
}
