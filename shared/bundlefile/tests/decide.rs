//! Every refusal of a signed bundle file or receipt, and the accepted paths.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use trustdeck_bundlefile::decide::{self, MAX_SKEW};
use trustdeck_bundlefile::{
    FileKind, Policy, Receipt, Refusal, bundle_payload, fingerprint, kind_of, receipt_payload, seal,
};
use trustdeck_pki::X509Authority;
use trustdeck_pki::keys::{SigningKey, SoftwareKey};
use trustdeck_spiffe::{Bundle, TrustDomain};

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("time")
}

fn td(name: &str) -> TrustDomain {
    TrustDomain::parse(name).expect("trust domain")
}

fn root(name: &str) -> X509Authority {
    let key: Arc<dyn SigningKey> = Arc::new(SoftwareKey::ephemeral().expect("key").0);
    X509Authority::self_signed(
        &td(name),
        key,
        "root",
        now() - Duration::days(1),
        Duration::days(30),
    )
    .expect("root")
}

fn bundle_of(name: &str, roots: &[&X509Authority], sequence: u64) -> Bundle {
    let mut b = Bundle::new(td(name));
    for r in roots {
        b.add_x509_authority(r.cert_der().to_vec());
    }
    b.sequence = sequence;
    b
}

fn sign(ca: &X509Authority, payload: &[u8]) -> Vec<u8> {
    let sig = ca.key().sign(payload).expect("sign");
    let mut chain = vec![ca.cert_der().to_vec()];
    chain.extend(ca.upstream_chain().iter().cloned());
    seal(payload, &sig, &chain)
}

fn export(ca: &X509Authority, bundle: &Bundle, at: DateTime<Utc>) -> Vec<u8> {
    sign(ca, &bundle_payload(bundle, at).expect("payload"))
}

fn policy() -> Policy {
    Policy {
        now: now(),
        max_age: Duration::days(30),
    }
}

struct Side {
    a: X509Authority,
    held: Bundle,
    file: Vec<u8>,
}

/// A trust domain `a.test` with one root, whose sequence-5 file `b` holds at sequence 4.
fn side() -> Side {
    let a = root("a.test");
    let held = bundle_of("a.test", &[&a], 4);
    let file = export(&a, &bundle_of("a.test", &[&a], 5), now());
    Side { a, held, file }
}

fn import(s: &Side, bytes: &[u8]) -> Result<decide::AcceptedBundle, Refusal> {
    decide::bundle(bytes, &td("a.test"), Some(&s.held), None, &policy())
}

#[test]
fn a_newer_file_signed_by_a_held_root_is_accepted() {
    let s = side();
    let got = import(&s, &s.file).expect("accepted");
    assert_eq!(got.bundle.sequence, 5);
    assert_eq!(got.bundle.x509_authorities, vec![s.a.cert_der().to_vec()]);
    assert_eq!(got.anchor_fingerprint, fingerprint(s.a.cert_der()));
    assert!(!got.bootstrap);
    assert_eq!(kind_of(&s.file), Ok(FileKind::Bundle));
}

#[test]
fn continuity_carries_a_new_root_signed_by_the_old_one() {
    let s = side();
    let next = root("a.test");
    // Exported while the old root still signs, with the prepared one in the bundle.
    let file = export(&s.a, &bundle_of("a.test", &[&s.a, &next], 5), now());
    let got = import(&s, &file).expect("accepted");
    // Later the new root signs: accepted against what was just stored.
    let later = export(&next, &bundle_of("a.test", &[&next], 6), now());
    decide::bundle(&later, &td("a.test"), Some(&got.bundle), None, &policy())
        .expect("signed by the new root, held since the last import");
    // Without the intermediate import it is an unknown signer.
    assert!(matches!(
        import(&s, &later),
        Err(Refusal::UnknownSigner { .. })
    ));
}

#[test]
fn a_fingerprint_given_with_a_bundle_held_is_checked() {
    let s = side();
    let next = root("a.test");
    let file = export(&s.a, &bundle_of("a.test", &[&s.a, &next], 5), now());
    let got = import(&s, &file).expect("accepted");
    let later = export(&next, &bundle_of("a.test", &[&next], 6), now());
    let held = Some(&got.bundle);
    let wrong = fingerprint(s.a.cert_der());
    assert!(matches!(
        decide::bundle(&later, &td("a.test"), held, Some(&wrong), &policy()),
        Err(Refusal::FingerprintMismatch { .. })
    ));
    let right = fingerprint(next.cert_der());
    decide::bundle(&later, &td("a.test"), held, Some(&right), &policy())
        .expect("the root it chains to, confirmed");
}

