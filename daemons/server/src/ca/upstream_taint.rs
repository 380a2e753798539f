//! A downstream whose intermediate chains to a key its upstream tainted: it replaces the
//! intermediate at once, without operator action, and marks the replaced one (and every
//! other of its intermediates chaining to a tainted key) tainted in its own journal, so its
//! agents re-issue what it signed and `authority x509 show` names it. Also what the
//! downstream reports holding upstream (its live intermediates).
//!
//! The decision ([`plan`]) is pure; [`CaManager::replace_tainted`] does the minting and the
//! commit, like a rotation round. A new intermediate whose chain still holds a tainted key
//! (the upstream's own intermediate not replaced yet, at a deeper tier) is refused when it
//! is built (`Stored::build`), never activated: the caller retries with [`RetryBackoff`].
//!
//! The upstream's tainted set is kept in memory only: after a restart while the upstream is
//! unreachable it is empty until the first bundle fetch. What matters survives in the
//! journal: an intermediate already replaced is marked tainted there (and published); one not
//! yet replaced could not be replaced without the upstream anyway, and agents re-issuing
//! against it would get the same tainted chain back.

use chrono::{DateTime, Duration, Utc};
use trustdeck_datastore::{CaJournalRecord, CaKind, CaStatus};
use trustdeck_pki::X509Authority;
use trustdeck_proto::admin::EventKind;
use trustdeck_proto::node::{HeldSvid, KeyKind, TaintedKeys};
use trustdeck_spiffe::{pem, x509};

use super::CaManager;
use super::error::CaManagerError;
use super::events::{CaEvent, record_node_id};
use super::rotate::Round;
use super::slot::Transition;

/// The key ids an X.509 journal record's chain (own certificate, then the upstream's chain)
/// depends on; empty when it holds no readable chain.
pub fn record_chain_key_ids(r: &CaJournalRecord) -> Vec<String> {
    r.certificate_chain_pem
        .as_deref()
        .and_then(|p| pem::decode_certs(p).ok())
        .and_then(|c| x509::chain_key_ids(&c).ok())
        .unwrap_or_default()
}

/// The first of `key_ids` that is a tainted X.509 key.
pub fn tainted_key<'a>(key_ids: &'a [String], tainted: &TaintedKeys) -> Option<&'a String> {
    key_ids.iter().find(|k| tainted.x509_key_ids.contains(k))
}

/// What a downstream does about intermediates chaining to tainted keys.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TaintPlan {
    /// The active intermediate chains to a tainted key: replace it now.
    pub replace_active: bool,
    /// The prepared one does: it is dropped (never activated).
    pub drop_prepared: bool,
    /// Journal records (id, the tainted key) to mark tainted: every active, prepared or old
    /// X.509 record chaining to a tainted key.
    pub taint_records: Vec<(String, String)>,
}

impl TaintPlan {
    pub fn is_empty(&self) -> bool {
        self.taint_records.is_empty()
    }
}

/// What to do about `journal`'s intermediates given `tainted` (pure).
pub fn plan(journal: &[CaJournalRecord], tainted: &TaintedKeys) -> TaintPlan {
    let mut p = TaintPlan::default();
    if tainted.x509_key_ids.is_empty() {
        return p;
    }
    for r in journal.iter().filter(|r| r.kind == CaKind::X509) {
        if !matches!(
            r.status,
            CaStatus::Active | CaStatus::Prepared | CaStatus::Old
        ) {
            continue;
        }
        let keys = record_chain_key_ids(r);
        let Some(k) = tainted_key(&keys, tainted) else {
            continue;
        };
        match r.status {
            CaStatus::Active => p.replace_active = true,
            CaStatus::Prepared => p.drop_prepared = true,
            _ => {}
        }
        p.taint_records.push((r.id.clone(), k.clone()));
    }
    p
}

/// What a downstream reports holding itself: the intermediates that may still sign (active
/// or prepared, not expired at `now`), each as an X.509 SVID of the trust domain's ID. An
/// old or tainted intermediate signs nothing more; what it signed and is still live is
/// reported by the nodes holding it, so it does not keep its upstream's authority from
/// being revoked once those are re-issued.
pub fn own_held(journal: &[CaJournalRecord], td_id: &str, now: DateTime<Utc>) -> Vec<HeldSvid> {
    journal
        .iter()
        .filter(|r| {
            r.kind == CaKind::X509
                && matches!(r.status, CaStatus::Active | CaStatus::Prepared)
                && r.not_after > now.timestamp()
        })
        .filter_map(|r| {
            let key_ids = record_chain_key_ids(r);
            (!key_ids.is_empty()).then(|| HeldSvid {
                kind: KeyKind::X509.into(),
                spiffe_id: td_id.to_string(),
                key_ids,
                not_after: r.not_after,
                count: 0,
            })
        })
        .collect()
}

