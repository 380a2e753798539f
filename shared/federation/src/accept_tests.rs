use chrono::Duration;

use super::*;
use crate::testutil::*;

fn spiffe_partner() -> Partner {
    Partner::new(
        td("partner.test"),
        EndpointProfile::HttpsSpiffe {
            endpoint_id: id("spiffe://partner.test/trustdeck/server"),
        },
    )
    .expect("partner")
}

fn json(b: &Bundle) -> Vec<u8> {
    b.try_to_json().expect("json").into_bytes()
}

#[test]
fn an_endpoint_id_outside_the_trust_domain_is_refused() {
    let r = Partner::new(
        td("partner.test"),
        EndpointProfile::HttpsSpiffe {
            endpoint_id: id("spiffe://other.test/trustdeck/server"),
        },
    );
    assert!(matches!(r, Err(Refusal::EndpointOutsideTrustDomain { .. })));
}

#[test]
fn only_the_configured_endpoint_id_is_accepted() {
    let p = spiffe_partner();
    assert_eq!(
        p.check_endpoint_id(&id("spiffe://partner.test/trustdeck/server")),
        Ok(())
    );
    let wrong = id("spiffe://partner.test/workload");
    assert_eq!(
        p.check_endpoint_id(&wrong),
        Err(Refusal::UnexpectedEndpointId {
            expected: id("spiffe://partner.test/trustdeck/server"),
            presented: wrong,
        })
    );
    let web = Partner::new(td("partner.test"), EndpointProfile::HttpsWeb).expect("web");
    assert!(
        web.check_endpoint_id(&id("spiffe://partner.test/x"))
            .is_err()
    );
}

#[test]
fn the_first_bundle_is_accepted() {
    let t = td("partner.test");
    let (r1, _) = root(&t, Duration::days(1));
    let b = bundle(&t, &[&r1], 3, Some(60));
    assert_eq!(
        accept(&spiffe_partner(), None, &json(&b)),
        Ok(Accepted::First(b))
    );
}

#[test]
fn a_body_that_is_not_a_bundle_is_refused() {
    let r = accept(&spiffe_partner(), None, b"<html>maintenance</html>");
    assert!(matches!(r, Err(Refusal::NotABundle(_))), "{r:?}");
}

#[test]
fn an_empty_bundle_is_refused() {
    let r = accept(
        &spiffe_partner(),
        None,
        br#"{"keys":[],"spiffe_sequence":9}"#,
    );
    assert!(matches!(r, Err(Refusal::Empty { .. })), "{r:?}");
}

#[test]
fn a_root_of_another_trust_domain_is_refused() {
    let (foreign, _) = root(&td("other.test"), Duration::days(1));
    let b = bundle(&td("partner.test"), &[&foreign], 1, None);
    let r = accept(&spiffe_partner(), None, &json(&b));
    assert_eq!(
        r,
        Err(Refusal::ForeignAuthority {
            expected: td("partner.test"),
            found: td("other.test"),
            index: 0,
        })
    );
}

#[test]
fn an_authority_that_is_no_ca_is_refused() {
    let t = td("partner.test");
    let (_, issuer) = root(&t, Duration::days(1));
    let leaf_der = leaf(&issuer, &id("spiffe://partner.test/w"));
    let b = bundle(&t, &[&leaf_der], 1, None);
    let r = accept(&spiffe_partner(), None, &json(&b));
    assert!(
        matches!(r, Err(Refusal::NotAnAuthority { index: 0, .. })),
        "{r:?}"
    );
}

#[test]
fn the_sequence_never_goes_backwards() {
    let t = td("partner.test");
    let (r1, _) = root(&t, Duration::days(1));
    let held = bundle(&t, &[&r1], 5, None);
    let older = bundle(&t, &[&r1], 4, None);
    assert_eq!(
        accept(&spiffe_partner(), Some(&held), &json(&older)),
        Err(Refusal::SequenceBackwards {
            trust_domain: t,
            held: 5,
            served: 4,
        })
    );
}

#[test]
fn a_reused_sequence_with_other_authorities_is_refused() {
    let t = td("partner.test");
    let (r1, _) = root(&t, Duration::days(1));
    let (r2, _) = root(&t, Duration::days(1));
    let held = bundle(&t, &[&r1], 5, None);
    let other = bundle(&t, &[&r2], 5, None);
    assert_eq!(
        accept(&spiffe_partner(), Some(&held), &json(&other)),
        Err(Refusal::SequenceReused {
            trust_domain: t,
            sequence: 5,
        })
    );
}

#[test]
fn the_same_sequence_and_authorities_is_unchanged_in_any_order() {
    let t = td("partner.test");
    let (r1, _) = root(&t, Duration::days(1));
    let (r2, _) = root(&t, Duration::days(1));
    let held = bundle(&t, &[&r1, &r2], 5, Some(300));
    let same = bundle(&t, &[&r2, &r1], 5, Some(300));
    assert_eq!(
        accept(&spiffe_partner(), Some(&held), &json(&same)),
        Ok(Accepted::Unchanged(same))
    );
    // Another refresh hint (a bootstrap bundle carries ours, not the endpoint's): kept, so
    // refreshes follow the partner's.
    let hinted = bundle(&t, &[&r2, &r1], 5, Some(30));
    assert_eq!(
        accept(&spiffe_partner(), Some(&held), &json(&hinted)),
        Ok(Accepted::Updated {
            added_roots: 0,
            removed_roots: 0,
            previous_sequence: 5,
            bundle: hinted,
        })
    );
}

#[test]
fn a_newer_sequence_replaces_and_counts_roots() {
    let t = td("partner.test");
    let (r1, _) = root(&t, Duration::days(1));
    let (r2, _) = root(&t, Duration::days(1));
    let held = bundle(&t, &[&r1], 5, None);
    let newer = bundle(&t, &[&r2], 7, None);
    let got = accept(&spiffe_partner(), Some(&held), &json(&newer)).expect("accepted");
    assert_eq!(
        got,
        Accepted::Updated {
            bundle: newer.clone(),
            previous_sequence: 5,
            added_roots: 1,
            removed_roots: 1,
        }
    );
    assert_eq!(got.into_bundle(), newer);
}
