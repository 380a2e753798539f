//! `:dump FILE`: the fleet state for an incident ticket. [`contents`] is pure (the model calls
//! it); [`write`] is the terminal edge's: the file appears whole or not at all (a temporary
//! file in the same directory, then a rename), and an existing file is kept unless asked.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use trustdeck_topology::fleet::{Fleet, StatusReport, Thresholds};

use crate::status::{EventLine, event_line};

/// What a dump holds: the report of `trustdeck status --output json`, and the console's
/// events, oldest first, as `trustdeck watch` prints them.
#[derive(Serialize)]
struct Dump<'a> {
    events: Vec<EventLine<'a>>,
    status: StatusReport,
}

/// The dump of `fleet` at `now`, as pretty JSON.
pub fn contents(fleet: &Fleet, now: DateTime<Utc>, th: &Thresholds) -> String {
    let d = Dump {
        events: fleet.events.iter().map(event_line).collect(),
        status: fleet.status_report(now, th),
    };
    // Plain structs of strings and numbers always serialise.
    let mut s = serde_json::to_string_pretty(&d).unwrap_or_default();
    s.push('\n');
    s
}

/// Why a dump was not written.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{0} exists (:dump! overwrites it)")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes `contents` to `path` (relative to `cwd`) atomically; refuses to replace an existing
/// file unless `overwrite`. Returns the absolute path and the size written.
pub fn write(
    cwd: &Path,
    path: &Path,
    contents: &str,
    overwrite: bool,
) -> Result<(PathBuf, u64), DumpError> {
    let path = cwd.join(path);
    let io = |source| DumpError::Io {
        path: path.clone(),
        source,
    };
    if !overwrite && path.symlink_metadata().is_ok() {
        return Err(DumpError::Exists(path));
    }
    let dir = path.parent().unwrap_or(cwd);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(contents.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    if overwrite {
        tmp.persist(&path).map_err(|e| io(e.error))?;
    } else {
        // Fails if the file appeared meanwhile: never replaced by accident.
        tmp.persist_noclobber(&path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                DumpError::Exists(path.clone())
            } else {
                io(e.error)
            }
        })?;
    }
    Ok((path.clone(), contents.len() as u64))
}
