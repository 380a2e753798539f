//! tonic channels over mTLS TCP and over Unix sockets.

use std::path::PathBuf;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

/// A lazily connecting channel to `addr` ("host:port") over TLS with `config`. The server's
/// identity is checked by the config's verifier (a SPIFFE ID), not by DNS name.
pub fn mtls_channel(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Channel, tonic::transport::Error> {
    // Node API calls are short: a frozen or silently unreachable server fails them in
    // seconds instead of hanging the caller (keepalive pings detect dead connections).
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(15))
        .http2_keep_alive_interval(std::time::Duration::from_secs(10))
        .keep_alive_timeout(std::time::Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    Ok(tls_over(endpoint, addr, config))
}

fn tls_over(endpoint: Endpoint, addr: &str, config: Arc<rustls::ClientConfig>) -> Channel {
    let addr = addr.to_string();
    let connector = TlsConnector::from(config);
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
        let addr = addr.clone();
        let connector = connector.clone();
        async move {
            let tcp = TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            // The name is not used for verification; SPIFFE IDs are.
            let name = ServerName::try_from("trustdeck.invalid")
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    }))
}

/// Settings for long-lived admin streams: no request timeout (a `Watch` lasts for hours), but
/// keepalive pings so a frozen daemon (`kill -STOP`) is noticed within about 5 seconds.
fn watch_endpoint(uri: String) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(uri)?
        .connect_timeout(std::time::Duration::from_secs(3))
        .http2_keep_alive_interval(std::time::Duration::from_secs(2))
        .keep_alive_timeout(std::time::Duration::from_secs(3))
        .keep_alive_while_idle(true))
}

/// A channel for admin streams over a Unix socket.
pub fn watch_channel_uds(path: impl Into<PathBuf>) -> Result<Channel, tonic::transport::Error> {
    let path = path.into();
    Ok(watch_endpoint("http://localhost".into())?.connect_with_connector_lazy(
        tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }),
    ))
}

/// A channel for admin streams over mTLS TCP.
pub fn watch_channel_tls(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Channel, tonic::transport::Error> {
    Ok(tls_over(
        watch_endpoint(format!("http://{addr}"))?,
        addr,
        config,
    ))
}

/// The SPIFFE ID a trustdeck server presents on its node API unless configured otherwise:
/// `spiffe://<trust domain>/trustdeck/server`.
pub fn default_server_id(td: &trustdeck_spiffe::TrustDomain) -> trustdeck_spiffe::SpiffeId {
    trustdeck_spiffe::SpiffeId::from_segments(td, &["trustdeck", "server"])
        .unwrap_or_else(|_| td.id())
}

/// A node API client for the server at `addr`, which must present `server_id`; presents
/// `identity` when it has one, trusting `roots`. The channel follows later changes of both.
pub fn node_client(
    addr: &str,
    identity: &crate::SharedIdentity,
    roots: &crate::SharedRoots,
    server_id: &trustdeck_spiffe::SpiffeId,
) -> Result<trustdeck_proto::node::node_client::NodeClient<Channel>, crate::TlsError> {
    let tls = crate::tls::client_config(identity.clone(), roots.clone(), server_id.clone())?;
    let ch = mtls_channel(addr, tls)
        .map_err(|e| crate::TlsError::Config(format!("server address {addr}: {e}")))?;
    Ok(trustdeck_proto::node::node_client::NodeClient::new(ch))
}

/// A lazily connecting channel to a gRPC server on a Unix socket.
pub fn uds_channel(path: impl Into<PathBuf>) -> Result<Channel, tonic::transport::Error> {
    let path = path.into();
    Ok(Endpoint::from_static("http://localhost")
        .connect_with_connector_lazy(tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        })))
}
