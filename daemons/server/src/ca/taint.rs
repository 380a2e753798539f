//! The tainted keys this server publishes with its bundle ([`TaintedKeys`]): its own tainted
//! authorities (from the journal) and, on a downstream, its upstream's set as last fetched.

use trustdeck_datastore::{CaJournalRecord, CaKind, CaStatus};
use trustdeck_proto::node::TaintedKeys;

use super::CaManager;
use super::events::record_node_id;

/// The key id of a journal record as `TaintedKeys` names it: an X.509 authority's subject
/// key id (hex), a JWT key's kid. Empty when the record does not say.
pub fn record_key_id(r: &CaJournalRecord) -> String {
    let node = record_node_id(r);
    match r.kind {
        CaKind::X509 => node.strip_prefix("x509:").unwrap_or_default().to_string(),
        CaKind::Jwt => r.kid.clone().unwrap_or_default(),
    }
}

/// The keys of the tainted and revoked records of `journal`. A revoked authority stays in the
/// published set until it expires (and is pruned): a downstream's intermediate is never in the
/// bundle, so this set is the only thing that keeps distrusting what chains to it.
pub fn journal_tainted(journal: &[CaJournalRecord]) -> TaintedKeys {
    let mut t = TaintedKeys::default();
    for r in journal
        .iter()
        .filter(|r| matches!(r.status, CaStatus::Tainted | CaStatus::Revoked))
    {
        let id = record_key_id(r);
        if id.is_empty() {
            continue;
        }
        match r.kind {
            CaKind::X509 => t.x509_key_ids.push(id),
            CaKind::Jwt => t.jwt_kids.push(id),
        }
    }
    t
}

/// `a` and `b` together, each key once, in order.
pub fn union(mut a: TaintedKeys, b: &TaintedKeys) -> TaintedKeys {
    for k in &b.x509_key_ids {
        if !a.x509_key_ids.contains(k) {
            a.x509_key_ids.push(k.clone());
        }
    }
    for k in &b.jwt_kids {
        if !a.jwt_kids.contains(k) {
            a.jwt_kids.push(k.clone());
        }
    }
    a
}

impl CaManager {
    /// What this server publishes as tainted: its own tainted authorities and its upstream's.
    pub fn tainted_keys(&self) -> TaintedKeys {
        let own = journal_tainted(&self.snapshot().journal);
        let upstream = self
            .upstream_tainted
            .read()
            .unwrap_or_else(|p| p.into_inner());
        union(own, &upstream)
    }

    /// A downstream server records its upstream's tainted keys (from each bundle fetch).
    /// Returns whether they changed.
    pub fn set_upstream_tainted(&self, t: TaintedKeys) -> bool {
        let mut cur = self
            .upstream_tainted
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if *cur == t {
            return false;
        }
        *cur = t;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::slot::tests::{record, t};
    use trustdeck_pki::rotation::Window;

    #[test]
    fn tainted_jwt_records_are_named_by_kid_and_union_dedups() {
        let w = Window::new(t(0), t(600));
        let jwt = |id: &str, status| CaJournalRecord {
            status,
            kid: Some(format!("kid-{id}")),
            ..record(id, CaKind::Jwt, w)
        };
        let journal = [
            jwt("a", CaStatus::Active),
            jwt("t", CaStatus::Tainted),
            jwt("r", CaStatus::Revoked),
        ];
        let own = journal_tainted(&journal);
        assert_eq!(
            own.jwt_kids,
            vec!["kid-t", "kid-r"],
            "revoked ones stay distrusted"
        );
        assert!(own.x509_key_ids.is_empty());
        let up = TaintedKeys {
            x509_key_ids: vec!["ab".into()],
            jwt_kids: vec!["kid-t".into(), "kid-u".into()],
        };
        let all = union(own, &up);
        assert_eq!(all.jwt_kids, vec!["kid-t", "kid-r", "kid-u"]);
        assert_eq!(all.x509_key_ids, vec!["ab"]);
    }
}
