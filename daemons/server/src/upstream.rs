//! A downstream server's link to its upstream.
//!
//! The downstream never holds a bootstrap credential (seed 000 §3.3): a local agent attests
//! the node to the upstream, and this module takes the server's own X509-SVID from that
//! agent's Workload API socket, keeps it current from the stream, and uses it for mTLS to the
//! upstream's node API (intermediate CA, JWT-SVIDs, bundle).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::Status;
use tonic::transport::Channel;
use trustdeck_process::clock::Clock;
use trustdeck_proto::admin::ConnectivityState;
use trustdeck_proto::node::node_client::NodeClient;
use trustdeck_proto::node::*;
use trustdeck_proto::workload::X509svidRequest;
use trustdeck_spiffe::{Bundle, IdError, PemError, SpiffeId, TrustDomain, pem};
use trustdeck_transport::{SharedIdentity, SharedRoots, TlsError};

/// An SVID from the local agent: chain, PKCS#8 key, bundle roots, SPIFFE ID.
type LocalSvid = (Vec<Vec<u8>>, Vec<u8>, Vec<Vec<u8>>, SpiffeId);

/// Deadline of one bundle poll.
pub const BUNDLE_POLL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Consecutive failed calls after which the upstream counts as lost rather than degraded.
pub const LOST_AFTER_FAILURES: u32 = 3;

/// Upstream connection state, for health and the admin stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamStatus {
    /// Connecting until the first call ends, degraded after a failed call, lost after
    /// [`LOST_AFTER_FAILURES`] in a row.
    pub state: ConnectivityState,
    /// Since when the state holds.
    pub since: DateTime<Utc>,
    /// The last error.
    pub last_error: Option<String>,
    /// Calls failed in a row (a success resets it).
    pub failures: u32,
    /// Sequence of the last bundle received from the upstream.
    pub last_bundle_sequence: Option<u64>,
}

/// Settings of the upstream link.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Upstream node API address.
    pub address: String,
    /// SPIFFE ID the upstream must present.
    pub upstream_spiffe_id: SpiffeId,
    /// The local agent's Workload API socket.
    pub workload_api_socket: PathBuf,
    /// This server's SPIFFE ID as registered upstream (picks among several SVIDs); the first
    /// SVID when unset.
    pub own_spiffe_id: Option<SpiffeId>,
    pub trust_domain: TrustDomain,
}

/// A downstream's link to its upstream: the SVID taken from the local agent, the mTLS client
/// that presents it, and the connection state.
pub struct Upstream {
    settings: UpstreamSettings,
    identity: SharedIdentity,
    roots: SharedRoots,
    client: Mutex<NodeClient<Channel>>,
    status: watch::Sender<UpstreamStatus>,
    own_id: Mutex<Option<SpiffeId>>,
    clock: Arc<dyn Clock>,
    /// The namespaces the upstream gave this server, with every intermediate.
    pub namespaces: crate::namespace::Held,
    /// The foreign bundles the upstream relays, for this server's agents.
    pub relayed: crate::federation::deliver::Relayed,
}

/// Why the upstream link could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The local agent's Workload API gave no usable SVID.
    #[error("local agent Workload API {socket}: {source}")]
    LocalAgent {
        socket: String,
        source: LocalSvidError,
    },
    /// TLS setup failed.
    #[error("upstream TLS: {0}")]
    Tls(#[from] TlsError),
}

