//! The agent's TOML configuration: the file as written ([`ConfigFile`], which tools such as
//! the demo also serialise) and the checked [`Config`], parsed without I/O.

use std::path::{Path, PathBuf};

use chrono::Duration;
use serde::{Deserialize, Serialize};
use trustdeck_pki::bounds::INTERVAL;
use trustdeck_pki::rotation::{de_duration, de_opt_duration, ser_duration, ser_opt_duration};
use trustdeck_spiffe::{SpiffeId, TrustDomain};

pub use trustdeck_process::ConfigError;
use trustdeck_process::{PathRule, absolute_path};

/// How the agent proves its node's identity.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NodeAttestation {
    /// A single-use join token (given here or in the file `token_path`).
    JoinToken {
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// A file holding the token.
        #[serde(skip_serializing_if = "Option::is_none")]
        token_path: Option<PathBuf>,
    },
    /// Proof of possession of a node certificate's key.
    X509pop {
        /// PEM certificate chain, leaf first.
        cert_path: PathBuf,
        /// PEM PKCS#8 private key of the leaf.
        key_path: PathBuf,
    },
    /// A DevID key resident in the node's TPM 2.0, certified by a DevID CA, and the TPM's
    /// endorsement key certificate (see `trustdeck-agent tpm provision`).
    TpmDevid {
        /// TCTI of the TPM (default: `$TPM2TOOLS_TCTI`, `$TCTI`, else `device:/dev/tpmrm0`).
        #[serde(skip_serializing_if = "Option::is_none")]
        tcti: Option<String>,
        /// PEM DevID certificate chain, leaf first.
        devid_cert_path: PathBuf,
        /// The DevID key blobs written by `tpm provision` (`TPM2B_PUBLIC || TPM2B_PRIVATE`;
        /// the private part is wrapped by the TPM and useless elsewhere).
        devid_key_path: PathBuf,
        /// PEM or DER EK certificate; read from the TPM's NV index 0x01c00002 when absent.
        #[serde(skip_serializing_if = "Option::is_none")]
        ek_cert_path: Option<PathBuf>,
    },
}

/// The configuration file as written: every key, with serde's defaults for the absent ones.
/// [`Config::parse`] checks it; [`ConfigFile::new`] and `toml::to_string` write one.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub trust_domain: String,
    /// The server's node API (`host:port`).
    pub server_address: String,
    /// Default `spiffe://<trust domain>/trustdeck/server`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_spiffe_id: Option<String>,
    /// PEM bundle that authenticates the server before the first attestation.
    pub trust_bundle_path: PathBuf,
    /// State directory (absolute).
    pub data_dir: PathBuf,
    /// Workload API socket (default `<data_dir>/workload.sock`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<PathBuf>,
    pub node_attestation: NodeAttestation,
    #[serde(
        default = "default_sync",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub sync_interval: Duration,
    /// Default 30 s.
    #[serde(
        default,
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_backoff: Option<Duration>,
    #[serde(default = "default_hash_limit")]
    pub max_hash_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// Default `<data_dir>/admin.sock`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_socket: Option<PathBuf>,
    /// Extra uids allowed to operate over the admin socket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_allowed_uids: Vec<u32>,
    #[serde(default)]
    pub admin: trustdeck_admin::AdminSection,
}

impl ConfigFile {
    /// A file with the keys that have no default, every other key at its default.
    pub fn new(
        trust_domain: impl Into<String>,
        server_address: impl Into<String>,
        trust_bundle_path: impl Into<PathBuf>,
        data_dir: impl Into<PathBuf>,
        node_attestation: NodeAttestation,
    ) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            server_address: server_address.into(),
            server_spiffe_id: None,
            trust_bundle_path: trust_bundle_path.into(),
            data_dir: data_dir.into(),
            socket_path: None,
            node_attestation,
            sync_interval: default_sync(),
            max_backoff: None,
            max_hash_bytes: default_hash_limit(),
            name: None,
            segment: None,
            admin_socket: None,
            admin_allowed_uids: Vec::new(),
            admin: trustdeck_admin::AdminSection::default(),
        }
    }
}

fn default_sync() -> Duration {
    Duration::milliseconds(500)
}

fn default_hash_limit() -> u64 {
    64 * 1024 * 1024
}

