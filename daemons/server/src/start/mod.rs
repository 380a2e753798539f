//! Starting a server: each step is one function in its own module, run in order by
//! [`start_with_clock`].
//!
//! - [`storage`]: the data directory and the datastore.
//! - [`keys`]: the key manager holding the CA keys (memory, disk or PKCS#11).
//! - [`owner`]: the claim on the CA journal (instance id, owner record, lease).
//! - [`authority`]: the upstream link (downstream servers), the CA, the upstream's bundle.
//! - [`attestation`]: the trust anchors of x509pop and tpm_devid.
//! - [`tls`]: the server's own X509-SVID and the TLS configuration.
//! - [`listeners`]: the node API and admin API listeners and their servers.
//! - [`loops`]: the background loops (rotation, admin stream, upstream bundle).

mod attestation;
mod authority;
mod keys;
mod listeners;
mod loops;
mod owner;
mod storage;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use trustdeck_admin::info::{InfoError, ServerInfo};
use trustdeck_process::clock::{Clock, SystemClock};

use crate::config::Config;
use crate::ctx::ServerCtx;
use crate::federation::endpoint::BoundEndpoint;
use crate::ratelimit::RateLimiter;
pub use keys::check_lost_keys;
pub use owner::check_ca_owner;
pub use storage::{EarlierState, check_earlier_state};

/// How often agents are re-read from the datastore for the admin stream.
pub const AGENT_PUBLISH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The datastore could not be opened.
    #[error("datastore {url}: {source}")]
    Datastore {
        /// The URL, password redacted.
        url: String,
        source: trustdeck_datastore::DatastoreError,
    },
    /// The datastore is empty although keys show the server was initialised.
    #[error(
        "datastore {url} is empty, but this server was initialised before: found {found}. \
         Restore the datastore from a backup; or, to give up the old CA and trust anchor, \
         start once with `trustdeck-server run --reinitialize` (audited)"
    )]
    EmptiedDatastore {
        /// The URL, password redacted.
        url: String,
        /// What shows the earlier initialisation.
        found: String,
    },
    /// Another server owns the CA journal in this datastore.
    #[error(
        "datastore {url}: its CA journal belongs to another server, {owner}; this server \
         ({me}) would rewrite a CA it does not own, so it refuses to start (audited). Give this \
         server its own datastore, or run the owner (its data_dir holds its instance-id). If the \
         owner is gone for good and its CA keys with it, start this server once with \
         `trustdeck-server run --take-over-ca` (audited): the old CA stays trusted until it \
         expires, a new CA, JWT key and bundle are minted, and agents and downstreams of the old \
         server must fetch the new bundle"
    )]
    CaOwnedByAnother {
        /// The URL, password redacted.
        url: String,
        /// The owner, as [`crate::ca::owner::describe`] says.
        owner: String,
        /// This server: instance and data directory.
        me: String,
    },
    /// Another live process holds the CA journal's lease.
    #[error(
        "datastore {url}: another running server holds the CA journal, {owner}, and renews its \
         lease; two servers on one CA journal are refused (audited). Stop the other process, or \
         give this one its own data_dir and datastore"
    )]
    CaLeaseHeld {
        /// The URL, password redacted.
        url: String,
        owner: String,
    },
    /// The key manager failed.
    #[error("key manager: {0}")]
    Keys(#[from] trustdeck_pki::KeyError),
    /// The PKCS#11 PIN file can be read by others.
    #[error(
        "key_manager pin_file {} has mode {mode:o}; refusing a PIN readable by group or others \
         (chmod 600)",
        path.display()
    )]
    PinFileMode {
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The environment variable that should hold the PKCS#11 PIN is not set.
    #[error("key_manager pin_env: environment variable {var} is not set")]
    PinEnvUnset { var: String },
    /// A PKCS#11 key manager names neither a PIN file nor a PIN variable.
    #[error("key_manager pkcs11: no pin_file or pin_env")]
    NoPin,
    /// The CA could not be loaded or rotated.
    #[error("CA: {0}")]
    Ca(#[from] crate::ca::CaManagerError),
    /// The link to the upstream could not be set up.
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamError),
    /// The x509pop CA bundle is not PEM certificates.
    #[error("x509pop ca_bundle_path {}: {source}", path.display())]
    X509popBundle {
        path: PathBuf,
        source: trustdeck_spiffe::PemError,
    },
    /// A tpm_devid CA bundle is unreadable or empty.
    #[error("{}", .0.message())]
    TpmDevidBundle(Box<tonic::Status>),
    /// No CSR could be made or checked for the server's own SVID.
    #[error(transparent)]
    Csr(#[from] trustdeck_pki::CsrError),
    /// The CA refused the server's own SVID.
    #[error("server SVID: {0}")]
    ServerSvid(trustdeck_pki::CaError),
    /// TLS state could not be built.
    #[error(transparent)]
    Tls(#[from] trustdeck_transport::tls::TlsError),
    /// The federation bundle endpoint could not be set up.
    #[error(transparent)]
    BundleEndpoint(#[from] crate::federation::endpoint::EndpointError),
    /// Another server answers on the admin socket.
    #[error("admin socket {} is in use by another running server", path.display())]
    AdminSocketInUse { path: PathBuf },
    /// `server.json` could not be written.
    #[error(transparent)]
    Info(#[from] InfoError),
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        source: std::io::Error,
    },
}

/// Why a running server stopped by itself (a failure: `run` exits non-zero with this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Stopped {
    /// Another server took the CA journal over: this one no longer owns its CA.
    #[error(
        "another server took over this server's CA journal (run --take-over-ca); this server \
         stopped: it no longer owns its CA"
    )]
    CaTakenOver,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// A started server; [`RunningServer::shutdown`] stops it.
pub struct RunningServer {
    /// Where it listens (also written to `server.json`).
    pub info: ServerInfo,
    /// Shared state (tests inspect it).
    pub ctx: Arc<ServerCtx>,
    shutdown: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
    /// Set by a task that stops the server by itself, with the reason.
    stopped: watch::Receiver<Option<Stopped>>,
}

impl RunningServer {
    /// Stops serving and waits for the tasks.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        if let Err(e) = self
            .ctx
            .ds
            .release_ca_lease(self.ctx.ca.owner_session())
            .await
        {
            tracing::warn!(error = %e, "could not release the CA lease; a restart waits for it to run out");
        }
        let _ = std::fs::remove_file(&self.info.admin_socket);
        let _ = std::fs::remove_file(ServerInfo::path(&self.ctx.config.data_dir));
    }

    /// Waits until a task ends (normally never before shutdown); why, when the server stopped
    /// for a known reason.
    pub async fn wait(&mut self) -> Option<Stopped> {
        self.tasks.join_next().await;
        *self.stopped.borrow()
    }
}

