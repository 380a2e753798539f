//! The federation bundle endpoint: HTTPS `GET /` answers this trust domain's current bundle as
//! SPIFFE bundle JSON (`spiffe_sequence`, `spiffe_refresh_hint`). No client authentication;
//! each connection gets one answer and is closed. Bounded like the node API: the
//! `[connections]` handshake timeout, the idle timeout for the request head, a head of at most
//! [`MAX_HEAD`] bytes, at most `max_unidentified` connections at once and an eighth of them
//! from one source address (more are closed on accept), and a deadline on the whole
//! connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use trustdeck_spiffe::Bundle;
use trustdeck_transport::limits::{BurstLog, PlaceCounter};
use trustdeck_transport::{ConnectionLimits, SharedIdentity};

use super::http::{MAX_HEAD, Request, parse_request, response};
use crate::config::{BundleEndpoint, ServingProfile};

/// How long writing the answer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What counts as one source: an IPv4 address (an IPv4-mapped IPv6 one as IPv4), or an
/// IPv6 /64 (one host may hold a whole /64).
pub fn source_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip.to_canonical() {
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            std::net::IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The connections one source address may hold at once: an eighth of `max_unidentified`
/// (at least 2), so one peer cannot take every place.
pub fn per_source(max_unidentified: usize) -> usize {
    (max_unidentified / 8).max(2)
}

/// Why the bundle endpoint cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The serving certificate file is unreadable or holds no certificate.
    #[error("federation.bundle_endpoint.certificate_path {}: {reason}", path.display())]
    Certificate { path: PathBuf, reason: String },
    /// The key file is unreadable or holds no usable private key.
    #[error("federation.bundle_endpoint.key_path {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    /// The key is not the certificate's.
    #[error(
        "federation.bundle_endpoint: key_path {} is not the key of the certificate in \
         certificate_path {}",
        key.display(),
        certificate.display()
    )]
    KeyMismatch { certificate: PathBuf, key: PathBuf },
    /// rustls refused the configuration.
    #[error("federation.bundle_endpoint: TLS configuration: {0}")]
    Tls(String),
    /// The address could not be bound.
    #[error("federation.bundle_endpoint: bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Reads an `https_web` serving certificate chain and its key, checking they belong together.
pub fn load_web_identity(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, EndpointError> {
    let cert_err = |reason: String| EndpointError::Certificate {
        path: cert.to_path_buf(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block".into()));
    }
    let key_err = |reason: String| EndpointError::Key {
        path: key.to_path_buf(),
        reason,
    };
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| key_err(e.to_string()))?;
    let signer = trustdeck_transport::tls::provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| key_err(e.to_string()))?;
    let ck = CertifiedKey::new(chain, signer);
    match ck.keys_match() {
        Ok(()) => Ok(Arc::new(ck)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(EndpointError::KeyMismatch {
            certificate: cert.to_path_buf(),
            key: key.to_path_buf(),
        }),
        Err(e) => Err(cert_err(e.to_string())),
    }
}

/// What `check-config` checks beyond the text: the `https_web` files.
pub fn check_files(endpoint: Option<&BundleEndpoint>) -> Result<(), EndpointError> {
    if let Some(BundleEndpoint {
        profile:
            ServingProfile::HttpsWeb {
                certificate_path,
                key_path,
            },
        ..
    }) = endpoint
    {
        load_web_identity(certificate_path, key_path)?;
    }
    Ok(())
}

/// A fixed serving certificate.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The endpoint's TLS configuration: the files' certificate, or the server's own SVID
/// (`own`, renewed in place as it rotates).
fn tls_config(
    endpoint: &BundleEndpoint,
    own: &SharedIdentity,
) -> Result<Arc<rustls::ServerConfig>, EndpointError> {
    let resolver: Arc<dyn ResolvesServerCert> = match &endpoint.profile {
        ServingProfile::HttpsWeb {
            certificate_path,
            key_path,
        } => Arc::new(Fixed(load_web_identity(certificate_path, key_path)?)),
        ServingProfile::HttpsSpiffe => Arc::new(own.clone()),
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(trustdeck_transport::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| EndpointError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A bound bundle endpoint, not yet serving.
pub struct BoundEndpoint {
    listener: TcpListener,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    refresh_hint: Option<u64>,
}

impl BoundEndpoint {
    /// Loads the serving identity and binds the address.
    pub async fn bind(
        endpoint: &BundleEndpoint,
        own: &SharedIdentity,
    ) -> Result<BoundEndpoint, EndpointError> {
        let acceptor = TlsAcceptor::from(tls_config(endpoint, own)?);
        let bind_err = |source| EndpointError::Bind {
            addr: endpoint.bind_address,
            source,
        };
        let listener = TcpListener::bind(endpoint.bind_address)
            .await
            .map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        Ok(BoundEndpoint {
            listener,
            addr,
            acceptor,
            refresh_hint: endpoint
                .refresh_hint
                .and_then(|d| u64::try_from(d.num_seconds()).ok()),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `bundle`'s current value until `shutdown`.
    pub fn spawn(
        self,
        bundle: watch::Receiver<Arc<Bundle>>,
        limits: ConnectionLimits,
        shutdown: watch::Receiver<bool>,
        tasks: &mut JoinSet<()>,
    ) {
        tasks.spawn(self.serve(bundle, limits, shutdown));
    }

    async fn serve(
        self,
        bundle: watch::Receiver<Arc<Bundle>>,
        limits: ConnectionLimits,
        mut shutdown: watch::Receiver<bool>,
    ) {
        static ACCEPT_FAILED: BurstLog = BurstLog::new("bundle endpoint: accept failed");
        static FULL: BurstLog = BurstLog::new(
            "bundle endpoint: connection closed, too many at once (max_unidentified)",
        );
        static SOURCE_FULL: BurstLog = BurstLog::new(
            "bundle endpoint: connection closed, too many at once from one source address",
        );
        let slots = Arc::new(Semaphore::new(limits.max_unidentified));
        let sources = PlaceCounter::new(per_source(limits.max_unidentified));
        let deadline = limits.handshake_timeout + limits.idle_timeout + WRITE_TIMEOUT;
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        tokio::pin!(stop);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut stop => return,
                accepted = self.listener.accept() => match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        ACCEPT_FAILED.note(&e);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Some(place) = sources.acquire(source_key(peer.ip())) else {
                SOURCE_FULL.note(&peer);
                continue;
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                FULL.note(&peer);
                continue;
            };
            let (acceptor, bundle, hint) =
                (self.acceptor.clone(), bundle.clone(), self.refresh_hint);
            tokio::spawn(async move {
                let conn = answer_one(tcp, acceptor, bundle, hint, limits);
                match tokio::time::timeout(deadline, conn).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "bundle endpoint connection"),
                    Err(_) => tracing::debug!(%peer, "bundle endpoint connection timed out"),
                }
                drop((slot, place));
            });
        }
    }
}

/// One connection: the handshake, the request head, the answer.
async fn answer_one(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    bundle: watch::Receiver<Arc<Bundle>>,
    hint: Option<u64>,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    let timed_out =
        |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_string());
    let mut tls = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp))
        .await
        .map_err(|_| timed_out("TLS handshake"))??;
    let head = tokio::time::timeout(limits.idle_timeout, read_head(&mut tls))
        .await
        .map_err(|_| timed_out("request head"))??;
    let current = bundle.borrow().clone();
    let reply = answer(head, &current, hint);
    tls.write_all(&reply).await?;
    tls.shutdown().await
}

/// What the peer asked for; `None` when the head is larger than [`MAX_HEAD`].
async fn read_head<S: AsyncReadExt + Unpin>(s: &mut S) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Some(Request::Malformed));
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_request(&buf) {
            Request::Partial if buf.len() < MAX_HEAD => {}
            Request::Partial => return Ok(None),
            r => return Ok(Some(r)),
        }
    }
}

