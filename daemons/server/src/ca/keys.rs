//! The key manager edge of the lifecycle: minting an authority around a fresh key, loading
//! the keys of the journal's authorities on start, and deleting keys no longer needed.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use trustdeck_datastore::{CaJournalRecord, CaKind, CaStatus};
use trustdeck_pki::{KeyError, SigningKey};
use trustdeck_proto::admin::EventKind;
use trustdeck_spiffe::TrustDomain;
use trustdeck_spiffe::bundle::Bundle;

use super::CaManager;
use super::authority::{CaState, Stored};
use super::error::{CaManagerError, UnavailableKey, noun};
use super::events::CaEvent;
use super::replace::LostKey;
use super::slot::{Minted, Slot};

impl CaManager {
    /// Mints an authority of kind `A` around a fresh key, recording the key in `minted`
    /// (to delete if the round fails later). A key whose authority cannot be built is
    /// deleted at once.
    pub(super) async fn mint<A: Stored>(
        &self,
        now: DateTime<Utc>,
        minted: &mut Vec<String>,
    ) -> Result<Minted<A>, CaManagerError> {
        let id = format!("{}-{}", A::KIND, hex::encode(self.random_bytes::<8>()?));
        let key = self.km.generate(&id)?;
        let authority = match A::build(self, key.clone(), now).await {
            Ok(a) => a,
            Err(e) => {
                self.discard(std::slice::from_ref(&id));
                return Err(e);
            }
        };
        minted.push(id.clone());
        let window = authority.window();
        let (certificate_chain_pem, kid) = authority.record_fields();
        let record = CaJournalRecord {
            id: id.clone(),
            kind: A::KIND,
            status: CaStatus::Prepared,
            key_backend: key.storage().to_string(),
            key_ref: id,
            certificate_chain_pem,
            public_key_der_b64: Some(B64.encode(key.public_key_spki())),
            kid,
            not_before: window.not_before.timestamp(),
            not_after: window.not_after.timestamp(),
            created_at: now.timestamp(),
        };
        Ok(Minted {
            record,
            authority: Arc::new(authority),
        })
    }

    /// Deletes keys minted by a round that failed; they are referenced nowhere.
    pub(super) fn discard(&self, key_refs: &[String]) {
        for k in key_refs {
            let _ = self.km.delete(k);
        }
    }

    /// Deletes the keys of pruned authorities, which nothing trusts any more.
    pub(super) fn delete_keys(&self, pruned: &[CaJournalRecord]) {
        for r in pruned {
            if let Err(e) = self.km.delete(&r.key_ref) {
                tracing::warn!(key = %r.key_ref, error = %e, "could not delete expired key");
            }
        }
    }

    /// Rebuilds the slots from the journal, loading each live authority's key. An authority
    /// whose key is gone from a memory key manager (a restart) or that cannot be rebuilt is
    /// left out of its slot, which the next rotation round turns into `old`.
    pub(super) fn restore(
        &self,
        journal: Vec<CaJournalRecord>,
        bundle: Arc<Bundle>,
        events: &mut Vec<CaEvent>,
        lost: &mut Vec<LostKey>,
    ) -> Result<CaState, CaManagerError> {
        let td = &self.settings.trust_domain;
        let mut st = CaState::empty(Vec::new(), bundle);
        for rec in journal.iter().filter(|r| r.status.is_live()) {
            let Some(key) = self.load_key(rec, events, lost)? else {
                continue;
            };
            match rec.kind {
                CaKind::X509 => restore_into(&mut st.x509, td, rec, key, events),
                CaKind::Jwt => restore_into(&mut st.jwt, td, rec, key, events),
            }
        }
        st.journal = journal;
        Ok(st)
    }

    /// The key of `rec`, or `None` (with an event) when a memory key manager lost it. A disk
    /// or HSM key that cannot be loaded is an operator problem (wrong token, wrong directory,
    /// deleted key): an error, rather than silently minting a new CA; with
    /// `--replace-lost-keys` a key the key manager does not have (and only that) is recorded
    /// in `lost`.
    fn load_key(
        &self,
        rec: &CaJournalRecord,
        events: &mut Vec<CaEvent>,
        lost: &mut Vec<LostKey>,
    ) -> Result<Option<Arc<dyn SigningKey>>, CaManagerError> {
        match self.km.load(&rec.key_ref) {
            Ok(k) => Ok(Some(k)),
            Err(e @ KeyError::NotFound { .. })
                if self.km.persistent() && self.settings.replace_lost_keys.is_some() =>
            {
                lost.push(LostKey {
                    record_id: rec.id.clone(),
                    why: e.to_string(),
                });
                Ok(None)
            }
            Err(source) if self.km.persistent() && !self.settings.took_over => {
                Err(CaManagerError::KeyUnavailable(Box::new(UnavailableKey {
                    kind: rec.kind,
                    id: rec.id.clone(),
                    status: rec.status,
                    key_ref: rec.key_ref.clone(),
                    key_backend: rec.key_backend.clone(),
                    source,
                })))
            }
            Err(e) => {
                events.push(CaEvent::new(
                    EventKind::KeyUnavailable,
                    format!(
                        "{} authority {} cannot sign any more ({e}); it stays trusted until it expires",
                        rec.kind, rec.id
                    ),
                    super::events::record_node_id(rec),
                ));
                Ok(None)
            }
        }
    }
}

fn restore_into<A: Stored>(
    slot: &mut Slot<A>,
    td: &TrustDomain,
    rec: &CaJournalRecord,
    key: Arc<dyn SigningKey>,
    events: &mut Vec<CaEvent>,
) {
    match A::rebuild(td, rec, key) {
        Ok(a) => slot.restore(rec.status, Arc::new(a)),
        Err(e) => events.push(CaEvent::new(
            EventKind::CaUnusable,
            format!("{} authority {} is unusable: {e}", noun(rec.kind), rec.id),
            super::events::record_node_id(rec),
        )),
    }
}