/// Why this server's SVID could not be taken from the local agent's Workload API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalSvidError {
    /// The socket could not be opened.
    #[error("{0}")]
    Connect(#[from] tonic::transport::Error),
    /// The call failed.
    #[error("{} ({:?})", .0.message(), .0.code())]
    Call(#[from] Status),
    #[error("no answer within 5s")]
    Timeout,
    #[error("stream ended")]
    Ended,
    /// The agent has SVIDs, but none with the configured SPIFFE ID.
    #[error("the local agent has no SVID {0} for this process")]
    NoSuchSvid(SpiffeId),
    #[error("the local agent returned no SVID")]
    NoSvid,
    #[error("{0}")]
    BadId(#[from] IdError),
    #[error("SVID chain: {0}")]
    Chain(PemError),
    #[error("bundle: {0}")]
    Bundle(PemError),
    #[error("SVID or bundle is empty")]
    Empty,
}

impl Upstream {
    /// Connects to the local agent, waits up to `wait` for this server's SVID, and prepares
    /// the mTLS client for the upstream. The SVID is then kept current in the background.
    pub async fn start(
        settings: UpstreamSettings,
        wait: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, UpstreamError> {
        let socket = settings.workload_api_socket.display().to_string();
        let local = |source| UpstreamError::LocalAgent {
            socket: socket.clone(),
            source,
        };
        let deadline = tokio::time::Instant::now() + wait;
        let (chain, key, roots, id) = loop {
            match Self::fetch_svid(&settings).await {
                Ok(x) => break x,
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(local(e)),
                Err(e) => {
                    tracing::info!(error = %e, "waiting for this server's SVID from the local agent");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        let identity = SharedIdentity::new();
        identity.set(chain, &key)?;
        let roots = SharedRoots::new(&roots)?;
        let client = Self::make_client(&settings, &identity, &roots)?;
        let (status, _) = watch::channel(UpstreamStatus {
            // Not a loss and not yet a success: the first call decides.
            state: ConnectivityState::Connecting,
            since: clock.now(),
            last_error: None,
            failures: 0,
            last_bundle_sequence: None,
        });
        tracing::info!(spiffe_id = %id, "got this server's SVID from the local agent");
        let up = Arc::new(Self {
            settings,
            identity,
            roots,
            client: Mutex::new(client),
            status,
            own_id: Mutex::new(Some(id)),
            clock,
            namespaces: Default::default(),
            relayed: Default::default(),
        });
        tokio::spawn(up.clone().watch_local_svid());
        Ok(up)
    }

    fn make_client(
        settings: &UpstreamSettings,
        identity: &SharedIdentity,
        roots: &SharedRoots,
    ) -> Result<NodeClient<Channel>, UpstreamError> {
        Ok(trustdeck_transport::connect::node_client(
            &settings.address,
            identity,
            roots,
            &settings.upstream_spiffe_id,
        )?)
    }

    async fn fetch_svid(settings: &UpstreamSettings) -> Result<LocalSvid, LocalSvidError> {
        let mut c = trustdeck_transport::workload_client::connect(&settings.workload_api_socket)?;
        let mut s = c.fetch_x509svid(X509svidRequest {}).await?.into_inner();
        let m = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .map_err(|_| LocalSvidError::Timeout)?
            .ok_or(LocalSvidError::Ended)??;
        Self::pick(settings, m)
    }

    fn pick(
        settings: &UpstreamSettings,
        m: trustdeck_proto::workload::X509svidResponse,
    ) -> Result<LocalSvid, LocalSvidError> {
        let svid = match &settings.own_spiffe_id {
            Some(id) => m.svids.iter().find(|s| s.spiffe_id == id.as_str()),
            None => m.svids.first(),
        }
        .ok_or_else(|| match &settings.own_spiffe_id {
            Some(id) => LocalSvidError::NoSuchSvid(id.clone()),
            None => LocalSvidError::NoSvid,
        })?;
        let id = SpiffeId::parse(&svid.spiffe_id)?;
        let chain = pem::split_der(&svid.x509_svid).map_err(LocalSvidError::Chain)?;
        let roots = pem::split_der(&svid.bundle).map_err(LocalSvidError::Bundle)?;
        if chain.is_empty() || roots.is_empty() {
            return Err(LocalSvidError::Empty);
        }
        Ok((chain, svid.x509_svid_key.clone(), roots, id))
    }

    /// Follows the local agent's stream: every rotated SVID replaces the identity and opens a
    /// fresh connection to the upstream.
    async fn watch_local_svid(self: Arc<Self>) {
        loop {
            let stream = async {
                let mut c = trustdeck_transport::workload_client::connect(
                    &self.settings.workload_api_socket,
                )?;
                let mut s = c.fetch_x509svid(X509svidRequest {}).await?.into_inner();
                while let Some(m) = s.next().await {
                    let (chain, key, roots, id) = Self::pick(&self.settings, m?)?;
                    if let Err(e) = self.identity.set(chain, &key) {
                        tracing::error!(error = %e, "local SVID rejected");
                        continue;
                    }
                    if let Err(e) = self.roots.set(&roots) {
                        tracing::error!(error = %e, "local bundle rejected");
                    }
                    *self.own_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
                    match Self::make_client(&self.settings, &self.identity, &self.roots) {
                        Ok(c) => *self.client.lock().unwrap_or_else(|p| p.into_inner()) = c,
                        Err(e) => tracing::error!(error = %e, "upstream client"),
                    }
                }
                Ok::<(), LocalSvidError>(())
            }
            .await;
            if let Err(e) = stream {
                tracing::warn!(error = %e, "local agent stream ended; reconnecting");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn client(&self) -> NodeClient<Channel> {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// This server's SPIFFE ID as the upstream knows it.
    pub fn own_id(&self) -> Option<SpiffeId> {
        self.own_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The connection state.
    pub fn status(&self) -> UpstreamStatus {
        self.status.borrow().clone()
    }

    /// Subscribes to connection state changes.
    pub fn subscribe(&self) -> watch::Receiver<UpstreamStatus> {
        self.status.subscribe()
    }

    fn record<T>(&self, r: &Result<T, Status>) {
        let now = self.clock.now();
        self.status.send_if_modified(|s| {
            let before = (s.state, s.last_error.clone());
            match r {
                Ok(_) => {
                    s.failures = 0;
                    s.last_error = None;
                    if s.state != ConnectivityState::Connected {
                        s.state = ConnectivityState::Connected;
                        s.since = now;
                    }
                }
                Err(e) => {
                    s.failures += 1;
                    s.last_error = Some(format!("{} ({:?})", e.message(), e.code()));
                    let state = if s.failures >= LOST_AFTER_FAILURES {
                        ConnectivityState::Lost
                    } else {
                        ConnectivityState::Degraded
                    };
                    // Lost stays lost until a call succeeds.
                    if s.state != state && s.state != ConnectivityState::Lost {
                        s.since = now;
                        s.state = state;
                    }
                }
            }
            before != (s.state, s.last_error.clone())
        });
    }

    /// The upstream's bundle and tainted keys; `held` reports what this server and the
    /// nodes below it hold (the census forwarded).
    pub async fn fetch_bundle(&self, held: HeldSvids) -> Result<(Bundle, TaintedKeys), Status> {
        // A short deadline: this poll is also how a frozen upstream (kill -STOP, a hung
        // process, a black-holed network) is noticed, within a few seconds.
        let mut req = tonic::Request::new(FetchBundleRequest {
            held: Some(held),
            federated_digest: self.relayed.digest(),
        });
        req.set_timeout(BUNDLE_POLL_TIMEOUT);
        let r = self
            .client()
            .fetch_bundle(req)
            .await
            .map(|r| r.into_inner());
        self.record(&r);
        let r = r?;
        let b = Bundle::from_json(&self.settings.trust_domain, &r.bundle)
            .map_err(|e| Status::internal(format!("upstream bundle: {e}")))?;
        let state = r.federated_state();
        if r.has_namespaces {
            self.namespaces.update(r.namespaces);
        }
        if self
            .relayed
            .apply(state, r.federated_bundles, r.federated_digest)
        {
            tracing::info!(
                trust_domains = ?self.relayed.snapshot().keys().collect::<Vec<_>>(),
                "foreign bundles from the upstream changed"
            );
        }
        self.status.send_if_modified(|s| {
            let changed = s.last_bundle_sequence != Some(b.sequence);
            s.last_bundle_sequence = Some(b.sequence);
            changed
        });
        Ok((b, r.tainted.unwrap_or_default()))
    }

    /// Asks the upstream to sign an intermediate CA for `csr`; returns the chain (new
    /// intermediate first), the upstream's bundle JSON and its tainted keys.
    pub async fn mint_intermediate(
        &self,
        csr: Vec<u8>,
        ttl: chrono::Duration,
    ) -> Result<(Vec<Vec<u8>>, Vec<u8>, TaintedKeys), Status> {
        let r = self
            .client()
            .mint_intermediate(MintIntermediateRequest {
                csr,
                ttl_secs: ttl.num_seconds(),
            })
            .await
            .map(|r| r.into_inner());
        self.record(&r);
        let r = r?;
        self.namespaces.update(r.namespaces);
        Ok((r.chain, r.bundle, r.tainted.unwrap_or_default()))
    }

    /// Has the upstream mint a JWT-SVID for `sub`.
    pub async fn mint_jwt_for(
        &self,
        sub: &str,
        audience: &[String],
        ttl: chrono::Duration,
    ) -> Result<MintJwtSvidResponse, Status> {
        let r = self
            .client()
            .mint_jwt_svid_for(MintJwtSvidForRequest {
                spiffe_id: sub.to_string(),
                audience: audience.to_vec(),
                ttl_secs: ttl.num_seconds(),
            })
            .await
            .map(|r| r.into_inner());
        self.record(&r);
        r
    }
}
