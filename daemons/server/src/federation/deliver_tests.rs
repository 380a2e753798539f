use super::*;

fn bundle_json(td: &str) -> Vec<u8> {
    Bundle::new(TrustDomain::parse(td).unwrap())
        .to_json()
        .into_bytes()
}

/// An entry federating with `f`.
fn entry(f: &[&str]) -> Entry {
    Entry {
        id: String::new(),
        spiffe_id: String::new(),
        parent_id: String::new(),
        selectors: vec![],
        x509_ttl_secs: 0,
        jwt_ttl_secs: 0,
        downstream: false,
        dns_names: vec![],
        namespaces: vec![],
        federates_with: f.iter().map(|s| s.to_string()).collect(),
        created_at: 0,
    }
}

fn included(r: &Relayed, given: HashMap<String, Vec<u8>>) -> bool {
    let d = digest(&given.clone().into_iter().collect());
    r.apply(FederatedBundlesState::Included, given, d)
}

#[test]
fn relayed_bundles_are_checked_bounded_and_replaced_whole() {
    let r = Relayed::default();
    let mut given = HashMap::new();
    given.insert("a.test".to_string(), bundle_json("a.test"));
    given.insert("Not A Domain".to_string(), bundle_json("a.test"));
    given.insert("b.test".to_string(), b"{not json".to_vec());
    given.insert(
        "c.test".to_string(),
        vec![b' '; MAX_FOREIGN_BUNDLE_BYTES + 1],
    );
    assert!(included(&r, given.clone()));
    assert_eq!(r.snapshot().keys().collect::<Vec<_>>(), ["a.test"]);
    assert!(!included(&r, given), "the same answer changes nothing");
    let digest_before = r.digest();
    assert!(!r.apply(
        FederatedBundlesState::Unchanged,
        HashMap::new(),
        String::new()
    ));
    assert_eq!(r.digest(), digest_before, "unchanged keeps what is held");
    let flood: HashMap<_, _> = (0..MAX_RELAYED + 10)
        .map(|i| (format!("t{i}.test"), bundle_json(&format!("t{i}.test"))))
        .collect();
    assert!(included(&r, flood));
    assert_eq!(r.snapshot().len(), MAX_RELAYED);
    assert!(included(&r, HashMap::new()));
    assert!(
        r.snapshot().is_empty(),
        "a trust domain left out is dropped"
    );
}

#[test]
fn a_restart_keeps_what_the_upstream_handed_on() {
    let dir = tempfile::tempdir().unwrap();
    let r = Relayed::default();
    r.load(dir.path());
    let given: HashMap<_, _> = [("a.test".to_string(), bundle_json("a.test"))].into();
    assert!(included(&r, given));
    let again = Relayed::default();
    again.load(dir.path());
    assert_eq!(again.snapshot(), r.snapshot());
    assert_eq!(again.digest(), r.digest());
    // From a server built before federation: none.
    assert!(again.apply(
        FederatedBundlesState::Unspecified,
        HashMap::new(),
        String::new()
    ));
    assert!(again.snapshot().is_empty());
}

#[test]
fn a_kept_file_that_does_not_match_its_digest_is_asked_for_again() {
    let dir = tempfile::tempdir().unwrap();
    let r = Relayed::default();
    r.load(dir.path());
    // The upstream's set holds a bundle this build leaves out: the digest it sent covers it.
    let given: HashMap<_, _> = [
        ("a.test".to_string(), bundle_json("a.test")),
        ("b.test".to_string(), b"{oops".to_vec()),
    ]
    .into();
    assert!(included(&r, given));
    assert_eq!(r.snapshot().len(), 1);
    let again = Relayed::default();
    again.load(dir.path());
    assert_eq!(again.snapshot(), r.snapshot(), "the usable bundle is kept");
    assert_eq!(again.digest(), "", "the upstream answers the whole set");
    // A kept set that matches its digest keeps it.
    let exact = Relayed::default();
    exact.load(dir.path());
    let only_a: HashMap<_, _> = [("a.test".to_string(), bundle_json("a.test"))].into();
    assert!(included(&exact, only_a));
    let reloaded = Relayed::default();
    reloaded.load(dir.path());
    assert_eq!(reloaded.digest(), exact.digest());
    assert!(!reloaded.digest().is_empty());
    // An unreadable file: nothing kept, nothing claimed.
    std::fs::write(dir.path().join(FILE), "not json").unwrap();
    let broken = Relayed::default();
    broken.load(dir.path());
    assert!(broken.snapshot().is_empty() && broken.digest().is_empty());
}

#[test]
fn an_agent_answer_stays_within_its_limit() {
    let near = MAX_FOREIGN_BUNDLE_BYTES - 10;
    let held: ForeignBundles = (0..4)
        .map(|i| (format!("t{i}.test"), vec![b' '; near]))
        .collect();
    let names: Vec<&str> = held.keys().map(String::as_str).collect();
    let got = for_entries(&held, &[entry(&names)]);
    assert_eq!(got.len(), MAX_AGENT_FEDERATED_BYTES / near);
}

#[test]
fn the_set_handed_on_stays_within_its_limits_and_its_digest_follows_it() {
    let small = |td: &str| (td.to_string(), bundle_json(td));
    let held: ForeignBundles = [
        small("a.test"),
        (
            "big.test".to_string(),
            vec![b' '; MAX_FOREIGN_BUNDLE_BYTES + 1],
        ),
        small("c.test"),
    ]
    .into();
    let (out, d) = to_relay(held.clone());
    assert_eq!(out.keys().collect::<Vec<_>>(), ["a.test", "c.test"]);
    assert_eq!(to_relay(held).1, d, "the same set, the same digest");
    let (fewer, d2) = to_relay([small("a.test")].into());
    assert_eq!(fewer.len(), 1);
    assert_ne!(d, d2);
    // Close to a MiB each: the total stops at MAX_RELAYED_TOTAL_BYTES.
    let near = MAX_FOREIGN_BUNDLE_BYTES - 10;
    let many: ForeignBundles = (0..5)
        .map(|i| (format!("t{i}.test"), vec![b' '; near]))
        .collect();
    let (out, _) = to_relay(many);
    assert_eq!(out.len(), MAX_RELAYED_TOTAL_BYTES / near);
}

#[test]
fn entries_get_the_bundles_they_federate_with_that_are_held() {
    let held: ForeignBundles = [("a.test", "A"), ("b.test", "B")]
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .into();
    let got = for_entries(
        &held,
        &[
            entry(&["a.test", "gone.test"]),
            entry(&["a.test"]),
            entry(&[]),
        ],
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got["a.test"], b"A");
    assert!(for_entries(&held, &[entry(&[])]).is_empty());
}
