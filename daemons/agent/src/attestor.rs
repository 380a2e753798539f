//! Workload attestation `unix`: selectors from the socket peer's credentials.
//!
//! `unix:uid`, `unix:gid`, `unix:user`, `unix:group` come from the peer's credentials and the
//! passwd/group databases; `unix:path` and `unix:sha256` from `/proc/<pid>/exe` (hashing is
//! bounded in size and cached by device, inode, size and change time).

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;

use ring::digest::{Context, SHA256};

/// Looks up a name for an id in `/etc/passwd` or `/etc/group` content (`name:x:id:...`).
pub fn lookup_name(db: &str, id: u32) -> Option<String> {
    db.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let _pw = f.next()?;
        let num: u32 = f.next()?.parse().ok()?;
        (num == id && !name.is_empty()).then(|| name.to_string())
    })
}

/// Whether an entry with `entry_selectors` matches a workload with `workload_selectors`: every
/// one of the entry's selectors must be among the workload's.
pub fn matches(entry_selectors: &[String], workload_selectors: &[String]) -> bool {
    !entry_selectors.is_empty()
        && entry_selectors
            .iter()
            .all(|s| workload_selectors.contains(s))
}

/// Device, inode, size and change time: a file's owner can reset its mtime after replacing
/// the contents, but not its ctime.
type HashKey = (u64, u64, u64, i64, i64);

/// The outcome of looking for an executable's hash.
enum Hash {
    Known(String),
    TooLarge,
    NotCached,
}

/// How long user and group names are cached.
const NAME_TTL: std::time::Duration = std::time::Duration::from_secs(10);

type NameCache = HashMap<(bool, u32), (Option<String>, std::time::Instant)>;

/// Attests Unix processes; keeps small caches of executable hashes and user/group names.
pub struct UnixAttestor {
    max_hash_bytes: u64,
    hashes: Mutex<HashMap<HashKey, String>>,
    names: Mutex<NameCache>,
}

impl UnixAttestor {
    /// An attestor that hashes executables of at most `max_hash_bytes`.
    pub fn new(max_hash_bytes: u64) -> Self {
        Self {
            max_hash_bytes,
            hashes: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
        }
    }

