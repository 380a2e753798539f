//! JWT-SVID minting and validation with real keys.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, TimeZone, Utc};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PublicKeyData};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaKeyPair,
};
use serde_json::{Value, json};
use trustdeck_spiffe::jwt::{
    self, JwtClaims, JwtError, decode_unverified, der_to_raw_ecdsa, mint, raw_to_der_ecdsa,
    validate,
};
use trustdeck_spiffe::{JwtAuthority, SpiffeId};

const RSA_TEST_KEY: &str = include_str!("fixtures/rsa2048-test-only.pem");

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
}

struct Signer {
    key: EcdsaKeyPair,
    authority: JwtAuthority,
}

fn p256_signer(kid: &str) -> Signer {
    let rng = SystemRandom::new();
    let kp = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &kp.serialize_der(), &rng)
        .unwrap();
    Signer {
        key,
        authority: JwtAuthority {
            key_id: kid.to_string(),
            public_key_spki_der: kp.subject_public_key_info(),
            expires_at: None,
        },
    }
}

impl Signer {
    fn mint(&self, claims: &JwtClaims) -> String {
        let rng = SystemRandom::new();
        mint(claims, &self.authority.key_id, |input| {
            self.key
                .sign(&rng, input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "ring signing failed")
        })
        .unwrap()
    }
}

fn claims(aud: &[&str]) -> JwtClaims {
    let mut c = JwtClaims::new(
        SpiffeId::parse("spiffe://example.org/ns/prod/sa/web").unwrap(),
        aud.iter().map(|s| s.to_string()).collect(),
        now() + Duration::minutes(5),
    );
    c.iat = Some(now().timestamp());
    c.extra.insert("custom".into(), json!({"k": [1, 2]}));
    c
}

fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_string).collect()
}

#[test]
fn mint_then_validate() {
    let s = p256_signer("key-1");
    let token = s.mint(&claims(&["spiffe://example.org/db"]));
    let p = parts(&token);
    assert_eq!(p.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&p[0]).unwrap()).unwrap();
    assert_eq!(
        header,
        json!({"alg": "ES256", "kid": "key-1", "typ": "JWT"})
    );
    assert_eq!(URL_SAFE_NO_PAD.decode(&p[2]).unwrap().len(), 64);
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&p[1]).unwrap()).unwrap();
    // A single audience is a string.
    assert_eq!(payload["aud"], json!("spiffe://example.org/db"));
    assert_eq!(
        payload["exp"],
        json!((now() + Duration::minutes(5)).timestamp())
    );

    let other = p256_signer("key-0");
    let v = validate(
        &token,
        "spiffe://example.org/db",
        &[other.authority.clone(), s.authority.clone()],
        now(),
    )
    .unwrap();
    assert_eq!(v.spiffe_id.as_str(), "spiffe://example.org/ns/prod/sa/web");
    assert_eq!(v.kid, "key-1");
    assert_eq!(v.alg, "ES256");
    assert_eq!(v.audience, vec!["spiffe://example.org/db"]);
    assert_eq!(v.claims["custom"], json!({"k": [1, 2]}));
    assert_eq!(v.claims["iat"], json!(now().timestamp()));
    assert_eq!(v.expires_at, (now() + Duration::minutes(5)).timestamp());

    let (h, c) = decode_unverified(&token).unwrap();
    assert_eq!(h.kid.as_deref(), Some("key-1"));
    assert_eq!(c, claims(&["spiffe://example.org/db"]));
}

#[test]
fn multiple_audiences_are_an_array() {
    let s = p256_signer("k");
    let token = s.mint(&claims(&["a", "b"]));
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts(&token)[1]).unwrap()).unwrap();
    assert_eq!(payload["aud"], json!(["a", "b"]));
    let auths = [s.authority.clone()];
    assert!(validate(&token, "b", &auths, now()).is_ok());
    assert!(validate(&token, "a", &auths, now()).is_ok());
}

