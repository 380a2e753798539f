//! The server's config file as written: [`ConfigFile`] and its sections, with their defaults
//! (tools such as the demo serialise it too).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::Duration;
use serde::{Deserialize, Serialize};
use trustdeck_pki::rotation::{de_duration, de_opt_duration, ser_duration, ser_opt_duration};

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
        /// Environment the module reads when it loads (SoftHSM2's `SOFTHSM2_CONF`), so that
        /// the config alone restarts the server: `run` starts itself again with these
        /// variables set when its environment lacks them, before anything else runs.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        environment: BTreeMap<String, String>,
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
    /// How long one datastore call waits for the database before failing (default 5s).
    #[serde(
        default,
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub datastore_timeout: Option<Duration>,
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
    /// How often a signed checkpoint of the audit chain is written; default 5 minutes.
    #[serde(
        default,
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub audit_checkpoint_interval: Option<Duration>,
    /// How old a signed bundle file or receipt may be when imported; default 30 days.
    #[serde(
        default,
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub bundle_import_max_age: Option<Duration>,
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
    /// Federation with other trust domains.
    #[serde(default, skip_serializing_if = "is_default")]
    pub federation: FederationSection,
}

/// `[federation]`: this server's part in federation with other trust domains.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FederationSection {
    /// `[federation.bundle_endpoint]`: serve this trust domain's bundle to partners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_endpoint: Option<BundleEndpointConfig>,
    /// No partner's bundle is fetched more often than this (default: SPIRE's one minute;
    /// tests and demos lower it).
    #[serde(
        default,
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_minimum: Option<Duration>,
}

/// The bundle endpoint's profile as written (`https_web`, `https_spiffe`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BundleEndpointProfileName {
    /// A serving certificate and key from files (Web PKI).
    HttpsWeb,
    /// The server's own X509-SVID.
    HttpsSpiffe,
}

/// `[federation.bundle_endpoint]` as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BundleEndpointConfig {
    /// Listen address (`IP:port`; port 0 picks a free port, written to `server.json`).
    pub bind_address: String,
    pub profile: BundleEndpointProfileName,
    /// `https_web`: PEM certificate chain (leaf first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_path: Option<PathBuf>,
    /// `https_web`: PEM private key of the certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_path: Option<PathBuf>,
    /// The `spiffe_refresh_hint` served (default: the bundle's own, a tenth of `ca_ttl`
    /// within bounds).
    #[serde(
        default,
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_hint: Option<Duration>,
}

impl ConfigFile {
    /// A file with `trust_domain` and `data_dir`, every other key at its default.
    pub fn new(trust_domain: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            bind_address: default_bind(),
            data_dir: data_dir.into(),
            datastore: None,
            datastore_timeout: None,
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
            audit_checkpoint_interval: None,
            bundle_import_max_age: None,
            key_manager: default_key_manager(),
            node_attestation: NodeAttestationConfig::default(),
            rate_limit: RateLimitConfig::default(),
            connections: ConnectionsConfig::default(),
            server_spiffe_id: None,
            upstream: None,
            federation: FederationSection::default(),
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
