//! The server's TOML configuration: the file as written ([`ConfigFile`], which tools such as
//! the demo also serialise) and the checked [`Config`], parsed without touching the network or
//! disk.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::Duration;
use serde::{Deserialize, Serialize};
use trustdeck_pki::bounds::{AUTHORITY_TTL, DurationRange, INTERVAL, SVID_TTL};
use trustdeck_pki::rotation::{de_duration, de_opt_duration, ser_duration, ser_opt_duration};
use trustdeck_spiffe::{SpiffeId, TrustDomain};

pub use trustdeck_pki::rotation::parse_duration;

pub use trustdeck_process::ConfigError;
use trustdeck_process::{PathRule, absolute_path};

/// Where CA and JWT signing keys live.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyManagerConfig {
    /// In memory: lost on restart (the CA rotates on every start).
    Memory,
    /// PKCS#8 files under `dir` (default `<data_dir>/keys`), mode 0600.
    Disk {
        #[serde(skip_serializing_if = "Option::is_none")]
        dir: Option<PathBuf>,
    },
    /// Inside a PKCS#11 token (HSM): generated there, sensitive, never extractable.
    Pkcs11 {
        /// The PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
        module: PathBuf,
        /// The token, by label.
        #[serde(skip_serializing_if = "Option::is_none")]
        token_label: Option<String>,
        /// The token, by slot id.
        #[serde(skip_serializing_if = "Option::is_none")]
        slot: Option<u64>,
        /// Prefix of every key label in the token.
        #[serde(default = "default_key_label_prefix")]
        key_label_prefix: String,
        /// A file holding the user PIN (first line).
        #[serde(skip_serializing_if = "Option::is_none")]
        pin_file: Option<PathBuf>,
        /// An environment variable holding the user PIN.
        #[serde(skip_serializing_if = "Option::is_none")]
        pin_env: Option<String>,
        /// Refused: a PIN never belongs in the config file (kept only to say so clearly).
        #[serde(skip_serializing_if = "Option::is_none")]
        pin: Option<String>,
    },
}

fn default_key_label_prefix() -> String {
    "trustdeck-".into()
}

/// x509pop node attestation settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct X509PopConfig {
    /// PEM file with the CA certificates node certificates must chain to.
    pub ca_bundle_path: PathBuf,
}

/// tpm_devid node attestation settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TpmDevIdConfig {
    /// PEM file with the CA certificates DevID certificates must chain to.
    pub devid_ca_bundle_path: PathBuf,
    /// PEM file with the certificates that may issue EK certificates (the TPM
    /// manufacturers' CAs, intermediates included: the node sends only its EK certificate).
    pub endorsement_ca_bundle_path: PathBuf,
}

/// The downstream role: where the upstream is and how this server gets its identity.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Upstream node API address (`host:port`).
    pub address: String,
    /// The SPIFFE ID the upstream presents (default `spiffe://<td>/trustdeck/server`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    /// Workload API socket of the local agent that attests this node to the upstream.
    pub workload_api_socket: PathBuf,
    /// This server's SPIFFE ID as registered upstream (an entry marked `downstream`);
    /// defaults to the first SVID the local agent hands out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub own_spiffe_id: Option<String>,
    /// How often the upstream's bundle is polled (default 250ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_poll_interval: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeAttestationConfig {
    /// Enables `x509pop` when present. `join_token` is always available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x509pop: Option<X509PopConfig>,
    /// Enables `tpm_devid` when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm_devid: Option<TpmDevIdConfig>,
}

/// Per-caller rate limits on the node API.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained X509-SVID/JWT-SVID signatures per second per caller.
    pub signs_per_second: f64,
    pub burst: f64,
    /// Attestation attempts per second per source address.
    pub attestations_per_second: f64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            signs_per_second: 500.0,
            burst: 1000.0,
            attestations_per_second: 20.0,
        }
    }
}

/// Limits on node and admin TCP connections that have not shown an identity; an absent key
/// keeps [`trustdeck_transport::ConnectionLimits::for_this_process`]'s value.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    #[serde(
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub handshake_timeout: Option<Duration>,
    #[serde(
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_handshaking: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_unidentified: Option<usize>,
}