#[test]
fn every_flipped_byte_is_refused() {
    let s = side();
    for i in 0..s.file.len() {
        for mask in [0x01u8, 0x20, 0x80] {
            let mut t = s.file.clone();
            t[i] ^= mask;
            let r = import(&s, &t);
            assert!(r.is_err(), "byte {i} ^ {mask:#x} accepted");
        }
    }
}

#[test]
fn a_flipped_payload_byte_is_a_tampered_file() {
    let s = side();
    let text = String::from_utf8(s.file.clone()).expect("utf-8");
    let at = text.find("\"payload\": \"").expect("payload") + 40;
    let mut t = s.file.clone();
    t[at] = if t[at] == b'A' { b'B' } else { b'A' };
    let err = import(&s, &t).expect_err("refused");
    assert!(matches!(err, Refusal::Tampered(_)), "{err}");
    assert!(err.to_string().contains("altered after it was signed"));
    assert!(matches!(kind_of(&t), Err(Refusal::Tampered(_))));
}

#[test]
fn the_kind_of_a_file_with_any_payload_byte_changed_is_a_tampered_file() {
    // Every character of the payload's base64, replaced: never a parse error of the content.
    let s = side();
    let text = String::from_utf8(s.file.clone()).expect("utf-8");
    let start = text.find("\"payload\": \"").expect("payload") + 12;
    let end = start + text[start..].find('"').expect("end");
    for i in start..end {
        let mut t = s.file.clone();
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        let err = kind_of(&t).expect_err("refused");
        assert!(matches!(err, Refusal::Tampered(_)), "at {i}: {err}");
    }
}

#[test]
fn a_truncated_file_is_refused() {
    let s = side();
    for cut in [1, 2, 10, s.file.len() / 2, s.file.len() - 1] {
        let err = import(&s, &s.file[..s.file.len() - cut]).expect_err("refused");
        assert_eq!(err, Refusal::Truncated, "cut {cut}");
    }
    assert_eq!(import(&s, b""), Err(Refusal::Truncated));
}

#[test]
fn a_replayed_older_file_is_refused() {
    let s = side();
    let old = export(&s.a, &bundle_of("a.test", &[&s.a], 3), now());
    let same = export(&s.a, &bundle_of("a.test", &[&s.a], 4), now());
    for f in [old, same] {
        let err = import(&s, &f).expect_err("refused");
        assert!(matches!(err, Refusal::NotNewer { held: 4, .. }), "{err}");
    }
}

#[test]
fn the_wrong_trust_domain_is_refused() {
    let s = side();
    let err =
        decide::bundle(&s.file, &td("b.test"), None, Some("00"), &policy()).expect_err("refused");
    assert_eq!(
        err,
        Refusal::WrongTrustDomain {
            asked: "b.test".into(),
            found: "a.test".into()
        }
    );
}

#[test]
fn a_file_signed_by_an_unknown_key_is_refused() {
    let s = side();
    let impostor = root("a.test");
    let file = export(&impostor, &bundle_of("a.test", &[&impostor], 9), now());
    let err = import(&s, &file).expect_err("refused");
    assert!(matches!(err, Refusal::UnknownSigner { .. }), "{err}");
    // A file whose signer is not in its own bundle cannot bootstrap either.
    let odd = export(&impostor, &bundle_of("a.test", &[&s.a], 9), now());
    let err = decide::bundle(&odd, &td("a.test"), None, Some("x"), &policy()).expect_err("no");
    assert!(matches!(err, Refusal::UnknownSigner { .. }), "{err}");
}

#[test]
fn a_file_older_than_the_maximum_age_or_from_the_future_is_refused() {
    let s = side();
    let old = export(
        &s.a,
        &bundle_of("a.test", &[&s.a], 5),
        now() - Duration::days(31),
    );
    assert!(matches!(import(&s, &old), Err(Refusal::TooOld { .. })));
    let ahead = export(&s.a, &bundle_of("a.test", &[&s.a], 5), now() + MAX_SKEW * 2);
    assert!(matches!(
        import(&s, &ahead),
        Err(Refusal::IssuedInFuture { .. })
    ));
    let skewed = export(&s.a, &bundle_of("a.test", &[&s.a], 5), now() + MAX_SKEW / 2);
    import(&s, &skewed).expect("within the clock skew allowed");
}

#[test]
fn bootstrap_needs_the_right_fingerprint() {
    let s = side();
    let first = |fp: Option<&str>| decide::bundle(&s.file, &td("a.test"), None, fp, &policy());
    assert_eq!(
        first(None),
        Err(Refusal::FingerprintRequired {
            trust_domain: "a.test".into()
        })
    );
    let other = fingerprint(root("a.test").cert_der());
    assert!(matches!(
        first(Some(&other)),
        Err(Refusal::FingerprintMismatch { .. })
    ));
    let fp = fingerprint(s.a.cert_der());
    let got = first(Some(&fp)).expect("accepted");
    assert!(got.bootstrap);
    assert_eq!(got.bundle.sequence, 5);
    // As an operator may type it: upper case with colons.
    let typed: Vec<String> = fp
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    first(Some(&typed.join(":"))).expect("the same fingerprint");
}

