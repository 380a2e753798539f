//! SPIFFE bundle JSON and PEM forms.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{Duration, TimeZone, Utc};
use rcgen::{
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, PublicKeyData,
};
use serde_json::{Value, json};
use trustdeck_spiffe::bundle::{Bundle, BundleError, JwtAuthority};
use trustdeck_spiffe::x509::ca_params;
use trustdeck_spiffe::{TrustDomain, pem};

const RSA_TEST_KEY: &str = include_str!("fixtures/rsa2048-test-only.pem");

fn td() -> TrustDomain {
    TrustDomain::parse("example.org").unwrap()
}

fn ca_cert(key: &KeyPair, cn: &str) -> Vec<u8> {
    let nb = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    ca_params(&td(), cn, &[1, 2, 3], nb, nb + Duration::days(365), None)
        .unwrap()
        .self_signed(key)
        .unwrap()
        .der()
        .to_vec()
}

fn jwt_authority(kid: &str, key: &KeyPair) -> JwtAuthority {
    JwtAuthority {
        key_id: kid.into(),
        public_key_spki_der: key.subject_public_key_info(),
        expires_at: None,
    }
}

fn sample() -> (Bundle, KeyPair, KeyPair) {
    let ca1 = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let ca2 = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let j1 = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let j2 = KeyPair::from_pkcs8_pem_and_sign_algo(RSA_TEST_KEY, &PKCS_RSA_SHA256).unwrap();
    let mut b = Bundle::new(td());
    b.x509_authorities = vec![ca_cert(&ca1, "CA one"), ca_cert(&ca2, "CA two")];
    b.jwt_authorities = vec![jwt_authority("jwt-a", &j1), jwt_authority("jwt-b", &j2)];
    b.sequence = 42;
    b.refresh_hint_secs = Some(300);
    (b, ca1, j1)
}

fn keys_of(json: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(json).unwrap();
    v["keys"].as_array().unwrap().clone()
}

#[test]
fn json_round_trip_preserves_everything() {
    let (b, ca1, j1) = sample();
    let json = b.to_json();
    assert_eq!(b.try_to_json().unwrap(), json);

    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["spiffe_sequence"], json!(42));
    assert_eq!(doc["spiffe_refresh_hint"], json!(300));
    let keys = keys_of(&json);
    assert_eq!(keys.len(), 4);

    // x509-svid entries: EC params of the cert key, one standard-base64 x5c, no kid.
    let k0 = &keys[0];
    assert_eq!(k0["use"], "x509-svid");
    assert_eq!(k0["kty"], "EC");
    assert_eq!(k0["crv"], "P-256");
    assert!(k0.get("kid").is_none());
    let x5c = k0["x5c"].as_array().unwrap();
    assert_eq!(x5c.len(), 1);
    assert_eq!(
        STANDARD.decode(x5c[0].as_str().unwrap()).unwrap(),
        b.x509_authorities[0]
    );
    let point = ca1.public_key_raw();
    assert_eq!(
        URL_SAFE_NO_PAD.decode(k0["x"].as_str().unwrap()).unwrap(),
        &point[1..33]
    );
    assert_eq!(
        URL_SAFE_NO_PAD.decode(k0["y"].as_str().unwrap()).unwrap(),
        &point[33..]
    );
    assert_eq!(keys[1]["crv"], "P-384");

    // jwt-svid entries carry kid, no x5c.
    let k2 = &keys[2];
    assert_eq!(k2["use"], "jwt-svid");
    assert_eq!(k2["kid"], "jwt-a");
    assert_eq!(k2["kty"], "EC");
    assert!(k2.get("x5c").is_none());
    let point = j1.public_key_raw();
    assert_eq!(
        URL_SAFE_NO_PAD.decode(k2["x"].as_str().unwrap()).unwrap(),
        &point[1..33]
    );
    let k3 = &keys[3];
    assert_eq!(k3["kty"], "RSA");
    assert_eq!(k3["kid"], "jwt-b");
    assert_eq!(k3["e"], "AQAB");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(k3["n"].as_str().unwrap())
            .unwrap()
            .len(),
        256
    );

    let back = Bundle::from_json(&td(), json.as_bytes()).unwrap();
    assert_eq!(back, b);
    // SPKI rebuilt from the JWK is byte-identical to rcgen's.
    assert_eq!(
        back.jwt_authorities[1].public_key_spki_der,
        b.jwt_authorities[1].public_key_spki_der
    );
    // Deterministic output.
    assert_eq!(back.to_json(), json);

    let mut no_hint = b.clone();
    no_hint.refresh_hint_secs = None;
    let json = no_hint.to_json();
    assert!(!json.contains("spiffe_refresh_hint"));
    assert_eq!(Bundle::from_json(&td(), json.as_bytes()).unwrap(), no_hint);
}

