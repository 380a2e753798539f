//! The agent's engine: node attestation, agent SVID renewal, entry sync, workload SVID
//! rotation and JWT-SVID minting, all against the server's node API.
//!
//! One loop (`run`) drives everything; workloads only ever read the published [`Cache`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Status};
use trustdeck_pki::SigningKey;
use trustdeck_pki::keys::SoftwareKey;
use trustdeck_proto::admin::{ConnectivityState, EventKind};
use trustdeck_proto::node::node_client::NodeClient;
use trustdeck_proto::node::*;
use trustdeck_spiffe::{Bundle, SpiffeId, x509};
use trustdeck_transport::{SharedIdentity, SharedRoots};

use crate::cache::{Cache, LocalEntry, WorkloadSvid, local_entries};
use crate::config::{Config, NodeAttestation};
use crate::state;

/// Most CSRs sent in one call.
const BATCH: usize = 100;

/// Errors of the agent engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The server refused attestation for a reason retrying will not fix.
    #[error("node attestation refused: {0}")]
    AttestationRefused(String),
    /// The server could not be reached or failed.
    #[error("server {addr} unreachable: {message}")]
    Unreachable {
        /// Address.
        addr: String,
        /// Cause.
        message: String,
    },
    /// The agent is not (or no longer) attested: evicted, or its SVID expired.
    #[error("agent is not attested: {0}")]
    NotAttested(String),
    /// The agent is banned.
    #[error("agent is banned: {0}")]
    Banned(String),
    /// Local state or configuration problem.
    #[error("{0}")]
    Local(String),
}

impl AgentError {
    fn from_status(addr: &str, s: Status) -> Self {
        let msg = s.message().to_string();
        match s.code() {
            Code::PermissionDenied if msg.contains("banned") => AgentError::Banned(msg),
            Code::PermissionDenied | Code::Unauthenticated => AgentError::NotAttested(msg),
            _ => AgentError::Unreachable {
                addr: addr.to_string(),
                message: format!("{msg} ({:?})", s.code()),
            },
        }
    }
}

/// Connection state to the server, for health and (later) the admin stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// Degraded while retrying after a failed call, lost once the backoff is at its maximum.
    pub state: ConnectivityState,
    /// Since when.
    pub since: DateTime<Utc>,
    /// The last error, if any.
    pub last_error: Option<String>,
}

struct AgentSvid {
    id: SpiffeId,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    renew_at: DateTime<Utc>,
}

/// JWT-SVIDs by (entry id, sorted audience): token and when to mint a new one.
type JwtCache = HashMap<(String, Vec<String>), (String, DateTime<Utc>)>;

/// The agent engine, shared by the sync loop and the Workload API.
pub struct Agent {
    config: Config,
    identity: SharedIdentity,
    roots: SharedRoots,
    client: Mutex<NodeClient<Channel>>,
    svid: Mutex<Option<AgentSvid>>,
    cache_tx: watch::Sender<Arc<Cache>>,
    status_tx: watch::Sender<ServerStatus>,
    jwt_cache: Mutex<JwtCache>,
    hub: Arc<trustdeck_topology::Hub>,
}

fn leaf_window(chain: &[Vec<u8>]) -> Result<(SpiffeId, DateTime<Utc>, DateTime<Utc>), AgentError> {
    let leaf = chain
        .first()
        .ok_or_else(|| AgentError::Local("empty SVID chain".into()))?;
    let info = x509::check_leaf(leaf).map_err(|e| AgentError::Local(format!("SVID: {e}")))?;
    Ok((info.spiffe_id, info.not_before, info.not_after))
}

/// Renewal instant: half the lifetime, minus up to a tenth of it as jitter so many SVIDs issued
/// together do not all renew at once.
pub fn jittered_renew_at(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    jitter: f64,
) -> DateTime<Utc> {
    let life = not_after - not_before;
    let half = trustdeck_pki::rotation::renew_at(not_before, not_after);
    let j = (life.num_milliseconds() as f64 * 0.1 * jitter.clamp(0.0, 1.0)) as i64;
    half - Duration::milliseconds(j)
}

