//! The fleet file: which daemons the console and CLI talk to.
//!
//! ```json
//! {"trust_domain": "demo.trustdeck",
//!  "servers": [{"name": "upstream", "role": "upstream", "segment": "root",
//!               "admin": "unix:///tmp/demo/upstream/admin.sock", "pid": 123}],
//!  "agents":  [{"name": "gcp-workloads-1", "segment": "gcp", "serves": "workloads",
//!               "workload_socket": "/tmp/demo/gcp-w1/workload.sock",
//!               "admin": "unix:///tmp/demo/gcp-w1/admin.sock", "pid": 456}]}
//! ```
//!
//! `admin` is `unix:///absolute/path` (or a bare absolute path) for a local admin socket, or
//! `https://host:port` for the admin API over mTLS; the latter needs `spiffe_id` (what the
//! daemon must present) and a client SVID (see `--workload-socket`). Whatever the endpoint,
//! a `spiffe_id` pins the daemon's name: only that daemon is named by that ID, and a daemon
//! that says it is another ID is flagged.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use trustdeck_proto::admin::DaemonRole;
use trustdeck_proto::vocab::Vocabulary;
use trustdeck_spiffe::SpiffeId;

/// Why a fleet file is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetFileError {
    /// Could not read it.
    #[error("fleet file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not valid JSON of the expected shape (the message has the line and column).
    #[error("fleet file {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("fleet file {path}: no servers and no agents: nothing to watch")]
    Empty { path: PathBuf },
    /// An entry is unusable.
    #[error("fleet file {path}: {source}")]
    Target { path: PathBuf, source: TargetError },
}

/// Why an entry of the fleet file cannot be watched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    #[error("server {name:?}: role must be \"upstream\" or \"downstream\", got {role:?}")]
    Role { name: String, role: String },
    /// Its admin endpoint is unusable (`kind` is `server` or `agent`).
    #[error("{kind} {name:?}: {source}")]
    Endpoint {
        kind: &'static str,
        name: String,
        source: EndpointError,
    },
    #[error("name {0:?} is used twice")]
    Duplicate(String),
    #[error("{kind} {name:?}: trust_domain {value:?}: {source}")]
    TrustDomain {
        kind: &'static str,
        name: String,
        value: String,
        source: Box<trustdeck_spiffe::IdError>,
    },
}

/// Why an admin endpoint is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    #[error("admin {0:?}: a unix:// endpoint needs an absolute path (unix:///...)")]
    RelativeUnix(String),
    #[error("admin {0:?}: https:// endpoint needs host:port")]
    NoPort(String),
    #[error("admin {0:?}: an https:// endpoint needs \"spiffe_id\" (what the daemon presents)")]
    NoSpiffeId(String),
    #[error("spiffe_id {id:?}: {source}")]
    SpiffeId {
        id: String,
        source: Box<trustdeck_spiffe::IdError>,
    },
    #[error("admin {0:?}: expected unix:///path/to/admin.sock or https://host:port")]
    Scheme(String),
}

/// A server entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerEntry {
    /// Name shown by the console.
    pub name: String,
    /// `upstream` or `downstream`.
    pub role: String,
    #[serde(default)]
    pub segment: String,
    pub admin: String,
    /// The daemon's SPIFFE ID: what it must present over mTLS (required for `https://`
    /// endpoints), and the one ID that names it in the console (a daemon that says it is
    /// another is flagged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    /// Process id (lets a user simulate an outage with `kill -STOP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Node API address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_api: Option<String>,
    /// Its trust domain, when not the fleet's (a federated partner's or an isolated one's
    /// daemon shown beside the fleet's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
}

/// An agent entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentEntry {
    /// Name shown by the console.
    pub name: String,
    #[serde(default)]
    pub segment: String,
    /// `workloads` (serves workloads) or `server` (gives a downstream server its identity).
    #[serde(default)]
    pub serves: String,
    /// Absolute path of its Workload API socket.
    #[serde(default)]
    pub workload_socket: String,
    pub admin: String,
    /// The daemon's SPIFFE ID, as for a server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Its trust domain, when not the fleet's, as for a server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
}

/// A fleet file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct FleetFile {
    #[serde(default)]
    pub trust_domain: String,
    #[serde(default)]
    pub servers: Vec<ServerEntry>,
    #[serde(default)]
    pub agents: Vec<AgentEntry>,
}

