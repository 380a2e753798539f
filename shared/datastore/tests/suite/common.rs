//! What the suite's parts share: fixtures and a snapshot of everything stored.

use trustdeck_datastore::{
    AttestedNode, AuditRecord, Backend, BundleRecord, CaJournalRecord, CaKind, CaStatus, Datastore,
    Entry, NewEntry,
};

pub const NOW: i64 = 1_700_000_000;

pub fn new_entry(spiffe_id: &str, parent_id: &str, selectors: &[&str]) -> NewEntry {
    NewEntry {
        namespaces: vec![],
        federates_with: vec![],
        spiffe_id: spiffe_id.to_owned(),
        parent_id: parent_id.to_owned(),
        selectors: selectors.iter().map(|s| (*s).to_owned()).collect(),
        x509_ttl_secs: 3600,
        jwt_ttl_secs: 300,
        downstream: false,
        dns_names: vec!["b.example".to_owned(), "a.example".to_owned()],
    }
}

pub fn node(spiffe_id: &str, created_at: i64) -> AttestedNode {
    AttestedNode {
        spiffe_id: spiffe_id.to_owned(),
        attestation_type: "join_token".to_owned(),
        cert_serial: "01".to_owned(),
        cert_not_after: created_at + 3600,
        new_cert: None,
        banned: false,
        selectors: vec!["join_token:abc".to_owned()],
        created_at,
        updated_at: created_at,
    }
}

pub fn journal(id: &str, kind: CaKind, status: CaStatus, created_at: i64) -> CaJournalRecord {
    let x509 = kind == CaKind::X509;
    CaJournalRecord {
        id: id.to_owned(),
        kind,
        status,
        key_backend: "disk".to_owned(),
        key_ref: format!("keys/{id}"),
        certificate_chain_pem: x509
            .then(|| "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_owned()),
        public_key_der_b64: (!x509).then(|| "MFkwEwYHKoZIzj0CAQ==".to_owned()),
        kid: (!x509).then(|| format!("kid-{id}")),
        not_before: created_at,
        not_after: created_at + 86_400,
        created_at,
    }
}

pub fn bundle(trust_domain: &str, sequence: i64) -> BundleRecord {
    BundleRecord {
        trust_domain: trust_domain.to_owned(),
        sequence,
        document: format!(r#"{{"keys":[],"spiffe_sequence":{sequence}}}"#),
        updated_at: NOW + sequence,
    }
}

pub fn audit(id: &str, at: i64) -> AuditRecord {
    AuditRecord {
        id: id.to_owned(),
        at,
        actor: "spiffe://td.example/admin".to_owned(),
        action: "entry.create".to_owned(),
        target: format!("entry/{id}"),
        detail: "{\"note\":\"it's \\\"quoted\\\"\"}".to_owned(),
        outcome: "ok".to_owned(),
    }
}

pub fn expected_backend(url: &str) -> Backend {
    if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    }
}

/// Everything the datastore holds, for before/after comparisons.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub entries: Vec<Entry>,
    pub nodes: Vec<AttestedNode>,
    pub tokens: Vec<trustdeck_datastore::JoinToken>,
    pub journal: Vec<CaJournalRecord>,
    pub bundle: Option<BundleRecord>,
    pub other_bundle: Option<BundleRecord>,
    pub audit: Vec<AuditRecord>,
}

pub async fn snapshot(ds: &Datastore) -> Snapshot {
    Snapshot {
        entries: ds.list_entries().await.unwrap(),
        nodes: ds.list_nodes().await.unwrap(),
        tokens: ds.list_join_tokens().await.unwrap(),
        journal: ds.list_ca_journal().await.unwrap(),
        bundle: ds.get_bundle("td.example").await.unwrap(),
        other_bundle: ds.get_bundle("other.example").await.unwrap(),
        audit: ds.list_audit(1000).await.unwrap(),
    }
}
