//! The server's TOML configuration: the file as written ([`ConfigFile`], which tools such as
//! the demo also serialise) and the checked [`Config`], parsed without touching the network or
//! disk.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::Duration;
use trustdeck_pki::bounds::{
    AUDIT_CHECKPOINT_INTERVAL, AUTHORITY_TTL, DATASTORE_WAIT, DurationRange, INTERVAL, SVID_TTL,
};
use trustdeck_spiffe::{SpiffeId, TrustDomain};

pub use trustdeck_pki::rotation::parse_duration;

pub use trustdeck_process::ConfigError;
use trustdeck_process::{PathRule, absolute_path};

mod federation;
mod file;
#[cfg(test)]
mod tests;

pub use federation::{BundleEndpoint, ServingProfile};
pub use file::*;

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
    /// The admin socket's mode and group, so the configured uids can connect.
    pub admin_socket_access: trustdeck_admin::socket::SocketAccess,
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
    /// How often a signed checkpoint of the audit chain is written (when it moved).
    pub audit_checkpoint_interval: Duration,
    /// How old a signed bundle file or receipt may be when imported.
    pub bundle_import_max_age: Duration,
    pub key_manager: KeyManagerConfig,
    pub node_attestation: NodeAttestationConfig,
    pub rate_limit: RateLimitConfig,
    pub connections: ConnectionsConfig,
    /// The SPIFFE ID of this server's TLS SVID and the parent of node-alias entries.
    pub server_spiffe_id: SpiffeId,
    /// Downstream role: the upstream link. `None` for the upstream (root) server.
    pub upstream: Option<Upstream>,
    /// `[federation.bundle_endpoint]`: serve the bundle to other trust domains.
    pub bundle_endpoint: Option<BundleEndpoint>,
    /// `federation.refresh_minimum`: no partner's bundle is fetched more often.
    pub federation_refresh_minimum: Duration,
    /// Non-fatal problems, logged at start and reported by `healthcheck`.
    pub warnings: Vec<String>,
    /// `run --reinitialize`: the operator accepts a new CA on an emptied datastore although
    /// keys of an earlier one remain (never set from the file).
    pub reinitialize: bool,
    /// `run --take-over-ca`: the operator gives this server the CA journal of another server
    /// that is gone for good (never set from the file).
    pub take_over_ca: bool,
    /// `run --replace-lost-keys`: the operator declares the CA keys the key manager no longer
    /// holds lost for good; their authorities are tainted and replaced (never set from the file).
    pub replace_lost_keys: bool,
    /// How long one datastore call waits for the database (`datastore_timeout`).
    pub datastore_timeout: std::time::Duration,
}

/// `datastore_timeout` unless configured.
pub const DEFAULT_DATASTORE_TIMEOUT_SECS: i64 = 5;
/// `bundle_import_max_age` unless configured: 30 days.
pub const DEFAULT_BUNDLE_IMPORT_MAX_AGE_DAYS: i64 = 30;

/// `bundle_import_max_age`: from a minute (a file carried at once) to a year.
const BUNDLE_IMPORT_MAX_AGE: DurationRange = DurationRange {
    min: Duration::minutes(1),
    max: Duration::days(366),
};

/// How often a signed audit checkpoint is written unless configured: 5 minutes.
pub const DEFAULT_AUDIT_CHECKPOINT_SECS: i64 = 300;

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
        let datastore_timeout = in_range(
            DATASTORE_WAIT,
            "datastore_timeout",
            raw.datastore_timeout
                .unwrap_or(Duration::seconds(DEFAULT_DATASTORE_TIMEOUT_SECS)),
        )?
        .to_std()
        .map_err(|e| invalid(format!("datastore_timeout: {e}")))?;
        let tick = in_range(
            INTERVAL,
            "rotation_check_interval",
            raw.rotation_check_interval,
        )?;
        let audit_checkpoint_interval = in_range(
            AUDIT_CHECKPOINT_INTERVAL,
            "audit_checkpoint_interval",
            raw.audit_checkpoint_interval
                .unwrap_or(Duration::seconds(DEFAULT_AUDIT_CHECKPOINT_SECS)),
        )?;
        let bundle_import_max_age = in_range(
            BUNDLE_IMPORT_MAX_AGE,
            "bundle_import_max_age",
            raw.bundle_import_max_age
                .unwrap_or(Duration::days(DEFAULT_BUNDLE_IMPORT_MAX_AGE_DAYS)),
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
            environment,
            ..
        } = &raw.key_manager
        {
            if let Some(name) = environment
                .iter()
                .find(|(k, v)| k.is_empty() || k.contains(['=', '\0']) || v.contains('\0'))
                .map(|(k, _)| k)
            {
                return Err(invalid(format!(
                    "key_manager.environment: {name:?} is not a usable environment variable"
                )));
            }
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
        let bundle_endpoint =
            federation::check(&raw.federation, raw.upstream.is_some()).map_err(&invalid)?;
        let federation_refresh_minimum =
            federation::refresh_minimum(&raw.federation).map_err(&invalid)?;
        let admin_access = raw
            .admin
            .access(&raw.admin_allowed_uids)
            .map_err(|e| invalid(e.to_string()))?;
        let (admin_socket_access, unreachable) = raw
            .admin
            .socket(&admin_access, &admin_socket, &raw.data_dir)
            .map_err(|e| invalid(e.to_string()))?;
        warnings.extend(unreachable);
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
            admin_socket_access,
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
            audit_checkpoint_interval,
            bundle_import_max_age,
            key_manager: raw.key_manager,
            node_attestation: raw.node_attestation,
            rate_limit: raw.rate_limit,
            connections: raw.connections,
            server_spiffe_id,
            upstream,
            bundle_endpoint,
            federation_refresh_minimum,
            warnings,
            reinitialize: false,
            take_over_ca: false,
            replace_lost_keys: false,
            datastore_timeout,
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
