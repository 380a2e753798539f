//! Accepting mTLS connections for tonic, with each request carrying its peer's certificates.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use trustdeck_spiffe::SpiffeId;

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request knows about its TCP peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: Option<SocketAddr>,
    /// Verified certificate chain (leaf first), if the peer presented one.
    pub certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// A server-side TLS stream that tells tonic about its peer.
pub struct MtlsStream(TlsStream<TcpStream>);

impl Connected for MtlsStream {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        let (tcp, conn) = self.0.get_ref();
        PeerInfo {
            addr: tcp.peer_addr().ok(),
            certs: conn
                .peer_certificates()
                .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect())),
        }
    }
}

impl AsyncRead for MtlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for MtlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Accepts TCP connections, completes TLS handshakes concurrently (a slow or broken client
/// never blocks others) and yields established streams for
/// `tonic::transport::Server::serve_with_incoming`.
pub fn mtls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<Result<MtlsStream, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let conn_tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = conn_tx.send(Ok(MtlsStream(tls))).await;
                    }
                    Ok(Err(e)) => tracing::info!(peer = %addr, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::info!(peer = %addr, "TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                break;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// The SPIFFE ID of the verified client certificate of a request, if any.
pub fn peer_spiffe_id<T>(req: &tonic::Request<T>) -> Option<SpiffeId> {
    let peer = req.extensions().get::<PeerInfo>()?;
    let leaf = peer.certs.as_ref()?.first()?;
    trustdeck_spiffe::x509::spiffe_id_of(leaf.as_ref()).ok()
}

/// The verified client certificate chain of a request, if any.
pub fn peer_certs<T>(req: &tonic::Request<T>) -> Option<Arc<Vec<CertificateDer<'static>>>> {
    req.extensions().get::<PeerInfo>()?.certs.clone()
}