/// The answer to a request head.
fn answer(head: Option<Request>, bundle: &Bundle, hint: Option<u64>) -> Vec<u8> {
    const TEXT: &str = "text/plain; charset=utf-8";
    match head {
        Some(Request::Get(path)) if path == "/" => {
            let mut b = bundle.clone();
            if hint.is_some() {
                b.refresh_hint_secs = hint;
            }
            response(200, "OK", "application/json", b.to_json().as_bytes())
        }
        Some(Request::Get(_)) => response(404, "Not Found", TEXT, b"the bundle is at /\n"),
        Some(Request::OtherMethod) => response(405, "Method Not Allowed", TEXT, b"GET only\n"),
        Some(Request::Malformed | Request::Partial) => {
            response(400, "Bad Request", TEXT, b"not an HTTP/1.1 request\n")
        }
        None => response(
            431,
            "Request Header Fields Too Large",
            TEXT,
            b"request too large\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::parse_response;
    use super::*;

    #[test]
    fn answers() {
        let td = trustdeck_spiffe::TrustDomain::parse("example.org").expect("td");
        let mut b = Bundle::new(td);
        b.sequence = 7;
        b.refresh_hint_secs = Some(300);
        let body = |head, hint| {
            let r = parse_response(&answer(head, &b, hint), 1 << 20, true)
                .expect("ok")
                .expect("whole");
            (r.status, String::from_utf8(r.body).expect("utf-8"))
        };
        let (status, json) = body(Some(Request::Get("/".into())), None);
        assert_eq!(status, 200);
        assert_eq!(
            json,
            r#"{"keys":[],"spiffe_refresh_hint":300,"spiffe_sequence":7}"#
        );
        let (_, json) = body(Some(Request::Get("/".into())), Some(5));
        assert!(json.contains(r#""spiffe_refresh_hint":5"#), "{json}");
        assert_eq!(body(Some(Request::Get("/x".into())), None).0, 404);
        assert_eq!(body(Some(Request::OtherMethod), None).0, 405);
        assert_eq!(body(Some(Request::Malformed), None).0, 400);
        assert_eq!(body(None, None).0, 431);
    }

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["bundle.test".into()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }

    #[test]
    fn web_identity_files_are_checked() {
        let dir = tempfile::tempdir().expect("tmp");
        let (cert, key) = write_pair(dir.path(), "a");
        let (_, other_key) = write_pair(dir.path(), "b");
        assert!(load_web_identity(&cert, &key).is_ok());
        let err = load_web_identity(&cert, &other_key).expect_err("mismatch");
        assert!(matches!(err, EndpointError::KeyMismatch { .. }), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = load_web_identity(&missing, &key).expect_err("unreadable");
        assert!(matches!(err, EndpointError::Certificate { .. }), "{err}");
        let err = load_web_identity(&key, &key).expect_err("no certificate");
        assert!(matches!(err, EndpointError::Certificate { .. }), "{err}");
        let err = load_web_identity(&cert, &cert).expect_err("no key");
        assert!(matches!(err, EndpointError::Key { .. }), "{err}");
        assert!(err.to_string().contains("key_path"), "{err}");
    }
}
