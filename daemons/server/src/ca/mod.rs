//! The server's certificate authorities: the X.509 CA and the JWT signing key.
//!
//! Both kinds go through one lifecycle, prepared → active → old, driven by the pure
//! [`slot`] and [`journal`] modules; the I/O sits at the edges: the key manager and the
//! upstream (`keys`, [`authority`]) and the datastore ([`bundle`], `rotate`). Every change
//! is committed (journal and bundle in one transaction) before it is used, so a restart
//! comes back with the same authorities, keys and bundle sequence.
//!
//! - [`slot`]: one kind's active and prepared authorities, and the transitions between them.
//! - [`journal`]: status changes, demotion and pruning over the whole CA journal.
//! - [`authority`]: X.509 CAs and JWT keys as slot authorities; the committed [`CaState`].
//! - `keys`: minting around fresh keys, loading keys on start.
//! - `rotate`: one rotation round; [`bundle`]: the trust bundle and the commit.
//! - [`events`]: what happened, for the log and the admin stream.
//! - [`owner`]: which server may change the journal, and its lease.
//! - [`taint`]: the tainted keys published with the bundle.
//! - [`operations`]: the rules of operator-driven prepare/activate/taint/revoke (pure);
//!   `ops`: running them (mint, commit, audit).
//! - [`changes`]: the audit records of every journal change, committed with it.
//! - [`upstream_taint`]: a downstream replaces intermediates chaining to tainted keys.
//! - [`replace`]: `run --replace-lost-keys`: authorities whose key is lost are tainted and
//!   replaced, with one audit record.

pub mod authority;
pub mod bundle;
pub mod changes;
pub mod error;
pub mod events;
pub mod journal;
mod keys;
pub mod operations;
pub mod ops;
pub mod owner;
pub mod replace;
mod rotate;
pub mod slot;
pub mod taint;
pub mod upstream_taint;

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::{Mutex, watch};
use trustdeck_datastore::{CaKind, Datastore};
use trustdeck_pki::{KeyManager, X509Authority};
use trustdeck_spiffe::bundle::Bundle;
use trustdeck_spiffe::jwt::{self, JwtClaims};
use trustdeck_spiffe::{SpiffeId, TrustDomain};

pub use authority::{CaState, JwtKey};
pub use bundle::refresh_hint;
pub use error::CaManagerError;
pub use events::CaEvent;

/// Settings of the CA manager.
#[derive(Clone)]
pub struct CaSettings {
    /// The trust domain the authorities sign for.
    pub trust_domain: TrustDomain,
    /// Lifetime of each X.509 CA.
    pub ca_ttl: Duration,
    /// Subject common name of a self-signed CA.
    pub ca_common_name: String,
    /// Lifetime of each JWT key.
    pub jwt_key_ttl: Duration,
    /// For a downstream server: the upstream that signs its intermediate CA, signs its
    /// JWT-SVIDs and owns the bundle. `None` for the upstream (root) server.
    pub upstream: Option<Arc<crate::upstream::Upstream>>,
    /// This process's claim on the CA journal ([`owner`]): only its commits are accepted.
    pub owner_session: String,
    /// The journal was taken over from another server (`run --take-over-ca`): keys of its
    /// authorities that cannot be loaded are lost, not an error; they become old.
    pub took_over: bool,
    /// `run --replace-lost-keys`, naming the operator for the audit log: authorities whose key
    /// the (persistent) key manager does not hold are tainted and replaced ([`replace`]).
    pub replace_lost_keys: Option<String>,
    /// Who the audit log names for scheduled changes (rotation, pruning, demotion):
    /// `server:<its SPIFFE ID>`.
    pub actor: String,
}

/// Owns the CA state; cheap to share behind an `Arc`.
pub struct CaManager {
    settings: CaSettings,
    ds: Datastore,
    km: Arc<dyn KeyManager>,
    state: RwLock<Arc<CaState>>,
    /// Serialises rotation rounds and bundle adoption.
    rotate_lock: Mutex<()>,
    bundle_tx: watch::Sender<Arc<Bundle>>,
    rng: SystemRandom,
    /// On a downstream: the upstream's tainted keys as last fetched ([`taint`]).
    upstream_tainted: RwLock<trustdeck_proto::node::TaintedKeys>,
}

