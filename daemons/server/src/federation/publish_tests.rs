use super::*;
use trustdeck_datastore::{FederationProfile as Stored, RefreshState};
use trustdeck_federation::Refusal;
use trustdeck_proto::admin::FederationProfile;

fn at(s: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(s, 0).expect("time")
}

fn stored(td: &str, sequence: u64, source: ForeignSource) -> ForeignBundle {
    let mut b = Bundle::new(TrustDomain::parse(td).expect("td"));
    b.sequence = sequence;
    ForeignBundle {
        trust_domain: td.into(),
        document: b.to_json(),
        sequence,
        source,
        updated_at: 500,
    }
}

fn rel(td: &str, refresh: RefreshState) -> FederationRelationship {
    FederationRelationship {
        trust_domain: td.into(),
        endpoint_url: "https://p.test:8443/".into(),
        profile: Stored::HttpsSpiffe,
        endpoint_spiffe_id: Some(format!("spiffe://{td}/server")),
        ca_file: None,
        created_at: 100,
        updated_at: 100,
        refresh,
    }
}

#[test]
fn an_imported_bundle_is_told_by_its_source_and_import_time() {
    let b = stored("iso.test", 4, ForeignSource::Import);
    let f = foreign_trust_domain(
        "iso.test",
        None,
        Some(&b),
        None,
        &RefreshPolicy::default(),
        at(1_000),
    );
    assert_eq!(f.source_wire(), ForeignBundleSource::Import);
    assert!(f.profile_wire().is_unspecified());
    assert_eq!(
        (f.sequence, f.has_bundle, f.last_success_at),
        (4, true, 500)
    );
    assert!(f.warnings.is_empty());
}

#[test]
fn a_failing_relationship_carries_its_typed_reason_and_warning() {
    let r = rel(
        "p.test",
        RefreshState {
            last_attempt_at: Some(900),
            last_success_at: Some(600),
            last_error: Some("connection refused".into()),
            failures: 3,
        },
    );
    let b = stored("p.test", 7, ForeignSource::Federation);
    let last = LastFetch {
        failure: Some(FetchFailure::Transport {
            kind: TransportKind::Connect,
            detail: "connection refused".into(),
        }),
        failing_since: Some(at(700)),
        presented_chain: None,
    };
    let f = foreign_trust_domain(
        "p.test",
        Some(&r),
        Some(&b),
        Some(&last),
        &RefreshPolicy::default(),
        at(1_000),
    );
    assert_eq!(f.source_wire(), ForeignBundleSource::Federation);
    assert_eq!(f.profile_wire(), FederationProfile::HttpsSpiffe);
    assert_eq!(
        (f.sequence, f.last_success_at, f.consecutive_failures),
        (7, 600, 3)
    );
    assert_eq!(f.last_failure_wire(), FetchFailureKind::Connect);
    assert_eq!(
        (f.failing_since, f.last_error.as_str()),
        (700, "connection refused")
    );
    assert_eq!(
        f.warnings_wire(),
        vec![trustdeck_proto::vocab::Wire::Known(
            FreshnessWarning::RefreshesFailing
        )]
    );
    assert!(
        f.next_refresh_at > 900 && f.refresh_interval_seconds >= 60,
        "{f:?}"
    );
    assert!(!f.from_bootstrap);
}

#[test]
fn a_failure_from_before_a_restart_is_not_known_but_counted() {
    let r = rel(
        "p.test",
        RefreshState {
            last_attempt_at: Some(900),
            last_success_at: None,
            last_error: Some("refused".into()),
            failures: 1,
        },
    );
    let b = stored("p.test", 0, ForeignSource::Federation);
    let f = foreign_trust_domain(
        "p.test",
        Some(&r),
        Some(&b),
        None,
        &RefreshPolicy::default(),
        at(1_000),
    );
    assert_eq!(f.last_failure_wire(), FetchFailureKind::NotKnown);
    assert!(f.from_bootstrap);
    assert!(f.warnings.is_empty(), "one failure is no warning yet");
}

#[test]
fn refusals_keep_their_rule() {
    let f = FetchFailure::Refused(Refusal::SequenceReused {
        trust_domain: TrustDomain::parse("p.test").expect("td"),
        sequence: 3,
    });
    assert_eq!(
        failure_kind(&f),
        (
            FetchFailureKind::Refused,
            FederationRefusal::SequenceReused,
            0
        )
    );
    let http = FetchFailure::Transport {
        kind: TransportKind::HttpStatus(503),
        detail: "503".into(),
    };
    assert_eq!(
        failure_kind(&http),
        (
            FetchFailureKind::HttpStatus,
            FederationRefusal::Unspecified,
            503
        )
    );
}

#[test]
fn every_trust_domain_once_and_receipts_by_peer() {
    let rels = [rel("p.test", RefreshState::default())];
    let bundles = [
        stored("p.test", 2, ForeignSource::Federation),
        stored("iso.test", 1, ForeignSource::Import),
    ];
    let receipts = [
        BundleReceipt {
            peer_trust_domain: "z.test".into(),
            sequence: 3,
            roots: vec![],
            received_at: 10,
        },
        BundleReceipt {
            peer_trust_domain: "iso.test".into(),
            sequence: 2,
            roots: vec![],
            received_at: 20,
        },
    ];
    let f = federation(
        &rels,
        &bundles,
        &receipts,
        3,
        |_| None,
        &RefreshPolicy::default(),
        at(1_000),
    );
    let tds: Vec<&str> = f
        .trust_domains
        .iter()
        .map(|t| t.trust_domain.as_str())
        .collect();
    assert_eq!(tds, ["iso.test", "p.test"]);
    let peers: Vec<(&str, u64)> = f
        .receipts
        .iter()
        .map(|r| (r.peer_trust_domain.as_str(), r.sequence))
        .collect();
    assert_eq!(peers, [("iso.test", 2), ("z.test", 3)]);
    assert_eq!(f.own_sequence, 3);
}
