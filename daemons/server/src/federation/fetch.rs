//! Fetching a partner's bundle from its endpoint: one HTTPS `GET`, bounded in time and size,
//! the endpoint checked by its profile, the answer judged by
//! [`trustdeck_federation::accept`].
//!
//! - `https_web`: the server certificate must chain to the configured CA file, else to the
//!   system's CAs, and name the URL's host (DNS or IP SAN).
//! - `https_spiffe`: the endpoint's X509-SVID must chain to a root of the bundle we hold for
//!   the partner (the bootstrap bundle until a fetch succeeds) and be exactly the configured
//!   endpoint SPIFFE ID. The chain it presented is reported either way, so "our copy lacks a
//!   root the partner signs with" can be shown.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use trustdeck_federation::{
    Accepted, EndpointProfile, FetchFailure, Fetched, Partner, PartnerState, Refusal,
    TransportKind, accept, missing_signing_root,
};
use trustdeck_spiffe::Bundle;
use trustdeck_transport::tls::provider;

use super::http::{MAX_HEAD, Response, ResponseError, get_request, parse_response};

/// How long a fetch may take unless configured.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest bundle accepted unless configured (what servers hand on to their agents).
pub const DEFAULT_MAX_BUNDLE: usize = trustdeck_spiffe::bundle::MAX_FOREIGN_BUNDLE_BYTES;

/// Where the system's CA certificates are looked for (`SSL_CERT_FILE` first).
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// A partner's bundle endpoint and the bounds of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://host[:port][/path]`.
    pub url: String,
    /// `https_web`: PEM CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// The whole fetch (connect, handshake, answer) must end within this.
    pub timeout: Duration,
    /// The largest body accepted.
    pub max_body: usize,
}

impl Endpoint {
    /// An endpoint at `url` with the default bounds and the system's CAs.
    pub fn new(url: impl Into<String>) -> Endpoint {
        Endpoint {
            url: url.into(),
            ca_file: None,
            timeout: DEFAULT_FETCH_TIMEOUT,
            max_body: DEFAULT_MAX_BUNDLE,
        }
    }
}

/// The parts of an endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query (`/` when absent).
    pub path: String,
}

impl Url {
    /// `host:port` as the `Host` header writes it (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses `https://host[:port][/path]` (no user info, no fragment).
pub fn parse_url(url: &str) -> Result<Url, String> {
    let bad = |why: &str| format!("endpoint URL {url:?}: {why}");
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| bad("must start with https://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') || path.contains('#') {
        return Err(bad("user info and fragments are not allowed"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad("bad port"))?,
        None => 443,
    };
    Ok(Url {
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

fn transport(kind: TransportKind, detail: impl Into<String>) -> FetchFailure {
    FetchFailure::Transport {
        kind,
        detail: detail.into(),
    }
}

/// Fetches `partner`'s bundle from `endpoint`, judged against what `state` holds. Never
/// panics or hangs: every failure is a typed [`FetchFailure`] in the result.
pub async fn fetch_bundle(partner: &Partner, endpoint: &Endpoint, state: &PartnerState) -> Fetched {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let result = match tokio::time::timeout(
        endpoint.timeout,
        fetch_inner(partner, endpoint, state, &seen),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(transport(
            TransportKind::Timeout,
            format!(
                "fetching {} took longer than {:?}",
                endpoint.url, endpoint.timeout
            ),
        )),
    };
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
    // A handshake the verifier refused fails with rustls's words; the verifier's typed
    // reason is the one reported.
    let result = match (result, seen.refusal) {
        (Err(_), Some(refusal)) => Err(FetchFailure::Refused(refusal)),
        (r, _) => r,
    };
    Fetched {
        result,
        presented_chain: seen.chain,
    }
}

async fn fetch_inner(
    partner: &Partner,
    endpoint: &Endpoint,
    state: &PartnerState,
    seen: &Arc<Mutex<Seen>>,
) -> Result<Accepted, FetchFailure> {
    let url = parse_url(&endpoint.url).map_err(|e| transport(TransportKind::Setup, e))?;
    let config = client_config(partner, endpoint, state, seen)?;
    let name = ServerName::try_from(url.host.clone())
        .map_err(|e| transport(TransportKind::Setup, format!("host {:?}: {e}", url.host)))?;
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| {
            transport(
                TransportKind::Connect,
                format!("connect to {}:{}: {e}", url.host, url.port),
            )
        })?;
    let mut tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            transport(
                TransportKind::Tls,
                format!("TLS with {}: {e}", endpoint.url),
            )
        })?;
    tls.write_all(&get_request(&url.authority(), &url.path))
        .await
        .map_err(|e| transport(TransportKind::Connect, format!("{}: {e}", endpoint.url)))?;
    let response = read_response(&mut tls, endpoint).await?;
    if response.status != 200 {
        return Err(transport(
            TransportKind::HttpStatus(response.status),
            format!("{} answered HTTP {}", endpoint.url, response.status),
        ));
    }
    Ok(accept(partner, state.last_good.as_ref(), &response.body)?)
}

/// Reads the answer until it is complete (by its length, its last chunk or the peer closing),
/// at most [`MAX_HEAD`] + `max_body` bytes.
async fn read_response<S: AsyncReadExt + Unpin>(
    s: &mut S,
    endpoint: &Endpoint,
) -> Result<Response, FetchFailure> {
    let limit = MAX_HEAD + endpoint.max_body;
    let too_large = || {
        transport(
            TransportKind::TooLarge,
            format!("{}: the answer is larger than {limit} bytes", endpoint.url),
        )
    };
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let eof = match s.read(&mut chunk).await {
            Ok(0) => true,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                false
            }
            // Peers often close TLS without close_notify after a complete answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => true,
            Err(e) => {
                return Err(transport(
                    TransportKind::Malformed,
                    format!("{}: {e}", endpoint.url),
                ));
            }
        };
        if buf.len() > limit {
            return Err(too_large());
        }
        match parse_response(&buf, endpoint.max_body, eof) {
            Ok(Some(r)) => return Ok(r),
            Ok(None) if eof => {
                return Err(transport(
                    TransportKind::Malformed,
                    format!("{}: the answer ends early", endpoint.url),
                ));
            }
            Ok(None) => {}
            Err(ResponseError::TooLarge(_)) => return Err(too_large()),
            Err(e) => {
                return Err(transport(
                    TransportKind::Malformed,
                    format!("{}: {e}", endpoint.url),
                ));
            }
        }
    }
}