    /// The name of a user (`group == false`) or group id, cached for [`NAME_TTL`].
    fn name(&self, group: bool, id: u32) -> Option<String> {
        let now = std::time::Instant::now();
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, at)) = names.get(&(group, id))
            && now.duration_since(*at) < NAME_TTL
        {
            return n.clone();
        }
        let db = if group { "/etc/group" } else { "/etc/passwd" };
        let n = std::fs::read_to_string(db)
            .ok()
            .and_then(|text| lookup_name(&text, id));
        if names.len() > 4096 {
            names.clear();
        }
        names.insert((group, id), (n.clone(), now));
        n
    }

    /// Selectors for the process `pid` running as `uid`/`gid`.
    pub fn attest(&self, pid: Option<i32>, uid: u32, gid: u32) -> Vec<String> {
        self.attest_inner(pid, uid, gid, true).unwrap_or_default()
    }

    /// Like [`attest`](Self::attest) but without hashing: `None` when the executable's hash is
    /// not cached yet (the caller then runs [`attest`](Self::attest) where blocking is fine).
    pub fn attest_cached(&self, pid: Option<i32>, uid: u32, gid: u32) -> Option<Vec<String>> {
        self.attest_inner(pid, uid, gid, false)
    }

    fn attest_inner(
        &self,
        pid: Option<i32>,
        uid: u32,
        gid: u32,
        may_hash: bool,
    ) -> Option<Vec<String>> {
        let mut out = vec![format!("unix:uid:{uid}"), format!("unix:gid:{gid}")];
        if let Some(name) = self.name(false, uid) {
            out.push(format!("unix:user:{name}"));
        }
        if let Some(name) = self.name(true, gid) {
            out.push(format!("unix:group:{name}"));
        }
        let Some(pid) = pid.filter(|p| *p > 0) else {
            return Some(out);
        };
        let exe = match std::fs::read_link(format!("/proc/{pid}/exe")) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(pid, error = %e, "cannot read workload executable path");
                return Some(out);
            }
        };
        out.push(format!("unix:path:{}", exe.display()));
        match self.sha256(pid, &exe, may_hash) {
            Ok(Hash::Known(h)) => out.push(format!("unix:sha256:{h}")),
            Ok(Hash::TooLarge) => {}
            Ok(Hash::NotCached) => return None,
            Err(e) => tracing::debug!(pid, error = %e, "cannot hash workload executable"),
        }
        Some(out)
    }

    fn sha256(&self, pid: i32, exe: &std::path::Path, may_hash: bool) -> std::io::Result<Hash> {
        // Read through /proc/<pid>/exe: the file the process runs, even if the path was
        // replaced since.
        let proc_exe = format!("/proc/{pid}/exe");
        let meta = std::fs::metadata(&proc_exe)?;
        if meta.len() > self.max_hash_bytes {
            tracing::info!(exe = %exe.display(), size = meta.len(), limit = self.max_hash_bytes, "executable too large to hash; no unix:sha256 selector");
            return Ok(Hash::TooLarge);
        }
        use std::os::unix::fs::MetadataExt;
        let key = (
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.ctime(),
            meta.ctime_nsec(),
        );
        if let Some(h) = self
            .hashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(Hash::Known(h.clone()));
        }
        if !may_hash {
            return Ok(Hash::NotCached);
        }
        let mut f = std::fs::File::open(&proc_exe)?.take(self.max_hash_bytes + 1);
        let mut ctx = Context::new(&SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > self.max_hash_bytes {
                return Ok(Hash::TooLarge);
            }
            ctx.update(&buf[..n]);
        }
        let h = hex::encode(ctx.finish().as_ref());
        let mut cache = self.hashes.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 1024 {
            cache.clear();
        }
        cache.insert(key, h.clone());
        Ok(Hash::Known(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_lookup() {
        let db = "root:x:0:0:root:/root:/bin/bash\n#comment\nbad\nweb:x:1001:1001::/:/bin/false\n";
        assert_eq!(lookup_name(db, 0).as_deref(), Some("root"));
        assert_eq!(lookup_name(db, 1001).as_deref(), Some("web"));
        assert_eq!(lookup_name(db, 7), None);
    }

    #[test]
    fn all_selectors_must_match() {
        let w: Vec<String> = ["unix:uid:1000", "unix:gid:1000", "unix:path:/bin/x"]
            .map(String::from)
            .to_vec();
        assert!(matches(&["unix:uid:1000".into()], &w));
        assert!(matches(
            &["unix:uid:1000".into(), "unix:path:/bin/x".into()],
            &w
        ));
        assert!(!matches(
            &["unix:uid:1000".into(), "unix:path:/bin/y".into()],
            &w
        ));
        assert!(!matches(&[], &w));
    }

    #[test]
    fn attests_this_process() {
        let a = UnixAttestor::new(1 << 30);
        let me = std::process::id() as i32;
        // Without a cached hash the cheap path declines; after a full attestation it answers
        // with the same selectors.
        let uid0 = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap();
        assert!(a.attest_cached(Some(me), uid0, 0).is_none());
        let full = a.attest(Some(me), uid0, 0);
        assert_eq!(a.attest_cached(Some(me), uid0, 0), Some(full));
        let uid = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap();
        let s = a.attest(Some(me), uid, 0);
        assert!(s.contains(&format!("unix:uid:{uid}")));
        let exe = std::env::current_exe().unwrap();
        assert!(s.contains(&format!("unix:path:{}", exe.display())), "{s:?}");
        let sha = s
            .iter()
            .find(|x| x.starts_with("unix:sha256:"))
            .expect("sha256");
        let bytes = std::fs::read(&exe).unwrap();
        let want = hex::encode(ring::digest::digest(&SHA256, &bytes).as_ref());
        assert_eq!(sha, &format!("unix:sha256:{want}"));
        // A limit below the executable's size drops the hash selector.
        let small = UnixAttestor::new(16);
        assert!(
            !small
                .attest(Some(me), uid, 0)
                .iter()
                .any(|x| x.starts_with("unix:sha256:"))
        );
    }
}