/// The configuration file as written: every key, with serde's defaults for the absent ones.
/// [`Config::parse`] checks it; [`ConfigFile::new`] and `toml::to_string` write one.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub trust_domain: String,
    /// Node API listen address (`127.0.0.1:0` picks a free port).
    #[serde(default = "default_bind")]
    pub bind_address: String,
    /// State directory (absolute).
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...` (default: SQLite in `data_dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datastore: Option<String>,
    /// Default `<data_dir>/admin.sock`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_socket: Option<PathBuf>,
    /// Extra uids allowed to operate over the admin socket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_allowed_uids: Vec<u32>,
    #[serde(default)]
    pub admin: trustdeck_admin::AdminSection,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    #[serde(
        default = "default_ca_ttl",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub ca_ttl: Duration,
    #[serde(default = "default_ca_cn")]
    pub ca_common_name: String,
    /// Default: `ca_ttl`.
    #[serde(
        default,
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub jwt_key_ttl: Option<Duration>,
    #[serde(
        default = "default_x509_ttl",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub default_x509_svid_ttl: Duration,
    #[serde(
        default = "default_jwt_ttl",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub default_jwt_svid_ttl: Duration,
    /// Default: `default_x509_svid_ttl`.
    #[serde(
        default,
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent_svid_ttl: Option<Duration>,
    #[serde(
        default = "default_rotation_tick",
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub rotation_check_interval: Duration,
    #[serde(default = "default_key_manager")]
    pub key_manager: KeyManagerConfig,
    #[serde(default)]
    pub node_attestation: NodeAttestationConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default, skip_serializing_if = "is_default")]
    pub connections: ConnectionsConfig,
    /// Default `spiffe://<trust domain>/trustdeck/server`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_spiffe_id: Option<String>,
    /// Present on a downstream server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamConfig>,
}

impl ConfigFile {
    /// A file with `trust_domain` and `data_dir`, every other key at its default.
    pub fn new(trust_domain: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            bind_address: default_bind(),
            data_dir: data_dir.into(),
            datastore: None,
            admin_socket: None,
            admin_allowed_uids: Vec::new(),
            admin: trustdeck_admin::AdminSection::default(),
            name: None,
            segment: None,
            ca_ttl: default_ca_ttl(),
            ca_common_name: default_ca_cn(),
            jwt_key_ttl: None,
            default_x509_svid_ttl: default_x509_ttl(),
            default_jwt_svid_ttl: default_jwt_ttl(),
            agent_svid_ttl: None,
            rotation_check_interval: default_rotation_tick(),
            key_manager: default_key_manager(),
            node_attestation: NodeAttestationConfig::default(),
            rate_limit: RateLimitConfig::default(),
            connections: ConnectionsConfig::default(),
            server_spiffe_id: None,
            upstream: None,
        }
    }
}

fn default_bind() -> String {
    "127.0.0.1:8081".into()
}
fn default_ca_ttl() -> Duration {
    Duration::hours(24)
}
fn default_ca_cn() -> String {
    "trustdeck CA".into()
}
fn default_x509_ttl() -> Duration {
    Duration::hours(1)
}
fn default_jwt_ttl() -> Duration {
    Duration::minutes(5)
}
fn default_rotation_tick() -> Duration {
    Duration::seconds(1)
}
fn default_key_manager() -> KeyManagerConfig {
    KeyManagerConfig::Disk { dir: None }
}

/// A checked server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from (for messages).
    pub source: String,
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// Node API listen address (port 0 picks a free port).
    pub bind_address: SocketAddr,
    pub data_dir: PathBuf,
    /// Datastore URL (`sqlite://...` or `postgres://...`).
    pub datastore: String,
    /// Admin Unix socket.
    pub admin_socket: PathBuf,
    /// Extra uids allowed on the admin socket (root and the server's own uid always are).
    pub admin_allowed_uids: Vec<u32>,
    /// Who may call the admin APIs (socket uids, mTLS SPIFFE IDs).
    pub admin_access: trustdeck_admin::AdminAccess,
    /// Also serve the admin APIs on mTLS TCP here.
    pub admin_bind_address: Option<SocketAddr>,
    /// Operator-facing name (admin stream, console).
    pub name: String,
    /// Segment (admin stream, console).
    pub segment: String,
    /// Lifetime of self-signed CAs.
    pub ca_ttl: Duration,
    /// Subject CN of the CA.
    pub ca_common_name: String,
    /// Lifetime of JWT signing keys.
    pub jwt_key_ttl: Duration,
    /// Default workload X509-SVID TTL.
    pub default_x509_svid_ttl: Duration,
    /// Default JWT-SVID TTL.
    pub default_jwt_svid_ttl: Duration,
    /// Agent SVID TTL.
    pub agent_svid_ttl: Duration,
    /// How often rotation is checked.
    pub rotation_check_interval: Duration,
    pub key_manager: KeyManagerConfig,
    pub node_attestation: NodeAttestationConfig,
    pub rate_limit: RateLimitConfig,
    pub connections: ConnectionsConfig,
    /// The SPIFFE ID of this server's TLS SVID and the parent of node-alias entries.
    pub server_spiffe_id: SpiffeId,
    /// Downstream role: the upstream link. `None` for the upstream (root) server.
    pub upstream: Option<Upstream>,
    /// Non-fatal problems, logged at start and reported by `healthcheck`.
    pub warnings: Vec<String>,
    /// `run --reinitialize`: the operator accepts a new CA on an emptied datastore although
    /// keys of an earlier one remain (never set from the file).
    pub reinitialize: bool,
}