impl Agent {
    /// Builds the engine from its config and the bootstrap (or stored) bundle.
    pub fn new(config: Config) -> Result<Arc<Self>, AgentError> {
        state::ensure_dir(&config.data_dir).map_err(|e| AgentError::Local(e.to_string()))?;
        let bundle = match state::load_bundle(&config.data_dir, &config.trust_domain) {
            Ok(Some(b)) => b,
            Ok(None) => {
                let text = std::fs::read_to_string(&config.trust_bundle_path).map_err(|e| {
                    AgentError::Local(format!(
                        "trust_bundle_path {}: {e}",
                        config.trust_bundle_path.display()
                    ))
                })?;
                Bundle::from_pem_x509(&config.trust_domain, &text).map_err(|e| {
                    AgentError::Local(format!(
                        "trust_bundle_path {}: {e}",
                        config.trust_bundle_path.display()
                    ))
                })?
            }
            Err(e) => return Err(AgentError::Local(e.to_string())),
        };
        let roots = SharedRoots::new(&bundle.x509_authorities)
            .map_err(|e| AgentError::Local(format!("trust bundle: {e}")))?;
        let identity = SharedIdentity::new();
        let client = Self::make_client(&config, &identity, &roots)?;
        let (cache_tx, _) = watch::channel(Arc::new(Cache::new(Arc::new(bundle))));
        let (status_tx, _) = watch::channel(ServerStatus {
            state: ConnectivityState::Lost,
            since: Utc::now(),
            last_error: Some("not connected yet".into()),
        });
        let hub = Arc::new(trustdeck_topology::Hub::new(crate::observe::identity(
            &config,
            Utc::now(),
        )));
        let agent = Arc::new(Self {
            config,
            identity,
            roots,
            client: Mutex::new(client),
            svid: Mutex::new(None),
            cache_tx,
            status_tx,
            jwt_cache: Mutex::new(HashMap::new()),
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
        .map_err(|e| AgentError::Local(e.to_string()))
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

    fn load_stored_svid(&self) {
        match state::load_svid(&self.config.data_dir) {
            Ok(Some(s)) => match self.install_svid(&s.chain, &s.key_pkcs8, false) {
                Ok(()) => tracing::info!("loaded stored agent SVID"),
                Err(e) => tracing::warn!(error = %e, "stored agent SVID unusable; will attest"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "stored agent SVID unreadable; will attest"),
        }
    }

    fn install_svid(&self, chain: &[Vec<u8>], key: &[u8], persist: bool) -> Result<(), AgentError> {
        let (id, nb, na) = leaf_window(chain)?;
        if na <= Utc::now() {
            return Err(AgentError::NotAttested(format!(
                "agent SVID expired at {na}"
            )));
        }
        self.identity
            .set(chain.to_vec(), key)
            .map_err(|e| AgentError::Local(e.to_string()))?;
        if persist {
            state::save_svid(&self.config.data_dir, chain, key)
                .map_err(|e| AgentError::Local(e.to_string()))?;
        }
        // Half life counts from when the SVID was received, not from its backdated not_before.
        let received = std::cmp::max(nb, Utc::now());
        *self.svid.lock().unwrap_or_else(|p| p.into_inner()) = Some(AgentSvid {
            id,
            not_before: nb,
            not_after: na,
            renew_at: trustdeck_pki::rotation::renew_at(received, na),
        });
        self.reconnect()
    }

    /// The agent's SPIFFE ID, once attested.
    pub fn agent_id(&self) -> Option<SpiffeId> {
        self.svid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| s.id.clone())
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Subscribes to cache changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Cache>> {
        self.cache_tx.subscribe()
    }

    /// The current cache.
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

    fn set_status(&self, state: ConnectivityState, err: Option<String>) {
        self.status_tx.send_if_modified(|s| {
            let changed = s.state != state || s.last_error != err;
            if s.state != state {
                s.since = Utc::now();
            }
            s.state = state;
            s.last_error = err;
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
            .map_err(|e| AgentError::Local(e.to_string()))
    }

    /// Attests the node with the configured method and installs the resulting SVID; the
    /// outcome is an admin-stream event.
    pub async fn attest(&self) -> Result<(), AgentError> {
        let r = self.attest_once().await;
        let (sev, kind, msg) = match &r {
            Ok(()) => (
                trustdeck_topology::hub::Severity::Info,
                EventKind::AttestationOk,
                format!(
                    "attested to {} as {}",
                    self.config.server_address,
                    self.agent_id().map(|i| i.to_string()).unwrap_or_default()
                ),
            ),
            Err(e) => (
                trustdeck_topology::hub::Severity::Warning,
                EventKind::AttestationFailed,
                format!("attestation to {} failed: {e}", self.config.server_address),
            ),
        };
        self.hub.event(sev, kind, msg, "", Utc::now());
        r
    }

    async fn attest_once(&self) -> Result<(), AgentError> {
        let (payload, node_key) = match &self.config.node_attestation {
            NodeAttestation::JoinToken { token, token_path } => {
                let t = match (token, token_path) {
                    (Some(t), _) => t.clone(),
                    (None, Some(p)) => std::fs::read_to_string(p)
                        .map_err(|e| {
                            AgentError::Local(format!("join token file {}: {e}", p.display()))
                        })?
                        .trim()
                        .to_string(),
                    (None, None) => {
                        return Err(AgentError::Local("no join token configured".into()));
                    }
                };
                (vec![t.into_bytes()], Prover::None)
            }
            NodeAttestation::X509pop {
                cert_path,
                key_path,
            } => {
                let certs = std::fs::read_to_string(cert_path)
                    .map_err(|e| {
                        AgentError::Local(format!("x509pop cert_path {}: {e}", cert_path.display()))
                    })
                    .and_then(|t| {
                        trustdeck_spiffe::pem::decode_certs(&t).map_err(|e| {
                            AgentError::Local(format!(
                                "x509pop cert_path {}: {e}",
                                cert_path.display()
                            ))
                        })
                    })?;
                let key_pem = std::fs::read_to_string(key_path).map_err(|e| {
                    AgentError::Local(format!("x509pop key_path {}: {e}", key_path.display()))
                })?;
                let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| {
                    AgentError::Local(format!("x509pop key_path {}: {e}", key_path.display()))
                })?;
                (certs, Prover::X509(key))
            }
            NodeAttestation::TpmDevid {
                tcti,
                devid_cert_path,
                devid_key_path,
                ek_cert_path,
            } => {
                let tcti = tcti
                    .clone()
                    .unwrap_or_else(trustdeck_tpm::device::default_tcti);
                let (chain, key, evidence) = tpm_evidence(
                    tcti.clone(),
                    devid_cert_path.clone(),
                    devid_key_path.clone(),
                    ek_cert_path.clone(),
                )
                .await?;
                (
                    chain,
                    Prover::Tpm {
                        tcti,
                        key,
                        evidence,
                    },
                )
            }
        };
        let kind = match &self.config.node_attestation {
            NodeAttestation::JoinToken { .. } => "join_token",
            NodeAttestation::X509pop { .. } => "x509pop",
            NodeAttestation::TpmDevid { .. } => "tpm_devid",
        };
        let (key, pkcs8) =
            SoftwareKey::ephemeral().map_err(|e| AgentError::Local(e.to_string()))?;
        let key: Arc<dyn SigningKey> = Arc::new(key);
        let csr = trustdeck_pki::csr::make_csr(&key, None)
            .map_err(|e| AgentError::Local(e.to_string()))?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let _ = tx
            .send(AttestRequest {
                step: Some(attest_request::Step::Params(AttestParams {
                    attestation_type: kind.into(),
                    payload,
                    csr,
                })),
            })
            .await;
        if let Prover::Tpm { evidence, .. } = &node_key {
            let _ = tx
                .send(AttestRequest {
                    step: Some(attest_request::Step::TpmDevidEvidence(evidence.clone())),
                })
                .await;
        }
        let addr = self.config.server_address.clone();
        let classify = |s: Status| match s.code() {
            Code::PermissionDenied | Code::InvalidArgument | Code::FailedPrecondition => {
                let mut m = s.message().to_string();
                if m.contains("already used") {
                    m.push_str(
                        "; a join token works once: this agent was evicted or lost its SVID, give it a new join token",
                    );
                }
                AgentError::AttestationRefused(m)
            }
            _ => AgentError::from_status(&addr, s),
        };
        let mut inbound = self
            .client()
            .attest(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(classify)?
            .into_inner();
        while let Some(msg) = inbound.next().await {
            let msg = msg.map_err(classify)?;
            if let Some(ch) = msg.tpm_devid_challenge {
                let Prover::Tpm { tcti, key, .. } = &node_key else {
                    return Err(AgentError::AttestationRefused(format!(
                        "server sent a TPM challenge for {kind} attestation"
                    )));
                };
                let proof = tpm_answer(tcti.clone(), key.clone(), ch).await?;
                let _ = tx
                    .send(AttestRequest {
                        step: Some(attest_request::Step::TpmDevidProof(proof)),
                    })
                    .await;
                continue;
            }
            match msg.step {
                Some(attest_response::Step::Challenge(nonce)) => {
                    let Prover::X509(k) = &node_key else {
                        return Err(AgentError::AttestationRefused(format!(
                            "server sent an x509pop challenge for {kind} attestation"
                        )));
                    };
                    let sig = rcgen::SigningKey::sign(
                        k,
                        &trustdeck_pki::x509pop::challenge_message(&nonce),
                    )
                    .map_err(|e| AgentError::Local(format!("x509pop signature: {e}")))?;
                    let _ = tx
                        .send(AttestRequest {
                            step: Some(attest_request::Step::ChallengeResponse(sig)),
                        })
                        .await;
                }
                Some(attest_response::Step::Result(r)) => {
                    self.install_svid(&r.svid_chain, &pkcs8, true)?;
                    if let Ok(b) = Bundle::from_json(&self.config.trust_domain, &r.bundle) {
                        self.apply_bundle(b);
                    }
                    tracing::info!(agent = %r.spiffe_id, method = kind, "node attested");
                    return Ok(());
                }
                None => {}
            }
        }
        Err(AgentError::Unreachable {
            addr: self.config.server_address.clone(),
            message: "attestation stream ended without a result".into(),
        })
    }

    async fn renew_agent_svid(&self) -> Result<(), AgentError> {
        let (key, pkcs8) =
            SoftwareKey::ephemeral().map_err(|e| AgentError::Local(e.to_string()))?;
        let key: Arc<dyn SigningKey> = Arc::new(key);
        let csr = trustdeck_pki::csr::make_csr(&key, None)
            .map_err(|e| AgentError::Local(e.to_string()))?;
        let r = self
            .client()
            .renew_agent(RenewAgentRequest { csr })
            .await
            .map_err(|s| AgentError::from_status(&self.config.server_address, s))?
            .into_inner();
        self.install_svid(&r.svid_chain, &pkcs8, true)?;
        tracing::info!("agent SVID renewed");
        Ok(())
    }

    fn apply_bundle(&self, b: Bundle) {
        let cur = self.cache();
        if cur.bundle.sequence == b.sequence && cur.bundle.x509_authorities == b.x509_authorities {
            return;
        }
        if let Err(e) = self.roots.set(&b.x509_authorities) {
            tracing::error!(error = %e, "bundle has no usable X.509 authority; keeping the old one");
            return;
        }
        if let Err(e) = state::save_bundle(&self.config.data_dir, &b) {
            tracing::warn!(error = %e, "could not persist bundle");
        }
        tracing::info!(sequence = b.sequence, "trust bundle updated");
        self.publish(|c| c.bundle = Arc::new(b));
    }

    fn publish(&self, f: impl FnOnce(&mut Cache)) {
        let mut next = self.cache().next_revision();
        f(&mut next);
        next.reindex();
        self.cache_tx.send_replace(Arc::new(next));
    }

    /// One round: renew the agent SVID if due, sync entries and bundle, sign what is missing
    /// or due for rotation.
    pub async fn sync_once(&self, now: DateTime<Utc>) -> Result<(), AgentError> {
        enum Step {
            Attest,
            Renew,
            Nothing,
        }
        let step = match self.svid.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            None => Step::Attest,
            Some(s) if now >= s.not_after => Step::Attest,
            Some(s) if now >= s.renew_at => Step::Renew,
            Some(_) => Step::Nothing,
        };
        match step {
            Step::Attest => self.attest().await?,
            Step::Renew => self.renew_agent_svid().await?,
            Step::Nothing => {}
        }
        let addr = self.config.server_address.clone();
        let resp = self
            .client()
            .sync_entries(SyncEntriesRequest {})
            .await
            .map_err(|s| AgentError::from_status(&addr, s))?
            .into_inner();
        if let Ok(b) = Bundle::from_json(&self.config.trust_domain, &resp.bundle) {
            self.apply_bundle(b);
        }
        let entries = local_entries(&resp.entries);
        let cache = self.cache();
        let needs: Vec<&LocalEntry> = entries
            .iter()
            .filter(|e| match cache.svids.get(&e.id) {
                None => true,
                Some(s) => now >= s.renew_at || s.spiffe_id != e.spiffe_id,
            })
            .collect();
        let mut fresh: Vec<Arc<WorkloadSvid>> = Vec::new();
        let mut sign_error = None;
        for chunk in needs.chunks(BATCH) {
            let mut keys = Vec::with_capacity(chunk.len());
            let mut csrs = Vec::with_capacity(chunk.len());
            for e in chunk {
                let (key, pkcs8) =
                    SoftwareKey::ephemeral().map_err(|e| AgentError::Local(e.to_string()))?;
                let key: Arc<dyn SigningKey> = Arc::new(key);
                let csr = trustdeck_pki::csr::make_csr(&key, Some(&e.spiffe_id))
                    .map_err(|e| AgentError::Local(e.to_string()))?;
                keys.push(pkcs8);
                csrs.push(SvidCsr {
                    entry_id: e.id.clone(),
                    csr,
                });
            }
            // A failed batch (rate limited, server gone) keeps what earlier batches got.
            let results = match self
                .client()
                .sign_x509_svids(SignX509SvidsRequest { csrs })
                .await
            {
                Ok(r) => r.into_inner().results,
                Err(s) => {
                    sign_error = Some(AgentError::from_status(&addr, s));
                    break;
                }
            };
            for (r, key) in results.into_iter().zip(keys) {
                if r.error_code != 0 {
                    tracing::warn!(entry = %r.entry_id, error = %r.error_message, "workload SVID refused");
                    continue;
                }
                let (id, nb, na) = match leaf_window(&r.chain) {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(entry = %r.entry_id, error = %e, "server returned a bad SVID");
                        continue;
                    }
                };
                fresh.push(Arc::new(WorkloadSvid {
                    entry_id: r.entry_id,
                    spiffe_id: id,
                    chain_der: r.chain.concat(),
                    chain: r.chain,
                    key_pkcs8: key,
                    not_before: nb,
                    not_after: na,
                    renew_at: jittered_renew_at(
                        std::cmp::max(nb, now),
                        na,
                        rand::rng().random::<f64>(),
                    ),
                }));
            }
        }
        let entries_changed = cache.entries != entries;
        // SVIDs of deleted entries, and expired ones (never served), leave the cache.
        let stale: Vec<String> = cache
            .svids
            .iter()
            .filter(|(id, s)| s.not_after <= now || !entries.iter().any(|e| &e.id == *id))
            .map(|(id, _)| id.clone())
            .collect();
        if entries_changed || !fresh.is_empty() || !stale.is_empty() || !cache.synced {
            if !fresh.is_empty() {
                tracing::info!(count = fresh.len(), "workload SVIDs issued or rotated");
            }
            self.publish(|c| {
                c.entries = entries;
                for id in &stale {
                    c.svids.remove(id);
                }
                for s in fresh {
                    c.svids.insert(s.entry_id.clone(), s);
                }
                c.synced = true;
            });
        }
        match sign_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs sync rounds until `shutdown` turns true; the server being unreachable only slows
    /// the rounds down (exponential backoff): cached SVIDs keep being served.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let base = self
            .config
            .sync_interval
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(1));
        let max = self
            .config
            .max_backoff
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(30));
        let mut wait = base;
        loop {
            match self.sync_once(Utc::now()).await {
                Ok(()) => {
                    self.set_status(ConnectivityState::Connected, None);
                    wait = base;
                }
                Err(e) => {
                    match &e {
                        AgentError::NotAttested(m) => {
                            tracing::warn!(reason = %m, "agent no longer attested; attesting again");
                            state::clear_svid(&self.config.data_dir);
                            *self.svid.lock().unwrap_or_else(|p| p.into_inner()) = None;
                            self.identity.clear();
                        }
                        AgentError::AttestationRefused(m) | AgentError::Banned(m) => {
                            tracing::error!(reason = %m, "the server refuses this agent; cached SVIDs are served until they expire");
                        }
                        _ => tracing::warn!(error = %e, retry_in = ?wait, "sync failed"),
                    }
                    let state = if wait >= max {
                        ConnectivityState::Lost
                    } else {
                        ConnectivityState::Degraded
                    };
                    self.set_status(state, Some(e.to_string()));
                    wait = std::cmp::min(wait * 2, max);
                }
            }
            // Wake early when an SVID falls due before the next round (only after a good
            // round: while failing, the backoff decides).
            let due = self
                .next_due()
                .and_then(|t| (t - Utc::now()).to_std().ok())
                .map(|d| d.max(std::time::Duration::from_millis(20)));
            let sleep = match due {
                Some(d) if d < wait && wait == base => d,
                _ => wait,
            };
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// The earliest renewal due: the agent SVID's or a workload SVID's.
    /// Past-due ones are left out: they are retried on the normal schedule.
    fn next_due(&self) -> Option<DateTime<Utc>> {
        let now = Utc::now();
        let agent = self
            .svid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| s.renew_at)
            .filter(|t| *t > now);
        let workloads = self
            .cache()
            .svids
            .values()
            .map(|s| s.renew_at)
            .filter(|t| *t > now)
            .min();
        match (agent, workloads) {
            (Some(a), Some(w)) => Some(a.min(w)),
            (a, w) => a.or(w),
        }
    }

    /// A JWT-SVID for `entry` and `audience`, from cache while it has more than half its life
    /// left, else minted by the server (which needs the server to be reachable).
    pub async fn jwt_svid(
        &self,
        entry: &LocalEntry,
        audience: &[String],
    ) -> Result<String, Status> {
        let mut aud = audience.to_vec();
        aud.sort();
        let key = (entry.id.clone(), aud);
        let now = Utc::now();
        if let Some((tok, renew)) = self
            .jwt_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && now < *renew
        {
            return Ok(tok.clone());
        }
        let r = self
            .client()
            .mint_jwt_svid(MintJwtSvidRequest {
                entry_id: entry.id.clone(),
                audience: audience.to_vec(),
            })
            .await
            .map_err(|s| match s.code() {
                Code::InvalidArgument => s,
                _ => Status::unavailable(format!(
                    "JWT-SVID issuance needs the server: {}",
                    s.message()
                )),
            })?
            .into_inner();
        let exp = DateTime::from_timestamp(r.expires_at, 0).unwrap_or(now);
        let renew = now + (exp - now) / 2;
        let mut cache = self.jwt_cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.retain(|_, (_, r)| *r > now);
        }
        cache.insert(key, (r.token.clone(), renew));
        Ok(r.token)
    }
}

/// What answers the server's challenge, per attestation method.
enum Prover {
    /// join_token: no challenge.
    None,
    /// x509pop: the node certificate's key.
    X509(rcgen::KeyPair),
    /// tpm_devid: the TPM and the DevID key blobs.
    Tpm {
        tcti: String,
        key: Arc<trustdeck_tpm::device::DevIdKey>,
        evidence: TpmDevidEvidence,
    },
}

fn read_der_or_pem(path: &std::path::Path, what: &str) -> Result<Vec<Vec<u8>>, AgentError> {
    let bytes = std::fs::read(path)
        .map_err(|e| AgentError::Local(format!("tpm_devid {what} {}: {e}", path.display())))?;
    if bytes.first() == Some(&0x30) {
        return Ok(vec![bytes]);
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        AgentError::Local(format!(
            "tpm_devid {what} {}: neither DER nor PEM",
            path.display()
        ))
    })?;
    let certs = trustdeck_spiffe::pem::decode_certs(&text)
        .map_err(|e| AgentError::Local(format!("tpm_devid {what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(AgentError::Local(format!(
            "tpm_devid {what} {}: no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Reads the DevID chain and key blobs and asks the TPM for the EK (certificate from NV
/// unless a file is configured) and the public areas. Blocking TPM I/O runs off the runtime.
async fn tpm_evidence(
    tcti: String,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
    ek_cert_path: Option<std::path::PathBuf>,
) -> Result<
    (
        Vec<Vec<u8>>,
        Arc<trustdeck_tpm::device::DevIdKey>,
        TpmDevidEvidence,
    ),
    AgentError,
> {
    tokio::task::spawn_blocking(move || {
        let chain = read_der_or_pem(&cert_path, "devid_cert_path")?;
        let key = trustdeck_tpm::device::DevIdKey::read(&key_path)
            .map_err(|e| AgentError::Local(format!("tpm_devid: {e}")))?;
        let local =
            |e: trustdeck_tpm::device::DeviceError| AgentError::Local(format!("tpm_devid: {e}"));
        let mut tpm = trustdeck_tpm::device::Tpm::open(&tcti).map_err(local)?;
        let ek_cert = match &ek_cert_path {
            Some(p) => read_der_or_pem(p, "ek_cert_path")?.remove(0),
            None => tpm.ek_certificate().map_err(local)?,
        };
        let ek_public = tpm.ek_public().map_err(local)?;
        let evidence = TpmDevidEvidence {
            ek_cert,
            ek_public,
            devid_public: key.public.clone(),
        };
        Ok((chain, Arc::new(key), evidence))
    })
    .await
    .map_err(|e| AgentError::Local(format!("tpm_devid: TPM task failed: {e}")))?
}

/// Answers a TPM challenge: signs the nonce with the DevID key and activates the credential.
async fn tpm_answer(
    tcti: String,
    key: Arc<trustdeck_tpm::device::DevIdKey>,
    ch: TpmDevidChallenge,
) -> Result<TpmDevidProof, AgentError> {
    tokio::task::spawn_blocking(move || {
        let local =
            |e: trustdeck_tpm::device::DeviceError| AgentError::Local(format!("tpm_devid: {e}"));
        let mut tpm = trustdeck_tpm::device::Tpm::open(&tcti).map_err(local)?;
        let (signature, activated_secret) = tpm
            .answer_challenge(&key, &ch.nonce, &ch.credential_blob, &ch.encrypted_secret)
            .map_err(local)?;
        Ok(TpmDevidProof {
            signature,
            activated_secret,
        })
    })
    .await
    .map_err(|e| AgentError::Local(format!("tpm_devid: TPM task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_or_before_half_life() {
        let nb = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let na = nb + Duration::seconds(3600);
        assert_eq!(jittered_renew_at(nb, na, 0.0), nb + Duration::seconds(1800));
        assert_eq!(jittered_renew_at(nb, na, 1.0), nb + Duration::seconds(1440));
        let mid = jittered_renew_at(nb, na, 0.5);
        assert!(mid < nb + Duration::seconds(1800) && mid > nb + Duration::seconds(1440));
    }
}
