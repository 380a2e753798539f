use chrono::Duration;

use super::*;
use crate::accept::{Refusal, TransportKind};
use crate::testutil::*;

fn failure() -> FetchFailure {
    FetchFailure::Transport {
        kind: TransportKind::Connect,
        detail: "connection refused".into(),
    }
}

fn ok(b: &Bundle) -> Fetched {
    Fetched {
        result: Ok(Accepted::First(b.clone())),
        presented_chain: None,
    }
}

fn failed() -> Fetched {
    Fetched {
        result: Err(failure()),
        presented_chain: None,
    }
}

#[test]
fn a_success_replaces_the_bundle_and_a_failure_keeps_it() {
    let t = td("p.test");
    let (r1, _) = root(&t, Duration::days(1));
    let (r2, _) = root(&t, Duration::days(1));
    let boot = bundle(&t, &[&r1], 0, None);
    let mut s = PartnerState::new(Some(boot.clone()));
    assert_eq!(s.held(), Some(&boot));
    let good = bundle(&t, &[&r1, &r2], 4, Some(60));
    s.record(ok(&good), t0());
    assert_eq!(s.held(), Some(&good));
    s.record(failed(), t0() + Duration::seconds(60));
    assert_eq!(s.held(), Some(&good), "the last good bundle is kept");
    assert_eq!(s.last_success, Some(t0()));
    assert_eq!(s.consecutive_failures, 1);
    assert_eq!(s.last_failure, Some(failure()));
}

#[test]
fn the_facts_of_a_healthy_partner() {
    let t = td("p.test");
    let (r1, _) = root(&t, Duration::days(2));
    let (r2, _) = root(&t, Duration::days(1));
    let good = bundle(&t, &[&r1, &r2], 4, Some(120));
    let mut s = PartnerState::new(None);
    s.record(ok(&good), t0());
    let now = t0() + Duration::seconds(90);
    let f = s.freshness(&RefreshPolicy::default(), now);
    assert_eq!(
        f,
        Freshness {
            last_success: Some(t0()),
            age: Some(Duration::seconds(90)),
            sequence: Some(4),
            from_bootstrap: false,
            earliest_root_expiry: Some(t0() + Duration::days(1)),
            consecutive_failures: 0,
            last_failure: None,
            next_refresh: t0() + Duration::seconds(120),
            warnings: vec![],
        }
    );
}

#[test]
fn a_bootstrap_bundle_is_shown_as_such_and_fetched_at_once() {
    let t = td("p.test");
    let (r1, _) = root(&t, Duration::days(1));
    let s = PartnerState::new(Some(bundle(&t, &[&r1], 0, None)));
    let f = s.freshness(&RefreshPolicy::default(), t0());
    assert!(f.from_bootstrap);
    assert_eq!(f.last_success, None);
    assert_eq!(f.age, None);
    assert_eq!(f.next_refresh, t0());
}

#[test]
fn refreshes_keep_failing_after_n_failures_with_backoff() {
    let t = td("p.test");
    let (r1, _) = root(&t, Duration::days(1));
    let mut s = PartnerState::new(None);
    s.record(ok(&bundle(&t, &[&r1], 1, Some(300))), t0());
    let policy = RefreshPolicy::default();
    let mut at = t0();
    for n in 1..=3u32 {
        at = s.next_refresh(&policy, at);
        s.record(failed(), at);
        let f = s.freshness(&policy, at);
        let failing = f
            .warnings
            .iter()
            .any(|w| matches!(w, Warning::RefreshesFailing { .. }));
        assert_eq!(failing, n >= 3, "after {n} failures: {f:?}");
    }
    // First failure at t0 + 300 s; the next tries 5 s then 10 s later.
    let first = t0() + Duration::seconds(300);
    assert_eq!(at, first + Duration::seconds(15));
    assert_eq!(s.next_refresh(&policy, at), at + Duration::seconds(20));
    assert!(
        s.freshness(&policy, at)
            .warnings
            .contains(&Warning::RefreshesFailing {
                failures: 3,
                since: first
            })
    );
    s.record(ok(&bundle(&t, &[&r1], 2, Some(300))), at);
    assert!(s.freshness(&policy, at).warnings.is_empty());
}

#[test]
fn a_chain_to_a_root_we_lack_is_a_warning() {
    let t = td("p.test");
    let (r1, _) = root(&t, Duration::days(1));
    let (r2, issuer2) = root(&t, Duration::days(1));
    let svid = leaf(&issuer2, &id("spiffe://p.test/trustdeck/server"));
    let ours = bundle(&t, &[&r1], 1, None);
    let m = missing_signing_root(&ours, std::slice::from_ref(&svid)).expect("missing");
    let ski = trustdeck_spiffe::x509::check_ca(&r2)
        .expect("ca")
        .subject_key_id
        .expect("ski");
    assert_eq!(m.key_id, Some(hex::encode(ski)));
    assert!(m.issuer.contains("test root"), "{}", m.issuer);
    let both = bundle(&t, &[&r1, &r2], 2, None);
    assert_eq!(
        missing_signing_root(&both, std::slice::from_ref(&svid)),
        None
    );
    assert_eq!(missing_signing_root(&ours, &[b"junk".to_vec()]), None);

    let mut s = PartnerState::new(None);
    s.record(ok(&ours), t0());
    s.record(
        Fetched {
            result: Err(FetchFailure::Refused(Refusal::EndpointRootUnknown {
                trust_domain: t.clone(),
                missing: Some(m.clone()),
            })),
            presented_chain: Some(vec![svid]),
        },
        t0() + Duration::seconds(60),
    );
    let f = s.freshness(&RefreshPolicy::default(), t0() + Duration::seconds(60));
    assert_eq!(f.warnings, vec![Warning::MissingSigningRoot(m)]);
    assert_eq!(f.sequence, Some(1), "the last good bundle is kept");
}