#[test]
fn other_files_are_refused_with_their_reason() {
    let s = side();
    assert!(matches!(
        import(&s, b"{\"keys\": []}\n"),
        Err(Refusal::Malformed(_))
    ));
    let text = String::from_utf8(s.file.clone()).expect("utf-8");
    let v2 = text.replace("trustdeck-signed/1", "trustdeck-signed/2");
    assert_eq!(
        import(&s, v2.as_bytes()),
        Err(Refusal::UnsupportedFormat {
            found: "trustdeck-signed/2".into()
        })
    );
    let compact = text.replace("\n", "").replace("  ", "");
    assert!(matches!(
        import(&s, compact.as_bytes()),
        Err(Refusal::Tampered(_))
    ));
    let expired = Policy {
        now: now() + Duration::days(40),
        max_age: Duration::days(100),
    };
    assert!(matches!(
        decide::bundle(&s.file, &td("a.test"), Some(&s.held), None, &expired),
        Err(Refusal::SignerNotValid(_))
    ));
}

fn receipt_of(b: &X509Authority, holds: &Bundle, at: DateTime<Utc>) -> Vec<u8> {
    sign(b, &receipt_payload(&Receipt::new(&td("b.test"), holds, at)))
}

#[test]
fn receipts_signed_by_the_peer_are_accepted_once() {
    let s = side();
    let b = root("b.test");
    let b_bundle = bundle_of("b.test", &[&b], 1);
    let held_by_b = bundle_of("a.test", &[&s.a], 5);
    let file = receipt_of(&b, &held_by_b, now());
    assert_eq!(kind_of(&file), Ok(FileKind::Receipt));
    let (peer, ours, p) = (td("b.test"), td("a.test"), policy());
    let got = decide::receipt(&file, &peer, &ours, Some(&b_bundle), None, &p).expect("ok");
    assert_eq!(got.sequence, 5);
    assert_eq!(got.roots, vec![fingerprint(s.a.cert_der())]);
    let again = decide::receipt(&file, &peer, &ours, Some(&b_bundle), Some(5), &p);
    assert!(matches!(again, Err(Refusal::NotNewer { .. })));
    let no_peer = decide::receipt(&file, &peer, &ours, None, None, &p);
    assert!(matches!(no_peer, Err(Refusal::NoPeerBundle { .. })));
    let stranger = receipt_of(&root("b.test"), &held_by_b, now());
    let r = decide::receipt(&stranger, &peer, &ours, Some(&b_bundle), None, &p);
    assert!(matches!(r, Err(Refusal::UnknownSigner { .. })));
    let r = decide::receipt(&file, &td("c.test"), &ours, Some(&b_bundle), None, &p);
    assert!(matches!(r, Err(Refusal::WrongTrustDomain { .. })));
    let r = decide::receipt(&file, &peer, &td("c.test"), Some(&b_bundle), None, &p);
    assert!(matches!(r, Err(Refusal::NotAboutUs { .. })));
    // A bundle file is not a receipt, nor the other way round.
    let r = decide::receipt(&s.file, &td("a.test"), &ours, Some(&s.held), None, &p);
    assert!(matches!(r, Err(Refusal::WrongKind { .. })));
    let r = decide::bundle(&file, &peer, Some(&b_bundle), None, &p);
    assert!(matches!(r, Err(Refusal::WrongKind { .. })));
    let mut t = file.clone();
    let mid = t.len() / 3;
    t[mid] ^= 0x01;
    let r = decide::receipt(&t, &peer, &ours, Some(&b_bundle), None, &p);
    assert!(r.is_err(), "a flipped byte");
}

#[test]
fn every_flipped_bit_of_the_chain_certificate_is_refused() {
    // Flipped inside the DER (not the base64 around it), then sealed again: parts of a
    // certificate the signature does not cover (its outer tags) must be strict DER too.
    let s = side();
    let payload = bundle_payload(&bundle_of("a.test", &[&s.a], 5), now()).expect("payload");
    let sig = s.a.key().sign(&payload).expect("sign");
    let der = s.a.cert_der().to_vec();
    for i in 0..der.len() {
        for bit in 0..8 {
            let mut c = der.clone();
            c[i] ^= 1 << bit;
            let file = seal(&payload, &sig, &[c]);
            assert!(
                import(&s, &file).is_err(),
                "DER byte {i} bit {bit} accepted"
            );
        }
    }
    import(&s, &seal(&payload, &sig, &[der])).expect("the original");
}
