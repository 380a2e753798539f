use super::*;
use trustdeck_proto::node::KeyKind;

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn ns(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_namespace_is_a_path_prefix_between_slashes() {
    for good in ["/", "/prod/", "/prod/gcp/", "/a-b/c_d/e.f/"] {
        assert_eq!(validate(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        "prod/",
        "/prod",
        "prod",
        "//",
        "/prod//gcp/",
        "/./",
        "/../x/",
        "/a b/",
    ] {
        assert!(validate(bad).is_err(), "{bad:?} accepted");
    }
    assert!(matches!(
        validate(&format!("/{}/", "a".repeat(300))),
        Err(NamespaceError::TooLong(_))
    ));
    assert!(matches!(validate("/prod"), Err(NamespaceError::Slashes(_))));
    assert!(matches!(
        validate("/pr%d/"),
        Err(NamespaceError::Segment(_))
    ));
}

#[test]
fn containment_is_by_whole_segments() {
    assert!(contains("/prod/gcp/", "/prod/gcp/payments/api"));
    assert!(!contains("/prod/gcp/", "/prod/gcpx/payments/api"));
    assert!(!contains("/prod/gcp/", "/prod/gcp"));
    assert!(contains("/", "/anything"));
    assert!(within("/prod/gcp/payments/", &ns(&["/prod/gcp/"])));
    assert!(!within("/prod/", &ns(&["/prod/gcp/"])));
}

#[test]
fn the_default_is_the_seed_platform_path() {
    let all = Scope::Unrestricted;
    assert_eq!(
        default_for(&id("spiffe://td/gcp/trustdeck-server"), &all),
        ns(&["/prod/gcp/", "/staging/gcp/", "/dev/gcp/"])
    );
    assert_eq!(
        default_for(&id("spiffe://td/prod/gcp/platform/trustdeck-server"), &all),
        ns(&["/prod/gcp/"])
    );
    // On a downstream: only what lies inside its own namespaces...
    let mid = Scope::Within(ns(&["/prod/gcp/"]));
    assert_eq!(
        default_for(&id("spiffe://td/gcp/leaf"), &mid),
        ns(&["/prod/gcp/"])
    );
    // ... or its own when nothing does: a leaf never gets more than its mid.
    assert_eq!(
        default_for(&id("spiffe://td/eu-plant/trustdeck-server"), &mid),
        ns(&["/prod/gcp/"])
    );
}

#[test]
fn downstream_namespaces_nest() {
    let mid = Scope::Within(ns(&["/prod/gcp/"]));
    let leaf = id("spiffe://td/gcp/leaf");
    assert_eq!(
        for_downstream(
            &leaf,
            &ns(&["/prod/gcp/payments/", "/prod/gcp/payments/"]),
            &mid
        ),
        Ok(ns(&["/prod/gcp/payments/"]))
    );
    assert!(matches!(
        for_downstream(&leaf, &ns(&["/prod/aws/"]), &mid),
        Err(NamespaceError::OutsideOwn { .. })
    ));
    assert!(matches!(
        for_downstream(&leaf, &ns(&["/prod/"]), &mid),
        Err(NamespaceError::OutsideOwn { .. })
    ));
    assert!(matches!(
        for_downstream(&leaf, &ns(&["prod"]), &Scope::Unrestricted),
        Err(NamespaceError::Slashes(_))
    ));
    let many: Vec<String> = (0..40).map(|i| format!("/p{i}/")).collect();
    assert!(matches!(
        for_downstream(&leaf, &many, &Scope::Unrestricted),
        Err(NamespaceError::TooMany(40))
    ));
    // A downstream that has not learnt its own namespaces registers no downstream.
    assert!(for_downstream(&leaf, &[], &Scope::Unknown).is_err());
}

#[test]
fn scopes_allow_what_lies_inside() {
    let s = Scope::Within(ns(&["/prod/gcp/", "/staging/gcp/"]));
    assert!(s.allows(&id("spiffe://td/prod/gcp/payments/api")));
    assert!(s.allows(&id("spiffe://td/staging/gcp/x")));
    assert!(!s.allows(&id("spiffe://td/prod/aws/payments/api")));
    assert!(!s.allows(&id("spiffe://td/prod/gcpx/a")));
    assert!(Scope::Unrestricted.allows(&id("spiffe://td/any")));
    assert!(!Scope::Unknown.allows(&id("spiffe://td/prod/gcp/a")));
}

fn held(spiffe_id: &str, keys: &[&str], not_after: i64) -> HeldSvid {
    HeldSvid {
        kind: KeyKind::X509.into(),
        spiffe_id: spiffe_id.into(),
        key_ids: keys.iter().map(|s| s.to_string()).collect(),
        not_after,
        count: 0,
    }
}

#[test]
fn the_census_check_finds_svids_outside_their_issuers_namespace() {
    let issued = HashMap::from([("aa".to_string(), ns(&["/prod/gcp/"]))]);
    let inside = held("spiffe://td/prod/gcp/payments/api", &["aa", "root"], 100);
    let outside = held("spiffe://td/prod/aws/payments/api", &["aa", "root"], 100);
    let other_issuer = held("spiffe://td/prod/aws/payments/api", &["bb", "root"], 100);
    let agent = held(
        "spiffe://td/trustdeck/agent/join_token/x",
        &["aa", "root"],
        100,
    );
    let server = held("spiffe://td/gcp/trustdeck/server", &["aa", "root"], 100);
    let jwt = HeldSvid {
        kind: KeyKind::Jwt.into(),
        ..outside.clone()
    };
    assert_eq!(check("agent:a", &inside, &issued), None);
    assert_eq!(check("agent:a", &other_issuer, &issued), None);
    assert_eq!(check("agent:a", &agent, &issued), None);
    assert_eq!(check("agent:a", &server, &issued), None);
    assert_eq!(check("agent:a", &jwt, &issued), None);
    let v = check("agent:a", &outside, &issued).expect("violation");
    assert_eq!(v.issuer_key_id, "aa");
    assert_eq!(v.namespaces, ns(&["/prod/gcp/"]));
}

/// A census filled by hand: each violation is reported once, whatever the rounds.
#[test]
fn findings_report_each_svid_once_and_stay_bounded() {
    let census = crate::census::Census::default();
    let f = Findings::default();
    f.issued("aa", &ns(&["/prod/gcp/"]));
    let now = chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap();
    let exp = now.timestamp() + 600;
    census.record(
        "agent:a",
        trustdeck_proto::node::HeldSvids {
            svids: vec![
                held("spiffe://td/prod/aws/x", &["aa", "root"], exp),
                held("spiffe://td/prod/gcp/y", &["aa", "root"], exp),
            ],
        },
        now,
    );
    let round = || {
        let mut all = Vec::new();
        census.each_live(now, |r, s| all.push((r.to_string(), s.clone())));
        f.new_violations(all.iter().map(|(r, s)| (r.as_str(), s)))
    };
    let first = round();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].spiffe_id, "spiffe://td/prod/aws/x");
    assert_eq!(first[0].reporter, "agent:a");
    assert!(round().is_empty());
    assert_eq!(f.total(), 1);
    for i in 0..(MAX_REMEMBERED + 10) {
        f.issued(&format!("k{i}"), &ns(&["/x/"]));
    }
    let g = f.inner.lock().unwrap();
    assert!(g.issued.len() <= MAX_REMEMBERED && g.issued_order.len() <= MAX_REMEMBERED);
}

#[test]
fn held_namespaces_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let h = Held::default();
    h.load(dir.path());
    assert_eq!(h.scope(), Scope::Unknown);
    h.update(ns(&["/prod/gcp/"]));
    h.update(ns(&["not a namespace"]));
    assert_eq!(h.scope(), Scope::Within(ns(&["/prod/gcp/"])));
    let again = Held::default();
    again.load(dir.path());
    assert_eq!(again.scope(), Scope::Within(ns(&["/prod/gcp/"])));
    // An upstream that sends none (built before namespaces) restricts nothing.
    again.update(vec![]);
    assert_eq!(again.scope(), Scope::Unrestricted);
}

#[test]
fn one_reporter_cannot_flood_the_findings() {
    let f = Findings::default();
    f.issued("aa", &ns(&["/prod/gcp/"]));
    let claims: Vec<HeldSvid> = (0..10_000)
        .map(|i| held(&format!("spiffe://td/prod/aws/w{i}"), &["aa", "root"], 100))
        .collect();
    let first = f.new_violations(claims.iter().map(|s| ("agent:a", s)));
    assert_eq!(first.len(), 1, "one finding per reporter and intermediate");
    assert!(
        f.new_violations(claims.iter().map(|s| ("agent:a", s)))
            .is_empty()
    );
    // Many reporters: at most MAX_NEW_PER_ROUND a round, the rest later.
    let reporters: Vec<String> = (0..100).map(|i| format!("agent:{i}")).collect();
    let round = f.new_violations(reporters.iter().map(|r| (r.as_str(), &claims[0])));
    assert_eq!(round.len(), MAX_NEW_PER_ROUND);
    assert_eq!(f.total(), 1 + MAX_NEW_PER_ROUND as u64);
}