/// An admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A local admin socket.
    Unix(PathBuf),
    /// mTLS TCP, presenting `server_id`.
    Tls {
        /// `host:port`.
        addr: String,
        /// What the daemon must present.
        server_id: SpiffeId,
    },
}

/// One daemon to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// Upstream or downstream for a server entry, agent for an agent entry.
    pub role: DaemonRole,
    pub segment: String,
    pub endpoint: Endpoint,
    /// As written in the file.
    pub admin: String,
    /// The daemon's SPIFFE ID, when the file gives it: the console names only this daemon by
    /// it and flags a daemon that says it is another.
    pub spiffe_id: Option<String>,
    /// Its trust domain when it is not the fleet's (runbooks leave such daemons alone).
    pub trust_domain: Option<String>,
}

/// Checks a pinned SPIFFE ID (whatever the endpoint) and returns it as written.
fn pin(id: Option<&str>) -> Result<Option<String>, EndpointError> {
    let Some(id) = id else { return Ok(None) };
    SpiffeId::parse(id).map_err(|source| EndpointError::SpiffeId {
        id: id.into(),
        source: Box::new(source),
    })?;
    Ok(Some(id.to_string()))
}

/// Parses an admin endpoint.
pub fn parse_endpoint(admin: &str, spiffe_id: Option<&str>) -> Result<Endpoint, EndpointError> {
    if let Some(p) = admin.strip_prefix("unix://") {
        let p = Path::new(p);
        if !p.is_absolute() {
            return Err(EndpointError::RelativeUnix(admin.into()));
        }
        return Ok(Endpoint::Unix(p.to_path_buf()));
    }
    if admin.starts_with('/') {
        return Ok(Endpoint::Unix(PathBuf::from(admin)));
    }
    let Some(addr) = admin.strip_prefix("https://") else {
        return Err(EndpointError::Scheme(admin.into()));
    };
    let addr = addr.trim_end_matches('/');
    if !addr.contains(':') {
        return Err(EndpointError::NoPort(admin.into()));
    }
    let id = spiffe_id.ok_or_else(|| EndpointError::NoSpiffeId(admin.into()))?;
    let server_id = SpiffeId::parse(id).map_err(|source| EndpointError::SpiffeId {
        id: id.into(),
        source: Box::new(source),
    })?;
    Ok(Endpoint::Tls {
        addr: addr.to_string(),
        server_id,
    })
}

impl FleetFile {
    /// Reads and checks a fleet file.
    pub fn load(path: &Path) -> Result<Self, FleetFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FleetFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks fleet file text.
    pub fn parse(text: &str, path: &Path) -> Result<Self, FleetFileError> {
        let path = path.to_path_buf();
        let f: FleetFile = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(source) => return Err(FleetFileError::Json { path, source }),
        };
        if f.servers.is_empty() && f.agents.is_empty() {
            return Err(FleetFileError::Empty { path });
        }
        if let Err(source) = f.targets() {
            return Err(FleetFileError::Target { path, source });
        }
        Ok(f)
    }

    /// The daemons to watch, servers first.
    /// An entry's trust domain, checked: `None` when it is the fleet's (or not given).
    fn foreign(
        &self,
        kind: &'static str,
        name: &str,
        td: Option<&str>,
    ) -> Result<Option<String>, TargetError> {
        let Some(value) = td else { return Ok(None) };
        let parsed = trustdeck_spiffe::TrustDomain::parse(value).map_err(|source| {
            TargetError::TrustDomain {
                kind,
                name: name.to_string(),
                value: value.to_string(),
                source: Box::new(source),
            }
        })?;
        Ok((parsed.as_str() != self.trust_domain).then(|| parsed.as_str().to_string()))
    }

    pub fn targets(&self) -> Result<Vec<Target>, TargetError> {
        let endpoint = |kind, name: &str, admin: &str, id: Option<&str>| {
            parse_endpoint(admin, id)
                .and_then(|e| Ok((e, pin(id)?)))
                .map_err(|source| TargetError::Endpoint {
                    kind,
                    name: name.to_string(),
                    source,
                })
        };
        let mut out = Vec::new();
        for s in &self.servers {
            let role = match DaemonRole::parse(&s.role) {
                Some(r @ (DaemonRole::Upstream | DaemonRole::Downstream)) => r,
                _ => {
                    return Err(TargetError::Role {
                        name: s.name.clone(),
                        role: s.role.clone(),
                    });
                }
            };
            let (endpoint, spiffe_id) =
                endpoint("server", &s.name, &s.admin, s.spiffe_id.as_deref())?;
            out.push(Target {
                name: s.name.clone(),
                role,
                segment: s.segment.clone(),
                endpoint,
                admin: s.admin.clone(),
                spiffe_id,
                trust_domain: self.foreign("server", &s.name, s.trust_domain.as_deref())?,
            });
        }
        for a in &self.agents {
            let (endpoint, spiffe_id) =
                endpoint("agent", &a.name, &a.admin, a.spiffe_id.as_deref())?;
            out.push(Target {
                name: a.name.clone(),
                role: DaemonRole::Agent,
                segment: a.segment.clone(),
                endpoint,
                admin: a.admin.clone(),
                spiffe_id,
                trust_domain: self.foreign("agent", &a.name, a.trust_domain.as_deref())?,
            });
        }
        let mut names = std::collections::HashSet::new();
        for t in &out {
            if !names.insert(t.name.clone()) {
                return Err(TargetError::Duplicate(t.name.clone()));
            }
        }
        Ok(out)
    }
}

