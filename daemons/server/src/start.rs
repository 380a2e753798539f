//! Wiring: opens the datastore and key manager, loads the CA, binds the node API (mTLS TCP)
//! and the admin API (Unix socket), and runs the rotation loop until shutdown.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use trustdeck_admin::ObserveService;
use trustdeck_datastore::Datastore;
use trustdeck_pki::keys::{DiskKeyManager, MemoryKeyManager, SoftwareKey};
use trustdeck_pki::{KeyManager, X509Authority};
use trustdeck_proto::admin::EventKind;
use trustdeck_proto::admin::observe_server::ObserveServer;
use trustdeck_proto::admin::server_admin_server::ServerAdminServer;
use trustdeck_proto::node::node_server::NodeServer;
use trustdeck_topology::hub::Severity;
use trustdeck_transport::{SharedIdentity, SharedRoots};

use crate::admin_api::AdminApi;
use crate::ca_manager::{CaManager, CaSettings};
use crate::config::{Config, KeyManagerConfig};
use crate::ctx::ServerCtx;
use crate::node_api::NodeApi;
use crate::ratelimit::RateLimiter;
use crate::upstream::{Upstream, UpstreamSettings};
use trustdeck_process::clock::{Clock, SystemClock};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The datastore could not be opened.
    #[error("datastore {url}: {source}")]
    Datastore {
        /// The URL, password redacted.
        url: String,
        /// The cause.
        source: trustdeck_datastore::DatastoreError,
    },
    /// The key manager failed.
    #[error("key manager: {0}")]
    Keys(#[from] trustdeck_pki::KeyError),
    /// The CA could not be loaded or rotated.
    #[error("CA: {0}")]
    Ca(#[from] crate::ca_manager::CaManagerError),
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// Addresses the server listens on, written to `<data_dir>/server.json` once it serves.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Endpoints {
    /// Trust domain.
    pub trust_domain: String,
    /// Node API address (mTLS).
    pub node_api: String,
    /// Admin Unix socket.
    pub admin_socket: PathBuf,
    /// Admin API on mTLS TCP, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_tcp: Option<String>,
    /// The server's SPIFFE ID (what agents must expect).
    pub spiffe_id: String,
    /// Process id.
    pub pid: u32,
}

/// How often agents are re-read from the datastore for the admin stream.
pub const AGENT_PUBLISH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// The file name of the endpoints file inside `data_dir`.
pub const ENDPOINTS_FILE: &str = "server.json";

/// A started server.
pub struct RunningServer {
    /// Where it listens.
    pub endpoints: Endpoints,
    /// Shared state (tests inspect it).
    pub ctx: Arc<ServerCtx>,
    shutdown: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl RunningServer {
    /// Stops serving and waits for the tasks.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        let _ = std::fs::remove_file(&self.endpoints.admin_socket);
        let _ = std::fs::remove_file(self.ctx.config.data_dir.join(ENDPOINTS_FILE));
    }

    /// Waits until a task ends (normally never before shutdown).
    pub async fn wait(&mut self) {
        self.tasks.join_next().await;
    }
}

async fn open_datastore(config: &Config) -> Result<Datastore, RunError> {
    Datastore::open(&config.datastore)
        .await
        .map_err(|source| RunError::Datastore {
            url: trustdeck_datastore::redact_url(&config.datastore),
            source,
        })
}

fn key_manager(config: &Config) -> Result<Arc<dyn KeyManager>, RunError> {
    Ok(match &config.key_manager {
        KeyManagerConfig::Memory => Arc::new(MemoryKeyManager::new()),
        KeyManagerConfig::Disk { .. } => {
            let dir = config
                .key_dir()
                .unwrap_or_else(|| config.data_dir.join("keys"));
            Arc::new(DiskKeyManager::new(&dir)?)
        }
        KeyManagerConfig::Pkcs11 {
            module,
            token_label,
            slot,
            key_label_prefix,
            pin_file,
            pin_env,
            ..
        } => {
            if let Some(f) = pin_file {
                let mode = std::fs::metadata(f)
                    .map_err(io(format!("key_manager pin_file {}", f.display())))?
                    .permissions()
                    .mode()
                    & 0o777;
                if mode & 0o077 != 0 {
                    return Err(RunError::Other(format!(
                        "key_manager pin_file {} has mode {mode:o}; refusing a PIN readable by group or others (chmod 600)",
                        f.display()
                    )));
                }
            }
            let pin = match (pin_file, pin_env) {
                (Some(f), _) => std::fs::read_to_string(f)
                    .map_err(io(format!("key_manager pin_file {}", f.display())))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    RunError::Other(format!(
                        "key_manager pin_env: environment variable {var} is not set"
                    ))
                })?,
                (None, None) => {
                    return Err(RunError::Other(
                        "key_manager pkcs11: no pin_file or pin_env".into(),
                    ));
                }
            };
            let km = trustdeck_pki::pkcs11::Pkcs11KeyManager::open(
                &trustdeck_pki::pkcs11::Pkcs11Settings {
                    module: module.clone(),
                    token_label: token_label.clone(),
                    slot: *slot,
                    key_label_prefix: key_label_prefix.clone(),
                    pin: trustdeck_pki::pkcs11::AuthPin::from(pin),
                },
            )?;
            tracing::info!(token = km.token(), "CA keys in PKCS#11 token");
            Arc::new(km)
        }
    })
}

