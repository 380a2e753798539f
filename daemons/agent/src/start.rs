//! Wiring: the agent engine, its sync loop and the Workload API socket.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use trustdeck_admin::ObserveService;
use trustdeck_proto::admin::observe_server::ObserveServer;
use trustdeck_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;

use crate::agent::{Agent, AgentError};
use crate::config::Config;
use crate::workload_api::{WorkloadApi, check_header};

/// A running agent.
pub struct RunningAgent {
    /// The engine.
    pub agent: Arc<Agent>,
    /// The Workload API socket.
    pub socket: PathBuf,
    /// The admin socket.
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

fn bind(path: &Path, mode: u32) -> Result<UnixListener, AgentError> {
    let local = |what: &str, e: std::io::Error| {
        AgentError::Local(format!("{what} {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| local("create directory for", e))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(AgentError::Local(format!(
                "socket {} is in use by another running agent",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(|e| local("remove stale socket", e))?;
    }
    let l = UnixListener::bind(path).map_err(|e| local("bind", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| local("chmod", e))?;
    Ok(l)
}

/// Starts the agent: attests (unless a stored SVID is still valid), then serves the Workload
/// API and runs the sync loop. Attestation refused by the server is fatal; an unreachable
/// server is retried in the background.
pub async fn start(config: Config) -> Result<RunningAgent, AgentError> {
    let agent = Agent::new(config)?;
    if agent.agent_id().is_none() {
        match agent.attest().await {
            Ok(()) => {}
            Err(e @ AgentError::AttestationRefused(_)) | Err(e @ AgentError::Local(_)) => {
                return Err(e);
            }
            Err(e) => tracing::warn!(error = %e, "server unreachable; will keep trying to attest"),
        }
    }
    let socket = agent.config().socket_path.clone();
    // Any local process may connect to the Workload API: access is decided by workload
    // attestation. The admin socket is checked by peer uid.
    let listener = bind(&socket, 0o777)?;
    let admin_socket = agent.config().admin_socket.clone();
    let admin_listener = bind(&admin_socket, 0o660)?;
    let admin_tcp = match agent.config().admin_bind_address {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .map_err(|e| AgentError::Local(format!("bind admin API on {a}: {e}")))?,
        ),
        None => None,
    };
    let admin_tcp_addr = match &admin_tcp {
        Some(l) => Some(
            l.local_addr()
                .map_err(|e| AgentError::Local(format!("admin API address: {e}")))?,
        ),
        None => None,
    };
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(agent.clone().run(rx.clone()));
    let svc =
        SpiffeWorkloadApiServer::with_interceptor(WorkloadApi::new(agent.clone()), check_header);
    let mut srx = rx.clone();
    tasks.spawn(async move {
        let r = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                let _ = srx.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "Workload API stopped");
        }
    });
    tasks.spawn(crate::observe::publish(
        agent.clone(),
        trustdeck_process::clock::system(),
        rx.clone(),
    ));
    let observe = {
        let chain_agent = agent.clone();
        ObserveServer::new(ObserveService::new(
            agent.hub().clone(),
            Arc::new(agent.config().admin_access.clone()),
            trustdeck_process::clock::system(),
            Arc::new(move |n| crate::observe::chain_of(&chain_agent, n)),
        ))
        .max_encoding_message_size(64 << 20)
    };
    let mut arx = rx.clone();
    let obs = observe.clone();
    tasks.spawn(async move {
        let r = tonic::transport::Server::builder()
            .add_service(obs)
            .serve_with_incoming_shutdown(UnixListenerStream::new(admin_listener), async move {
                let _ = arx.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "admin API stopped");
        }
    });
    if let Some(l) = admin_tcp {
        let tls = agent.tls_server_config()?;
        let mut arx = rx.clone();
        tasks.spawn(async move {
            let r = tonic::transport::Server::builder()
                .add_service(observe)
                .serve_with_incoming_shutdown(
                    trustdeck_transport::serve::mtls_incoming(l, tls),
                    async move {
                        let _ = arx.wait_for(|s| *s).await;
                    },
                )
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "admin API (TCP) stopped");
            }
        });
    }
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
