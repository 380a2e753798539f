//! Downstream namespaces: the SPIFFE ID path prefixes a downstream server may issue under
//! (seed 000: a compromised downstream stays "within the downstream's registered
//! namespace"). Pure, except [`Held`], which keeps a downstream's own namespaces on disk.
//!
//! A namespace is a path prefix that starts and ends with `/` (`/prod/gcp/`); an ID lies in
//! it when its path starts with it. When an operator gives none, a downstream entry gets the
//! seed 001 platform path ([`default_for`]): the downstream's SPIFFE ID names the platform,
//! `/<env>/<platform>/…` gives `/<env>/<platform>/`, and `/<platform>/…` gives the platform
//! in every environment (`/prod/<platform>/`, `/staging/<platform>/`, `/dev/<platform>/`).
//! On a downstream, the default keeps only what lies inside its own namespaces, or takes its
//! own namespaces when none does, so a leaf never gets more than its mid.
//!
//! Daemon identities (agents under `/trustdeck/`, a server's `…/trustdeck/server`) are issued
//! by the daemons for attestation, not for workloads: no namespace covers them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use trustdeck_proto::node::HeldSvid;
use trustdeck_spiffe::SpiffeId;

/// The environments of seed 001's path scheme (`/<environment>/<platform>/<team>/…`).
pub const ENVIRONMENTS: [&str; 3] = ["prod", "staging", "dev"];

/// Most namespaces one downstream entry may have.
pub const MAX_NAMESPACES: usize = 32;

/// Longest namespace, in bytes (a SPIFFE ID is at most 2048).
pub const MAX_LEN: usize = 255;

/// What is wrong with a namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NamespaceError {
    #[error("namespace {0:?} must start and end with '/' (e.g. /prod/gcp/)")]
    Slashes(String),
    #[error("namespace {0:?} is longer than {MAX_LEN} bytes")]
    TooLong(String),
    #[error(
        "namespace {0:?} has an empty, '.' or '..' segment or a character a SPIFFE ID path may not hold (letters, digits, '.', '-', '_')"
    )]
    Segment(String),
    #[error("at most {MAX_NAMESPACES} namespaces per entry, got {0}")]
    TooMany(usize),
    #[error("namespaces are only for downstream entries (add --downstream)")]
    NotDownstream,
    #[error("namespace {ns} is outside this server's own namespaces {own:?}")]
    OutsideOwn { ns: String, own: Vec<String> },
}

/// Checks one namespace's shape.
pub fn validate(ns: &str) -> Result<(), NamespaceError> {
    if ns.len() > MAX_LEN {
        return Err(NamespaceError::TooLong(ns.chars().take(64).collect()));
    }
    // `/` alone: the whole trust domain.
    if ns == "/" {
        return Ok(());
    }
    let Some(inner) = ns.strip_prefix('/').and_then(|r| r.strip_suffix('/')) else {
        return Err(NamespaceError::Slashes(ns.into()));
    };
    if inner.is_empty() {
        return Err(NamespaceError::Segment(ns.into()));
    }
    let ok = inner.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    });
    if ok {
        Ok(())
    } else {
        Err(NamespaceError::Segment(ns.into()))
    }
}

/// Whether `path` (a SPIFFE ID's path) lies in namespace `ns`.
pub fn contains(ns: &str, path: &str) -> bool {
    ns == "/" || path.starts_with(ns)
}

/// Whether namespace `ns` lies inside one of `own`.
pub fn within(ns: &str, own: &[String]) -> bool {
    own.iter().any(|o| contains(o, ns))
}

/// Whether `id` is a daemon's own identity (an agent's, or a server's TLS SVID), which no
/// namespace covers.
pub fn is_daemon_id(id: &str) -> bool {
    let path = SpiffeId::parse(id)
        .map(|i| i.path().to_string())
        .unwrap_or_default();
    path.starts_with(&format!("{}/", crate::entry::RESERVED_PATH))
        || path.ends_with("/trustdeck/server")
}

/// What a server may issue under: everything (a root server, or a downstream whose upstream
/// sent no namespaces), or the namespaces its upstream gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Unrestricted,
    /// A downstream that has not learnt its namespaces yet: nothing.
    Unknown,
    Within(Vec<String>),
}

