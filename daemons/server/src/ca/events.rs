//! What happened to the server's authorities, for the log and the admin stream's events.

use trustdeck_datastore::{CaJournalRecord, CaKind};
use trustdeck_proto::admin::{EventKind, Severity};

/// Something that happened to the server's authorities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaEvent {
    /// The admin stream's kind of event.
    pub kind: EventKind,
    /// The same for operators, naming the authority.
    pub message: String,
    /// The authority's node id as the server publishes it (`x509:<key id>`, `jwt:<kid>`);
    /// empty when it cannot be told.
    pub node_id: String,
}

impl CaEvent {
    pub(crate) fn new(kind: EventKind, message: impl Into<String>, node_id: String) -> Self {
        Self {
            kind,
            message: message.into(),
            node_id,
        }
    }

    /// How bad it is: an authority that can no longer sign is a warning (it stays trusted
    /// and a successor is minted), one that cannot be used at all an error.
    pub fn severity(&self) -> Severity {
        match self.kind {
            EventKind::KeyUnavailable => Severity::Warning,
            EventKind::CaUnusable | EventKind::RotationFailed => Severity::Error,
            _ => Severity::Info,
        }
    }
}

/// The node id of the authority of journal record `r` (empty when its record does not say).
pub fn record_node_id(r: &CaJournalRecord) -> String {
    match r.kind {
        CaKind::X509 => r
            .certificate_chain_pem
            .as_deref()
            .and_then(|pem| trustdeck_spiffe::pem::decode_certs(pem).ok())
            .and_then(|certs| certs.into_iter().next())
            .and_then(|der| crate::observe::x509_node_id(&der))
            .map(|(id, _)| id)
            .unwrap_or_default(),
        CaKind::Jwt => r
            .kid
            .as_ref()
            .map(|k| format!("jwt:{k}"))
            .unwrap_or_default(),
    }
}

/// The event of a successor of `kind` being published.
pub fn prepared(kind: CaKind) -> EventKind {
    match kind {
        CaKind::X509 => EventKind::X509Prepared,
        CaKind::Jwt => EventKind::JwtPrepared,
    }
}

/// The event of an authority of `kind` starting to sign.
pub fn activated(kind: CaKind) -> EventKind {
    match kind {
        CaKind::X509 => EventKind::X509Activated,
        CaKind::Jwt => EventKind::JwtActivated,
    }
}

#[cfg(test)]
mod tests {
    use trustdeck_datastore::CaStatus;

    use super::*;

    fn rec(kind: CaKind, pem: Option<String>, kid: Option<&str>) -> CaJournalRecord {
        CaJournalRecord {
            id: "r".into(),
            kind,
            status: CaStatus::Active,
            key_backend: "memory".into(),
            key_ref: "k".into(),
            certificate_chain_pem: pem,
            public_key_der_b64: None,
            kid: kid.map(str::to_string),
            not_before: 0,
            not_after: 0,
            created_at: 0,
        }
    }

    #[test]
    fn records_name_the_node_the_server_publishes() {
        use trustdeck_pki::keys::{KeyManager, MemoryKeyManager};
        let key = MemoryKeyManager::new().generate("k").expect("key");
        let td = trustdeck_spiffe::TrustDomain::parse("td.test").expect("td");
        let now = chrono::DateTime::from_timestamp(1_900_000_000, 0).expect("now");
        let ca = trustdeck_pki::X509Authority::self_signed(
            &td,
            key,
            "test CA",
            now,
            chrono::Duration::hours(1),
        )
        .expect("ca");
        let der = ca.cert_der().to_vec();
        let (want, _) = crate::observe::x509_node_id(&der).expect("node id");
        assert!(want.starts_with("x509:") && want.len() > 10, "{want}");
        let pem = trustdeck_spiffe::pem::encode_certs(&[der]);
        assert_eq!(record_node_id(&rec(CaKind::X509, Some(pem), None)), want);
        assert_eq!(
            record_node_id(&rec(CaKind::Jwt, None, Some("7f3a"))),
            "jwt:7f3a"
        );
        assert_eq!(record_node_id(&rec(CaKind::X509, None, None)), "");
    }

    #[test]
    fn lost_and_unusable_authorities_are_not_info() {
        let ev = |kind| CaEvent::new(kind, "", String::new()).severity();
        assert_eq!(ev(EventKind::KeyUnavailable), Severity::Warning);
        assert_eq!(ev(EventKind::CaUnusable), Severity::Error);
        assert_eq!(ev(EventKind::RotationFailed), Severity::Error);
        for k in [
            EventKind::X509Prepared,
            EventKind::X509Activated,
            EventKind::JwtPrepared,
            EventKind::JwtActivated,
            EventKind::Pruned,
        ] {
            assert_eq!(ev(k), Severity::Info, "{k:?}");
        }
    }
}