/// A checked agent configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from.
    pub source: String,
    pub trust_domain: TrustDomain,
    /// Server node API address (`host:port`).
    pub server_address: String,
    /// The SPIFFE ID the server must present.
    pub server_spiffe_id: SpiffeId,
    /// PEM bundle used to trust the server before the first attestation.
    pub trust_bundle_path: PathBuf,
    /// State: agent SVID, key, bundle.
    pub data_dir: PathBuf,
    /// Workload API socket.
    pub socket_path: PathBuf,
    /// Node attestation method.
    pub node_attestation: NodeAttestation,
    /// How often entries and the bundle are synced.
    pub sync_interval: Duration,
    /// Longest wait between retries while the server is unreachable.
    pub max_backoff: Duration,
    /// Largest executable hashed for `unix:sha256`.
    pub max_hash_bytes: u64,
    /// Operator-facing name (admin stream, console).
    pub name: String,
    /// Segment (admin stream, console).
    pub segment: String,
    /// Admin Unix socket (the read-only `Observe` API).
    pub admin_socket: PathBuf,
    /// Who may call the admin API.
    pub admin_access: trustdeck_admin::AdminAccess,
    /// The admin socket's mode and group, so the configured uids can connect.
    pub admin_socket_access: trustdeck_admin::socket::SocketAccess,
    /// Why configured admin uids could not reach the admin socket (logged at start).
    pub admin_socket_warnings: Vec<String>,
    /// Also serve the admin API on mTLS TCP here.
    pub admin_bind_address: Option<std::net::SocketAddr>,
    /// `run --rebootstrap-bundle`: trust the bundle at `trust_bundle_path` instead of the
    /// stored one until the server sends its own (never set from the file).
    pub rebootstrap_bundle: bool,
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        trustdeck_process::load_config(path, Self::parse)
    }

    /// Parses and checks config text.
    pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
        let raw: ConfigFile = trustdeck_process::parse_toml(text, source)?;
        let invalid = ConfigError::invalid(source);
        let trust_domain = TrustDomain::parse(&raw.trust_domain)
            .map_err(|e| invalid(format!("trust_domain: {e}")))?;
        let server_spiffe_id = match raw.server_spiffe_id {
            Some(s) => {
                SpiffeId::parse(&s).map_err(|e| invalid(format!("server_spiffe_id: {e}")))?
            }
            None => trustdeck_transport::connect::default_server_id(&trust_domain),
        };
        let path_rule = |e: PathRule| invalid(e.to_string());
        absolute_path("data_dir", &raw.data_dir).map_err(path_rule)?;
        let socket_path = raw
            .socket_path
            .unwrap_or_else(|| raw.data_dir.join("workload.sock"));
        trustdeck_process::socket_path("socket_path", &socket_path).map_err(path_rule)?;
        if let NodeAttestation::JoinToken { token, token_path } = &raw.node_attestation
            && token.is_none() == token_path.is_none()
        {
            return Err(invalid(
                "node_attestation join_token needs exactly one of `token` or `token_path`".into(),
            ));
        }
        if let NodeAttestation::TpmDevid { tcti: Some(t), .. } = &raw.node_attestation
            && t.trim().is_empty()
        {
            return Err(invalid(
                "node_attestation tpm_devid: `tcti` must not be empty (omit it for the default)"
                    .into(),
            ));
        }
        let sync_interval = INTERVAL
            .check("sync_interval", raw.sync_interval)
            .map_err(|e| invalid(e.to_string()))?;
        let max_backoff = INTERVAL
            .check(
                "max_backoff",
                raw.max_backoff.unwrap_or(Duration::seconds(30)),
            )
            .map_err(|e| invalid(e.to_string()))?;
        let admin_socket = raw
            .admin_socket
            .unwrap_or_else(|| raw.data_dir.join("admin.sock"));
        trustdeck_process::socket_path("admin_socket", &admin_socket).map_err(path_rule)?;
        let admin_access = raw
            .admin
            .access(&raw.admin_allowed_uids)
            .map_err(|e| invalid(e.to_string()))?;
        let (admin_socket_access, admin_socket_warnings) = raw
            .admin
            .socket(&admin_access, &admin_socket, &raw.data_dir)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Config {
            name: raw.name.unwrap_or_else(|| "agent".into()),
            segment: raw.segment.unwrap_or_default(),
            admin_socket,
            admin_access,
            admin_socket_access,
            admin_socket_warnings,
            admin_bind_address: raw.admin.bind_address,
            source: source.to_string(),
            trust_domain,
            server_address: raw.server_address,
            server_spiffe_id,
            trust_bundle_path: raw.trust_bundle_path,
            data_dir: raw.data_dir,
            socket_path,
            node_attestation: raw.node_attestation,
            sync_interval,
            max_backoff,
            max_hash_bytes: raw.max_hash_bytes,
            rebootstrap_bundle: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
trust_domain = "example.org"
server_address = "127.0.0.1:8081"
trust_bundle_path = "/etc/trustdeck/bundle.pem"
data_dir = "/var/lib/trustdeck/agent"
sync_interval = "500ms"

[node_attestation]
type = "join_token"
token = "abc"
"#;

    /// Issue 12, defect 6 (agent side): intervals were only checked to be positive.
    #[test]
    fn every_interval_is_bounded_and_the_error_names_key_and_range() {
        for (key, value) in [
            ("sync_interval", "0s"),
            ("sync_interval", "1ms"),
            ("sync_interval", "999999999999h"),
            ("max_backoff", "2h"),
            ("max_backoff", "1ms"),
        ] {
            let text = GOOD.replace(
                "sync_interval = \"500ms\"",
                &format!("sync_interval = \"500ms\"\n{key} = \"{value}\"").replacen(
                    "sync_interval = \"500ms\"\nsync_interval",
                    "sync_interval",
                    1,
                ),
            );
            let e = Config::parse(&text, "a.toml").unwrap_err().to_string();
            assert!(
                e.contains(&format!(
                    "{key} = {value} is out of range: allowed 10ms to 1h"
                )),
                "{key} = {value}: {e}"
            );
        }
    }

    #[test]
    fn a_written_file_reads_back_the_same() {
        let mut f = ConfigFile::new(
            "example.org",
            "127.0.0.1:8081",
            "/etc/trustdeck/bundle.pem",
            "/var/lib/trustdeck/agent",
            NodeAttestation::JoinToken {
                token: None,
                token_path: Some("/var/lib/trustdeck/agent/join-token".into()),
            },
        );
        f.name = Some("gcp-node".into());
        f.server_spiffe_id = Some("spiffe://example.org/trustdeck/server/gcp".into());
        f.admin_socket = Some("/run/agent-admin.sock".into());
        let text = toml::to_string(&f).unwrap();
        let back: ConfigFile = trustdeck_process::parse_toml(&text, "a.toml").unwrap();
        assert_eq!(back, f, "{text}");
        let c = Config::parse(&text, "a.toml").unwrap();
        assert_eq!(c.name, "gcp-node");
        assert_eq!(c.sync_interval, Duration::milliseconds(500));
    }

    #[test]
    fn parses() {
        let c = Config::parse(GOOD, "a.toml").unwrap();
        assert_eq!(
            c.server_spiffe_id.as_str(),
            "spiffe://example.org/trustdeck/server"
        );
        assert_eq!(
            c.socket_path,
            PathBuf::from("/var/lib/trustdeck/agent/workload.sock")
        );
        assert_eq!(c.sync_interval, Duration::milliseconds(500));
    }

    #[test]
    fn parses_tpm_devid() {
        let text = GOOD.replace(
            "type = \"join_token\"\ntoken = \"abc\"",
            "type = \"tpm_devid\"\ntcti = \"swtpm:host=127.0.0.1,port=2321\"\ndevid_cert_path = \"/etc/devid.pem\"\ndevid_key_path = \"/etc/devid.key\"",
        );
        let c = Config::parse(&text, "a.toml").unwrap();
        assert_eq!(
            c.node_attestation,
            NodeAttestation::TpmDevid {
                tcti: Some("swtpm:host=127.0.0.1,port=2321".into()),
                devid_cert_path: "/etc/devid.pem".into(),
                devid_key_path: "/etc/devid.key".into(),
                ek_cert_path: None,
            }
        );
        let e = Config::parse(&text.replace("devid_key_path", "key_path"), "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key_path"), "{e}");
    }

    #[test]
    fn rejects_bad_input_with_names() {
        let e = Config::parse(&GOOD.replace("token = \"abc\"", ""), "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one of"), "{e}");
        let e = Config::parse(&GOOD[..GOOD.len() - 20], "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.toml"), "{e}");
        let e = Config::parse(&GOOD.replace("join_token", "aws_iid"), "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("aws_iid"), "{e}");
    }
}