/// A checked upstream link.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Node API address.
    pub address: String,
    /// What the upstream presents.
    pub spiffe_id: SpiffeId,
    /// Local agent socket.
    pub workload_api_socket: PathBuf,
    /// This server's SPIFFE ID upstream.
    pub own_spiffe_id: Option<SpiffeId>,
    /// Bundle poll interval.
    pub bundle_poll_interval: Duration,
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        trustdeck_process::load_config(path, Self::parse)
    }

    /// Parses and checks config text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
        let raw: ConfigFile = trustdeck_process::parse_toml(text, source)?;
        let invalid = ConfigError::invalid(source);
        let path_rule = |e: PathRule| invalid(e.to_string());
        let trust_domain = TrustDomain::parse(&raw.trust_domain)
            .map_err(|e| invalid(format!("trust_domain: {e}")))?;
        let bind_address: SocketAddr = raw.bind_address.parse().map_err(|e| {
            invalid(format!(
                "bind_address {:?} is not an IP:port address: {e}",
                raw.bind_address
            ))
        })?;
        absolute_path("data_dir", &raw.data_dir).map_err(path_rule)?;
        let datastore = raw.datastore.unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                raw.data_dir.join("datastore.sqlite3").display()
            )
        });
        if !(datastore.starts_with("sqlite:") || datastore.starts_with("postgres://")) {
            return Err(invalid(format!(
                "datastore must start with sqlite:// or postgres://, got {:?}",
                trustdeck_datastore::redact_url(&datastore)
            )));
        }
        let admin_socket = raw
            .admin_socket
            .unwrap_or_else(|| raw.data_dir.join("admin.sock"));
        trustdeck_process::socket_path("admin_socket", &admin_socket).map_err(path_rule)?;
        let in_range = |range: DurationRange, key: &str, d: Duration| {
            range.check(key, d).map_err(|e| invalid(e.to_string()))
        };
        let ca_ttl = in_range(AUTHORITY_TTL, "ca_ttl", raw.ca_ttl)?;
        let x509 = in_range(SVID_TTL, "default_x509_svid_ttl", raw.default_x509_svid_ttl)?;
        let jwt = in_range(SVID_TTL, "default_jwt_svid_ttl", raw.default_jwt_svid_ttl)?;
        let jwt_key_ttl = in_range(
            AUTHORITY_TTL,
            "jwt_key_ttl",
            raw.jwt_key_ttl.unwrap_or(ca_ttl),
        )?;
        let agent_svid_ttl = in_range(
            SVID_TTL,
            "agent_svid_ttl",
            raw.agent_svid_ttl.unwrap_or(x509),
        )?;
        let tick = in_range(
            INTERVAL,
            "rotation_check_interval",
            raw.rotation_check_interval,
        )?;
        for (name, d) in [
            ("default_x509_svid_ttl", x509),
            ("agent_svid_ttl", agent_svid_ttl),
        ] {
            if d >= ca_ttl {
                return Err(invalid(format!(
                    "{name} ({}s) must be shorter than ca_ttl ({}s): an SVID never outlives its issuer",
                    d.num_seconds(),
                    ca_ttl.num_seconds()
                )));
            }
        }
        // A downstream server has no JWT key (JWT-SVIDs are signed upstream).
        if raw.upstream.is_none() && jwt >= jwt_key_ttl {
            return Err(invalid(format!(
                "default_jwt_svid_ttl ({}s) must be shorter than jwt_key_ttl ({}s)",
                jwt.num_seconds(),
                jwt_key_ttl.num_seconds()
            )));
        }
        let mut warnings = Vec::new();
        for (name, d) in [
            ("default_x509_svid_ttl", x509),
            ("agent_svid_ttl", agent_svid_ttl),
        ] {
            if let Some(w) = trustdeck_pki::rotation::svid_ttl_warning(name, d, ca_ttl) {
                warnings.push(w);
            }
        }
        if raw.upstream.is_none()
            && let Some(w) =
                trustdeck_pki::rotation::svid_ttl_warning("default_jwt_svid_ttl", jwt, jwt_key_ttl)
        {
            warnings.push(w);
        }
        let server_spiffe_id = match &raw.server_spiffe_id {
            Some(s) => SpiffeId::parse(s).map_err(|e| invalid(format!("server_spiffe_id: {e}")))?,
            None => trustdeck_transport::connect::default_server_id(&trust_domain),
        };
        if server_spiffe_id.trust_domain() != &trust_domain {
            return Err(invalid(format!(
                "server_spiffe_id {server_spiffe_id} is not in trust domain {trust_domain}"
            )));
        }
        let upstream = match &raw.upstream {
            None => None,
            Some(u) => {
                let spiffe_id = match &u.spiffe_id {
                    Some(s) => SpiffeId::parse(s)
                        .map_err(|e| invalid(format!("upstream.spiffe_id: {e}")))?,
                    None => trustdeck_transport::connect::default_server_id(&trust_domain),
                };
                let own_spiffe_id = u
                    .own_spiffe_id
                    .as_deref()
                    .map(SpiffeId::parse)
                    .transpose()
                    .map_err(|e| invalid(format!("upstream.own_spiffe_id: {e}")))?;
                let bundle_poll_interval = match &u.bundle_poll_interval {
                    Some(d) => parse_duration(d)
                        .map_err(|e| invalid(format!("upstream.bundle_poll_interval: {e}")))?,
                    None => Duration::milliseconds(250),
                };
                let bundle_poll_interval = in_range(
                    INTERVAL,
                    "upstream.bundle_poll_interval",
                    bundle_poll_interval,
                )?;
                absolute_path("upstream.workload_api_socket", &u.workload_api_socket)
                    .map_err(path_rule)?;
                Some(Upstream {
                    address: u.address.clone(),
                    spiffe_id,
                    workload_api_socket: u.workload_api_socket.clone(),
                    own_spiffe_id,
                    bundle_poll_interval,
                })
            }
        };
        if let KeyManagerConfig::Pkcs11 {
            token_label,
            slot,
            pin_file,
            pin_env,
            pin,
            ..
        } = &raw.key_manager
        {
            if pin.is_some() {
                return Err(invalid(
                    "key_manager: a PIN must not be written in the config file; use pin_file or pin_env"
                        .into(),
                ));
            }
            if pin_file.is_some() == pin_env.is_some() {
                return Err(invalid(
                    "key_manager pkcs11 needs exactly one of pin_file or pin_env".into(),
                ));
            }
            if token_label.is_none() && slot.is_none() {
                return Err(invalid(
                    "key_manager pkcs11 needs token_label (or slot) to find the token".into(),
                ));
            }
        }
        let rl = &raw.rate_limit;
        if !(rl.signs_per_second > 0.0 && rl.burst >= 1.0 && rl.attestations_per_second > 0.0) {
            return Err(invalid(
                "rate_limit: signs_per_second and attestations_per_second must be > 0 and burst >= 1"
                    .into(),
            ));
        }
        check_connections(&raw.connections).map_err(&invalid)?;
        let admin_access = raw
            .admin
            .access(&raw.admin_allowed_uids)
            .map_err(|e| invalid(e.to_string()))?;
        let default_name = if upstream.is_some() {
            "downstream"
        } else {
            "upstream"
        };
        let name = raw.name.unwrap_or_else(|| default_name.to_string());
        let segment = raw.segment.unwrap_or_else(|| {
            if upstream.is_some() {
                name.clone()
            } else {
                "root".to_string()
            }
        });
        Ok(Config {
            source: source.to_string(),
            trust_domain,
            bind_address,
            data_dir: raw.data_dir,
            datastore,
            admin_socket,
            admin_allowed_uids: raw.admin_allowed_uids,
            admin_access,
            admin_bind_address: raw.admin.bind_address,
            name,
            segment,
            ca_ttl,
            ca_common_name: raw.ca_common_name,
            jwt_key_ttl,
            default_x509_svid_ttl: x509,
            default_jwt_svid_ttl: jwt,
            agent_svid_ttl,
            rotation_check_interval: tick,
            key_manager: raw.key_manager,
            node_attestation: raw.node_attestation,
            rate_limit: raw.rate_limit,
            connections: raw.connections,
            server_spiffe_id,
            upstream,
            warnings,
            reinitialize: false,
        })
    }

    /// Directory of the disk key manager.
    pub fn key_dir(&self) -> Option<PathBuf> {
        match &self.key_manager {
            KeyManagerConfig::Disk { dir } => {
                Some(dir.clone().unwrap_or_else(|| self.data_dir.join("keys")))
            }
            KeyManagerConfig::Memory | KeyManagerConfig::Pkcs11 { .. } => None,
        }
    }
}

