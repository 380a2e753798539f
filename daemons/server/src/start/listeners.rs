//! The listeners: the node API on mTLS TCP, the admin API on a Unix socket and, when
//! configured, on mTLS TCP; bound before anything is served.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::Server;
use trustdeck_admin::ObserveService;
use trustdeck_admin::info::ServerInfo;
use trustdeck_proto::admin::observe_server::ObserveServer;
use trustdeck_proto::admin::server_admin_server::ServerAdminServer;
use trustdeck_proto::node::node_server::NodeServer;
use trustdeck_transport::limits::UidCounter;
use trustdeck_transport::serve::mtls_incoming_with;
use trustdeck_transport::unix::{uds_info, unix_incoming_per_uid};

use super::{RunError, io};
use crate::admin_api::AdminApi;
use crate::config::Config;
use crate::ctx::ServerCtx;
use crate::node_api::NodeApi;

/// Largest `Watch` message: a snapshot of a large fleet.
const MAX_WATCH_MESSAGE: usize = 64 << 20;

/// The bound listeners, not yet serving.
pub(super) struct Listeners {
    node: TcpListener,
    node_addr: SocketAddr,
    admin: UnixListener,
    admin_tcp: Option<(TcpListener, SocketAddr)>,
}

impl Listeners {
    /// Binds every configured listener.
    pub(super) async fn bind(config: &Config) -> Result<Listeners, RunError> {
        let node = TcpListener::bind(config.bind_address)
            .await
            .map_err(io(format!("bind node API on {}", config.bind_address)))?;
        let node_addr = node.local_addr().map_err(io("node API local address"))?;
        let admin = bind_admin_socket(config)?;
        let admin_tcp = match config.admin_bind_address {
            Some(a) => {
                let l = TcpListener::bind(a)
                    .await
                    .map_err(io(format!("bind admin API on {a}")))?;
                let addr = l.local_addr().map_err(io("admin API local address"))?;
                Some((l, addr))
            }
            None => None,
        };
        Ok(Listeners {
            node,
            node_addr,
            admin,
            admin_tcp,
        })
    }

    /// What `server.json` says about these listeners.
    pub(super) fn info(&self, ctx: &ServerCtx) -> ServerInfo {
        ServerInfo {
            trust_domain: ctx.config.trust_domain.clone(),
            node_api: self.node_addr,
            admin_socket: ctx.config.admin_socket.clone(),
            admin_tcp: self.admin_tcp.as_ref().map(|(_, a)| *a),
            spiffe_id: ctx.server_id.clone(),
            federation_bundle_endpoint: None,
            pid: std::process::id(),
        }
    }

    /// Serves the node API and the admin API on every listener until shutdown.
    pub(super) fn serve(
        self,
        ctx: &Arc<ServerCtx>,
        tls: Arc<rustls::ServerConfig>,
        shutdown: &watch::Receiver<bool>,
        tasks: &mut JoinSet<()>,
    ) {
        let limits = ctx.config.connections.limits();
        let node = Server::builder()
            .add_service(NodeServer::new(NodeApi::new(ctx.clone())))
            .serve_with_incoming_shutdown(
                mtls_incoming_with(self.node, tls.clone(), limits),
                stopped(shutdown),
            );
        spawn_server(tasks, "node API", node);

        let observe = observe_service(ctx);
        let admin = ServerAdminServer::new(AdminApi::new(ctx.clone()));
        let unix = Server::builder()
            .add_service(admin.clone())
            .add_service(observe.clone())
            .serve_with_incoming_shutdown(
                unix_incoming_per_uid(
                    self.admin,
                    "admin socket",
                    UidCounter::for_this_process(),
                    uds_info,
                ),
                stopped(shutdown),
            );
        spawn_server(tasks, "admin API", unix);
        if let Some((l, _)) = self.admin_tcp {
            let tcp = Server::builder()
                .add_service(admin)
                .add_service(observe)
                .serve_with_incoming_shutdown(
                    mtls_incoming_with(l, tls, limits),
                    stopped(shutdown),
                );
            spawn_server(tasks, "admin API (TCP)", tcp);
        }
    }
}

fn observe_service(ctx: &Arc<ServerCtx>) -> ObserveServer<ObserveService> {
    let chain_ctx = ctx.clone();
    ObserveServer::new(ObserveService::new(
        ctx.hub.clone(),
        Arc::new(ctx.config.admin_access.clone()),
        ctx.clock.clone(),
        Arc::new(move |n| crate::observe::chain_of(&chain_ctx, n)),
    ))
    .max_encoding_message_size(MAX_WATCH_MESSAGE)
}

/// Resolves once the server is shutting down.
fn stopped(shutdown: &watch::Receiver<bool>) -> impl Future<Output = ()> + use<> {
    let mut rx = shutdown.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

fn spawn_server(
    tasks: &mut JoinSet<()>,
    what: &'static str,
    serve: impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static,
) {
    tasks.spawn(async move {
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "{what} stopped");
        }
    });
}

/// Binds the admin socket with the mode and group its configured uids need, replacing a
/// stale one but never one a running server answers on.
fn bind_admin_socket(config: &Config) -> Result<UnixListener, RunError> {
    use trustdeck_admin::socket::{BindError, bind};
    bind(&config.admin_socket, &config.admin_socket_access).map_err(|e| match e {
        BindError::InUse(path) => RunError::AdminSocketInUse { path },
        BindError::Io { what, path, source } => RunError::Io {
            what: format!("{what} admin socket {}", path.display()),
            source,
        },
    })
}
