//! The Workload API caller as a process, pinned at accept: its `/proc/<pid>` directory is
//! opened and its facts (start time, uids, gids, executable) recorded when the connection is
//! accepted. After attestation the facts are read again through that handle: a process that
//! exited (its pid possibly reused) or changed (start time, ids, `exec` of another binary) is
//! refused, so a pid never decides the selectors of a process other than the caller.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::UnixStream;
use tonic::transport::server::{Connected, UdsConnectInfo};

use trustdeck_transport::unix::UidStream;

/// What identifies a process beyond its pid, read from `/proc/<pid>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcFacts {
    /// Field 22 of `stat`: clock ticks after boot at which the process started.
    pub start_time: u64,
    /// Real, effective, saved and filesystem uids (`status` line `Uid:`).
    pub uids: [u32; 4],
    /// The same for gids.
    pub gids: [u32; 4],
    /// Device and inode of the executable, when readable.
    pub exe: Option<(u64, u64)>,
}

/// Why a caller is refused after attestation.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PeerError {
    #[error("the caller's process (pid {pid}) could not be pinned when it connected")]
    NotPinned { pid: i32 },
    #[error("the caller's process (pid {pid}) exited during attestation")]
    Exited { pid: i32 },
    #[error("pid {pid} names another process than the one that connected (start time changed)")]
    Replaced { pid: i32 },
    #[error("the caller's process (pid {pid}) changed its user or group ids since it connected")]
    IdsChanged { pid: i32 },
    #[error("the caller's process (pid {pid}) runs another executable than when it connected")]
    ExecChanged { pid: i32 },
}

impl From<PeerError> for tonic::Status {
    fn from(e: PeerError) -> Self {
        tonic::Status::permission_denied(e.to_string())
    }
}

/// Field 22 (`starttime`) of a `/proc/<pid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state).
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// The `Uid:` and `Gid:` lines of `/proc/<pid>/status`.
pub fn parse_ids(status: &str) -> Option<([u32; 4], [u32; 4])> {
    let ids = |key: &str| -> Option<[u32; 4]> {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        let mut v = line.split_whitespace().map(|x| x.parse::<u32>().ok());
        Some([v.next()??, v.next()??, v.next()??, v.next()??])
    };
    Some((ids("Uid:")?, ids("Gid:")?))
}

/// Whether the process read now (`None`: no longer readable) is the one recorded at accept.
pub fn check(pid: i32, recorded: &ProcFacts, now: Option<&ProcFacts>) -> Result<(), PeerError> {
    let Some(now) = now else {
        return Err(PeerError::Exited { pid });
    };
    if now.start_time != recorded.start_time {
        return Err(PeerError::Replaced { pid });
    }
    if now.uids != recorded.uids || now.gids != recorded.gids {
        return Err(PeerError::IdsChanged { pid });
    }
    if now.exe != recorded.exe {
        return Err(PeerError::ExecChanged { pid });
    }
    Ok(())
}

/// A caller's `/proc/<pid>` directory, held open, and its facts at accept.
#[derive(Debug)]
pub struct PinnedProcess {
    pub pid: i32,
    dir: File,
    pub facts: ProcFacts,
}

impl PinnedProcess {
    /// Opens `/proc/<pid>` and records the process's facts.
    pub fn open(pid: i32) -> std::io::Result<Self> {
        let dir = File::open(format!("/proc/{pid}"))?;
        let mut p = Self {
            pid,
            dir,
            facts: ProcFacts {
                start_time: 0,
                uids: [0; 4],
                gids: [0; 4],
                exe: None,
            },
        };
        p.facts = p.read_facts()?;
        Ok(p)
    }

    /// The facts read through the held directory: an error once that process is gone, even
    /// if its pid names another process now.
    pub fn read_facts(&self) -> std::io::Result<ProcFacts> {
        let base = format!("/proc/self/fd/{}", self.dir.as_raw_fd());
        let bad = |what| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let stat = std::fs::read_to_string(format!("{base}/stat"))?;
        let start_time = parse_start_time(&stat).ok_or_else(|| bad("stat"))?;
        let status = std::fs::read_to_string(format!("{base}/status"))?;
        let (uids, gids) = parse_ids(&status).ok_or_else(|| bad("status"))?;
        let exe = std::fs::metadata(format!("{base}/exe"))
            .ok()
            .map(|m| (m.dev(), m.ino()));
        Ok(ProcFacts {
            start_time,
            uids,
            gids,
            exe,
        })
    }

