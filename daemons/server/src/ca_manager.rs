//! The server's certificate authorities: the X.509 CA and the JWT signing key, their rotation
//! (driven by the pure [`trustdeck_pki::rotation::decide`]), the CA journal and the bundle.
//!
//! Every change is committed to the datastore (journal and bundle in one transaction) before it
//! is used, so a restart comes back with the same CA, keys and bundle sequence.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Duration, Utc};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::{Mutex, watch};
use trustdeck_datastore::{BundleRecord, CaJournalRecord, Datastore, DatastoreError};
use trustdeck_pki::rotation::{Decision, Window, decide};
use trustdeck_pki::{KeyManager, SigningKey, X509Authority};
use trustdeck_proto::admin::EventKind;
use trustdeck_spiffe::bundle::{Bundle, JwtAuthority};
use trustdeck_spiffe::jwt::{self, JwtClaims};
use trustdeck_spiffe::{SpiffeId, TrustDomain, pem};

/// Errors of the CA manager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaManagerError {
    /// The datastore failed.
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
    /// A key manager operation failed.
    #[error(transparent)]
    Key(#[from] trustdeck_pki::KeyError),
    /// Building or using a CA failed.
    #[error(transparent)]
    Ca(#[from] trustdeck_pki::CaError),
    /// Stored CA state is unreadable.
    #[error("stored CA state is corrupt: {0}")]
    Corrupt(String),
    /// No active authority (should not happen after start-up).
    #[error("no active {0} authority")]
    NoAuthority(&'static str),
    /// A JWT could not be minted.
    #[error("JWT-SVID minting failed: {0}")]
    Jwt(String),
    /// The upstream refused or could not be reached.
    #[error("upstream: {0}")]
    Upstream(String),
    /// A CA key the journal names is not in the (persistent) key manager.
    #[error("CA key unavailable, refusing to start: {0}")]
    KeyUnavailable(String),
}

/// A JWT signing key and its validity.
#[derive(Debug)]
pub struct JwtKey {
    /// Key id published in the bundle and every JWT header.
    pub kid: String,
    /// The key.
    pub key: Arc<dyn SigningKey>,
    /// Validity.
    pub window: Window,
}

/// A snapshot of the CA state.
#[derive(Debug)]
pub struct CaState {
    /// The signing X.509 authority.
    pub x509_active: Option<Arc<X509Authority>>,
    /// Its prepared successor (already in the bundle).
    pub x509_prepared: Option<Arc<X509Authority>>,
    /// The signing JWT key.
    pub jwt_active: Option<Arc<JwtKey>>,
    /// Its prepared successor.
    pub jwt_prepared: Option<Arc<JwtKey>>,
    /// The journal as committed.
    pub journal: Vec<CaJournalRecord>,
    /// The bundle as committed.
    pub bundle: Arc<Bundle>,
}

impl CaState {
    fn empty(journal: Vec<CaJournalRecord>, bundle: Arc<Bundle>) -> Self {
        Self {
            x509_active: None,
            x509_prepared: None,
            jwt_active: None,
            jwt_prepared: None,
            journal,
            bundle,
        }
    }
}

/// Something that happened to the CA, for logs and the admin stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaEvent {
    pub kind: EventKind,
    /// Human text.
    pub message: String,
}

/// Settings of the CA manager.
#[derive(Clone)]
pub struct CaSettings {
    /// Trust domain.
    pub trust_domain: TrustDomain,
    /// CA lifetime.
    pub ca_ttl: Duration,
    /// CA subject CN.
    pub ca_common_name: String,
    /// JWT key lifetime.
    pub jwt_key_ttl: Duration,
    /// For a downstream server: the upstream that signs its intermediate CA, signs its
    /// JWT-SVIDs and owns the bundle. `None` for the upstream (root) server.
    pub upstream: Option<Arc<crate::upstream::Upstream>>,
}

/// Owns the CA state; cheap to share behind an `Arc`.
pub struct CaManager {
    settings: CaSettings,
    ds: Datastore,
    km: Arc<dyn KeyManager>,
    state: RwLock<Arc<CaState>>,
    rotate_lock: Mutex<()>,
    bundle_tx: watch::Sender<Arc<Bundle>>,
    rng: SystemRandom,
}

fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

fn dt(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// Bundle refresh hint for a CA TTL: a tenth of it, between 1 s and 5 min.
pub fn refresh_hint(ca_ttl: Duration) -> u64 {
    (ca_ttl.num_seconds() / 10).clamp(1, 300) as u64
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
        let stored = ds.get_bundle(td.as_str()).await?;
        let bundle = match &stored {
            Some(rec) => Bundle::from_json(&td, rec.document.as_bytes())
                .map_err(|e| CaManagerError::Corrupt(format!("stored bundle for {td}: {e}")))?,
            None => Bundle::new(td.clone()),
        };
        let journal = ds.list_ca_journal().await?;
        let (bundle_tx, _) = watch::channel(Arc::new(bundle.clone()));
        let mgr = Arc::new(Self {
            settings,
            ds,
            km,
            state: RwLock::new(Arc::new(CaState::empty(journal.clone(), Arc::new(bundle)))),
            rotate_lock: Mutex::new(()),
            bundle_tx,
            rng: SystemRandom::new(),
        });
        let mut events = Vec::new();
        let state = mgr.build_state(journal, mgr.snapshot().bundle.clone(), &mut events)?;
        *mgr.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
        events.extend(mgr.rotate(now).await?);
        Ok((mgr, events))
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<CaState> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The current bundle.
    pub fn bundle(&self) -> Arc<Bundle> {
        self.snapshot().bundle.clone()
    }

    /// Notified on every bundle change.
    pub fn subscribe_bundle(&self) -> watch::Receiver<Arc<Bundle>> {
        self.bundle_tx.subscribe()
    }

    /// The signing X.509 authority.
    pub fn x509_ca(&self) -> Result<Arc<X509Authority>, CaManagerError> {
        self.snapshot()
            .x509_active
            .clone()
            .ok_or(CaManagerError::NoAuthority("X.509"))
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
            .jwt_active
            .clone()
            .ok_or(CaManagerError::NoAuthority("JWT"))?;
        if !key.window.contains(now) {
            return Err(CaManagerError::Jwt(format!(
                "JWT key {} is not valid now",
                key.kid
            )));
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
        let token = jwt::mint(&claims, &key.kid, |msg| key.key.sign(msg))
            .map_err(|e| CaManagerError::Jwt(e.to_string()))?;
        Ok((token, exp))
    }

    fn random_id(&self, prefix: &str) -> Result<String, CaManagerError> {
        let mut b = [0u8; 8];
        self.rng
            .fill(&mut b)
            .map_err(|_| CaManagerError::Corrupt("random number generator failed".into()))?;
        Ok(format!("{prefix}-{}", hex::encode(b)))
    }

    /// Rebuilds the in-memory authorities from journal records, loading keys. Records whose
    /// key cannot be loaded (memory keys after a restart) become `old`: still trusted until
    /// they expire, never used to sign.
    fn build_state(
        &self,
        journal: Vec<CaJournalRecord>,
        bundle: Arc<Bundle>,
        events: &mut Vec<CaEvent>,
    ) -> Result<CaState, CaManagerError> {
        let td = &self.settings.trust_domain;
        let mut st = CaState::empty(Vec::new(), bundle);
        for rec in journal.iter() {
            if rec.status == "old" {
                continue;
            }
            let key = match self.km.load(&rec.key_ref) {
                Ok(k) => k,
                // A disk or HSM key that cannot be loaded is an operator problem (wrong token,
                // wrong directory, deleted key): stop rather than silently mint a new CA.
                Err(e) if self.km.persistent() => {
                    return Err(CaManagerError::KeyUnavailable(format!(
                        "{} authority {} ({}, key {:?} stored in {}): {e}",
                        rec.kind, rec.id, rec.status, rec.key_ref, rec.key_backend
                    )));
                }
                Err(e) => {
                    events.push(CaEvent {
                        kind: EventKind::KeyUnavailable,
                        message: format!(
                            "{} authority {} cannot sign any more ({e}); it stays trusted until it expires",
                            rec.kind, rec.id
                        ),
                    });
                    continue;
                }
            };
            let window = Window::new(dt(rec.not_before), dt(rec.not_after));
            match rec.kind.as_str() {
                "x509" => {
                    let chain = rec
                        .certificate_chain_pem
                        .as_deref()
                        .map(pem::decode_certs)
                        .transpose();
                    let built = match chain {
                        Ok(Some(mut certs)) if !certs.is_empty() => {
                            let own = certs.remove(0);
                            X509Authority::from_parts(td, own, certs, key)
                                .map_err(|e| e.to_string())
                        }
                        Ok(_) => Err("no certificate".to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match built {
                        Ok(a) => {
                            let a = Some(Arc::new(a));
                            if rec.status == "active" {
                                st.x509_active = a;
                            } else {
                                st.x509_prepared = a;
                            }
                        }
                        Err(e) => {
                            events.push(CaEvent {
                                kind: EventKind::CaUnusable,
                                message: format!("X.509 authority {} is unusable: {e}", rec.id),
                            });
                        }
                    }
                }
                "jwt" => {
                    let Some(kid) = rec.kid.clone() else {
                        continue;
                    };
                    let k = Some(Arc::new(JwtKey { kid, key, window }));
                    if rec.status == "active" {
                        st.jwt_active = k;
                    } else {
                        st.jwt_prepared = k;
                    }
                }
                _ => {}
            }
        }
        st.journal = journal;
        Ok(st)
    }

    async fn mint_x509(
        &self,
        now: DateTime<Utc>,
        status: &str,
    ) -> Result<(CaJournalRecord, Arc<X509Authority>), CaManagerError> {
        let id = self.random_id("x509")?;
        let key = self.km.generate(&id)?;
        let ca = match &self.settings.upstream {
            None => X509Authority::self_signed(
                &self.settings.trust_domain,
                key.clone(),
                &self.settings.ca_common_name,
                now,
                self.settings.ca_ttl,
            )
            .map_err(CaManagerError::from),
            Some(up) => {
                async {
                    let csr = trustdeck_pki::csr::make_csr(&key, None)
                        .map_err(|e| CaManagerError::Upstream(e.to_string()))?;
                    let (mut chain, _) = up
                        .mint_intermediate(csr, self.settings.ca_ttl)
                        .await
                        .map_err(|s| {
                            CaManagerError::Upstream(format!(
                                "intermediate CA request failed: {} ({:?})",
                                s.message(),
                                s.code()
                            ))
                        })?;
                    if chain.is_empty() {
                        return Err(CaManagerError::Upstream(
                            "upstream returned no chain".into(),
                        ));
                    }
                    let own = chain.remove(0);
                    X509Authority::from_parts(&self.settings.trust_domain, own, chain, key.clone())
                        .map_err(CaManagerError::from)
                }
                .await
            }
        };
        let ca = match ca {
            Ok(ca) => ca,
            Err(e) => {
                let _ = self.km.delete(&id);
                return Err(e);
            }
        };
        let w = ca.window();
        let mut chain = vec![ca.cert_der().to_vec()];
        chain.extend(ca.upstream_chain().iter().cloned());
        let rec = CaJournalRecord {
            id: id.clone(),
            kind: "x509".into(),
            status: status.into(),
            key_backend: key.storage().to_string(),
            key_ref: id,
            certificate_chain_pem: Some(pem::encode_certs(&chain)),
            public_key_der_b64: Some(B64.encode(key.public_key_spki())),
            kid: None,
            not_before: ts(w.not_before),
            not_after: ts(w.not_after),
            created_at: ts(now),
        };
        Ok((rec, Arc::new(ca)))
    }

    fn mint_jwt(
        &self,
        now: DateTime<Utc>,
        status: &str,
    ) -> Result<(CaJournalRecord, Arc<JwtKey>), CaManagerError> {
        let id = self.random_id("jwt")?;
        let key = self.km.generate(&id)?;
        let mut kid = [0u8; 16];
        self.rng
            .fill(&mut kid)
            .map_err(|_| CaManagerError::Corrupt("random number generator failed".into()))?;
        let kid = hex::encode(kid);
        let window = Window::new(now, now + self.settings.jwt_key_ttl);
        let rec = CaJournalRecord {
            id: id.clone(),
            kind: "jwt".into(),
            status: status.into(),
            key_backend: key.storage().to_string(),
            key_ref: id,
            certificate_chain_pem: None,
            public_key_der_b64: Some(B64.encode(key.public_key_spki())),
            kid: Some(kid.clone()),
            not_before: ts(window.not_before),
            not_after: ts(window.not_after),
            created_at: ts(now),
        };
        Ok((rec, Arc::new(JwtKey { kid, key, window })))
    }

    /// Brings both authorities up to date for `now`: prepares, activates, prunes expired
    /// ones, and publishes a new bundle (sequence + 1) when the set of authorities changed.
    pub async fn rotate(&self, now: DateTime<Utc>) -> Result<Vec<CaEvent>, CaManagerError> {
        let _guard = self.rotate_lock.lock().await;
        let cur = self.snapshot();
        let mut journal = cur.journal.clone();
        let mut events = Vec::new();
        let mut minted_keys = Vec::new();
        let mut x509_active = cur.x509_active.clone();
        let mut x509_prepared = cur.x509_prepared.clone();
        let mut jwt_active = cur.jwt_active.clone();
        let mut jwt_prepared = cur.jwt_prepared.clone();

        // Records that claim to be active or prepared but have no usable authority in memory
        // (their key was lost) are demoted: trusted until expiry, never used.
        let live: Vec<String> = [
            x509_active.as_ref().map(|a| a.key().key_id().to_string()),
            x509_prepared.as_ref().map(|a| a.key().key_id().to_string()),
            jwt_active.as_ref().map(|k| k.key.key_id().to_string()),
            jwt_prepared.as_ref().map(|k| k.key.key_id().to_string()),
        ]
        .into_iter()
        .flatten()
        .collect();
        for r in journal.iter_mut() {
            if r.status != "old" && !live.contains(&r.key_ref) {
                r.status = "old".into();
            }
        }

        let set_status = |journal: &mut Vec<CaJournalRecord>, kind: &str, from: &str, to: &str| {
            for r in journal.iter_mut() {
                if r.kind == kind && r.status == from {
                    r.status = to.into();
                }
            }
        };

        // X.509: decide, mint (may call the upstream), then apply.
        let x509_decision = decide(
            now,
            x509_active.as_ref().map(|a| a.window()),
            x509_prepared.as_ref().map(|a| a.window()),
        );
        let minted = match x509_decision {
            Decision::MintAndActivate => Some(self.mint_x509(now, "active").await?),
            Decision::Prepare => Some(self.mint_x509(now, "prepared").await?),
            _ => None,
        };
        if let Some((rec, _)) = &minted {
            minted_keys.push(rec.key_ref.clone());
        }
        match (x509_decision, minted) {
            (Decision::MintAndActivate, Some((rec, ca))) => {
                set_status(&mut journal, "x509", "active", "old");
                set_status(&mut journal, "x509", "prepared", "old");
                events.push(CaEvent {
                    kind: EventKind::X509Activated,
                    message: format!(
                        "new X.509 CA {} minted and activated (valid until {})",
                        rec.id,
                        ca.window().not_after
                    ),
                });
                journal.push(rec);
                x509_active = Some(ca);
                x509_prepared = None;
            }
            (Decision::Prepare, Some((rec, ca))) => {
                // A prepared one that is no longer usable (nearly expired) is replaced.
                set_status(&mut journal, "x509", "prepared", "old");
                events.push(CaEvent {
                    kind: EventKind::X509Prepared,
                    message: format!("X.509 CA {} prepared and published in the bundle", rec.id),
                });
                journal.push(rec);
                x509_prepared = Some(ca);
            }
            (Decision::Activate, _) => {
                set_status(&mut journal, "x509", "active", "old");
                set_status(&mut journal, "x509", "prepared", "active");
                events.push(CaEvent {
                    kind: EventKind::X509Activated,
                    message: "prepared X.509 CA activated".into(),
                });
                x509_active = x509_prepared.take();
            }
            _ => {}
        }

        // JWT keys live only on the root: downstream servers forward JWT-SVIDs upstream.
        let jwt_decision = if self.settings.upstream.is_some() {
            Decision::Idle { until: now }
        } else {
            decide(
                now,
                jwt_active.as_ref().map(|k| k.window),
                jwt_prepared.as_ref().map(|k| k.window),
            )
        };
        let result: Result<(), CaManagerError> = (|| {
            match jwt_decision {
                Decision::MintAndActivate => {
                    let (rec, k) = self.mint_jwt(now, "active")?;
                    minted_keys.push(rec.key_ref.clone());
                    set_status(&mut journal, "jwt", "active", "old");
                    set_status(&mut journal, "jwt", "prepared", "old");
                    events.push(CaEvent {
                        kind: EventKind::JwtActivated,
                        message: format!("new JWT key {} minted and activated", k.kid),
                    });
                    journal.push(rec);
                    jwt_active = Some(k);
                    jwt_prepared = None;
                }
                Decision::Prepare => {
                    let (rec, k) = self.mint_jwt(now, "prepared")?;
                    minted_keys.push(rec.key_ref.clone());
                    set_status(&mut journal, "jwt", "prepared", "old");
                    events.push(CaEvent {
                        kind: EventKind::JwtPrepared,
                        message: format!("JWT key {} prepared and published", k.kid),
                    });
                    journal.push(rec);
                    jwt_prepared = Some(k);
                }
                Decision::Activate => {
                    set_status(&mut journal, "jwt", "active", "old");
                    set_status(&mut journal, "jwt", "prepared", "active");
                    events.push(CaEvent {
                        kind: EventKind::JwtActivated,
                        message: "prepared JWT key activated".into(),
                    });
                    jwt_active = jwt_prepared.take();
                }
                Decision::Idle { .. } => {}
            }
            Ok(())
        })();
        if let Err(e) = result {
            for k in &minted_keys {
                let _ = self.km.delete(k);
            }
            return Err(e);
        }

        // Prune expired authorities.
        let mut deletes = Vec::new();
        journal.retain(|r| {
            if r.not_after <= ts(now) {
                deletes.push(r.clone());
                false
            } else {
                true
            }
        });
        for r in &deletes {
            events.push(CaEvent {
                kind: EventKind::Pruned,
                message: format!(
                    "expired {} authority {} removed from the bundle",
                    r.kind, r.id
                ),
            });
        }

        // From here on, any failure must not leave the keys minted above behind.
        let discard = |e: CaManagerError| {
            for k in &minted_keys {
                let _ = self.km.delete(k);
            }
            e
        };
        let mut bundle = if self.settings.upstream.is_some() {
            (*cur.bundle).clone()
        } else {
            build_bundle(
                &self.settings.trust_domain,
                &journal,
                refresh_hint(self.settings.ca_ttl),
            )
            .map_err(discard)?
        };
        let changed = journal != cur.journal;
        let authorities_changed = bundle.x509_authorities != cur.bundle.x509_authorities
            || bundle.jwt_authorities != cur.bundle.jwt_authorities;
        if !changed && !authorities_changed {
            return Ok(events);
        }
        let stored = self
            .ds
            .get_bundle(self.settings.trust_domain.as_str())
            .await
            .map_err(|e| discard(e.into()))?;
        let expected = stored.as_ref().map(|b| b.sequence);
        bundle.sequence = if authorities_changed {
            cur.bundle.sequence + 1
        } else {
            cur.bundle.sequence
        };
        let record = BundleRecord {
            trust_domain: self.settings.trust_domain.as_str().to_string(),
            sequence: bundle.sequence as i64,
            document: bundle.to_json(),
            updated_at: ts(now),
        };
        let upserts: Vec<CaJournalRecord> = journal
            .iter()
            .filter(|r| !cur.journal.contains(r))
            .cloned()
            .collect();
        let delete_ids: Vec<String> = deletes.iter().map(|r| r.id.clone()).collect();
        if let Err(e) = self
            .ds
            .commit_ca_state(&upserts, &delete_ids, &record, expected)
            .await
        {
            return Err(discard(e.into()));
        }
        // Keys of pruned authorities are no longer needed.
        for r in &deletes {
            if let Err(e) = self.km.delete(&r.key_ref) {
                tracing::warn!(key = %r.key_ref, error = %e, "could not delete expired key");
            }
        }
        let bundle = Arc::new(bundle);
        let new_state = CaState {
            x509_active,
            x509_prepared,
            jwt_active,
            jwt_prepared,
            journal,
            bundle: bundle.clone(),
        };
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new_state);
        if authorities_changed {
            self.bundle_tx.send_replace(bundle);
        }
        Ok(events)
    }
}

impl CaManager {
    /// A downstream server adopts its upstream's bundle (same sequence): committed, then
    /// published to agents. Returns whether it changed.
    pub async fn set_upstream_bundle(
        &self,
        b: Bundle,
        now: DateTime<Utc>,
    ) -> Result<bool, CaManagerError> {
        let _guard = self.rotate_lock.lock().await;
        let cur = self.snapshot();
        if cur.bundle.sequence == b.sequence
            && cur.bundle.x509_authorities == b.x509_authorities
            && cur.bundle.jwt_authorities == b.jwt_authorities
        {
            return Ok(false);
        }
        let stored = self
            .ds
            .get_bundle(self.settings.trust_domain.as_str())
            .await?;
        let record = BundleRecord {
            trust_domain: self.settings.trust_domain.as_str().to_string(),
            sequence: b.sequence as i64,
            document: b.to_json(),
            updated_at: ts(now),
        };
        self.ds
            .commit_ca_state(&[], &[], &record, stored.map(|r| r.sequence))
            .await?;
        let b = Arc::new(b);
        let next = CaState {
            x509_active: cur.x509_active.clone(),
            x509_prepared: cur.x509_prepared.clone(),
            jwt_active: None,
            jwt_prepared: None,
            journal: cur.journal.clone(),
            bundle: b.clone(),
        };
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        self.bundle_tx.send_replace(b);
        Ok(true)
    }

    /// Whether this manager's CA is an intermediate minted by an upstream.
    pub fn is_downstream(&self) -> bool {
        self.settings.upstream.is_some()
    }
}

/// The bundle for a journal: every unexpired X.509 authority's certificate (root of the
/// chain) and every unexpired JWT key.
fn build_bundle(
    td: &TrustDomain,
    journal: &[CaJournalRecord],
    refresh_hint_secs: u64,
) -> Result<Bundle, CaManagerError> {
    let mut b = Bundle::new(td.clone());
    b.refresh_hint_secs = Some(refresh_hint_secs);
    for r in journal {
        match r.kind.as_str() {
            "x509" => {
                let pem_text = r.certificate_chain_pem.as_deref().unwrap_or_default();
                let certs = pem::decode_certs(pem_text).map_err(|e| {
                    CaManagerError::Corrupt(format!("journal {} certificate: {e}", r.id))
                })?;
                // A self-signed authority is its own root; an intermediate's root is last.
                if let Some(root) = certs.last()
                    && !b.x509_authorities.contains(root)
                {
                    b.x509_authorities.push(root.clone());
                }
            }
            "jwt" => {
                let (Some(kid), Some(pk)) = (&r.kid, &r.public_key_der_b64) else {
                    continue;
                };
                let spki = B64.decode(pk).map_err(|e| {
                    CaManagerError::Corrupt(format!("journal {} public key: {e}", r.id))
                })?;
                // Expiry is not part of the SPIFFE bundle format: leave it out so a bundle read
                // back from the datastore compares equal to a freshly built one.
                b.jwt_authorities.push(JwtAuthority {
                    key_id: kid.clone(),
                    public_key_spki_der: spki,
                    expires_at: None,
                });
            }
            _ => {}
        }
    }
    Ok(b)
}
