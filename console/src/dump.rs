//! `:dump FILE`: the fleet state for an incident ticket. [`contents`] is pure (the model calls
//! it); [`resolve`] and [`write`] are the terminal edge's: `~/` is the home directory, the file
//! appears whole or not at all (a temporary file in the same directory, then a rename), and an
//! existing file is kept unless asked.

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
    #[error("{0} is a directory: name a file in it")]
    IsDirectory(PathBuf),
    #[error("cannot write {path}: directory {dir} does not exist")]
    NoDirectory { path: PathBuf, dir: PathBuf },
    #[error("cannot write {path}: {dir} is not a directory")]
    NotADirectory { path: PathBuf, dir: PathBuf },
    #[error("cannot write {0}: HOME is not set, so ~ means nothing")]
    NoHome(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The file `:dump FILE` names: `~` or a leading `~/` is `home`, a relative path is under
/// `cwd`.
pub fn resolve(cwd: &Path, home: Option<&Path>, file: &Path) -> Result<PathBuf, DumpError> {
    let rest = match file.strip_prefix("~") {
        Ok(rest) => rest,
        Err(_) => return Ok(cwd.join(file)),
    };
    match home {
        Some(h) if rest.as_os_str().is_empty() => Ok(h.to_path_buf()),
        Some(h) => Ok(h.join(rest)),
        None => Err(DumpError::NoHome(file.to_path_buf())),
    }
}

/// Mode of a new dump before the umask, as a shell's `>` gives: the dump holds no secret.
const NEW_FILE_MODE: u32 = 0o644;

/// An I/O error without the temporary file's path that `tempfile` adds to it: the message
/// names the file asked for.
fn bare(e: std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::from(e.kind()),
    }
}

/// Writes `contents` to `path` atomically; refuses to replace an existing file unless
/// `overwrite`, and a directory always. A new file gets mode 0644 minus the umask; a replaced
/// one keeps its mode. Returns the path and the size written.
pub fn write(path: &Path, contents: &str, overwrite: bool) -> Result<(PathBuf, u64), DumpError> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = path.to_path_buf();
    let io = |source| DumpError::Io {
        path: path.clone(),
        source: bare(source),
    };
    let existing = path.metadata().ok();
    if existing.as_ref().is_some_and(|m| m.is_dir()) {
        return Err(DumpError::IsDirectory(path));
    }
    if !overwrite && path.symlink_metadata().is_ok() {
        return Err(DumpError::Exists(path));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match dir.metadata() {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(DumpError::NotADirectory { path, dir }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DumpError::NoDirectory { path, dir });
        }
        Err(e) => return Err(io(e)),
    }
    let mut tmp = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(NEW_FILE_MODE))
        .tempfile_in(&dir)
        .map_err(io)?;
    if let Some(m) = &existing {
        tmp.as_file().set_permissions(m.permissions()).map_err(io)?;
    }
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_missing_directory_names_the_file_and_the_directory() {
        let e = write(Path::new("/nonexistent-trustdeck/x.json"), "{}", false)
            .expect_err("no directory");
        let m = e.to_string();
        assert_eq!(
            m,
            "cannot write /nonexistent-trustdeck/x.json: directory /nonexistent-trustdeck does not exist"
        );
        assert!(!m.contains(".tmp"), "{m}");
    }

    #[test]
    fn a_directory_is_named_a_directory_with_or_without_bang() {
        let dir = tempfile::tempdir().unwrap();
        for overwrite in [false, true] {
            let e = write(dir.path(), "{}", overwrite).expect_err("a directory");
            assert!(matches!(e, DumpError::IsDirectory(_)), "{e}");
            assert!(e.to_string().contains("is a directory"), "{e}");
        }
    }

    #[test]
    fn a_parent_that_is_a_file_is_not_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let e = write(&file.join("x.json"), "{}", false).expect_err("not a directory");
        assert!(matches!(e, DumpError::NotADirectory { .. }), "{e}");
    }

    #[test]
    fn tilde_is_home() {
        let (cwd, home) = (Path::new("/work"), Path::new("/home/ops"));
        let r = |f: &str| resolve(cwd, Some(home), Path::new(f)).unwrap();
        assert_eq!(r("~/incident.json"), home.join("incident.json"));
        assert_eq!(r("~"), home);
        assert_eq!(r("incident.json"), cwd.join("incident.json"));
        assert_eq!(r("/tmp/i.json"), Path::new("/tmp/i.json"));
        // `~user` and a `~` inside a name are names, not home.
        assert_eq!(r("~ops/i.json"), cwd.join("~ops/i.json"));
        assert_eq!(r("a/~/i.json"), cwd.join("a/~/i.json"));
        assert!(matches!(
            resolve(cwd, None, Path::new("~/i.json")),
            Err(DumpError::NoHome(_))
        ));
    }

    /// A new dump has the mode a shell's `>` gives it (0666 minus the umask), less the write
    /// bits for group and others; a replaced file keeps its mode.
    #[test]
    fn a_new_file_honours_the_umask_and_a_replaced_one_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        std::fs::File::create(&probe).unwrap();
        let shell = probe.metadata().unwrap().permissions().mode() & 0o777;
        let path = dir.path().join("incident.json");
        write(&path, "{}", false).unwrap();
        let mode = |p: &Path| p.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), shell & NEW_FILE_MODE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write(&path, "{\"a\":1}", true).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}");
    }
}