/// When to try a replacement again after one failed (upstream unreachable, or it handed
/// out a chain still tainted): [`RetryBackoff::FIRST`] doubling to [`RetryBackoff::MAX`].
#[derive(Debug, Default, Clone)]
pub struct RetryBackoff {
    failures: u32,
    next_at: Option<DateTime<Utc>>,
}

impl RetryBackoff {
    pub const FIRST: Duration = Duration::milliseconds(250);
    pub const MAX: Duration = Duration::seconds(10);

    /// Whether an attempt may be made at `now`.
    pub fn ready(&self, now: DateTime<Utc>) -> bool {
        self.next_at.is_none_or(|t| now >= t)
    }

    /// An attempt succeeded (or there was nothing to do).
    pub fn succeeded(&mut self) {
        *self = Self::default();
    }

    /// An attempt failed at `now`.
    pub fn failed(&mut self, now: DateTime<Utc>) {
        let wait = Self::FIRST * (1i32 << self.failures.min(10));
        self.failures = self.failures.saturating_add(1);
        self.next_at = Some(now + std::cmp::min(wait, Self::MAX));
    }
}

impl CaManager {
    /// This server's live intermediates as its held-SVID report names them.
    pub fn own_held(&self, now: DateTime<Utc>) -> Vec<HeldSvid> {
        let td = self.settings.trust_domain.id();
        own_held(&self.snapshot().journal, td.as_str(), now)
    }

