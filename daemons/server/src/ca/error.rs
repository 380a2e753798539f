//! Why the CA manager failed.

use trustdeck_datastore::{CaKind, CaStatus, DatastoreError};
use trustdeck_pki::{CaError, CsrError, KeyError};
use trustdeck_spiffe::{BundleError, JwtError, PemError, TrustDomain};

/// Errors of the CA manager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaManagerError {
    /// The datastore failed.
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
    /// A key manager operation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Building or using a CA failed.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The stored bundle is not a SPIFFE bundle.
    #[error("stored CA state is corrupt: stored bundle for {trust_domain}: {source}")]
    StoredBundle {
        trust_domain: TrustDomain,
        source: BundleError,
    },
    /// A journal record's certificate chain is not PEM certificates.
    #[error("stored CA state is corrupt: journal {id} certificate: {source}")]
    JournalCertificate { id: String, source: PemError },
    /// A journal record's public key is not base64.
    #[error("stored CA state is corrupt: journal {id} public key: {source}")]
    JournalPublicKey {
        id: String,
        source: base64::DecodeError,
    },
    /// The system random number generator failed.
    #[error("random number generator failed")]
    Random,
    /// No authority of this kind is active (never after a successful start).
    #[error("no active {} authority", noun(*.0))]
    NoAuthority(CaKind),
    /// The active JWT key's window does not contain the time of minting.
    #[error("JWT-SVID minting failed: JWT key {kid} is not valid now")]
    JwtKeyNotCurrent { kid: String },
    /// A JWT could not be minted.
    #[error("JWT-SVID minting failed: {0}")]
    Jwt(#[from] JwtError),
    /// No CSR could be made for the upstream to sign.
    #[error("upstream: {0}")]
    UpstreamCsr(CsrError),
    /// The upstream refused, or could not be reached for, an intermediate CA.
    #[error("upstream: intermediate CA request failed: {} ({:?})", .0.message(), .0.code())]
    UpstreamRefused(Box<tonic::Status>),
    /// The upstream answered with no certificate chain.
    #[error("upstream: upstream returned no chain")]
    UpstreamNoChain,
    /// The upstream signed an intermediate whose chain holds a tainted key (its own
    /// intermediate not yet replaced): not used; asked again later.
    #[error("upstream: the intermediate it signed chains to tainted key {0}; retrying later")]
    UpstreamChainTainted(String),
    /// A CA key the journal names is not in the (persistent) key manager.
    #[error(
        "CA key unavailable, refusing to start: {0}. Put back the token or key directory that \
         holds it; if the key is lost for good (token replaced or wiped), start once with \
         `trustdeck-server run --replace-lost-keys` (audited; `check-config \
         --replace-lost-keys` says what it does): the authority is tainted and a new one minted"
    )]
    KeyUnavailable(Box<UnavailableKey>),
    /// `--replace-lost-keys`, but there is nothing to replace.
    #[error("--replace-lost-keys refused: {0}; start without it")]
    NothingToReplace(String),
}

impl CaManagerError {
    /// Whether the operator must act before a start can succeed (a downstream server does not
    /// keep retrying these).
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            CaManagerError::KeyUnavailable(_) | CaManagerError::NothingToReplace(_)
        )
    }
}

/// A journal record whose key the (persistent) key manager cannot load.
#[derive(Debug, thiserror::Error)]
#[error("{kind} authority {id} ({status}, key {key_ref:?} stored in {key_backend}): {source}")]
pub struct UnavailableKey {
    pub kind: CaKind,
    pub id: String,
    pub status: CaStatus,
    pub key_ref: String,
    /// Where the key was stored.
    pub key_backend: String,
    /// Why loading it failed.
    pub source: KeyError,
}

/// How messages name a kind of authority.
pub fn noun(kind: CaKind) -> &'static str {
    match kind {
        CaKind::X509 => "X.509",
        CaKind::Jwt => "JWT",
    }
}