#[test]
fn jwks_and_der_and_pem_exports() {
    let (b, _, _) = sample();
    let jwks = b.jwks_json();
    let keys = keys_of(&jwks);
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .all(|k| k["use"] == "jwt-svid" && k.get("x5c").is_none())
    );
    let only_jwt = Bundle::from_json(&td(), jwks.as_bytes()).unwrap();
    assert!(only_jwt.x509_authorities.is_empty());
    assert_eq!(only_jwt.jwt_authorities, b.jwt_authorities);

    let concat = b.x509_authorities_der_concat();
    assert_eq!(
        concat,
        [b.x509_authorities[0].clone(), b.x509_authorities[1].clone()].concat()
    );

    let pem_text = b.to_pem();
    assert_eq!(pem_text.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    let from_pem = Bundle::from_pem_x509(&td(), &pem_text).unwrap();
    assert_eq!(from_pem.x509_authorities, b.x509_authorities);
    assert!(from_pem.jwt_authorities.is_empty());
    assert_eq!(from_pem.trust_domain, td());

    assert!(matches!(
        Bundle::from_pem_x509(&td(), "nothing"),
        Err(BundleError::Pem { .. })
    ));
    let junk = pem::encode("CERTIFICATE", b"junk");
    let e = Bundle::from_pem_x509(&td(), &junk).unwrap_err();
    assert!(
        matches!(e, BundleError::BadCertificate { index: 0, .. }),
        "{e:?}"
    );
}

