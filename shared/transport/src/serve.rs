//! Accepting mTLS connections for tonic, with each request carrying its peer's certificates.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use trustdeck_spiffe::SpiffeId;

use crate::limits::{AcceptBackoff, BurstLog, ConnectionLimits, IdleRule, IdleTimer};

/// What a request knows about its TCP peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: Option<SocketAddr>,
    /// Verified certificate chain (leaf first), if the peer presented one.
    pub certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// A server-side TLS stream that tells tonic about its peer, closed when idle too long
/// (see [`ConnectionLimits::idle_timeout`]).
pub struct MtlsStream {
    tls: TlsStream<TcpStream>,
    idle: IdleTimer,
    /// The slot among connections without an identity, if this is one.
    _unidentified: Option<OwnedSemaphorePermit>,
}

fn idle_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "idle connection closed")
}

impl Connected for MtlsStream {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        let (tcp, conn) = self.tls.get_ref();
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
        let before = buf.filled().len();
        match Pin::new(&mut self.tls).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.idle.activity(true);
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.idle.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for MtlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.tls).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            self.idle.activity(false);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}

/// Accepts TCP connections, completes TLS handshakes concurrently (a slow or broken client
/// never blocks others) and yields established streams for
/// `tonic::transport::Server::serve_with_incoming`, with the limits of this process's
/// descriptor count.
pub fn mtls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<Result<MtlsStream, std::io::Error>> {
    mtls_incoming_with(listener, config, ConnectionLimits::for_this_process())
}

/// [`mtls_incoming`] with explicit limits.
pub fn mtls_incoming_with(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    limits: ConnectionLimits,
) -> ReceiverStream<Result<MtlsStream, std::io::Error>> {
    static ACCEPT_FAILED: BurstLog = BurstLog::new("node connections: accept failed");
    static HANDSHAKES_FULL: BurstLog =
        BurstLog::new("connections refused: too many TLS handshakes in progress (max_handshaking)");
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let handshaking = Arc::new(Semaphore::new(limits.max_handshaking));
    let unidentified = Arc::new(Semaphore::new(limits.max_unidentified));
    tokio::spawn(async move {
        let mut backoff = AcceptBackoff::default();
        while !tx.is_closed() {
            let (tcp, addr) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    ACCEPT_FAILED.note(&e);
                    tokio::time::sleep(backoff.failed()).await;
                    continue;
                }
            };
            backoff.succeeded();
            let Ok(slot) = handshaking.clone().try_acquire_owned() else {
                HANDSHAKES_FULL.note(&addr);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx, unidentified) = (acceptor.clone(), tx.clone(), unidentified.clone());
            tokio::spawn(async move {
                let tls =
                    tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await;
                drop(slot);
                let tls = match tls {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        return tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                    }
                    Err(_) => return tracing::debug!(peer = %addr, "TLS handshake timed out"),
                };
                if let Some(stream) = established(tls, &unidentified, limits, addr) {
                    let _ = tx.send(Ok(stream)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// The stream for an established connection, or `None` when it has no identity and the
/// connections without one are at their cap.
fn established(
    tls: TlsStream<TcpStream>,
    unidentified: &Arc<Semaphore>,
    limits: ConnectionLimits,
    addr: SocketAddr,
) -> Option<MtlsStream> {
    static UNIDENTIFIED_FULL: BurstLog = BurstLog::new(
        "connections refused: too many connections without a client certificate \
         (max_unidentified)",
    );
    let identified = tls.get_ref().1.peer_certificates().is_some();
    let (rule, permit) = if identified {
        (IdleRule::UntilFirstRead, None)
    } else {
        let Ok(p) = unidentified.clone().try_acquire_owned() else {
            UNIDENTIFIED_FULL.note(&addr);
            return None;
        };
        (IdleRule::Always, Some(p))
    };
    Some(MtlsStream {
        tls,
        idle: IdleTimer::new(rule, limits.idle_timeout),
        _unidentified: permit,
    })
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
