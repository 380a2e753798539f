//! `server.json`: where a running server listens, written into its data directory once it
//! serves (and removed when it stops), read by the demo and the test harness.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use trustdeck_spiffe::{SpiffeId, TrustDomain};

/// The file name of [`ServerInfo`] inside a server's data directory.
pub const SERVER_INFO_FILE: &str = "server.json";

/// Where a running server listens.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerInfo {
    /// The trust domain it serves.
    pub trust_domain: TrustDomain,
    /// The node API (mTLS), for agents and downstream servers.
    pub node_api: SocketAddr,
    /// The admin API's Unix socket.
    pub admin_socket: PathBuf,
    /// The admin API on mTLS TCP, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_tcp: Option<SocketAddr>,
    /// The SPIFFE ID the server presents (what agents must expect).
    pub spiffe_id: SpiffeId,
    /// The federation bundle endpoint (HTTPS), when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation_bundle_endpoint: Option<SocketAddr>,
    pub pid: u32,
}

/// Why `server.json` could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InfoError {
    /// The file could not be written, moved into place or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file does not hold a [`ServerInfo`].
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl ServerInfo {
    /// The path of `server.json` in `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(SERVER_INFO_FILE)
    }

    /// Writes `server.json` into `data_dir` atomically (a temporary file, then a rename), so
    /// a reader never sees half a file.
    pub fn write(&self, data_dir: &Path) -> Result<(), InfoError> {
        let path = Self::path(data_dir);
        let tmp = data_dir.join(format!(".{SERVER_INFO_FILE}.tmp"));
        let json = serde_json::to_string_pretty(self).map_err(|source| InfoError::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&tmp, json).map_err(|source| InfoError::Io {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| InfoError::Io { path, source })
    }

    /// Reads `server.json` from `data_dir`.
    pub fn read(data_dir: &Path) -> Result<ServerInfo, InfoError> {
        let path = Self::path(data_dir);
        let text = std::fs::read_to_string(&path).map_err(|source| InfoError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| InfoError::Json { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_keeps_its_shape() {
        let dir = tempfile::tempdir().expect("tmp");
        let info = ServerInfo {
            trust_domain: TrustDomain::parse("example.org").expect("td"),
            node_api: "127.0.0.1:8081".parse().expect("addr"),
            admin_socket: "/run/td/admin.sock".into(),
            admin_tcp: None,
            spiffe_id: SpiffeId::parse("spiffe://example.org/trustdeck/server").expect("id"),
            federation_bundle_endpoint: None,
            pid: 42,
        };
        info.write(dir.path()).expect("write");
        let text = std::fs::read_to_string(dir.path().join("server.json")).expect("read");
        assert_eq!(
            text,
            r#"{
  "trust_domain": "example.org",
  "node_api": "127.0.0.1:8081",
  "admin_socket": "/run/td/admin.sock",
  "spiffe_id": "spiffe://example.org/trustdeck/server",
  "pid": 42
}"#
        );
        assert_eq!(ServerInfo::read(dir.path()).expect("read back"), info);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("server.json")]);
    }
}