#[test]
fn unknown_entries_are_skipped_and_empty_is_fine() {
    let (b, _, _) = sample();
    let mut doc: Value = serde_json::from_str(&b.to_json()).unwrap();
    let keys = doc["keys"].as_array_mut().unwrap();
    keys.insert(
        0,
        json!({"use": "enc", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}),
    );
    keys.push(json!({"use": "jwt-svid", "kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "AA"}));
    keys.push(json!({"use": "jwt-svid", "kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"}));
    keys.push(json!({"kty": "EC", "crv": "P-256", "kid": "no-use"}));
    doc["unknown_member"] = json!(true);
    let back = Bundle::from_json(&td(), doc.to_string().as_bytes()).unwrap();
    assert_eq!(back, b);

    let empty = Bundle::from_json(&td(), br#"{"keys": []}"#).unwrap();
    assert_eq!(empty, Bundle::new(td()));
    assert_eq!(empty.to_json(), r#"{"keys":[],"spiffe_sequence":0}"#);
}

fn parse_err(doc: &Value) -> BundleError {
    Bundle::from_json(&td(), doc.to_string().as_bytes()).unwrap_err()
}

#[test]
fn malformed_bundles_are_rejected_with_index_and_reason() {
    let (b, _, _) = sample();
    let good: Value = serde_json::from_str(&b.to_json()).unwrap();

    // jwt-svid key without kid.
    let mut doc = good.clone();
    doc["keys"][2].as_object_mut().unwrap().remove("kid");
    let e = parse_err(&doc);
    assert!(
        matches!(e, BundleError::MissingKeyId { index: 2, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("key #2"));
    assert!(e.to_string().contains("kid"));

    let mut doc = good.clone();
    doc["keys"][3]["kid"] = json!("jwt-a");
    assert!(matches!(
        parse_err(&doc),
        BundleError::DuplicateKeyId { index: 3, .. }
    ));

    // x509-svid key with 0 or 2 certificates.
    let mut doc = good.clone();
    let cert = doc["keys"][0]["x5c"][0].clone();
    doc["keys"][0]["x5c"] = json!([cert.clone(), cert]);
    let e = parse_err(&doc);
    assert!(
        matches!(
            e,
            BundleError::X5cCount {
                index: 0,
                count: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("exactly one"));
    let mut doc = good.clone();
    doc["keys"][1].as_object_mut().unwrap().remove("x5c");
    assert!(matches!(
        parse_err(&doc),
        BundleError::X5cCount {
            index: 1,
            count: 0,
            ..
        }
    ));

    // Bad base64 in x5c and in a coordinate.
    let mut doc = good.clone();
    doc["keys"][0]["x5c"] = json!(["%%%"]);
    let e = parse_err(&doc);
    assert!(
        matches!(
            e,
            BundleError::BadBase64 {
                index: 0,
                field: "x5c",
                ..
            }
        ),
        "{e:?}"
    );
    let mut doc = good.clone();
    doc["keys"][2]["x"] = json!("a+b/");
    assert!(matches!(
        parse_err(&doc),
        BundleError::BadBase64 {
            index: 2,
            field: "x",
            ..
        }
    ));
    // Wrong coordinate length.
    let mut doc = good.clone();
    doc["keys"][2]["y"] = json!("AAAA");
    assert!(matches!(
        parse_err(&doc),
        BundleError::InvalidKey { index: 2, .. }
    ));
    // x5c that is not a certificate.
    let mut doc = good.clone();
    doc["keys"][0]["x5c"] = json!([STANDARD.encode(b"not a cert")]);
    assert!(matches!(
        parse_err(&doc),
        BundleError::BadCertificate { index: 0, .. }
    ));
    // JWK parameters that do not match the certificate.
    let mut doc = good.clone();
    doc["keys"][0]["x"] = doc["keys"][2]["x"].clone();
    assert!(matches!(
        parse_err(&doc),
        BundleError::KeyMismatch { index: 0, .. }
    ));
    // Non-object key and wrongly typed members.
    let mut doc = good.clone();
    doc["keys"][1] = json!("key");
    assert!(matches!(
        parse_err(&doc),
        BundleError::InvalidKey { index: 1, .. }
    ));
    let mut doc = good.clone();
    doc["spiffe_sequence"] = json!(-1);
    assert!(matches!(
        parse_err(&doc),
        BundleError::InvalidField {
            field: "spiffe_sequence",
            ..
        }
    ));
    let mut doc = good.clone();
    doc.as_object_mut().unwrap().remove("keys");
    assert!(matches!(
        parse_err(&doc),
        BundleError::InvalidField { field: "keys", .. }
    ));

    // Not JSON at all.
    let e = Bundle::from_json(&td(), b"{\"keys\": [").unwrap_err();
    assert!(matches!(e, BundleError::InvalidJson { .. }), "{e:?}");
    assert!(e.to_string().contains("invalid JSON"));
    assert!(e.to_string().contains("example.org"));
    assert!(matches!(
        Bundle::from_json(&td(), b"[1,2]"),
        Err(BundleError::InvalidField { .. })
    ));
}

#[test]
fn unrepresentable_keys() {
    let mut b = Bundle::new(td());
    b.jwt_authorities.push(JwtAuthority {
        key_id: "weird".into(),
        public_key_spki_der: vec![0x30, 0x00],
        expires_at: None,
    });
    assert!(matches!(
        b.try_to_json(),
        Err(BundleError::Unrepresentable { .. })
    ));
    // Lenient form leaves it out.
    assert!(keys_of(&b.to_json()).is_empty());
    assert!(keys_of(&b.jwks_json()).is_empty());
}

#[test]
fn helpers() {
    let (mut b, _, j1) = sample();
    assert!(!b.add_x509_authority(b.x509_authorities[0].clone()));
    assert_eq!(b.x509_authorities.len(), 2);
    assert_eq!(b.jwt_authority("jwt-a").unwrap().key_id, "jwt-a");
    assert!(b.jwt_authority("nope").is_none());
    let mut replaced = jwt_authority("jwt-b", &j1);
    replaced.expires_at = Some(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap());
    b.set_jwt_authority(replaced.clone());
    assert_eq!(b.jwt_authorities.len(), 2);
    assert_eq!(b.jwt_authorities[1], replaced);
}