    /// Whether the pinned process is still the one that connected.
    pub fn verify(&self) -> Result<(), PeerError> {
        check(self.pid, &self.facts, self.read_facts().ok().as_ref())
    }
}

/// What the Workload API knows of a connection's peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub uds: UdsConnectInfo,
    /// The process pinned at accept; `None` when it could not be (gone already, no pid).
    pub process: Option<Arc<PinnedProcess>>,
}

impl PeerInfo {
    /// Refuses a caller whose process is not, or no longer, the one that connected.
    pub fn verify(&self, pid: i32) -> Result<(), PeerError> {
        match &self.process {
            Some(p) if p.pid == pid => p.verify(),
            _ => Err(PeerError::NotPinned { pid }),
        }
    }
}

/// An accepted Workload API connection with its peer pinned, holding one of its uid's places.
pub type PeerStream = UidStream<PeerInfo>;

/// What is known of a just-accepted connection's peer, its process pinned.
pub fn pin(s: &UnixStream) -> PeerInfo {
    let uds = s.connect_info();
    let process = uds
        .peer_cred
        .and_then(|c| c.pid())
        .filter(|p| *p > 0)
        .and_then(|pid| match PinnedProcess::open(pid) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                tracing::debug!(pid, error = %e, "cannot pin the Workload API caller");
                None
            }
        });
    PeerInfo { uds, process }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str =
        "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200";

    fn facts() -> ProcFacts {
        ProcFacts {
            start_time: 987654,
            uids: [1000; 4],
            gids: [100; 4],
            exe: Some((8, 77)),
        }
    }

    #[test]
    fn start_time_is_field_22_even_with_parentheses_in_the_name() {
        assert_eq!(parse_start_time(STAT), Some(987654));
        assert_eq!(parse_start_time("1 (x) S 1"), None);
        assert_eq!(parse_start_time("no parenthesis"), None);
    }

    #[test]
    fn ids_come_from_the_uid_and_gid_lines() {
        let status = "Name:\tx\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t6\t7\t8\n";
        assert_eq!(
            parse_ids(status),
            Some(([1000, 1001, 1002, 1003], [5, 6, 7, 8]))
        );
        assert_eq!(parse_ids("Uid:\t1\t2\n"), None);
    }

    #[test]
    fn the_same_process_passes() {
        assert_eq!(check(7, &facts(), Some(&facts())), Ok(()));
    }

    #[test]
    fn a_gone_replaced_or_changed_process_is_refused() {
        assert_eq!(check(7, &facts(), None), Err(PeerError::Exited { pid: 7 }));
        let mut reused = facts();
        reused.start_time += 1;
        assert_eq!(
            check(7, &facts(), Some(&reused)),
            Err(PeerError::Replaced { pid: 7 })
        );
        let mut setuid = facts();
        setuid.uids[1] = 0;
        assert_eq!(
            check(7, &facts(), Some(&setuid)),
            Err(PeerError::IdsChanged { pid: 7 })
        );
        let mut setgid = facts();
        setgid.gids[2] = 0;
        assert_eq!(
            check(7, &facts(), Some(&setgid)),
            Err(PeerError::IdsChanged { pid: 7 })
        );
        let mut execed = facts();
        execed.exe = Some((8, 78));
        assert_eq!(
            check(7, &facts(), Some(&execed)),
            Err(PeerError::ExecChanged { pid: 7 })
        );
        let s: tonic::Status = PeerError::Replaced { pid: 7 }.into();
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn pins_a_live_process_and_sees_it_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id() as i32;
        let pinned = PinnedProcess::open(pid).expect("pin");
        assert_eq!(pinned.verify(), Ok(()));
        let me = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_start_time(&me).is_some());
        child.kill().expect("kill");
        child.wait().expect("reaped");
        // Reaped: the held directory no longer reads, whatever process takes the pid next.
        assert_eq!(pinned.verify(), Err(PeerError::Exited { pid }));
    }

    #[test]
    fn sees_a_process_exec_another_binary() {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read line; exec sleep 30"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let pid = child.id() as i32;
        let pinned = PinnedProcess::open(pid).expect("pin");
        assert_eq!(pinned.verify(), Ok(()));
        let sh = pinned.facts.exe;
        writeln!(child.stdin.as_mut().expect("stdin"), "go").expect("write");
        // Wait for the exec (no deadline: the test runner's timeout bounds it).
        while pinned.read_facts().expect("facts").exe == sh {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(pinned.verify(), Err(PeerError::ExecChanged { pid }));
        child.kill().expect("kill");
        child.wait().expect("reaped");
    }
}
