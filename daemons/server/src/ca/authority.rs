//! The two kinds of authority, X.509 CAs and JWT keys: how each fits the slot lifecycle,
//! how it is built around a fresh key, and how it is rebuilt from its journal record.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use trustdeck_datastore::{CaJournalRecord, CaKind};
use trustdeck_pki::rotation::Window;
use trustdeck_pki::{CaError, SigningKey, X509Authority};
use trustdeck_spiffe::bundle::Bundle;
use trustdeck_spiffe::{PemError, TrustDomain, pem};

use super::CaManager;
use super::error::CaManagerError;
use super::slot::{Authority, Slot};

/// A JWT signing key and its validity.
#[derive(Debug)]
pub struct JwtKey {
    /// Key id published in the bundle and every JWT header.
    pub kid: String,
    pub key: Arc<dyn SigningKey>,
    /// When it may sign.
    pub window: Window,
}

/// The CA state as committed: both slots, the journal and the bundle.
#[derive(Debug)]
pub struct CaState {
    pub x509: Slot<X509Authority>,
    /// The JWT keys (empty on a downstream server: its upstream signs its JWT-SVIDs).
    pub jwt: Slot<JwtKey>,
    pub journal: Vec<CaJournalRecord>,
    pub bundle: Arc<Bundle>,
}

impl CaState {
    pub(super) fn empty(journal: Vec<CaJournalRecord>, bundle: Arc<Bundle>) -> Self {
        Self {
            x509: Slot::default(),
            jwt: Slot::default(),
            journal,
            bundle,
        }
    }
}

impl Authority for X509Authority {
    const KIND: CaKind = CaKind::X509;

    fn window(&self) -> Window {
        X509Authority::window(self)
    }

    fn key_ref(&self) -> &str {
        self.key().key_id()
    }

    fn describe(&self) -> String {
        format!("X.509 CA {}", self.key_ref())
    }

    fn node_id(&self) -> String {
        crate::observe::x509_node_id(self.cert_der())
            .map(|(id, _)| id)
            .unwrap_or_default()
    }
}

impl Authority for JwtKey {
    const KIND: CaKind = CaKind::Jwt;

    fn window(&self) -> Window {
        self.window
    }

    fn key_ref(&self) -> &str {
        self.key.key_id()
    }

    fn describe(&self) -> String {
        format!("JWT key {}", self.kid)
    }

    fn node_id(&self) -> String {
        format!("jwt:{}", self.kid)
    }
}

/// Why a journal record could not be turned back into an authority.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// An X.509 record without a certificate.
    #[error("no certificate")]
    NoCertificate,
    /// Its certificate chain is not PEM certificates.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The certificate does not make a CA with the key.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// A JWT record without a key id.
    #[error("no key id")]
    NoKid,
}

/// The kind-specific parts of minting and restoring, at the edges of the lifecycle.
pub(super) trait Stored: Authority + Sized {
    /// Builds the authority around a freshly generated key. A downstream server's X.509 CA
    /// is signed by its upstream.
    async fn build(
        ca: &CaManager,
        key: Arc<dyn SigningKey>,
        now: DateTime<Utc>,
    ) -> Result<Self, CaManagerError>;

    /// Rebuilds the authority from its journal record and its loaded key.
    fn rebuild(
        td: &TrustDomain,
        record: &CaJournalRecord,
        key: Arc<dyn SigningKey>,
    ) -> Result<Self, Unusable>;

    /// What the journal stores besides the common fields: the certificate chain (PEM) and
    /// the JWT key id.
    fn record_fields(&self) -> (Option<String>, Option<String>);
}

impl Stored for X509Authority {
    async fn build(
        ca: &CaManager,
        key: Arc<dyn SigningKey>,
        now: DateTime<Utc>,
    ) -> Result<Self, CaManagerError> {
        let s = &ca.settings;
        let Some(up) = &s.upstream else {
            return Ok(X509Authority::self_signed(
                &s.trust_domain,
                key,
                &s.ca_common_name,
                now,
                s.ca_ttl,
            )?);
        };
        let csr = trustdeck_pki::csr::make_csr(&key, None).map_err(CaManagerError::UpstreamCsr)?;
        let (mut chain, _, tainted) = up
            .mint_intermediate(csr, s.ca_ttl)
            .await
            .map_err(|s| CaManagerError::UpstreamRefused(Box::new(s)))?;
        if chain.is_empty() {
            return Err(CaManagerError::UpstreamNoChain);
        }
        ca.set_upstream_tainted(tainted);
        // Never an intermediate chaining to a tainted key (an upstream at a deeper tier
        // that has not replaced its own yet): refused, the caller retries.
        let keys = trustdeck_spiffe::x509::chain_key_ids(&chain).unwrap_or_default();
        if let Some(k) = super::upstream_taint::tainted_key(&keys, &ca.tainted_keys()) {
            return Err(CaManagerError::UpstreamChainTainted(k.clone()));
        }
        let own = chain.remove(0);
        Ok(X509Authority::from_parts(&s.trust_domain, own, chain, key)?)
    }

    fn rebuild(
        td: &TrustDomain,
        record: &CaJournalRecord,
        key: Arc<dyn SigningKey>,
    ) -> Result<Self, Unusable> {
        let pem_text = record
            .certificate_chain_pem
            .as_deref()
            .ok_or(Unusable::NoCertificate)?;
        let mut certs = pem::decode_certs(pem_text)?;
        if certs.is_empty() {
            return Err(Unusable::NoCertificate);
        }
        let own = certs.remove(0);
        Ok(X509Authority::from_parts(td, own, certs, key)?)
    }

    fn record_fields(&self) -> (Option<String>, Option<String>) {
        let mut chain = vec![self.cert_der().to_vec()];
        chain.extend(self.upstream_chain().iter().cloned());
        (Some(pem::encode_certs(&chain)), None)
    }
}

impl Stored for JwtKey {
    async fn build(
        ca: &CaManager,
        key: Arc<dyn SigningKey>,
        now: DateTime<Utc>,
    ) -> Result<Self, CaManagerError> {
        let ttl = ca.settings.jwt_key_ttl;
        let not_after = now
            .checked_add_signed(ttl)
            .ok_or(CaError::TtlTooLong(ttl.num_seconds()))?;
        Ok(JwtKey {
            kid: hex::encode(ca.random_bytes::<16>()?),
            key,
            window: Window::new(now, not_after),
        })
    }

    fn rebuild(
        _td: &TrustDomain,
        record: &CaJournalRecord,
        key: Arc<dyn SigningKey>,
    ) -> Result<Self, Unusable> {
        let at = |secs| DateTime::from_timestamp(secs, 0).unwrap_or_default();
        Ok(JwtKey {
            kid: record.kid.clone().ok_or(Unusable::NoKid)?,
            key,
            window: Window::new(at(record.not_before), at(record.not_after)),
        })
    }

    fn record_fields(&self) -> (Option<String>, Option<String>) {
        (None, Some(self.kid.clone()))
    }
}