/// The TLS client configuration for the partner's profile.
fn client_config(
    partner: &Partner,
    endpoint: &Endpoint,
    state: &PartnerState,
    seen: &Arc<Mutex<Seen>>,
) -> Result<Arc<rustls::ClientConfig>, FetchFailure> {
    let setup = |e: String| transport(TransportKind::Setup, e);
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(e.to_string()))?;
    let mut cfg = match partner.profile() {
        EndpointProfile::HttpsWeb => builder
            .with_root_certificates(web_roots(endpoint.ca_file.as_deref()).map_err(setup)?)
            .with_no_client_auth(),
        EndpointProfile::HttpsSpiffe { .. } => {
            let held = state.held().ok_or_else(|| {
                setup(format!(
                    "no bundle of {} to check its https_spiffe endpoint with: configure a \
                     bootstrap bundle",
                    partner.trust_domain()
                ))
            })?;
            let roots = roots_of(&held.x509_authorities).map_err(setup)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SpiffeEndpointVerifier {
                    partner: partner.clone(),
                    held: held.clone(),
                    roots,
                    seen: seen.clone(),
                }))
                .with_no_client_auth()
        }
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn roots_of(ders: &[Vec<u8>]) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    let (added, _) =
        store.add_parsable_certificates(ders.iter().map(|d| CertificateDer::from(d.clone())));
    if added == 0 {
        return Err("the bundle we hold has no usable X.509 authority".into());
    }
    Ok(Arc::new(store))
}

/// The CAs an `https_web` endpoint's certificate must chain to.
fn web_roots(ca_file: Option<&std::path::Path>) -> Result<RootCertStore, String> {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let path = match ca_file {
        Some(p) => p.to_path_buf(),
        None => env
            .into_iter()
            .chain(SYSTEM_CA_FILES.iter().map(PathBuf::from))
            .find(|p| p.is_file())
            .ok_or("no system CA certificates found; configure a CA file")?,
    };
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("CA file {}: {e}", path.display()))?
        .filter_map(Result::ok);
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("CA file {}: no usable certificate", path.display()));
    }
    Ok(store)
}