/// A `[connections]` timeout.
const CONNECTION_TIMEOUT: DurationRange = DurationRange {
    min: Duration::milliseconds(100),
    max: Duration::minutes(10),
};

fn check_connections(c: &ConnectionsConfig) -> Result<(), String> {
    for (key, d) in [
        ("connections.handshake_timeout", c.handshake_timeout),
        ("connections.idle_timeout", c.idle_timeout),
    ] {
        if let Some(d) = d {
            CONNECTION_TIMEOUT
                .check(key, d)
                .map_err(|e| e.to_string())?;
        }
    }
    if c.max_handshaking == Some(0) || c.max_unidentified == Some(0) {
        return Err("connections: max_handshaking and max_unidentified must be >= 1".into());
    }
    Ok(())
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl ConnectionsConfig {
    /// The limits for this process: its descriptor-based defaults, overridden by the keys set.
    pub fn limits(&self) -> trustdeck_transport::ConnectionLimits {
        let mut l = trustdeck_transport::ConnectionLimits::for_this_process();
        let std = |d: Duration| d.to_std().ok();
        if let Some(d) = self.handshake_timeout.and_then(std) {
            l.handshake_timeout = d;
        }
        if let Some(d) = self.idle_timeout.and_then(std) {
            l.idle_timeout = d;
        }
        l.max_handshaking = self.max_handshaking.unwrap_or(l.max_handshaking);
        l.max_unidentified = self.max_unidentified.unwrap_or(l.max_unidentified);
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
trust_domain = "example.org"
bind_address = "127.0.0.1:0"
data_dir = "/var/lib/trustdeck"
ca_ttl = "24h"
default_x509_svid_ttl = "1h"

[key_manager]
type = "disk"
"#;

    #[test]
    fn connection_limits_are_bounded_and_override_the_defaults() {
        let with = |s: &str| Config::parse(&format!("{GOOD}\n[connections]\n{s}\n"), "t.toml");
        let c = with("idle_timeout = \"3s\"\nmax_unidentified = 5").unwrap();
        let l = c.connections.limits();
        assert_eq!(l.idle_timeout, std::time::Duration::from_secs(3));
        assert_eq!(l.max_unidentified, 5);
        let defaults = trustdeck_transport::ConnectionLimits::for_this_process();
        assert_eq!(l.handshake_timeout, defaults.handshake_timeout);
        assert_eq!(l.max_handshaking, defaults.max_handshaking);
        let e = with("idle_timeout = \"1h\"").unwrap_err().to_string();
        assert!(e.contains("connections.idle_timeout"), "{e}");
        let e = with("max_handshaking = 0").unwrap_err().to_string();
        assert!(e.contains("max_handshaking"), "{e}");
    }

    #[test]
    fn parses_defaults() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        assert_eq!(c.trust_domain.as_str(), "example.org");
        assert_eq!(c.datastore, "sqlite:///var/lib/trustdeck/datastore.sqlite3");
        assert_eq!(
            c.admin_socket,
            PathBuf::from("/var/lib/trustdeck/admin.sock")
        );
        assert_eq!(c.jwt_key_ttl, Duration::hours(24));
        assert_eq!(c.default_jwt_svid_ttl, Duration::minutes(5));
        assert_eq!(c.key_dir(), Some(PathBuf::from("/var/lib/trustdeck/keys")));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn truncated_config_names_the_position() {
        let cut = &GOOD[..GOOD.find("ca_ttl").unwrap() + 10];
        let e = Config::parse(cut, "t.toml").unwrap_err().to_string();
        assert!(e.contains("t.toml") && e.contains("line"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Config::parse(&format!("{GOOD}\nca_tll = \"1h\"\n"), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ca_tll"), "{e}");
        let e = Config::parse(&GOOD.replace("24h", "24x"), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown unit 'x'"), "{e}");
        let e = Config::parse(&GOOD.replace("example.org", "Example.org"), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("trust_domain"), "{e}");
        let e = Config::parse(&GOOD.replace("\"1h\"", "\"48h\""), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("never outlives"), "{e}");
    }

    #[test]
    fn a_written_file_reads_back_the_same() {
        let mut f = ConfigFile::new("example.org", "/var/lib/trustdeck");
        f.name = Some("gcp".into());
        f.ca_ttl = Duration::hours(6);
        f.agent_svid_ttl = Some(Duration::minutes(10));
        f.rotation_check_interval = Duration::milliseconds(1500);
        f.key_manager = KeyManagerConfig::Pkcs11 {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token_label: Some("t".into()),
            slot: None,
            key_label_prefix: "ca-".into(),
            pin_file: Some("/var/lib/trustdeck/pin".into()),
            pin_env: None,
            pin: None,
        };
        f.upstream = Some(UpstreamConfig {
            address: "127.0.0.1:8081".into(),
            spiffe_id: None,
            workload_api_socket: "/run/agent.sock".into(),
            own_spiffe_id: Some("spiffe://example.org/gcp".into()),
            bundle_poll_interval: None,
        });
        let text = toml::to_string(&f).unwrap();
        let back: ConfigFile = trustdeck_process::parse_toml(&text, "t.toml").unwrap();
        assert_eq!(back, f, "{text}");
        let c = Config::parse(&text, "t.toml").unwrap();
        assert_eq!(c.name, "gcp");
        assert_eq!(c.rotation_check_interval, Duration::milliseconds(1500));
        assert_eq!(
            c.upstream.map(|u| u.address).as_deref(),
            Some("127.0.0.1:8081")
        );
    }

    /// Issue 12, defect 6: `ca_ttl = "999999999999h"` passed `check-config` and panicked at
    /// `run`; `ca_ttl = "1s"` passed and could not start. Every duration has a range.
    #[test]
    fn every_duration_is_bounded_and_the_error_names_key_and_range() {
        let base = "trust_domain = \"example.org\"\ndata_dir = \"/var/lib/trustdeck\"\n";
        let upstream =
            "[upstream]\naddress = \"127.0.0.1:1\"\nworkload_api_socket = \"/run/a.sock\"\n";
        for (key, value) in [
            ("ca_ttl", "999999999999h"),
            ("ca_ttl", "36501d"),
            ("ca_ttl", "1s"),
            ("ca_ttl", "9s"),
            ("jwt_key_ttl", "999999999999h"),
            ("jwt_key_ttl", "1s"),
            ("default_x509_svid_ttl", "999999999999h"),
            ("default_x509_svid_ttl", "500ms"),
            ("default_jwt_svid_ttl", "500ms"),
            ("default_jwt_svid_ttl", "99999d"),
            ("agent_svid_ttl", "999ms"),
            ("agent_svid_ttl", "99999d"),
            ("rotation_check_interval", "1ms"),
            ("rotation_check_interval", "2h"),
            ("rotation_check_interval", "999999999999h"),
        ] {
            let text = format!("{base}{key} = \"{value}\"\n");
            let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(
                e.contains(&format!("{key} = {value}")) && e.contains("allowed "),
                "{key} = {value}: {e}"
            );
        }
        for value in ["1ms", "2h", "999999999999h"] {
            let text = format!("{base}{upstream}bundle_poll_interval = \"{value}\"\n");
            let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(
                e.contains("upstream.bundle_poll_interval") && e.contains("allowed "),
                "{value}: {e}"
            );
        }
    }

    #[test]
    fn the_bounds_themselves_are_accepted() {
        let text = "trust_domain = \"example.org\"\ndata_dir = \"/d\"\nca_ttl = \"36500d\"\n\
                    default_x509_svid_ttl = \"3650d\"\nrotation_check_interval = \"10ms\"\n";
        let c = Config::parse(text, "t.toml").unwrap();
        assert_eq!(c.ca_ttl, Duration::days(36500));
        let text = "trust_domain = \"example.org\"\ndata_dir = \"/d\"\nca_ttl = \"10s\"\n\
                    default_x509_svid_ttl = \"1s\"\ndefault_jwt_svid_ttl = \"1s\"\n\
                    rotation_check_interval = \"1h\"\n";
        let c = Config::parse(text, "t.toml").unwrap();
        assert_eq!(c.ca_ttl, Duration::seconds(10));
    }

    #[test]
    fn svid_ttl_above_a_sixth_of_ca_ttl_warns() {
        let c = Config::parse(&GOOD.replace("\"1h\"", "\"5h\""), "t.toml").unwrap();
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("one sixth"));
    }
}