/// The targets of the fleet's own trust domain (what runbooks act on and observe).
pub fn own(targets: &[Target]) -> Vec<Target> {
    targets
        .iter()
        .filter(|t| t.trust_domain.is_none())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"trust_domain": "td",
      "servers": [{"name": "up", "role": "upstream", "segment": "root", "admin": "unix:///tmp/a.sock", "pid": 1},
                  {"name": "gcp", "role": "downstream", "segment": "gcp", "admin": "https://127.0.0.1:8443", "spiffe_id": "spiffe://td/gcp"}],
      "agents": [{"name": "w1", "segment": "gcp", "serves": "workloads", "workload_socket": "/tmp/w.sock", "admin": "/tmp/w-admin.sock"}]}"#;

    #[test]
    fn parses_endpoints() {
        let f = FleetFile::parse(GOOD, Path::new("f.json")).unwrap();
        let t = f.targets().unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].endpoint, Endpoint::Unix("/tmp/a.sock".into()));
        assert!(matches!(&t[1].endpoint, Endpoint::Tls { addr, .. } if addr == "127.0.0.1:8443"));
        assert_eq!(t[2].role, DaemonRole::Agent);
    }

    #[test]
    fn spiffe_ids_are_pins_whatever_the_endpoint() {
        let f = FleetFile::parse(
            &GOOD.replace(
                "\"admin\": \"/tmp/w-admin.sock\"",
                "\"admin\": \"/tmp/w-admin.sock\", \"spiffe_id\": \"spiffe://td/agent/w1\"",
            ),
            Path::new("f.json"),
        )
        .unwrap();
        let targets = f.targets().unwrap();
        let pins: Vec<Option<&str>> = targets.iter().map(|t| t.spiffe_id.as_deref()).collect();
        assert_eq!(
            pins,
            [None, Some("spiffe://td/gcp"), Some("spiffe://td/agent/w1")]
        );
        // Readers ignore fields they do not know; a file without pins still reads.
        let f = FleetFile::parse(
            &GOOD.replace("\"pid\": 1", "\"pid\": 1, \"future\": true"),
            Path::new("f.json"),
        )
        .unwrap();
        assert_eq!(f.targets().unwrap()[0].spiffe_id, None);
        let e = FleetFile::parse(
            &GOOD.replace("\"pid\": 1", "\"pid\": 1, \"spiffe_id\": \"not an id\""),
            Path::new("f.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("server \"up\"") && e.contains("not an id"),
            "{e}"
        );
    }

    #[test]
    fn bad_files_are_named() {
        let e = FleetFile::parse(&GOOD[..GOOD.len() - 10], Path::new("f.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.json") && e.contains("line"), "{e}");
        let e = FleetFile::parse(
            &GOOD.replace("unix:///tmp/a.sock", "tmp/a.sock"),
            Path::new("f.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("server \"up\"") && e.contains("unix:///"), "{e}");
        let e = FleetFile::parse(
            &GOOD.replace(", \"spiffe_id\": \"spiffe://td/gcp\"", ""),
            Path::new("f.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("spiffe_id"), "{e}");
        let e = FleetFile::parse(&GOOD.replace("\"w1\"", "\"gcp\""), Path::new("f.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("used twice"), "{e}");
        let e = FleetFile::parse("{}", Path::new("f.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nothing to watch"), "{e}");
    }
}