impl Scope {
    /// Whether a workload SVID for `id` may be issued (or an entry registered).
    pub fn allows(&self, id: &SpiffeId) -> bool {
        match self {
            Scope::Unrestricted => true,
            Scope::Unknown => false,
            Scope::Within(ns) => ns.iter().any(|n| contains(n, id.path())),
        }
    }

    /// The namespaces, for messages.
    pub fn describe(&self) -> String {
        match self {
            Scope::Unrestricted => "(unrestricted)".into(),
            Scope::Unknown => "(not known yet: no intermediate from the upstream)".into(),
            Scope::Within(ns) => ns.join(", "),
        }
    }
}

/// The namespaces of a downstream entry for `id`: `given` checked (each inside `own`), or
/// the default when none are given.
pub fn for_downstream(
    id: &SpiffeId,
    given: &[String],
    own: &Scope,
) -> Result<Vec<String>, NamespaceError> {
    if given.len() > MAX_NAMESPACES {
        return Err(NamespaceError::TooMany(given.len()));
    }
    for ns in given {
        validate(ns)?;
        if let Scope::Within(own) = own
            && !within(ns, own)
        {
            return Err(NamespaceError::OutsideOwn {
                ns: ns.clone(),
                own: own.clone(),
            });
        }
    }
    if let Scope::Unknown = own {
        return Err(NamespaceError::OutsideOwn {
            ns: given.first().cloned().unwrap_or_default(),
            own: vec![],
        });
    }
    let mut out: Vec<String> = if given.is_empty() {
        default_for(id, own)
    } else {
        given.to_vec()
    };
    out.sort();
    out.dedup();
    Ok(out)
}

/// The default namespaces of a downstream entry for `id` (see the module docs).
pub fn default_for(id: &SpiffeId, own: &Scope) -> Vec<String> {
    let segs: Vec<&str> = id.path().split('/').filter(|s| !s.is_empty()).collect();
    let derived: Vec<String> = match segs.as_slice() {
        [env, platform, ..] if ENVIRONMENTS.contains(env) => vec![format!("/{env}/{platform}/")],
        [platform, ..] => ENVIRONMENTS
            .iter()
            .map(|e| format!("/{e}/{platform}/"))
            .collect(),
        [] => vec!["/".into()],
    };
    match own {
        Scope::Within(own) => {
            let inside: Vec<String> = derived.into_iter().filter(|d| within(d, own)).collect();
            if inside.is_empty() {
                own.clone()
            } else {
                inside
            }
        }
        _ => derived,
    }
}

/// An X.509-SVID a node reported that lies outside the namespaces of the intermediate that
/// signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Who reported it (agent or downstream).
    pub reporter: String,
    pub spiffe_id: String,
    /// The issuing intermediate's key id.
    pub issuer_key_id: String,
    pub namespaces: Vec<String>,
}

/// Checks a reported X.509-SVID against the namespaces of the intermediates this server
/// signed (`issued`: key id → namespaces): `Some` when its issuer is one of them and its ID
/// lies outside. Intermediates themselves and daemon identities are not checked.
pub fn check(
    reporter: &str,
    svid: &HeldSvid,
    issued: &HashMap<String, Vec<String>>,
) -> Option<Violation> {
    use trustdeck_proto::node::KeyKind;
    // An aggregate (`held::compact`) names no SPIFFE ID: nothing to check.
    if svid.kind() != KeyKind::X509 || svid.spiffe_id.is_empty() || is_daemon_id(&svid.spiffe_id) {
        return None;
    }
    let issuer = svid.key_ids.first()?;
    let ns = issued.get(issuer)?;
    let id = SpiffeId::parse(&svid.spiffe_id).ok();
    // An intermediate carries the trust domain's ID (no path): not a workload SVID.
    if id.as_ref().is_some_and(|i| i.path().is_empty()) {
        return None;
    }
    let inside = id
        .as_ref()
        .is_some_and(|i| ns.iter().any(|n| contains(n, i.path())));
    (!inside).then(|| Violation {
        reporter: reporter.into(),
        spiffe_id: svid.spiffe_id.clone(),
        issuer_key_id: issuer.clone(),
        namespaces: ns.clone(),
    })
}

