use super::*;
use trustdeck_proto::admin::FederationRefusal;

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 24 * 3600;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW, 0).expect("time")
}

/// A federated bundle refreshed 10 s ago, every 60 s, roots valid for 30 days.
fn federated() -> ForeignTrustDomain {
    ForeignTrustDomain {
        trust_domain: "partner.test".into(),
        source: ForeignBundleSource::Federation as i32,
        sequence: 4,
        has_bundle: true,
        last_success_at: NOW - 10,
        earliest_root_expiry: NOW + 30 * DAY,
        latest_root_expiry: NOW + 30 * DAY,
        refresh_interval_seconds: 60,
        next_refresh_at: NOW + 50,
        ..Default::default()
    }
}

#[test]
fn a_fresh_federated_bundle_is_ok() {
    let a = assess(&federated(), now());
    assert_eq!(a.age, Some(10));
    assert!(!a.stale);
    assert_eq!(a.earliest_expiry_in, Some(30 * DAY));
    assert_eq!(a.level, Level::Ok, "{:?}", a.reasons);
}

#[test]
fn a_bundle_older_than_three_intervals_is_stale_a_warning() {
    let td = ForeignTrustDomain {
        last_success_at: NOW - 181,
        ..federated()
    };
    let a = assess(&td, now());
    assert!(a.stale);
    assert_eq!(a.level, Level::Warning);
    assert!(
        a.reasons[0].starts_with("stale: last success"),
        "{:?}",
        a.reasons
    );
    let just = ForeignTrustDomain {
        last_success_at: NOW - 180,
        ..federated()
    };
    assert!(
        !assess(&just, now()).stale,
        "exactly three intervals is not stale yet"
    );
}

#[test]
fn refreshes_that_keep_failing_are_a_warning_with_the_typed_reason() {
    let td = ForeignTrustDomain {
        consecutive_failures: 3,
        last_failure: FetchFailureKind::Connect as i32,
        last_error: "connection refused".into(),
        warnings: vec![FreshnessWarning::RefreshesFailing as i32],
        ..federated()
    };
    let a = assess(&td, now());
    assert!(a.stale);
    assert_eq!(a.level, Level::Warning);
    assert_eq!(
        a.reasons,
        ["3 refreshes failed in a row (connect: connection refused)"]
    );
    let refused = ForeignTrustDomain {
        last_failure: FetchFailureKind::Refused as i32,
        last_refusal: FederationRefusal::UnexpectedEndpointId as i32,
        last_error: String::new(),
        ..td
    };
    assert_eq!(
        failure_words(&refused),
        "refused: unexpected endpoint SPIFFE ID"
    );
}

#[test]
fn failures_without_words_read_plainly() {
    let td = ForeignTrustDomain {
        consecutive_failures: 3,
        ..federated()
    };
    assert_eq!(assess(&td, now()).reasons, ["3 refreshes failed in a row"]);
    let older = ForeignTrustDomain {
        last_failure: FetchFailureKind::NotKnown as i32,
        last_error: "refused".into(),
        ..td
    };
    assert_eq!(
        assess(&older, now()).reasons,
        ["3 refreshes failed in a row (not known since restart: refused)"]
    );
}

#[test]
fn one_failure_is_not_yet_stale() {
    let td = ForeignTrustDomain {
        consecutive_failures: 1,
        last_failure: FetchFailureKind::Timeout as i32,
        ..federated()
    };
    assert_eq!(assess(&td, now()).level, Level::Ok);
}

#[test]
fn roots_that_all_expire_before_the_next_refresh_are_critical() {
    let td = ForeignTrustDomain {
        earliest_root_expiry: NOW + 30,
        latest_root_expiry: NOW + 59,
        ..federated()
    };
    let a = assess(&td, now());
    assert_eq!(a.level, Level::Critical, "{:?}", a.reasons);
    assert_eq!(a.all_expire_in, Some(59));
    // One root expiring while another stays is a rotation, not a problem.
    let rotating = ForeignTrustDomain {
        earliest_root_expiry: NOW + 30,
        ..federated()
    };
    assert_eq!(assess(&rotating, now()).level, Level::Ok);
    let expired = ForeignTrustDomain {
        earliest_root_expiry: NOW - 100,
        latest_root_expiry: NOW - 1,
        ..federated()
    };
    let a = assess(&expired, now());
    assert_eq!(
        (a.level, a.reasons[0].as_str()),
        (Level::Critical, "every root expired")
    );
}

#[test]
fn a_root_the_partner_signs_with_and_we_lack_is_critical() {
    let td = ForeignTrustDomain {
        warnings: vec![FreshnessWarning::MissingSigningRoot as i32],
        missing_root_issuer: "CN=partner root 2".into(),
        ..federated()
    };
    let a = assess(&td, now());
    assert_eq!(a.level, Level::Critical);
    assert!(
        a.reasons[0].contains("CN=partner root 2"),
        "{:?}",
        a.reasons
    );
}