/// Starts the server with the system clock.
pub async fn start(config: Config) -> Result<RunningServer, RunError> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// Starts the server: every listener is bound and the CA is ready when this returns.
pub async fn start_with_clock(
    config: Config,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer, RunError> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    storage::prepare_data_dir(&config)?;
    let reinitialized = storage::check_earlier_state(&config).await?;
    let ds = storage::open_datastore(&config).await?;
    // The Watch stream tells every audit record from here on, this start's own included.
    let audit_from = ds
        .audit_head()
        .await
        .map_err(|source| RunError::Datastore {
            url: trustdeck_datastore::redact_url(&config.datastore),
            source,
        })?
        .seq;
    if let Some(found) = &reinitialized {
        storage::audit_reinitialize(&ds, &config, found, clock.as_ref()).await?;
    }
    let km = keys::key_manager(&config)?;
    let claimed = owner::claim(&config, &ds, &km, clock.as_ref()).await?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let (stopped_tx, stopped) = watch::channel(None);
    tasks.spawn(loops::ca_lease(
        ds.clone(),
        claimed.session.clone(),
        clock.clone(),
        shutdown_rx.clone(),
        stopped_tx,
    ));
    let upstream = authority::connect_upstream(&config, &clock).await?;
    let (ca, events) =
        authority::load_ca(&config, &ds, &km, &upstream, claimed, clock.as_ref()).await?;
    let hub = crate::observe::new_hub(&config, config.server_spiffe_id.as_str(), clock.now());
    loops::report_ca_events(&hub, events, clock.now());
    if let Some(up) = &upstream {
        authority::adopt_upstream_bundle(up, &ca, clock.as_ref()).await?;
    }
    let x509pop_cas = attestation::x509pop_cas(&config)?;
    attestation::check_tpm_devid_bundles(&config).await?;

    let mut config = config;
    config.admin_access.tcp_issuers = Some(authority::own_ca_issuer_check(&ca));
    let refusals = crate::admin_api::RefusalAudit::new(ds.clone(), clock.clone());
    config.admin_access.refusals = Some(refusals.sink());
    let ctx = Arc::new(ServerCtx {
        sign_limiter: RateLimiter::new(config.rate_limit.signs_per_second, config.rate_limit.burst),
        attest_limiter: RateLimiter::new(
            config.rate_limit.attestations_per_second,
            config.rate_limit.attestations_per_second.max(5.0),
        ),
        server_id: config.server_spiffe_id.clone(),
        config,
        ds,
        ca,
        clock,
        x509pop_cas,
        origin: Instant::now(),
        upstream,
        hub,
        census: Default::default(),
        findings: Default::default(),
        fetches: Default::default(),
    });
    let ca_published = loops::publish_initial(&ctx).await;

    let (own_tls, tls) = tls::server_tls(&ctx)?;
    let bound = listeners::Listeners::bind(&ctx.config).await?;
    let mut info = bound.info(&ctx);
    let endpoint = match &ctx.config.bundle_endpoint {
        Some(e) => Some(BoundEndpoint::bind(e, &own_tls.identity()).await?),
        None => None,
    };
    info.federation_bundle_endpoint = endpoint.as_ref().map(BoundEndpoint::addr);
    bound.serve(&ctx, tls, &shutdown_rx, &mut tasks);
    if let Some(e) = endpoint {
        let limits = ctx.config.connections.limits();
        e.spawn(
            ctx.ca.subscribe_bundle(),
            limits,
            shutdown_rx.clone(),
            &mut tasks,
        );
    }
    tasks.spawn(refusals.run(shutdown_rx.clone()));
    tasks.spawn(crate::federation::refresh::run(
        ctx.clone(),
        shutdown_rx.clone(),
    ));
    tasks.spawn(crate::audit_feed::run(
        ctx.clone(),
        audit_from,
        shutdown_rx.clone(),
    ));
    loops::spawn_all(&ctx, own_tls, ca_published, &shutdown_rx, &mut tasks);

    info.write(&ctx.config.data_dir)?;
    tracing::info!(
        node_api = %info.node_api,
        admin = %ctx.config.admin_socket.display(),
        trust_domain = %ctx.config.trust_domain,
        "trustdeck-server serving"
    );
    Ok(RunningServer {
        info,
        ctx,
        shutdown: shutdown_tx,
        tasks,
        stopped,
    })
}
