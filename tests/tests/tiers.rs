//! The harness of the issue-13 "Prove it" suites, proved: three tiers (root → mid → leaf →
//! agent → workload) with a py-spiffe validator under each tier that validates what it holds
//! against the bundle it holds, continuously. Scheduled rotation alone (short `ca_ttl`, so
//! every tier's CA rotates during the test) must never fail one validation; and the
//! validator can fail (a foreign bundle, forged or expired chains).

use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use trustdeck_e2e::*;

/// The chain check behind the validator rejects what it must and accepts a good chain.
#[test]
fn the_chain_check_fails_what_it_must() {
    let r = validator_self_test();
    assert_eq!(
        r.get("good"),
        Some(&None),
        "a good chain must verify: {r:?}"
    );
    for case in [
        "foreign_bundle",
        "expired_leaf",
        "forged_signature",
        "empty_bundle",
    ] {
        assert!(
            matches!(r.get(case), Some(Some(_))),
            "{case} must fail the check: {r:?}"
        );
    }
}

/// A self-signed CA nobody in the trust domain knows, as PEM in `dir`.
fn foreign_root(dir: &std::path::Path) -> std::path::PathBuf {
    let mut ca = CertificateParams::new(vec![]).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "foreign CA");
    let key = KeyPair::generate().expect("key");
    let cert = ca.self_signed(&key).expect("ca");
    let path = dir.join("foreign.pem");
    std::fs::write(&path, cert.pem()).expect("write foreign root");
    path
}

#[test]
fn scheduled_rotation_on_every_tier_never_fails_a_validation() {
    let tiers = Tiers::start();
    let started = Instant::now();
    let validators = tiers.validators(&ValidatorOptions::default());

    // Negative control on real components: the leaf workload's SVIDs checked against a
    // foreign root must fail, through the same code path as the validators above.
    let dir = tempfile::tempdir().expect("tmp");
    let control = Validator::start(
        &tiers.leaf_agent.agent,
        "control",
        &ValidatorOptions {
            bundle_override: Some(foreign_root(dir.path())),
            jwt_interval: None,
            ..Default::default()
        },
    )
    .finish();
    assert!(control.validations > 0, "{}", control.raw);
    assert!(
        !control.failures.is_empty() && control.failures.iter().all(|f| f.what == "x509"),
        "the control must fail every X.509 validation: {}",
        control.raw
    );
    assert_eq!(
        control.failures[0].spiffe_id, tiers.leaf_agent.workload_id,
        "{}",
        control.raw
    );

    // Until every tier's CA has rotated under its validator: two issuers, two serials.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let statuses: Vec<Option<Summary>> = validators.iter().map(Validator::status).collect();
        let rotated = statuses.iter().zip(tiers.agents()).all(|(s, a)| {
            s.as_ref()
                .is_some_and(|s| s.issuers.len() >= 2 && s.serials_of(&a.workload_id).len() >= 2)
        });
        if rotated {
            break;
        }
        // A failure ends the wait at once: the summary below names it.
        if statuses
            .iter()
            .any(|s| s.as_ref().is_some_and(|s| !s.failures.is_empty()))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every tier rotated within 40s: {:?}\n{}",
            statuses
                .iter()
                .map(|s| s.as_ref().map(|s| s.raw.to_string()))
                .collect::<Vec<_>>(),
            tiers.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    for (v, a) in validators.into_iter().zip(tiers.agents()) {
        let name = v.name().to_string();
        let s = v.finish();
        s.assert_clean(&name);
        assert!(
            s.jwt_validations > 0,
            "{name}: no JWT-SVID validated: {}",
            s.raw
        );
        assert!(
            s.serials_of(&a.workload_id).len() >= 2,
            "{name}: no rotated SVID: {}",
            s.raw
        );
        assert!(
            s.issuers.len() >= 2,
            "{name}: its tier's CA never rotated: {}",
            s.raw
        );
    }
    eprintln!("three tiers rotated in {:?}", started.elapsed());
}