#[test]
fn rejections() {
    let s = p256_signer("k1");
    let auths = [s.authority.clone()];
    let token = s.mint(&claims(&["aud-1"]));

    let e = validate(&token, "aud-2", &auths, now()).unwrap_err();
    assert!(matches!(e, JwtError::AudienceMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("aud-2"));

    let exp = (now() + Duration::minutes(5)).timestamp();
    let at_exp = DateTime::from_timestamp(exp, 0).unwrap();
    let e = validate(&token, "aud-1", &auths, at_exp).unwrap_err();
    assert!(
        matches!(e, JwtError::Expired { exp: x, .. } if x == exp),
        "{e:?}"
    );
    assert!(e.to_string().contains(&exp.to_string()));
    assert!(validate(&token, "aud-1", &auths, at_exp - Duration::seconds(1)).is_ok());

    let other = p256_signer("k2");
    let e = validate(
        &token,
        "aud-1",
        std::slice::from_ref(&other.authority),
        now(),
    )
    .unwrap_err();
    assert_eq!(e, JwtError::UnknownKeyId { kid: "k1".into() });
    assert_eq!(e.to_string(), "JWT-SVID: no JWT authority with kid \"k1\"");

    // Right kid, wrong key.
    let impostor = JwtAuthority {
        key_id: "k1".into(),
        ..other.authority.clone()
    };
    assert!(matches!(
        validate(&token, "aud-1", &[impostor], now()),
        Err(JwtError::BadSignature { .. })
    ));

    // Tampered payload (different subject), original signature.
    let p = parts(&token);
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&p[1]).unwrap()).unwrap();
    payload["sub"] = json!("spiffe://example.org/admin");
    let tampered = format!("{}.{}.{}", p[0], b64json(&payload), p[2]);
    assert!(matches!(
        validate(&tampered, "aud-1", &auths, now()),
        Err(JwtError::BadSignature { .. })
    ));
    // Tampered signature.
    let mut sig = URL_SAFE_NO_PAD.decode(&p[2]).unwrap();
    sig[10] ^= 1;
    let bad_sig = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(&sig));
    assert!(matches!(
        validate(&bad_sig, "aud-1", &auths, now()),
        Err(JwtError::BadSignature { .. })
    ));

    // alg none and HS256 are refused before any key lookup.
    for alg in ["none", "HS256", "ES256K", "EdDSA"] {
        let h = b64json(&json!({"alg": alg, "kid": "k1", "typ": "JWT"}));
        let t = format!("{h}.{}.{}", p[1], if alg == "none" { "" } else { &p[2] });
        let e = validate(&t, "aud-1", &auths, now()).unwrap_err();
        assert_eq!(
            e,
            JwtError::UnsupportedAlgorithm { alg: alg.into() },
            "{alg}"
        );
        assert!(e.to_string().contains(alg));
    }
    // ES512 is accepted by the parser but cannot be verified here.
    let h = b64json(&json!({"alg": "ES512", "kid": "k1"}));
    assert!(matches!(
        validate(&format!("{h}.{}.{}", p[1], p[2]), "aud-1", &auths, now()),
        Err(JwtError::UnverifiableAlgorithm { .. })
    ));
    // RS256 header with an EC key.
    let h = b64json(&json!({"alg": "RS256", "kid": "k1"}));
    assert!(matches!(
        validate(&format!("{h}.{}.{}", p[1], p[2]), "aud-1", &auths, now()),
        Err(JwtError::KeyMismatch { .. })
    ));

    let h = b64json(&json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}));
    assert!(matches!(
        validate(&format!("{h}.{}.{}", p[1], p[2]), "aud-1", &auths, now()),
        Err(JwtError::InvalidType { .. })
    ));
    let h = b64json(&json!({"alg": "ES256", "typ": "JWT"}));
    assert_eq!(
        validate(&format!("{h}.{}.{}", p[1], p[2]), "aud-1", &auths, now()),
        Err(JwtError::MissingKeyId)
    );
    let h = b64json(&json!({"alg": "ES256", "kid": "k1", "crit": ["exp"]}));
    assert!(matches!(
        validate(&format!("{h}.{}.{}", p[1], p[2]), "aud-1", &auths, now()),
        Err(JwtError::CriticalHeader { .. })
    ));

    assert_eq!(
        validate("", "aud-1", &auths, now()),
        Err(JwtError::EmptyToken)
    );
    assert_eq!(
        validate(&token, "", &auths, now()),
        Err(JwtError::EmptyAudience)
    );
    assert!(matches!(
        validate("a.b", "aud-1", &auths, now()),
        Err(JwtError::Malformed { .. })
    ));
    assert!(matches!(
        validate("a.b.c.d", "aud-1", &auths, now()),
        Err(JwtError::Malformed { .. })
    ));
    assert!(matches!(
        validate("!!.b.c", "aud-1", &auths, now()),
        Err(JwtError::Malformed { .. })
    ));
}

