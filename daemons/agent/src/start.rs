//! Wiring: the agent engine, its sync loop and the Workload API socket.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use trustdeck_admin::ObserveService;
use trustdeck_admin::socket::{BindError, SocketAccess};
use trustdeck_proto::admin::observe_server::ObserveServer;
use trustdeck_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;

use trustdeck_process::clock::Clock;

use crate::agent::{Agent, AgentError};
use crate::config::Config;
use crate::limits;
use crate::peer::PeerStream;
use crate::workload_api::{WorkloadApi, check_header};

/// A running agent.
pub struct RunningAgent {
    pub agent: Arc<Agent>,
    /// The Workload API socket.
    pub socket: PathBuf,
    /// The admin socket (the read-only `Observe` API).
    pub admin_socket: PathBuf,
    /// The admin API on mTLS TCP, when configured.
    pub admin_tcp: Option<std::net::SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl RunningAgent {
    /// Stops serving and waits for the tasks.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.admin_socket);
    }

    /// Waits until a task ends (normally never before shutdown).
    pub async fn wait(&mut self) {
        self.tasks.join_next().await;
    }
}

fn bind(path: &Path, access: &SocketAccess) -> Result<UnixListener, AgentError> {
    trustdeck_admin::socket::bind(path, access).map_err(|e| match e {
        BindError::InUse(path) => AgentError::SocketInUse(path),
        BindError::Io { what, path, source } => AgentError::Socket { what, path, source },
    })
}

/// Starts the agent: attests (unless a stored SVID is still valid), then serves the Workload
/// API and runs the sync loop. Attestation refused by the server is fatal; an unreachable
/// server, or a TPM that no longer loads the DevID key, is retried in the background.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<RunningAgent, AgentError> {
    let agent = Agent::new(config, clock)?;
    if agent.agent_id().is_none() {
        match agent.attest().await {
            Ok(()) => {}
            Err(e) if e.is_fatal_at_start() => return Err(e),
            Err(e) => tracing::warn!(error = %e, "not attested; will keep trying to attest"),
        }
    }
    let socket = agent.config().socket_path.clone();
    // Any local process may connect to the Workload API: access is decided by workload
    // attestation. The admin socket is checked by peer uid.
    let everyone = SocketAccess {
        mode: 0o777,
        gid: None,
    };
    let listener = bind(&socket, &everyone)?;
    let admin_socket = agent.config().admin_socket.clone();
    for w in &agent.config().admin_socket_warnings {
        tracing::warn!("{w}");
    }
    let admin_listener = bind(&admin_socket, &agent.config().admin_socket_access)?;
    let admin_tcp = bind_admin_tcp(agent.config().admin_bind_address).await?;
    let admin_tcp_addr = admin_tcp.as_ref().map(|(_, a)| *a);
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(agent.clone().run(rx.clone()));
    let svc = InterceptedService::new(
        SpiffeWorkloadApiServer::new(WorkloadApi::new(agent.clone()))
            .max_decoding_message_size(limits::MAX_REQUEST_BYTES),
        check_header,
    );
    let srx = rx.clone();
    tasks.spawn(async move {
        let r = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(limits::MAX_STREAMS_PER_CONNECTION))
            .add_service(svc)
            .serve_with_incoming_shutdown(workload_incoming(listener), stopped(srx))
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "Workload API stopped");
        }
    });
    tasks.spawn(crate::observe::publish(agent.clone(), rx.clone()));
    serve_admin(&agent, admin_listener, admin_tcp, &rx, &mut tasks)?;
    tracing::info!(socket = %socket.display(), admin = %admin_socket.display(), agent = ?agent.agent_id().map(|i| i.to_string()), "trustdeck-agent serving the Workload API");
    Ok(RunningAgent {
        agent,
        socket,
        admin_socket,
        admin_tcp: admin_tcp_addr,
        shutdown,
        tasks,
    })
}

/// The Workload API's connections, each with its peer pinned; a uid holding
/// [`limits::max_connections_per_uid`] connections already has its next one closed at accept.
fn workload_incoming(
    listener: tokio::net::UnixListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<PeerStream>> {
    trustdeck_transport::unix::unix_incoming_per_uid(
        listener,
        "Workload API socket",
        limits::UidCounter::for_this_process(),
        |s| Some(crate::peer::pin(s)),
    )
}

/// Resolves when `rx` turns true.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The admin API's TCP listener and its address, when one is configured.
async fn bind_admin_tcp(
    addr: Option<std::net::SocketAddr>,
) -> Result<Option<(tokio::net::TcpListener, std::net::SocketAddr)>, AgentError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let err = |source| AgentError::AdminListener { addr, source };
    let l = tokio::net::TcpListener::bind(addr).await.map_err(err)?;
    let local = l.local_addr().map_err(err)?;
    Ok(Some((l, local)))
}

/// Serves the read-only admin API (`Observe`) on the admin socket and, when configured, on
/// mTLS TCP with the agent SVID.
fn serve_admin(
    agent: &Arc<Agent>,
    socket: UnixListener,
    tcp: Option<(tokio::net::TcpListener, std::net::SocketAddr)>,
    rx: &watch::Receiver<bool>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<(), AgentError> {
    let chain_agent = agent.clone();
    let observe = ObserveServer::new(ObserveService::new(
        agent.hub().clone(),
        Arc::new(trustdeck_admin::AdminAccess {
            refusals: Some(trustdeck_admin::refusals::log_sink(agent.clock().clone())),
            ..agent.config().admin_access.clone()
        }),
        agent.clock().clone(),
        Arc::new(move |n| crate::observe::chain_of(&chain_agent, n)),
    ))
    .max_encoding_message_size(64 << 20);
    let (obs, arx) = (observe.clone(), rx.clone());
    tasks.spawn(async move {
        let r = tonic::transport::Server::builder()
            .add_service(obs)
            .serve_with_incoming_shutdown(
                trustdeck_transport::unix::unix_incoming_per_uid(
                    socket,
                    "admin socket",
                    limits::UidCounter::for_this_process(),
                    trustdeck_transport::unix::uds_info,
                ),
                stopped(arx),
            )
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "admin API stopped");
        }
    });
    if let Some((l, _)) = tcp {
        let tls = agent.tls_server_config()?;
        let arx = rx.clone();
        tasks.spawn(async move {
            let r = tonic::transport::Server::builder()
                .add_service(observe)
                .serve_with_incoming_shutdown(
                    trustdeck_transport::serve::mtls_incoming(l, tls),
                    stopped(arx),
                )
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "admin API (TCP) stopped");
            }
        });
    }
    Ok(())
}