impl CaManager {
    /// Loads the journal and bundle, then brings the CA up to date for `now` (minting the
    /// first CA on a fresh datastore).
    pub async fn load(
        settings: CaSettings,
        ds: Datastore,
        km: Arc<dyn KeyManager>,
        now: DateTime<Utc>,
    ) -> Result<(Arc<Self>, Vec<CaEvent>), CaManagerError> {
        let td = settings.trust_domain.clone();
        let bundle = match ds.get_bundle(td.as_str()).await? {
            Some(rec) => Bundle::from_json(&td, rec.document.as_bytes()).map_err(|source| {
                CaManagerError::StoredBundle {
                    trust_domain: td.clone(),
                    source,
                }
            })?,
            None => Bundle::new(td.clone()),
        };
        let bundle = Arc::new(bundle);
        let journal = ds.list_ca_journal().await?;
        let (bundle_tx, _) = watch::channel(bundle.clone());
        let mgr = Arc::new(Self {
            settings,
            ds,
            km,
            state: RwLock::new(Arc::new(CaState::empty(journal.clone(), bundle.clone()))),
            rotate_lock: Mutex::new(()),
            bundle_tx,
            rng: SystemRandom::new(),
            upstream_tainted: RwLock::default(),
        });
        let mut events = Vec::new();
        let mut lost = Vec::new();
        let state = mgr.restore(journal, bundle, &mut events, &mut lost)?;
        mgr.set_state(state);
        if let Some(operator) = mgr.settings.replace_lost_keys.clone() {
            events.extend(mgr.replace_lost(&operator, &lost, now).await?);
        }
        events.extend(mgr.rotate(now).await?);
        Ok((mgr, events))
    }

    /// The key manager holding this server's CA and JWT keys (for `ProbeKeys`).
    pub fn key_manager(&self) -> Arc<dyn KeyManager> {
        self.km.clone()
    }

    /// The CA state as last committed.
    pub fn snapshot(&self) -> Arc<CaState> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_state(&self, state: CaState) {
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
    }

    /// The trust bundle as last committed.
    pub fn bundle(&self) -> Arc<Bundle> {
        self.snapshot().bundle.clone()
    }

    /// Notified on every bundle change.
    pub fn subscribe_bundle(&self) -> watch::Receiver<Arc<Bundle>> {
        self.bundle_tx.subscribe()
    }

    /// This process's claim on the CA journal.
    pub fn owner_session(&self) -> &str {
        &self.settings.owner_session
    }

    /// Whether this manager's CA is an intermediate minted by an upstream.
    pub fn is_downstream(&self) -> bool {
        self.settings.upstream.is_some()
    }

    /// The X.509 authority that signs.
    pub fn x509_ca(&self) -> Result<Arc<X509Authority>, CaManagerError> {
        self.snapshot()
            .x509
            .active
            .clone()
            .ok_or(CaManagerError::NoAuthority(CaKind::X509))
    }

    /// Mints a JWT-SVID for `sub` with the active JWT key, expiring at `now + ttl` but never
    /// after the key does.
    pub fn mint_jwt_svid(
        &self,
        sub: &SpiffeId,
        audience: &[String],
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), CaManagerError> {
        let key = self
            .snapshot()
            .jwt
            .active
            .clone()
            .ok_or(CaManagerError::NoAuthority(CaKind::Jwt))?;
        if !key.window.contains(now) {
            return Err(CaManagerError::JwtKeyNotCurrent {
                kid: key.kid.clone(),
            });
        }
        let exp = now
            .checked_add_signed(ttl)
            .map_or(key.window.not_after, |t| {
                std::cmp::min(t, key.window.not_after)
            });
        let claims = JwtClaims {
            sub: sub.clone(),
            aud: audience.to_vec(),
            exp: exp.timestamp(),
            iat: Some(now.timestamp()),
            extra: Default::default(),
        };
        let token = jwt::mint(&claims, &key.kid, |msg| key.key.sign(msg))?;
        Ok((token, exp))
    }

    fn random_bytes<const N: usize>(&self) -> Result<[u8; N], CaManagerError> {
        let mut b = [0u8; N];
        self.rng.fill(&mut b).map_err(|_| CaManagerError::Random)?;
        Ok(b)
    }
}