#[test]
fn a_warning_this_build_does_not_know_is_a_warning() {
    let td = ForeignTrustDomain {
        warnings: vec![99],
        ..federated()
    };
    let a = assess(&td, now());
    assert_eq!(a.level, Level::Warning);
    assert_eq!(a.reasons, ["warning unknown"]);
}

#[test]
fn an_import_is_never_stale_by_age_but_warns_before_its_roots_expire() {
    let td = ForeignTrustDomain {
        source: ForeignBundleSource::Import as i32,
        refresh_interval_seconds: 0,
        last_success_at: NOW - 90 * DAY,
        ..federated()
    };
    let a = assess(&td, now());
    assert!(!a.stale);
    assert_eq!(a.age, Some(90 * DAY));
    assert_eq!(a.level, Level::Ok);
    let soon = ForeignTrustDomain {
        earliest_root_expiry: NOW + DAY,
        latest_root_expiry: NOW + DAY,
        ..td.clone()
    };
    assert_eq!(assess(&soon, now()).level, Level::Warning);
    // Roots of a day, imported an hour ago: warned once a third of that day is left.
    let short = |left: i64| ForeignTrustDomain {
        last_success_at: NOW - 3600,
        earliest_root_expiry: NOW + left,
        latest_root_expiry: NOW + left,
        ..td.clone()
    };
    assert_eq!(assess(&short(DAY - 3600), now()).level, Level::Ok);
    let late = ForeignTrustDomain {
        last_success_at: NOW - 16 * 3600,
        ..short(8 * 3600)
    };
    assert_eq!(assess(&late, now()).level, Level::Warning);
}

#[test]
fn receipts_behind_our_sequence_are_told() {
    let r = PeerReceipt {
        peer_trust_domain: "iso.test".into(),
        sequence: 2,
        received_at: NOW,
    };
    assert!(receipt_behind(&r, 3));
    assert!(!receipt_behind(&r, 2));
}

#[test]
fn the_fleet_reads_federation_from_snapshots_and_deltas_into_health_and_the_report() {
    use crate::fleet::tests::snap;
    use crate::ttl::Thresholds;
    use trustdeck_proto::admin::{
        DaemonRole, Delta, Federation, WatchMessage, watch_message::Body,
    };

    let mut fleet = Fleet::new([(
        "home".to_string(),
        "unix:///x".to_string(),
        DaemonRole::Upstream,
        "root".to_string(),
    )]);
    let mut first = snap(
        1,
        DaemonRole::Upstream,
        "root",
        "spiffe://home.test/s",
        vec![],
        None,
    );
    if let Some(Body::Snapshot(s)) = first.body.as_mut() {
        s.federation = Some(Federation {
            trust_domains: vec![federated()],
            receipts: vec![PeerReceipt {
                peer_trust_domain: "iso.test".into(),
                sequence: 1,
                received_at: NOW - 5,
            }],
            own_sequence: 2,
        });
    }
    fleet.apply(0, first, now()).expect("snapshot");
    let th = Thresholds::default();
    let report = fleet.status_report(now(), &th);
    assert_eq!(report.federation.len(), 1);
    assert_eq!(report.federation[0].trust_domain, "partner.test");
    assert_eq!(report.federation[0].sequence, Some(4));
    assert!(
        report.reasons.iter().all(|r| !r.contains("federation")),
        "{:?}",
        report.reasons
    );
    assert!(report.receipts[0].behind);

    let failing = ForeignTrustDomain {
        consecutive_failures: 4,
        last_failure: FetchFailureKind::Connect as i32,
        warnings: vec![FreshnessWarning::RefreshesFailing as i32],
        ..federated()
    };
    let delta = WatchMessage {
        revision: 2,
        daemon_time_ms: 1_000_000,
        body: Some(Body::Delta(Delta {
            federation: Some(Federation {
                trust_domains: vec![failing],
                ..Default::default()
            }),
            ..Default::default()
        })),
    };
    fleet.apply(0, delta, now()).expect("delta");
    let tree = fleet.tree();
    let h = fleet.health(&tree, now(), &th);
    assert!(h.level >= Level::Warning);
    assert!(
        h.reasons
            .iter()
            .any(|r| r.starts_with("home: federation partner.test: 4 refreshes failed")),
        "{:?}",
        h.reasons
    );
    let report = fleet.status_report(now(), &th);
    assert!(report.federation[0].stale);
    assert_eq!(report.federation[0].last_failure, Some("connect"));
    assert_eq!(report.federation[0].warnings, ["refreshes keep failing"]);
    assert!(report.receipts.is_empty());
}