/// What the endpoint presented, and the typed reason the verifier refused it.
#[derive(Debug, Default)]
struct Seen {
    chain: Option<Vec<Vec<u8>>>,
    refusal: Option<Refusal>,
}

/// Checks an `https_spiffe` endpoint: chained to the bundle we hold, the configured ID.
#[derive(Debug)]
struct SpiffeEndpointVerifier {
    partner: Partner,
    held: Bundle,
    roots: Arc<RootCertStore>,
    seen: Arc<Mutex<Seen>>,
}

impl SpiffeEndpointVerifier {
    fn refuse(&self, refusal: Refusal) -> rustls::Error {
        let text = refusal.to_string();
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).refusal = Some(refusal);
        rustls::Error::General(text)
    }
}

impl ServerCertVerifier for SpiffeEndpointVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain: Vec<Vec<u8>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref().to_vec())
            .collect();
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).chain = Some(chain.clone());
        let cert = ParsedCertificate::try_from(end_entity)?;
        let algs = provider().signature_verification_algorithms.all;
        match verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            algs,
        ) {
            Ok(()) => {}
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
                return Err(self.refuse(Refusal::EndpointRootUnknown {
                    trust_domain: self.partner.trust_domain().clone(),
                    missing: missing_signing_root(&self.held, &chain),
                }));
            }
            Err(e) => return Err(e),
        }
        let id = trustdeck_spiffe::x509::spiffe_id_of(end_entity.as_ref())
            .map_err(|e| rustls::Error::General(format!("endpoint certificate: {e}")))?;
        self.partner
            .check_endpoint_id(&id)
            .map_err(|r| self.refuse(r))?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_silent_endpoint_times_out_and_a_closed_port_fails_to_connect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let partner = Partner::new(
            trustdeck_spiffe::TrustDomain::parse("p.test").expect("td"),
            EndpointProfile::HttpsWeb,
        )
        .expect("partner");
        let mut endpoint = Endpoint::new(format!("https://localhost:{}/", addr.port()));
        endpoint.timeout = Duration::from_millis(300);
        // Accepted by the kernel, never answered.
        let fetched = fetch_bundle(&partner, &endpoint, &PartnerState::default()).await;
        assert!(
            matches!(
                fetched.result,
                Err(FetchFailure::Transport {
                    kind: TransportKind::Timeout,
                    ..
                })
            ),
            "{:?}",
            fetched.result
        );
        drop(listener);
        let fetched = fetch_bundle(&partner, &endpoint, &PartnerState::default()).await;
        assert!(
            matches!(
                fetched.result,
                Err(FetchFailure::Transport {
                    kind: TransportKind::Connect,
                    ..
                })
            ),
            "{:?}",
            fetched.result
        );
    }

    #[tokio::test]
    async fn https_spiffe_needs_a_bundle_to_check_the_endpoint() {
        let td = trustdeck_spiffe::TrustDomain::parse("p.test").expect("td");
        let partner = Partner::new(
            td,
            EndpointProfile::HttpsSpiffe {
                endpoint_id: trustdeck_spiffe::SpiffeId::parse("spiffe://p.test/server")
                    .expect("id"),
            },
        )
        .expect("partner");
        let endpoint = Endpoint::new("https://127.0.0.1:1/");
        let fetched = fetch_bundle(&partner, &endpoint, &PartnerState::default()).await;
        assert!(
            matches!(
                &fetched.result,
                Err(FetchFailure::Transport {
                    kind: TransportKind::Setup,
                    detail,
                }) if detail.contains("bootstrap bundle")
            ),
            "{:?}",
            fetched.result
        );
    }

    #[test]
    fn urls() {
        let u = |host: &str, port, path: &str| Url {
            host: host.into(),
            port,
            path: path.into(),
        };
        assert_eq!(
            parse_url("https://td.example"),
            Ok(u("td.example", 443, "/"))
        );
        assert_eq!(
            parse_url("https://127.0.0.1:8443/bundle?x=1"),
            Ok(u("127.0.0.1", 8443, "/bundle?x=1"))
        );
        assert_eq!(parse_url("https://[::1]:9/"), Ok(u("::1", 9, "/")));
        assert_eq!(u("::1", 9, "/").authority(), "[::1]:9");
        assert_eq!(u("td.example", 443, "/").authority(), "td.example:443");
        for bad in [
            "http://td.example/",
            "https://user@td.example/",
            "https://:443/",
            "https://td.example:x/",
            "https://[::1/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