/// The server's own X509-SVID for its TLS endpoint, re-issued at half life or when the
/// signing CA changes.
struct ServerSvid {
    identity: SharedIdentity,
    issued_by: Vec<u8>,
    renew_at: DateTime<Utc>,
}

impl ServerSvid {
    fn refresh(
        &mut self,
        ca: &X509Authority,
        id: &trustdeck_spiffe::SpiffeId,
        ttl: chrono::Duration,
        now: DateTime<Utc>,
        force: bool,
    ) -> Result<(), RunError> {
        if !force && now < self.renew_at && self.issued_by == ca.cert_der() {
            return Ok(());
        }
        let (key, pkcs8) = SoftwareKey::ephemeral()?;
        let key: Arc<dyn trustdeck_pki::SigningKey> = Arc::new(key);
        let csr = trustdeck_pki::csr::verify_csr(
            &trustdeck_pki::csr::make_csr(&key, Some(id))
                .map_err(|e| RunError::Other(e.to_string()))?,
        )
        .map_err(|e| RunError::Other(e.to_string()))?;
        let svid = ca
            .issue_x509_svid(&csr, id, &[], ttl, now)
            .map_err(|e| RunError::Other(format!("server SVID: {e}")))?;
        self.identity
            .set(svid.chain, &pkcs8)
            .map_err(|e| RunError::Other(e.to_string()))?;
        self.issued_by = ca.cert_der().to_vec();
        self.renew_at = trustdeck_pki::rotation::renew_at(now, svid.not_after);
        Ok(())
    }
}

