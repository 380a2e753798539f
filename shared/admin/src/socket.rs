//! The admin socket in the file system: a mode and group that let the configured uids
//! connect (the uid check in [`access`](crate::access) then decides), whether the
//! directories above it let them through, and binding it so.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::users::{Accounts, AccountsError};

/// Who can open the admin socket's file: its mode and, when configured, its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketAccess {
    /// `0o660` (owner and group), or `0o666` when uids outside the daemon's user and group
    /// are configured without a group: their uid is checked on every call.
    pub mode: u32,
    /// The group the socket is given (`[admin] socket_group`).
    pub gid: Option<u32>,
}

impl Default for SocketAccess {
    fn default() -> Self {
        Self {
            mode: 0o660,
            gid: None,
        }
    }
}

/// `[admin] socket_group` names no group.
#[derive(Debug, thiserror::Error)]
pub enum SocketGroupError {
    #[error("admin.socket_group {0:?}: no such group in /etc/group")]
    Unknown(String),
    #[error("admin.socket_group: {0}")]
    Accounts(#[from] AccountsError),
}

/// The uids besides root and the daemon's own that are configured to use the socket.
pub fn outsiders(own_uid: u32, operator_uids: &[u32], viewer_uids: &[u32]) -> Vec<u32> {
    let mut v: Vec<u32> = operator_uids
        .iter()
        .chain(viewer_uids)
        .copied()
        .filter(|u| *u != 0 && *u != own_uid)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The socket's mode and group: `group` (a name or a number) when given; else world
/// connectable when `outsiders` is not empty, since only the uid check can let them in.
pub fn socket_access(
    group: Option<&str>,
    outsiders: &[u32],
    accounts: &Accounts,
) -> Result<SocketAccess, SocketGroupError> {
    if let Some(name) = group {
        let gid = match name.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => accounts
                .gid_of(name)
                .ok_or_else(|| SocketGroupError::Unknown(name.to_string()))?,
        };
        return Ok(SocketAccess {
            mode: 0o660,
            gid: Some(gid),
        });
    }
    let mode = if outsiders.is_empty() { 0o660 } else { 0o666 };
    Ok(SocketAccess { mode, gid: None })
}

/// Why configured uids cannot reach the socket at `path`, one sentence each (empty: they
/// can). `private_dir` is a directory the daemon keeps `0700` (its data directory).
pub fn unreachable(
    path: &Path,
    access: &SocketAccess,
    outsiders: &[u32],
    private_dir: &Path,
    accounts: &Accounts,
) -> Vec<String> {
    if outsiders.is_empty() {
        return Vec::new();
    }
    let who = || {
        outsiders
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    if path.ancestors().skip(1).any(|d| d == private_dir) {
        out.push(format!(
            "admin socket {} is inside the data directory {}, which only the daemon's user may enter: uid {} cannot reach it; set admin_socket to a path outside it (e.g. /run/trustdeck/admin.sock)",
            path.display(),
            private_dir.display(),
            who()
        ));
        return out;
    }
    for uid in outsiders {
        let groups = accounts.groups_of(*uid);
        if let Some(gid) = access.gid
            && !groups.contains(&gid)
        {
            out.push(format!(
                "uid {uid} is not in admin.socket_group (gid {gid}): it cannot open the admin socket {}",
                path.display()
            ));
        }
        for dir in path.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(dir) else {
                continue; // created at start, searchable by all
            };
            let mode = meta.permissions().mode();
            let bit = if meta.uid() == *uid {
                0o100
            } else if groups.contains(&meta.gid()) {
                0o010
            } else {
                0o001
            };
            if mode & bit == 0 {
                out.push(format!(
                    "uid {uid} cannot enter {} (mode {:o}, owner {}:{}), so it cannot reach the admin socket {}",
                    dir.display(),
                    mode & 0o7777,
                    meta.uid(),
                    meta.gid(),
                    path.display()
                ));
            }
        }
    }
    out
}

/// Binding a Unix socket failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("{0} is in use by a running daemon")]
    InUse(PathBuf),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Tries to connect to the Unix socket at `path` once (the connection is dropped): how a
/// daemon or a CLI tells a running daemon from a stale socket, and why it cannot reach it.
pub fn probe(path: &Path) -> std::io::Result<()> {
    std::os::unix::net::UnixStream::connect(path).map(drop)
}

/// Binds a Unix socket at `path` with `access`, replacing a stale one but never one a
/// running daemon answers on. Directories it creates are `0755`, so the mode decides.
pub fn bind(path: &Path, access: &SocketAccess) -> Result<tokio::net::UnixListener, BindError> {
    let io = |what: &'static str| {
        move |source| BindError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(io("create the directory of"))?;
    }
    if path.exists() {
        if probe(path).is_ok() {
            return Err(BindError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(io("remove stale socket"))?;
    }
    let l = tokio::net::UnixListener::bind(path).map_err(io("bind"))?;
    if let Some(gid) = access.gid {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(io("chgrp"))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode))
        .map_err(io("chmod"))?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Accounts {
        Accounts::parse(
            "root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/h:/bin/sh\nbob:x:1002:100::/h:/bin/sh\n",
            "root:x:0:\nalice:x:1001:\nusers:x:100:\nops:x:500:alice,carol\n",
        )
    }

    #[test]
    fn a_group_gives_0660_and_uids_without_one_0666() {
        let a = accounts();
        let ops = SocketAccess {
            mode: 0o660,
            gid: Some(500),
        };
        assert_eq!(socket_access(Some("ops"), &[1001], &a).unwrap(), ops);
        assert_eq!(socket_access(Some("500"), &[], &a).unwrap(), ops);
        assert!(matches!(
            socket_access(Some("nope"), &[], &a),
            Err(SocketGroupError::Unknown(n)) if n == "nope"
        ));
        assert_eq!(socket_access(None, &[1001], &a).unwrap().mode, 0o666);
        assert_eq!(
            socket_access(None, &[], &a).unwrap(),
            SocketAccess::default()
        );
        assert_eq!(outsiders(1002, &[0, 1002, 7], &[7, 1001]), vec![7, 1001]);
    }

    #[test]
    fn says_why_a_uid_cannot_reach_the_socket() {
        let a = accounts();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let inside = unreachable(
            &data.join("admin.sock"),
            &SocketAccess::default(),
            &[1001],
            &data,
            &a,
        );
        assert!(
            inside[0].contains("inside the data directory"),
            "{inside:?}"
        );

        let closed = dir.path().join("closed");
        std::fs::create_dir(&closed).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let ops = SocketAccess {
            mode: 0o660,
            gid: Some(500),
        };
        let why = unreachable(&closed.join("a.sock"), &ops, &[1001, 1002], &data, &a);
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(why[0].contains("uid 1001 cannot enter"), "{why:?}");
        assert!(why[1].contains("uid 1002 is not in admin.socket_group"));
        assert!(why[2].contains("uid 1002 cannot enter"));
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(unreachable(&closed.join("a.sock"), &ops, &[1001], &data, &a).is_empty());
        assert!(unreachable(&closed.join("a.sock"), &ops, &[], &data, &a).is_empty());
    }
}
