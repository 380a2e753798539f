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
    let addr = addr.to_string();
    // Node API calls are short: a frozen or silently unreachable server fails them in
    // seconds instead of hanging the caller (keepalive pings detect dead connections).
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(15))
        .http2_keep_alive_interval(std::time::Duration::from_secs(10))
        .keep_alive_timeout(std::time::Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    let connector = TlsConnector::from(config);
    Ok(
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
        })),
    )
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