#[test]
fn claims_rules() {
    let s = p256_signer("k");
    let auths = [s.authority.clone()];
    let rng = SystemRandom::new();
    // Sign arbitrary claims through `mint`'s signer path by crafting the token by hand.
    let sign_raw = |claims: &Value| -> String {
        let h = b64json(&json!({"alg": "ES256", "kid": "k"}));
        let input = format!("{h}.{}", b64json(claims));
        let der = s.key.sign(&rng, input.as_bytes()).unwrap();
        let raw = der_to_raw_ecdsa(der.as_ref(), 32).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(raw))
    };
    let exp = (now() + Duration::minutes(1)).timestamp();

    let ok = sign_raw(&json!({"sub": "spiffe://example.org/w", "aud": ["x"], "exp": exp}));
    assert!(validate(&ok, "x", &auths, now()).is_ok());
    let fractional =
        sign_raw(&json!({"sub": "spiffe://example.org/w", "aud": "x", "exp": exp as f64 + 0.5}));
    assert!(validate(&fractional, "x", &auths, now()).is_ok());

    let cases = [
        (json!({"aud": "x", "exp": exp}), "sub"),
        (json!({"sub": "spiffe://example.org/w", "exp": exp}), "aud"),
        (json!({"sub": "spiffe://example.org/w", "aud": "x"}), "exp"),
    ];
    for (c, missing) in cases {
        let e = validate(&sign_raw(&c), "x", &auths, now()).unwrap_err();
        assert!(
            matches!(e, JwtError::MissingClaim { claim } if claim == missing),
            "{missing}: {e:?}"
        );
    }
    let e = validate(
        &sign_raw(&json!({"sub": "spiffe://Example.org/w", "aud": "x", "exp": exp})),
        "x",
        &auths,
        now(),
    )
    .unwrap_err();
    assert!(matches!(e, JwtError::InvalidSubject { .. }), "{e:?}");
    assert!(e.to_string().contains("spiffe://Example.org/w"));
    assert_eq!(
        validate(
            &sign_raw(&json!({"sub": "spiffe://example.org/w", "aud": [], "exp": exp})),
            "x",
            &auths,
            now()
        ),
        Err(JwtError::EmptyAudienceClaim)
    );
    assert!(matches!(
        validate(
            &sign_raw(&json!({"sub": "spiffe://example.org/w", "aud": "x", "exp": "soon"})),
            "x",
            &auths,
            now()
        ),
        Err(JwtError::InvalidClaims { .. })
    ));
    assert!(matches!(
        validate(
            &sign_raw(
                &json!({"sub": "spiffe://example.org/w", "aud": "x", "exp": exp, "nbf": exp - 1})
            ),
            "x",
            &auths,
            now()
        ),
        Err(JwtError::NotYetValid { .. })
    ));

    // mint refuses empty kid / empty audience and reports signer failures.
    let c = claims(&["x"]);
    let ok_signer = |_: &[u8]| -> Result<Vec<u8>, String> { Ok(vec![]) };
    assert_eq!(mint(&c, "", ok_signer), Err(JwtError::EmptyKeyId));
    let mut no_aud = c.clone();
    no_aud.aud.clear();
    assert_eq!(
        mint(&no_aud, "k", ok_signer),
        Err(JwtError::EmptyAudienceClaim)
    );
    assert_eq!(
        mint(&c, "k", |_| Err::<Vec<u8>, _>("HSM offline")),
        Err(JwtError::Signer {
            reason: "HSM offline".into()
        })
    );
    assert!(matches!(
        mint(&c, "k", |_| Ok::<_, String>(vec![1, 2, 3])),
        Err(JwtError::SignatureEncoding { .. })
    ));
}

