//! rustls configuration with run-time swappable identity and roots.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use trustdeck_spiffe::SpiffeId;

/// Errors building TLS state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The private key could not be loaded into rustls.
    #[error("TLS private key rejected: {0}")]
    Key(String),
    /// No usable root certificate.
    #[error("trust bundle has no usable X.509 authority: {0}")]
    Roots(String),
    /// rustls configuration failed.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The ring crypto provider, the only one trustdeck uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// This process's certificate chain and key, replaceable at run time (SVID renewal).
#[derive(Debug, Clone, Default)]
pub struct SharedIdentity(Arc<RwLock<Option<Arc<CertifiedKey>>>>);

impl SharedIdentity {
    /// An empty identity (no certificate yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the identity with `chain` (leaf first) and a PKCS#8 key.
    pub fn set(&self, chain: Vec<Vec<u8>>, pkcs8_key: &[u8]) -> Result<(), TlsError> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8_key.to_vec()));
        let signer = rustls::crypto::ring::sign::any_ecdsa_type(&key)
            .map_err(|e| TlsError::Key(e.to_string()))?;
        let certs = chain.into_iter().map(CertificateDer::from).collect();
        let ck = Arc::new(CertifiedKey::new(certs, signer));
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(ck);
        Ok(())
    }

    /// Removes the identity.
    pub fn clear(&self) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The current identity.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ResolvesServerCert for SharedIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for SharedIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
    fn has_certs(&self) -> bool {
        self.current().is_some()
    }
}

#[derive(Debug)]
struct RootsInner {
    store: Arc<RootCertStore>,
    client_verifier: Arc<dyn ClientCertVerifier>,
}

/// Trusted X.509 authorities (the trust bundle), replaceable at run time (bundle rotation).
#[derive(Debug, Clone)]
pub struct SharedRoots(Arc<RwLock<RootsInner>>);

fn build_roots(ders: &[Vec<u8>]) -> Result<RootsInner, TlsError> {
    let mut store = RootCertStore::empty();
    for der in ders {
        store
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| TlsError::Roots(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(TlsError::Roots("no certificates".into()));
    }
    let store = Arc::new(store);
    let client_verifier = WebPkiClientVerifier::builder_with_provider(store.clone(), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(RootsInner {
        store,
        client_verifier,
    })
}

impl SharedRoots {
    /// Roots from DER certificates.
    pub fn new(ders: &[Vec<u8>]) -> Result<Self, TlsError> {
        Ok(Self(Arc::new(RwLock::new(build_roots(ders)?))))
    }

    /// Replaces the roots.
    pub fn set(&self, ders: &[Vec<u8>]) -> Result<(), TlsError> {
        let inner = build_roots(ders)?;
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = inner;
        Ok(())
    }

    fn store(&self) -> Arc<RootCertStore> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .store
            .clone()
    }

    fn client_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .client_verifier
            .clone()
    }
}

/// Checks a handshake signature with the ring provider's algorithms (both verifiers share it).
fn handshake_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    tls13: bool,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let algs = &provider().signature_verification_algorithms;
    if tls13 {
        verify_tls13_signature(message, cert, dss, algs)
    } else {
        verify_tls12_signature(message, cert, dss, algs)
    }
}

/// Verifies client certificates against the current roots; clients without a certificate are
/// let through to calls that do not need one (attestation), and the service checks the rest.
#[derive(Debug)]
struct SpiffeClientVerifier {
    roots: SharedRoots,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.roots
            .client_verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss, false)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss, true)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A server's certificate chains to no root of this node's bundle: what the operator does
/// about it (the server's CA replaced, e.g. by `run --replace-lost-keys`).
#[derive(Debug, thiserror::Error)]
#[error(
    "the server's certificate chains to no root in this node's bundle; if the server's CA was \
     replaced (`trustdeck-server run --replace-lost-keys`), give this node its new bundle \
     (`trustdeck-server bundle show --format pem` into `trust_bundle_path`, then \
     `trustdeck-agent run --rebootstrap-bundle`)"
)]
pub struct ServerRootUnknown;

/// Verifies a server's X509-SVID chain against the current roots and requires its SPIFFE ID to
/// be the expected one (DNS names play no part).
#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: SharedRoots,
    expected: SpiffeId,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots.store(),
            intermediates,
            now,
            provider().signature_verification_algorithms.all,
        )
        .map_err(|e| match e {
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                rustls::Error::Other(rustls::OtherError(Arc::new(ServerRootUnknown)))
            }
            e => e,
        })?;
        let id = trustdeck_spiffe::x509::spiffe_id_of(end_entity.as_ref())
            .map_err(|e| rustls::Error::General(format!("server certificate: {e}")))?;
        if id != self.expected {
            return Err(rustls::Error::General(format!(
                "server presented SPIFFE ID {id}, expected {}",
                self.expected
            )));
        }
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss, false)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss, true)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A server config presenting `identity` and verifying optional client SVIDs against `roots`.
pub fn server_config(
    identity: SharedIdentity,
    roots: SharedRoots,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(SpiffeClientVerifier { roots }))
        .with_cert_resolver(Arc::new(identity));
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// A client config that requires the server to be `expected` (chained to `roots`) and presents
/// `identity` when it has one.
pub fn client_config(
    identity: SharedIdentity,
    roots: SharedRoots,
    expected: SpiffeId,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier { roots, expected }))
        .with_client_cert_resolver(Arc::new(identity));
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}
