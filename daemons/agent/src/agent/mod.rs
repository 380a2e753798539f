//! The agent's engine: node attestation, agent SVID renewal, entry sync, workload SVID
//! rotation and JWT-SVID minting, all against the server's node API.
//!
//! One loop ([`Agent::run`]) drives everything; workloads only ever read the published
//! [`Cache`]. Time is read from the injected clock.
//!
//! - [`error`]: [`AgentError`] and the classification of failed calls by their reason;
//! - `attest`: the pump of the attestation dialogue (`trustdeck_attest::agent`);
//! - `svid`: the agent SVID (install, persist, renew) and the bundle;
//! - `sync`: a sync round and the loop;
//! - `jwt`: JWT-SVIDs and their cache;
//! - [`taint`] (pure) and `reissue`: re-issue after a taint, and the held-SVID report.

mod attest;
pub mod error;
mod fault;
mod federated;
mod jwt;
mod reissue;
pub mod retry;
mod svid;
mod sync;
pub mod taint;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tonic::transport::Channel;
use trustdeck_process::clock::Clock;
use trustdeck_proto::admin::{ConnectivityState, StrandedReason};
use trustdeck_proto::node::node_client::NodeClient;
use trustdeck_spiffe::{Bundle, SpiffeId};
use trustdeck_transport::{SharedIdentity, SharedRoots};

use crate::cache::Cache;
use crate::config::Config;
use crate::state;

pub use error::AgentError;
pub use svid::jittered_renew_at;

/// Connection state to the server, for health and the admin stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// Connecting until the first sync round ends, degraded while retrying after a failed
    /// call, lost once the backoff is at its maximum, stranded once the server refuses the
    /// join token for good.
    pub state: ConnectivityState,
    /// When the state last changed.
    pub since: DateTime<Utc>,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Why the agent is stranded (state `Stranded`): its join token cannot work again.
    pub stranded: Option<StrandedReason>,
}

/// The agent engine, shared by the sync loop and the Workload API.
pub struct Agent {
    config: Config,
    clock: Arc<dyn Clock>,
    identity: SharedIdentity,
    roots: SharedRoots,
    client: Mutex<NodeClient<Channel>>,
    svid: Mutex<Option<svid::AgentSvid>>,
    cache_tx: watch::Sender<Arc<Cache>>,
    status_tx: watch::Sender<ServerStatus>,
    jwt_cache: Mutex<jwt::JwtCache>,
    taint: Mutex<taint::TaintTracker>,
    hub: Arc<trustdeck_topology::Hub>,
}

impl Agent {
    /// Builds the engine from its config and the stored (else the bootstrap) bundle, and
    /// takes up a stored agent SVID that is still valid.
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<Self>, AgentError> {
        state::ensure_dir(&config.data_dir)?;
        let stored = state::load_bundle(&config.data_dir, &config.trust_domain)?;
        let bundle = match stored {
            Some(b) if !config.rebootstrap_bundle => b,
            _ => bootstrap_bundle(&config)?,
        };
        if config.rebootstrap_bundle {
            tracing::warn!(path = %config.trust_bundle_path.display(), "--rebootstrap-bundle: trusting the bundle at trust_bundle_path instead of the stored one until the server sends its own");
        }
        let roots = SharedRoots::new(&bundle.x509_authorities).map_err(AgentError::Roots)?;
        let identity = SharedIdentity::new();
        let client = Self::make_client(&config, &identity, &roots)?;
        let (cache_tx, _) = watch::channel(Arc::new(Cache::new(Arc::new(bundle))));
        let now = clock.now();
        let (status_tx, _) = watch::channel(ServerStatus {
            state: ConnectivityState::Connecting,
            since: now,
            last_error: None,
            stranded: None,
        });
        let hub = Arc::new(trustdeck_topology::Hub::new(crate::observe::identity(
            &config, now,
        )));
        let agent = Arc::new(Self {
            config,
            clock,
            identity,
            roots,
            client: Mutex::new(client),
            svid: Mutex::new(None),
            cache_tx,
            status_tx,
            jwt_cache: Mutex::new(jwt::JwtCache::new(jwt::MAX_BYTES)),
            taint: Mutex::default(),
            hub,
        });
        agent.load_stored_svid();
        Ok(agent)
    }

    fn make_client(
        config: &Config,
        identity: &SharedIdentity,
        roots: &SharedRoots,
    ) -> Result<NodeClient<Channel>, AgentError> {
        trustdeck_transport::connect::node_client(
            &config.server_address,
            identity,
            roots,
            &config.server_spiffe_id,
        )
        .map_err(AgentError::Tls)
    }

    fn client(&self) -> NodeClient<Channel> {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A fresh connection, so the server sees the current agent SVID.
    fn reconnect(&self) -> Result<(), AgentError> {
        let c = Self::make_client(&self.config, &self.identity, &self.roots)?;
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = c;
        Ok(())
    }

    /// The agent's SPIFFE ID, once attested.
    pub fn agent_id(&self) -> Option<SpiffeId> {
        self.svid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| s.id.clone())
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The clock everything in the agent reads the time from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Subscribes to cache changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Cache>> {
        self.cache_tx.subscribe()
    }

    /// The cache as last published.
    pub fn cache(&self) -> Arc<Cache> {
        self.cache_tx.borrow().clone()
    }

    /// Subscribes to server-status changes.
    pub fn subscribe_status(&self) -> watch::Receiver<ServerStatus> {
        self.status_tx.subscribe()
    }

    /// Connection state to the server.
    pub fn server_status(&self) -> ServerStatus {
        self.status_tx.borrow().clone()
    }

    fn set_status(
        &self,
        state: ConnectivityState,
        err: Option<String>,
        stranded: Option<StrandedReason>,
    ) {
        let now = self.clock.now();
        self.status_tx.send_if_modified(|s| {
            let changed = s.state != state || s.last_error != err || s.stranded != stranded;
            if s.state != state {
                s.since = now;
            }
            s.state = state;
            s.last_error = err;
            s.stranded = stranded;
            changed
        });
    }

    /// What the admin `Watch` stream publishes.
    pub fn hub(&self) -> &Arc<trustdeck_topology::Hub> {
        &self.hub
    }

    /// The agent SVID's SPIFFE ID and validity, once attested.
    pub fn svid_window(&self) -> Option<(SpiffeId, DateTime<Utc>, DateTime<Utc>)> {
        self.svid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| (s.id.clone(), s.not_before, s.not_after))
    }

    /// The agent SVID chain (DER, leaf first), once attested.
    pub fn svid_chain(&self) -> Vec<Vec<u8>> {
        self.identity
            .current()
            .map(|ck| ck.cert.iter().map(|c| c.as_ref().to_vec()).collect())
            .unwrap_or_default()
    }

    /// A TLS server configuration presenting the agent SVID and trusting the bundle (for the
    /// admin API over mTLS).
    pub fn tls_server_config(&self) -> Result<Arc<rustls::ServerConfig>, AgentError> {
        trustdeck_transport::tls::server_config(self.identity.clone(), self.roots.clone())
            .map_err(AgentError::Tls)
    }
}

/// The bundle at `trust_bundle_path`, which the agent trusts until its first attestation.
fn bootstrap_bundle(config: &Config) -> Result<Bundle, AgentError> {
    let path = &config.trust_bundle_path;
    let text = std::fs::read_to_string(path).map_err(|source| AgentError::BootstrapBundleFile {
        path: path.clone(),
        source,
    })?;
    Bundle::from_pem_x509(&config.trust_domain, &text).map_err(|source| {
        AgentError::BootstrapBundle {
            path: path.clone(),
            source,
        }
    })
}