#[test]
fn es384_rs256_ps256_validate() {
    let rng = SystemRandom::new();
    let exp = (now() + Duration::minutes(1)).timestamp();
    let payload = b64json(&json!({"sub": "spiffe://example.org/w", "aud": "x", "exp": exp}));

    // ES384 (fixed-size signature straight from ring).
    let kp = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &kp.serialize_der(), &rng)
        .unwrap();
    let input = format!(
        "{}.{payload}",
        b64json(&json!({"alg": "ES384", "kid": "ec384"}))
    );
    let sig = key.sign(&rng, input.as_bytes()).unwrap();
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    let auth = JwtAuthority {
        key_id: "ec384".into(),
        public_key_spki_der: kp.subject_public_key_info(),
        expires_at: None,
    };
    assert_eq!(
        validate(&token, "x", std::slice::from_ref(&auth), now())
            .unwrap()
            .alg,
        "ES384"
    );
    // Same token relabelled ES256 must not verify with the P-384 key.
    let relabelled = format!(
        "{}.{payload}.{}",
        b64json(&json!({"alg": "ES256", "kid": "ec384"})),
        URL_SAFE_NO_PAD.encode(sig.as_ref())
    );
    assert!(matches!(
        validate(&relabelled, "x", &[auth], now()),
        Err(JwtError::KeyMismatch { .. })
    ));

    // RSA keys.
    let rsa_der = trustdeck_spiffe::pem::decode_private_key(RSA_TEST_KEY).unwrap();
    let rsa = RsaKeyPair::from_pkcs8(&rsa_der).unwrap();
    let rsa_spki = KeyPair::from_pem(RSA_TEST_KEY)
        .unwrap()
        .subject_public_key_info();
    let auth = JwtAuthority {
        key_id: "rsa".into(),
        public_key_spki_der: rsa_spki,
        expires_at: None,
    };
    for (alg, padding) in [
        (
            "RS256",
            &RSA_PKCS1_SHA256 as &'static dyn ring::signature::RsaEncoding,
        ),
        ("PS256", &RSA_PSS_SHA256),
    ] {
        let input = format!("{}.{payload}", b64json(&json!({"alg": alg, "kid": "rsa"})));
        let mut sig = vec![0u8; rsa.public().modulus_len()];
        rsa.sign(padding, &rng, input.as_bytes(), &mut sig).unwrap();
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
        let v = validate(&token, "x", std::slice::from_ref(&auth), now()).unwrap();
        assert_eq!(v.alg, alg);
        // And the other RSA padding must fail.
        let other = if alg == "RS256" { "PS256" } else { "RS256" };
        let swapped = format!(
            "{}.{payload}.{}",
            b64json(&json!({"alg": other, "kid": "rsa"})),
            URL_SAFE_NO_PAD.encode(&sig)
        );
        assert!(matches!(
            validate(&swapped, "x", std::slice::from_ref(&auth), now()),
            Err(JwtError::BadSignature { .. })
        ));
    }
}

#[test]
fn ecdsa_signature_conversions() {
    // r with a high bit (DER adds 0x00), s short (DER drops leading zeros).
    let mut raw = vec![0u8; 64];
    raw[0] = 0x80;
    raw[31] = 1;
    raw[62] = 0x12;
    raw[63] = 0x34;
    let der = raw_to_der_ecdsa(&raw);
    assert_eq!(&der[..5], &[0x30, 0x27, 0x02, 0x21, 0x00]);
    assert_eq!(&der[der.len() - 4..], &[0x02, 0x02, 0x12, 0x34]);
    assert_eq!(der_to_raw_ecdsa(&der, 32).unwrap(), raw);

    // Matches ring: a DER signature converts to one that FIXED verification accepts.
    let rng = SystemRandom::new();
    let kp = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &kp.serialize_der(), &rng)
        .unwrap();
    let sig = key.sign(&rng, b"msg").unwrap();
    let fixed = der_to_raw_ecdsa(sig.as_ref(), 32).unwrap();
    assert_eq!(raw_to_der_ecdsa(&fixed), sig.as_ref());
    use ring::signature::KeyPair as _;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        key.public_key().as_ref(),
    )
    .verify(b"msg", &fixed)
    .unwrap();

    // Too large for the scalar size, trailing garbage, wrong structure.
    let big = raw_to_der_ecdsa(&[0xff; 66]);
    assert!(matches!(
        der_to_raw_ecdsa(&big, 32),
        Err(JwtError::SignatureEncoding { .. })
    ));
    assert_eq!(der_to_raw_ecdsa(&big, 33).unwrap(), vec![0xff; 66]);
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(der_to_raw_ecdsa(&trailing, 32).is_err());
    assert!(der_to_raw_ecdsa(&[0x02, 0x01, 0x01], 32).is_err());
    assert!(der_to_raw_ecdsa(&[], 32).is_err());
    // P-521-sized signatures need a long-form DER length.
    let p521 = raw_to_der_ecdsa(&[0x01; 132]);
    assert_eq!(p521[1], 0x81);
    assert_eq!(der_to_raw_ecdsa(&p521, 66).unwrap(), vec![0x01; 132]);
}

#[test]
fn claims_serde() {
    let c = claims(&["only"]);
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["aud"], json!("only"));
    assert_eq!(v["sub"], json!("spiffe://example.org/ns/prod/sa/web"));
    assert_eq!(v["custom"], json!({"k": [1, 2]}));
    let back: JwtClaims = serde_json::from_value(v).unwrap();
    assert_eq!(back, c);
    let arr: JwtClaims = serde_json::from_value(json!({
        "sub": "spiffe://example.org/w", "aud": ["a", "b"], "exp": 10
    }))
    .unwrap();
    assert_eq!(arr.aud, vec!["a", "b"]);
    assert_eq!(arr.iat, None);
    assert!(
        serde_json::from_value::<JwtClaims>(json!({"sub": "x", "aud": "a", "exp": 1})).is_err()
    );
    assert_eq!(jwt::ACCEPTED_ALGORITHMS.len(), 9);
}