/// Most intermediates remembered, and most violations remembered as already reported.
pub const MAX_REMEMBERED: usize = 4096;
/// Most new violations reported by one round of the check: what a reporter claims cannot
/// flood the event stream (the rest are found at the next rounds).
pub const MAX_NEW_PER_ROUND: usize = 32;

/// What an upstream remembers for the namespace finding: the namespaces of each
/// intermediate it signed, and which violations it already reported (each once), both
/// bounded (oldest forgotten first).
#[derive(Default)]
pub struct Findings {
    inner: Mutex<FindingsInner>,
}

#[derive(Default)]
struct FindingsInner {
    issued: HashMap<String, Vec<String>>,
    issued_order: VecDeque<String>,
    reported: HashSet<(String, String)>,
    reported_order: VecDeque<(String, String)>,
    total: u64,
}

impl Findings {
    /// Remembers that the intermediate with `key_id` was signed for `namespaces`.
    pub fn issued(&self, key_id: &str, namespaces: &[String]) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.issued
            .insert(key_id.into(), namespaces.to_vec())
            .is_none()
        {
            g.issued_order.push_back(key_id.into());
        }
        while g.issued_order.len() > MAX_REMEMBERED {
            if let Some(old) = g.issued_order.pop_front() {
                g.issued.remove(&old);
            }
        }
    }

    /// The violations among `svids` (reporter, SVID) not reported before: one per reporter
    /// and intermediate (naming the first SVID seen), since what a reporter claims is all a
    /// finding rests on, and at most [`MAX_NEW_PER_ROUND`] per call.
    pub fn new_violations<'a>(
        &self,
        svids: impl IntoIterator<Item = (&'a str, &'a HeldSvid)>,
    ) -> Vec<Violation> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (reporter, svid) in svids {
            let Some(v) = check(reporter, svid, &g.issued) else {
                continue;
            };
            if out.len() >= MAX_NEW_PER_ROUND {
                break;
            }
            let key = (v.reporter.clone(), v.issuer_key_id.clone());
            if g.reported.insert(key.clone()) {
                g.reported_order.push_back(key);
                g.total += 1;
                out.push(v);
            }
            while g.reported_order.len() > MAX_REMEMBERED {
                if let Some(old) = g.reported_order.pop_front() {
                    g.reported.remove(&old);
                }
            }
        }
        out
    }

    /// How many violations were found since start.
    pub fn total(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

/// A downstream's own namespaces, as its upstream sends them with every intermediate, kept
/// in `<data_dir>/namespaces.json` so a restart with the upstream down still knows them.
#[derive(Default)]
pub struct Held {
    inner: Mutex<(Option<Vec<String>>, Option<PathBuf>)>,
}

/// The file a downstream keeps its namespaces in.
pub const FILE: &str = "namespaces.json";

impl Held {
    /// Reads what an earlier run kept in `data_dir`, and keeps future changes there.
    pub fn load(&self, data_dir: &Path) {
        let path = data_dir.join(FILE);
        let read = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
            .filter(|ns| ns.len() <= MAX_NAMESPACES && ns.iter().all(|n| validate(n).is_ok()));
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.is_none() {
            g.0 = read;
        }
        g.1 = Some(path);
    }

    /// Takes up the namespaces an intermediate came with; malformed ones are refused (the
    /// old ones stay).
    pub fn update(&self, ns: Vec<String>) {
        if ns.len() > MAX_NAMESPACES || ns.iter().any(|n| validate(n).is_err()) {
            tracing::warn!(
                ?ns,
                "upstream sent malformed namespaces; keeping the old ones"
            );
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.as_ref() == Some(&ns) {
            return;
        }
        if let Some(path) = &g.1
            && let Ok(text) = serde_json::to_vec(&ns)
        {
            let tmp = path.with_extension("json.tmp");
            if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
                tracing::warn!(error = %e, path = %path.display(), "could not keep namespaces");
            }
        }
        tracing::info!(?ns, "namespaces from the upstream");
        g.0 = Some(ns);
    }

    /// What this downstream may issue under.
    pub fn scope(&self) -> Scope {
        match &self.inner.lock().unwrap_or_else(|p| p.into_inner()).0 {
            None => Scope::Unknown,
            Some(ns) if ns.is_empty() => Scope::Unrestricted,
            Some(ns) => Scope::Within(ns.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
