//! The trust bundle: built from the journal on the root, adopted from the upstream on a
//! downstream server, and committed with the journal.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Duration, Utc};
use trustdeck_datastore::{AuditRecord, BundleRecord, CaJournalRecord, CaKind};
use trustdeck_spiffe::bundle::{Bundle, JwtAuthority};
use trustdeck_spiffe::{TrustDomain, pem};

use super::CaManager;
use super::authority::CaState;
use super::error::CaManagerError;
use super::slot::Slot;

/// Bundle refresh hint for a CA TTL: a tenth of it, between 1 s and 5 min.
pub fn refresh_hint(ca_ttl: Duration) -> u64 {
    (ca_ttl.num_seconds() / 10).clamp(1, 300) as u64
}

/// Whether two bundles hold the same authorities, in any order: the journal's order in
/// memory (insertion) and as loaded (creation second, then id) can differ, and a restart
/// must not publish a new sequence for the same authorities.
pub fn same_authorities(a: &Bundle, b: &Bundle) -> bool {
    fn same_set<T: PartialEq>(x: &[T], y: &[T]) -> bool {
        x.len() == y.len() && x.iter().all(|i| y.contains(i)) && y.iter().all(|i| x.contains(i))
    }
    same_set(&a.x509_authorities, &b.x509_authorities)
        && same_set(&a.jwt_authorities, &b.jwt_authorities)
}

/// The bundle for a journal: the root certificate of every trusted X.509 authority's chain
/// and every trusted JWT key.
pub fn build_bundle(
    td: &TrustDomain,
    journal: &[CaJournalRecord],
    refresh_hint_secs: u64,
) -> Result<Bundle, CaManagerError> {
    let mut b = Bundle::new(td.clone());
    b.refresh_hint_secs = Some(refresh_hint_secs);
    for r in journal.iter().filter(|r| r.status.is_trusted()) {
        match r.kind {
            CaKind::X509 => {
                let pem_text = r.certificate_chain_pem.as_deref().unwrap_or_default();
                let certs = pem::decode_certs(pem_text).map_err(|source| {
                    CaManagerError::JournalCertificate {
                        id: r.id.clone(),
                        source,
                    }
                })?;
                // A self-signed authority is its own root; an intermediate's root is last.
                if let Some(root) = certs.last()
                    && !b.x509_authorities.contains(root)
                {
                    b.x509_authorities.push(root.clone());
                }
            }
            CaKind::Jwt => {
                let (Some(kid), Some(pk)) = (&r.kid, &r.public_key_der_b64) else {
                    continue;
                };
                let spki = B64
                    .decode(pk)
                    .map_err(|source| CaManagerError::JournalPublicKey {
                        id: r.id.clone(),
                        source,
                    })?;
                // Expiry is not part of the SPIFFE bundle format: leave it out so a bundle read
                // back from the datastore compares equal to a freshly built one.
                b.jwt_authorities.push(JwtAuthority {
                    key_id: kid.clone(),
                    public_key_spki_der: spki,
                    expires_at: None,
                });
            }
        }
    }
    Ok(b)
}

impl CaManager {
    /// Commits journal changes, `bundle` and the audit records of the changes in one
    /// transaction, provided the stored bundle is still the one this manager last read.
    pub(super) async fn commit(
        &self,
        upserts: &[CaJournalRecord],
        deletes: &[String],
        bundle: &Bundle,
        now: DateTime<Utc>,
        audit: &[AuditRecord],
    ) -> Result<(), CaManagerError> {
        let td = self.settings.trust_domain.as_str();
        let stored = self.ds.get_bundle(td).await?;
        let record = BundleRecord {
            trust_domain: td.to_string(),
            sequence: bundle.sequence as i64,
            document: bundle.to_json(),
            updated_at: now.timestamp(),
        };
        self.ds
            .commit_ca_state(
                &self.settings.owner_session,
                upserts,
                deletes,
                &record,
                stored.map(|r| r.sequence),
                audit,
            )
            .await?;
        Ok(())
    }

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
        // Adopting the upstream's bundle changes no authority of this server: no audit record.
        self.commit(&[], &[], &b, now, &[]).await?;
        let b = Arc::new(b);
        self.set_state(CaState {
            x509: cur.x509.clone(),
            jwt: Slot::default(),
            journal: cur.journal.clone(),
            bundle: b.clone(),
        });
        self.bundle_tx.send_replace(b);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::slot::tests::{record, t};
    use trustdeck_datastore::CaStatus;
    use trustdeck_pki::rotation::Window;

    #[test]
    fn the_same_authorities_in_another_order_are_the_same_bundle() {
        let td = TrustDomain::parse("td").unwrap();
        let mut a = Bundle::new(td.clone());
        a.x509_authorities = vec![vec![1], vec![2]];
        let mut b = Bundle::new(td);
        b.x509_authorities = vec![vec![2], vec![1]];
        assert!(same_authorities(&a, &b));
        b.x509_authorities = vec![vec![2], vec![3]];
        assert!(!same_authorities(&a, &b));
        b.x509_authorities = vec![vec![2]];
        assert!(!same_authorities(&a, &b));
    }

    fn jwt(id: &str, status: CaStatus) -> CaJournalRecord {
        CaJournalRecord {
            status,
            kid: Some(format!("kid-{id}")),
            public_key_der_b64: Some(B64.encode(id)),
            ..record(id, CaKind::Jwt, Window::new(t(0), t(600)))
        }
    }

    #[test]
    fn every_trusted_key_is_in_the_bundle() {
        let td = TrustDomain::parse("example.org").expect("td");
        let journal = [
            jwt("a", CaStatus::Active),
            jwt("p", CaStatus::Prepared),
            jwt("o", CaStatus::Old),
            jwt("t", CaStatus::Tainted),
            jwt("r", CaStatus::Revoked),
        ];
        let b = build_bundle(&td, &journal, 60).expect("bundle");
        let kids: Vec<_> = b
            .jwt_authorities
            .iter()
            .map(|a| a.key_id.as_str())
            .collect();
        assert_eq!(kids, vec!["kid-a", "kid-p", "kid-o", "kid-t"]);
        assert_eq!(b.refresh_hint_secs, Some(60));
    }

    #[test]
    fn a_corrupt_key_names_its_record() {
        let td = TrustDomain::parse("example.org").expect("td");
        let mut bad = jwt("bad", CaStatus::Active);
        bad.public_key_der_b64 = Some("not base64!".into());
        let err = build_bundle(&td, &[bad], 60).expect_err("corrupt");
        assert!(err.to_string().contains("journal bad public key"), "{err}");
    }

    #[test]
    fn refresh_hint_is_a_tenth_within_bounds() {
        assert_eq!(refresh_hint(Duration::seconds(5)), 1);
        assert_eq!(refresh_hint(Duration::seconds(600)), 60);
        assert_eq!(refresh_hint(Duration::days(1)), 300);
    }
}