fn bind_admin_socket(path: &Path) -> Result<UnixListener, RunError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    }
    if path.exists() {
        // A live server answering on it means another instance: refuse rather than steal it.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(RunError::Other(format!(
                "admin socket {} is in use by another running server",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(io(format!("remove stale {}", path.display())))?;
    }
    let l = UnixListener::bind(path).map_err(io(format!("bind {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io(format!("chmod {}", path.display())))?;
    Ok(l)
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
    std::fs::create_dir_all(&config.data_dir)
        .map_err(io(format!("create data_dir {}", config.data_dir.display())))?;
    std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod data_dir {}", config.data_dir.display())))?;
    let ds = open_datastore(&config).await?;
    let km = key_manager(&config)?;
    let upstream = match &config.upstream {
        None => None,
        Some(u) => Some(
            Upstream::start(
                UpstreamSettings {
                    address: u.address.clone(),
                    upstream_spiffe_id: u.spiffe_id.clone(),
                    workload_api_socket: u.workload_api_socket.clone(),
                    own_spiffe_id: u.own_spiffe_id.clone(),
                    trust_domain: config.trust_domain.clone(),
                },
                std::time::Duration::from_secs(120),
                clock.clone(),
            )
            .await
            .map_err(|e| RunError::Other(e.to_string()))?,
        ),
    };
    let settings = CaSettings {
        trust_domain: config.trust_domain.clone(),
        ca_ttl: config.ca_ttl,
        ca_common_name: config.ca_common_name.clone(),
        jwt_key_ttl: config.jwt_key_ttl,
        upstream: upstream.clone(),
    };
    // A downstream server without a usable intermediate needs its upstream: keep asking.
    let (ca, events) = loop {
        match CaManager::load(settings.clone(), ds.clone(), km.clone(), clock.now()).await {
            Ok(x) => break x,
            Err(e) if upstream.is_some() => {
                tracing::warn!(error = %e, "no intermediate CA yet; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let hub = crate::observe::new_hub(&config, config.server_spiffe_id.as_str(), clock.now());
    for e in &events {
        tracing::info!(kind = %e.kind, "{}", e.message);
        hub.event(Severity::Info, e.kind, e.message.clone(), "", clock.now());
    }
    if let Some(up) = &upstream {
        // The bundle is the upstream's: fetch it before serving (a stored one will do while
        // the upstream is unreachable).
        loop {
            match up.fetch_bundle().await {
                Ok(b) => {
                    ca.set_upstream_bundle(b, clock.now()).await?;
                    break;
                }
                Err(e) if !ca.bundle().x509_authorities.is_empty() => {
                    tracing::warn!(error = %e.message(), "upstream unreachable; serving the stored bundle");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e.message(), "waiting for the upstream's bundle");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }
    let x509pop_cas = match &config.node_attestation.x509pop {
        Some(x) => {
            let text = std::fs::read_to_string(&x.ca_bundle_path).map_err(io(format!(
                "x509pop ca_bundle_path {}",
                x.ca_bundle_path.display()
            )))?;
            trustdeck_spiffe::pem::decode_certs(&text).map_err(|e| {
                RunError::Other(format!(
                    "x509pop ca_bundle_path {}: {e}",
                    x.ca_bundle_path.display()
                ))
            })?
        }
        None => Vec::new(),
    };
    // tpm_devid bundles are re-read at each attestation (so they can be replaced without a
    // restart), but a server whose bundles are unusable right now must not start.
    if let Some(t) = &config.node_attestation.tpm_devid {
        for (what, path) in [
            ("devid_ca_bundle_path", &t.devid_ca_bundle_path),
            ("endorsement_ca_bundle_path", &t.endorsement_ca_bundle_path),
        ] {
            crate::tpm_devid::read_bundle(what, path)
                .await
                .map_err(|s| RunError::Other(s.message().to_string()))?;
        }
    }
    let server_id = config.server_spiffe_id.clone();
    let mut config = config;
    let issuer_ca = ca.clone();
    config.admin_access.tcp_issuers = Some(trustdeck_admin::IssuerCheck(Arc::new(move |leaf| {
        crate::observe::issued_by_own_ca(&issuer_ca.snapshot(), leaf).map_err(|e| e.to_string())
    })));
    let ctx = Arc::new(ServerCtx {
        sign_limiter: RateLimiter::new(config.rate_limit.signs_per_second, config.rate_limit.burst),
        attest_limiter: RateLimiter::new(
            config.rate_limit.attestations_per_second,
            config.rate_limit.attestations_per_second.max(5.0),
        ),
        config,
        ds,
        ca: ca.clone(),
        clock: clock.clone(),
        server_id: server_id.clone(),
        x509pop_cas,
        origin: Instant::now(),
        upstream: upstream.clone(),
        hub: hub.clone(),
    });
    let mut ca_published: crate::observe::CaBuiltFrom = None;
    crate::observe::publish_ca(&ctx, &mut ca_published, clock.now());
    if let Err(e) = crate::observe::publish_agents(&ctx, clock.now()).await {
        tracing::warn!(error = %e, "could not list agents for the admin stream");
    }

    // TLS identity and roots.
    let identity = SharedIdentity::new();
    let mut svid = ServerSvid {
        identity: identity.clone(),
        issued_by: Vec::new(),
        renew_at: clock.now(),
    };
    let svid_ttl = ctx.config.agent_svid_ttl;
    svid.refresh(
        ca.x509_ca()?.as_ref(),
        &server_id,
        svid_ttl,
        clock.now(),
        true,
    )?;
    let roots = SharedRoots::new(&ca.bundle().x509_authorities)
        .map_err(|e| RunError::Other(e.to_string()))?;
    let tls = trustdeck_transport::tls::server_config(identity.clone(), roots.clone())
        .map_err(|e| RunError::Other(e.to_string()))?;

    let listener = TcpListener::bind(ctx.config.bind_address)
        .await
        .map_err(io(format!("bind node API on {}", ctx.config.bind_address)))?;
    let node_addr = listener
        .local_addr()
        .map_err(io("node API local address"))?;
    let admin_listener = bind_admin_socket(&ctx.config.admin_socket)?;
    let admin_tcp = match ctx.config.admin_bind_address {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .map_err(io(format!("bind admin API on {a}")))?,
        ),
        None => None,
    };
    let admin_tcp_addr = match &admin_tcp {
        Some(l) => Some(l.local_addr().map_err(io("admin API local address"))?),
        None => None,
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();

    let node_svc = NodeServer::new(NodeApi::new(ctx.clone()));
    let mut rx = shutdown_rx.clone();
    let node_tls = tls.clone();
    tasks.spawn(async move {
        let incoming = trustdeck_transport::serve::mtls_incoming(listener, node_tls);
        let r = tonic::transport::Server::builder()
            .add_service(node_svc)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "node API stopped");
        }
    });

    let observe = {
        let chain_ctx = ctx.clone();
        ObserveServer::new(ObserveService::new(
            hub.clone(),
            Arc::new(ctx.config.admin_access.clone()),
            ctx.clock.clone(),
            Arc::new(move |n| crate::observe::chain_of(&chain_ctx, n)),
        ))
        .max_encoding_message_size(64 << 20)
    };
    let admin_svc = ServerAdminServer::new(AdminApi::new(ctx.clone()));
    let mut rx = shutdown_rx.clone();
    let (svc, obs) = (admin_svc.clone(), observe.clone());
    tasks.spawn(async move {
        let r = tonic::transport::Server::builder()
            .add_service(svc)
            .add_service(obs)
            .serve_with_incoming_shutdown(UnixListenerStream::new(admin_listener), async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "admin API stopped");
        }
    });
    if let Some(l) = admin_tcp {
        let mut rx = shutdown_rx.clone();
        let tls = tls.clone();
        tasks.spawn(async move {
            let r = tonic::transport::Server::builder()
                .add_service(admin_svc)
                .add_service(observe)
                .serve_with_incoming_shutdown(
                    trustdeck_transport::serve::mtls_incoming(l, tls),
                    async move {
                        let _ = rx.wait_for(|s| *s).await;
                    },
                )
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "admin API (TCP) stopped");
            }
        });
    }

    // Rotation loop: CA and JWT key rotation, bundle publication, server SVID renewal.
    let mut rx = shutdown_rx.clone();
    let loop_ctx = ctx.clone();
    let tick = loop_ctx
        .config
        .rotation_check_interval
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(1));
    tasks.spawn(async move {
        let mut bundle_rx = loop_ctx.ca.subscribe_bundle();
        loop {
            tokio::select! {
                _ = rx.wait_for(|s| *s) => break,
                _ = tokio::time::sleep(tick) => {}
            }
            let now = loop_ctx.clock.now();
            match loop_ctx.ca.rotate(now).await {
                Ok(events) => {
                    for e in events {
                        tracing::info!(kind = %e.kind, "{}", e.message);
                        loop_ctx
                            .hub
                            .event(Severity::Info, e.kind, e.message, "", now);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "CA rotation failed; will retry");
                    loop_ctx.hub.event(
                        Severity::Error,
                        EventKind::RotationFailed,
                        format!("CA rotation failed (will retry): {e}"),
                        "",
                        now,
                    );
                }
            }
            crate::observe::publish_ca(&loop_ctx, &mut ca_published, now);
            if bundle_rx.has_changed().unwrap_or(false) {
                let b = bundle_rx.borrow_and_update().clone();
                if let Err(e) = roots.set(&b.x509_authorities) {
                    tracing::error!(error = %e, "could not update TLS roots");
                }
            }
            if let Ok(ca) = loop_ctx.ca.x509_ca()
                && let Err(e) = svid.refresh(&ca, &loop_ctx.server_id, svid_ttl, now, false)
            {
                tracing::error!(error = %e, "server SVID renewal failed");
            }
        }
    });

    // Admin stream: agents (and expired SVIDs) reconciled from the datastore.
    let mut rx = shutdown_rx.clone();
    let pub_ctx = ctx.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = rx.wait_for(|s| *s) => break,
                _ = tokio::time::sleep(AGENT_PUBLISH_INTERVAL) => {}
            }
            if let Err(e) = crate::observe::publish_agents(&pub_ctx, pub_ctx.clock.now()).await {
                tracing::warn!(error = %e, "could not list agents for the admin stream");
            }
        }
    });
    // Admin stream: upstream connectivity.
    if let Some(up) = upstream.clone() {
        let mut rx = shutdown_rx.clone();
        let c = ctx.clone();
        let mut status = up.subscribe();
        tasks.spawn(async move {
            loop {
                let s = status.borrow_and_update().clone();
                c.hub
                    .set_upstream(crate::observe::connectivity(&c.config, &s), c.clock.now());
                tokio::select! {
                    _ = rx.wait_for(|s| *s) => break,
                    r = status.changed() => if r.is_err() { break },
                }
            }
        });
    }

    // Downstream: follow the upstream's bundle.
    if let Some(up) = upstream.clone() {
        let mut rx = shutdown_rx.clone();
        let poll_ctx = ctx.clone();
        let every = ctx
            .config
            .upstream
            .as_ref()
            .and_then(|u| u.bundle_poll_interval.to_std().ok())
            .unwrap_or(std::time::Duration::from_millis(250));
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = rx.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(every) => {}
                }
                match up.fetch_bundle().await {
                    Ok(b) => match poll_ctx
                        .ca
                        .set_upstream_bundle(b, poll_ctx.clock.now())
                        .await
                    {
                        Ok(true) => tracing::info!(
                            sequence = poll_ctx.ca.bundle().sequence,
                            "bundle updated from upstream"
                        ),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "could not store the upstream's bundle")
                        }
                    },
                    Err(e) => tracing::debug!(error = %e.message(), "upstream bundle poll failed"),
                }
            }
        });
    }

    let endpoints = Endpoints {
        trust_domain: ctx.config.trust_domain.to_string(),
        node_api: node_addr.to_string(),
        admin_socket: ctx.config.admin_socket.clone(),
        admin_tcp: admin_tcp_addr.map(|a| a.to_string()),
        spiffe_id: server_id.to_string(),
        pid: std::process::id(),
    };
    write_endpoints(&ctx.config.data_dir, &endpoints)?;
    tracing::info!(node_api = %node_addr, admin = %ctx.config.admin_socket.display(), trust_domain = %ctx.config.trust_domain, "trustdeck-server serving");
    Ok(RunningServer {
        endpoints,
        ctx,
        shutdown: shutdown_tx,
        tasks,
    })
}

fn write_endpoints(dir: &Path, e: &Endpoints) -> Result<(), RunError> {
    let path = dir.join(ENDPOINTS_FILE);
    let tmp = dir.join(format!(".{ENDPOINTS_FILE}.tmp"));
    let json = serde_json::to_string_pretty(e).map_err(|e| RunError::Other(e.to_string()))?;
    std::fs::write(&tmp, json).map_err(io(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(io(format!("write {}", path.display())))?;
    Ok(())
}