    /// On a downstream: replaces an active intermediate chaining to a tainted key (with the
    /// prepared one when it is clean, else a new one from the upstream), drops a tainted
    /// prepared one and marks every intermediate chaining to a tainted key tainted; commits
    /// like a rotation round. Nothing changes on failure.
    pub async fn replace_tainted(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<CaEvent>, CaManagerError> {
        if !self.is_downstream() {
            return Ok(Vec::new());
        }
        let tainted = self.tainted_keys();
        let _guard = self.rotate_lock.lock().await;
        let cur = self.snapshot();
        let p = plan(&cur.journal, &tainted);
        if p.is_empty() {
            return Ok(Vec::new());
        }
        let mut round = Round::begin(&cur);
        let mut minted = Vec::new();
        let result = match self.apply_plan(&mut round, &p, now, &mut minted).await {
            Ok(()) => self.publish(&cur, round, now).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.discard(&minted);
        }
        result
    }

    async fn apply_plan(
        &self,
        round: &mut Round,
        p: &TaintPlan,
        now: DateTime<Utc>,
        minted: &mut Vec<String>,
    ) -> Result<(), CaManagerError> {
        if p.drop_prepared {
            round.x509.prepared = None;
        }
        if p.replace_active {
            let t = match round.x509.prepared.is_some() {
                true => Transition::Activate,
                false => Transition::Replace(self.mint::<X509Authority>(now, minted).await?),
            };
            let e = round.x509.apply(&mut round.journal, t);
            round.events.push(e);
        }
        for (id, key) in &p.taint_records {
            let Some(r) = round.journal.iter_mut().find(|r| &r.id == id) else {
                continue;
            };
            r.status = CaStatus::Tainted;
            let node = record_node_id(r);
            round.events.push(CaEvent::new(
                EventKind::AuthorityTainted,
                format!(
                    "intermediate {node} chains to tainted upstream key {key}: marked tainted{}",
                    if p.replace_active || p.drop_prepared {
                        ", replaced"
                    } else {
                        ""
                    }
                ),
                node.clone(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustdeck_pki::keys::SoftwareKey;
    use trustdeck_pki::{SigningKey, X509Authority};
    use trustdeck_spiffe::TrustDomain;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn key() -> std::sync::Arc<dyn SigningKey> {
        std::sync::Arc::new(SoftwareKey::ephemeral().unwrap().0)
    }

    fn root(td: &TrustDomain) -> X509Authority {
        X509Authority::self_signed(td, key(), "root", t(0), Duration::hours(1)).unwrap()
    }

    /// An intermediate of `issuer` as a journal record with `status`.
    fn inter(issuer: &X509Authority, id: &str, status: CaStatus) -> CaJournalRecord {
        let csr = trustdeck_pki::csr::make_csr(&key(), None).unwrap();
        let csr = trustdeck_pki::csr::verify_csr(&csr).unwrap();
        let issued = issuer
            .sign_intermediate(&csr, "int", Duration::minutes(30), t(0))
            .unwrap();
        record(id, status, &issued.chain)
    }

    fn record(id: &str, status: CaStatus, chain: &[Vec<u8>]) -> CaJournalRecord {
        CaJournalRecord {
            id: id.into(),
            kind: CaKind::X509,
            status,
            key_backend: "memory".into(),
            key_ref: id.into(),
            certificate_chain_pem: Some(pem::encode_certs(chain)),
            public_key_der_b64: None,
            kid: None,
            not_before: t(0).timestamp(),
            not_after: t(1800).timestamp(),
            created_at: t(0).timestamp(),
        }
    }

    fn ski(a: &X509Authority) -> String {
        hex::encode(
            x509::check_ca(a.cert_der())
                .unwrap()
                .subject_key_id
                .unwrap(),
        )
    }

    fn tainted(keys: &[String]) -> TaintedKeys {
        TaintedKeys {
            x509_key_ids: keys.to_vec(),
            jwt_kids: vec![],
        }
    }

    #[test]
    fn an_active_intermediate_under_a_tainted_root_is_replaced_and_marked() {
        let td = TrustDomain::parse("td").unwrap();
        let (old_root, new_root) = (root(&td), root(&td));
        let journal = [
            inter(&old_root, "active", CaStatus::Active),
            inter(&new_root, "prepared", CaStatus::Prepared),
            inter(&old_root, "old", CaStatus::Old),
            inter(&old_root, "gone", CaStatus::Revoked),
        ];
        let root_key = ski(&old_root);
        let p = plan(&journal, &tainted(std::slice::from_ref(&root_key)));
        assert!(p.replace_active);
        assert!(!p.drop_prepared);
        assert_eq!(
            p.taint_records,
            vec![
                ("active".to_string(), root_key.clone()),
                ("old".to_string(), root_key.clone())
            ]
        );
        // Nothing tainted, or an unrelated key: nothing to do.
        assert!(plan(&journal, &tainted(&[])).is_empty());
        assert!(plan(&journal, &tainted(&["ffff".into()])).is_empty());
    }

    #[test]
    fn a_tainted_prepared_intermediate_is_dropped() {
        let td = TrustDomain::parse("td").unwrap();
        let (old_root, new_root) = (root(&td), root(&td));
        let journal = [
            inter(&new_root, "active", CaStatus::Active),
            inter(&old_root, "prepared", CaStatus::Prepared),
        ];
        let root_key = ski(&old_root);
        let p = plan(&journal, &tainted(&[root_key]));
        assert!(!p.replace_active);
        assert!(p.drop_prepared);
        assert_eq!(p.taint_records.len(), 1);
    }

    /// Three tiers: the leaf's intermediate is signed by the mid's, which the tainted root
    /// signed: the leaf sees the root in its chain and replaces it.
    #[test]
    fn at_every_depth_a_chain_through_a_tainted_root_counts() {
        let td = TrustDomain::parse("td").unwrap();
        let (old_root, new_root) = (root(&td), root(&td));
        let mid_key = key();
        let csr = trustdeck_pki::csr::make_csr(&mid_key, None).unwrap();
        let csr = trustdeck_pki::csr::verify_csr(&csr).unwrap();
        let issued = old_root
            .sign_intermediate(&csr, "mid", Duration::minutes(30), t(0))
            .unwrap();
        let mid = X509Authority::from_parts(&td, issued.chain[0].clone(), vec![], mid_key).unwrap();
        let journal = [inter(&mid, "leaf", CaStatus::Active)];
        let p = plan(&journal, &tainted(&[ski(&old_root)]));
        assert!(p.replace_active);
        // Under the new root, the same depth is clean.
        let journal = [inter(&new_root, "leaf", CaStatus::Active)];
        assert!(plan(&journal, &tainted(&[ski(&old_root)])).is_empty());
    }

    #[test]
    fn own_held_names_live_intermediates_by_their_chain() {
        let td = TrustDomain::parse("td").unwrap();
        let r = root(&td);
        let mut gone = inter(&r, "gone", CaStatus::Revoked);
        gone.not_after = t(1800).timestamp();
        let mut expired = inter(&r, "expired", CaStatus::Prepared);
        expired.not_after = t(10).timestamp();
        let journal = [
            inter(&r, "active", CaStatus::Active),
            gone,
            expired,
            // Live but signing nothing more: what they signed is reported by its holders.
            inter(&r, "old", CaStatus::Old),
            inter(&r, "tainted", CaStatus::Tainted),
            inter(&r, "prepared", CaStatus::Prepared),
        ];
        let held = own_held(&journal, "spiffe://td", t(100));
        assert_eq!(held.len(), 2);
        assert_eq!(held[0].spiffe_id, "spiffe://td");
        assert_eq!(held[0].kind(), KeyKind::X509);
        assert_eq!(held[0].key_ids, record_chain_key_ids(&journal[0]));
        assert!(!held[0].key_ids.is_empty());
    }

    #[test]
    fn replacement_retries_back_off_and_reset() {
        let mut b = RetryBackoff::default();
        assert!(b.ready(t(0)));
        let mut now = t(0);
        let mut waits = Vec::new();
        for _ in 0..8 {
            b.failed(now);
            let mut next = now;
            while !b.ready(next) {
                next += Duration::milliseconds(250);
            }
            waits.push((next - now).num_milliseconds());
            now = next;
        }
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
        b.succeeded();
        assert!(b.ready(now));
    }
}
