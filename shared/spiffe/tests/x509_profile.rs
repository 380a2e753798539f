//! X509-SVID profile: certificates built with `leaf_params`/`ca_params`,
//! signed with rcgen, parsed back with x509-parser and checked field by field.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, SanType,
};
use trustdeck_spiffe::x509::{
    self, ProfileError, ca_params, cert_validity, check_ca, check_leaf, leaf_params, spiffe_id_of,
};
use trustdeck_spiffe::{SpiffeId, TrustDomain};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_SUBJECT_ALT_NAME,
    OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::X509Certificate;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap()
}

fn td() -> TrustDomain {
    TrustDomain::parse("example.org").unwrap()
}

struct Pki {
    ca_key: KeyPair,
    ca_params: CertificateParams,
    ca_der: Vec<u8>,
}

fn make_ca(path_len: Option<u8>) -> Pki {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let params = ca_params(
        &td(),
        "trustdeck test CA",
        &[0x0a, 0x0b],
        t0(),
        t0() + Duration::days(30),
        path_len,
    )
    .unwrap();
    let ca_der = params.self_signed(&ca_key).unwrap().der().to_vec();
    Pki {
        ca_key,
        ca_params: params,
        ca_der,
    }
}

fn sign_leaf(pki: &Pki, params: &CertificateParams) -> (Vec<u8>, KeyPair) {
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let issuer = Issuer::from_params(&pki.ca_params, &pki.ca_key);
    let der = params.signed_by(&leaf_key, &issuer).unwrap().der().to_vec();
    (der, leaf_key)
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    assert!(rest.is_empty());
    cert
}

fn ext<'a>(
    cert: &'a X509Certificate<'a>,
    oid: &x509_parser::der_parser::Oid<'_>,
) -> &'a x509_parser::extensions::X509Extension<'a> {
    let found: Vec<_> = cert.extensions().iter().filter(|e| e.oid == *oid).collect();
    assert_eq!(found.len(), 1, "extension {oid} must appear exactly once");
    found[0]
}

fn ski_of(cert: &X509Certificate<'_>) -> Vec<u8> {
    match ext(cert, &OID_X509_EXT_SUBJECT_KEY_IDENTIFIER).parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(k) => k.0.to_vec(),
        other => panic!("unexpected SKI {other:?}"),
    }
}

#[test]
fn ca_certificate_follows_the_signing_profile() {
    let pki = make_ca(Some(1));
    let cert = parse(&pki.ca_der);

    assert_eq!(cert.version().0, 2, "must be v3");
    let bc = ext(&cert, &OID_X509_EXT_BASIC_CONSTRAINTS);
    assert!(bc.critical, "basicConstraints must be critical");
    match bc.parsed_extension() {
        ParsedExtension::BasicConstraints(b) => {
            assert!(b.ca);
            assert_eq!(b.path_len_constraint, Some(1));
        }
        other => panic!("{other:?}"),
    }
    let ku = ext(&cert, &OID_X509_EXT_KEY_USAGE);
    assert!(ku.critical, "keyUsage must be critical");
    match ku.parsed_extension() {
        ParsedExtension::KeyUsage(k) => {
            assert!(k.key_cert_sign());
            assert!(k.crl_sign());
            assert!(!k.digital_signature());
            assert!(!k.key_encipherment());
        }
        other => panic!("{other:?}"),
    }
    let san = ext(&cert, &OID_X509_EXT_SUBJECT_ALT_NAME);
    match san.parsed_extension() {
        ParsedExtension::SubjectAlternativeName(s) => {
            assert_eq!(
                s.general_names,
                vec![GeneralName::URI("spiffe://example.org")]
            );
        }
        other => panic!("{other:?}"),
    }
    // Subject is not empty, so the SAN may be non-critical; rcgen writes it non-critical.
    assert!(!san.critical);
    let subject = cert.subject();
    let o: Vec<_> = subject
        .iter_organization()
        .map(|a| a.as_str().unwrap())
        .collect();
    let cn: Vec<_> = subject
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(o, vec!["SPIFFE"]);
    assert_eq!(cn, vec!["trustdeck test CA"]);

    let ski = ski_of(&cert);
    assert!(!ski.is_empty());
    // Self-signed: the AKI names its own key.
    match ext(&cert, &OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER).parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(a) => {
            assert_eq!(a.key_identifier.as_ref().unwrap().0, &ski[..]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        cert.get_extension_unique(&OID_X509_EXT_EXTENDED_KEY_USAGE)
            .unwrap()
            .is_none()
    );
    assert_eq!(cert.raw_serial(), &[0x0a, 0x0b]);
    assert_eq!(cert.validity().not_before.timestamp(), t0().timestamp());
    assert_eq!(
        cert.validity().not_after.timestamp(),
        (t0() + Duration::days(30)).timestamp()
    );
    cert.verify_signature(None).expect("self-signed signature");

    let info = check_ca(&pki.ca_der).unwrap();
    assert_eq!(info.trust_domain, Some(td()));
    assert_eq!(info.path_len, Some(1));
    assert_eq!(info.serial_hex, "0a0b");
    assert_eq!(info.subject_key_id.as_deref(), Some(&ski[..]));
    assert_eq!(info.not_before, t0());
    assert_eq!(info.not_after, t0() + Duration::days(30));
    assert!(
        info.subject.contains("CN=trustdeck test CA"),
        "{}",
        info.subject
    );
    assert!(info.subject.contains("O=SPIFFE"), "{}", info.subject);
    assert_eq!(info.public_key_spki_der, {
        use rcgen::PublicKeyData;
        pki.ca_key.subject_public_key_info()
    });
    assert_eq!(spiffe_id_of(&pki.ca_der).unwrap(), td().id());

    let unconstrained = make_ca(None);
    assert_eq!(check_ca(&unconstrained.ca_der).unwrap().path_len, None);
}

#[test]
fn leaf_certificate_follows_the_svid_profile() {
    let pki = make_ca(None);
    let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/web").unwrap();
    // High bit set: DER needs a 0x00 prefix, serial_hex must not show it.
    let serial = [0x80, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07];
    // Sub-second part must be dropped, validity kept to the second.
    let nb = t0() + Duration::milliseconds(750);
    let na = t0() + Duration::hours(1);
    let params = leaf_params(
        &id,
        &[
            "web.example.org".to_string(),
            "*.web.example.org".to_string(),
        ],
        &serial,
        nb,
        na,
    )
    .unwrap();
    let (der, leaf_key) = sign_leaf(&pki, &params);
    let cert = parse(&der);
    let ca_cert = parse(&pki.ca_der);

    assert_eq!(cert.version().0, 2);
    let bc = ext(&cert, &OID_X509_EXT_BASIC_CONSTRAINTS);
    assert!(bc.critical, "basicConstraints must be critical");
    match bc.parsed_extension() {
        ParsedExtension::BasicConstraints(b) => {
            assert!(!b.ca);
            assert_eq!(b.path_len_constraint, None);
        }
        other => panic!("{other:?}"),
    }
    let ku = ext(&cert, &OID_X509_EXT_KEY_USAGE);
    assert!(ku.critical, "keyUsage must be critical");
    match ku.parsed_extension() {
        ParsedExtension::KeyUsage(k) => {
            assert!(k.digital_signature());
            assert!(!k.key_cert_sign());
            assert!(!k.crl_sign());
            assert!(!k.key_encipherment());
            assert!(!k.non_repudiation());
            assert!(!k.key_agreement());
        }
        other => panic!("{other:?}"),
    }
    match ext(&cert, &OID_X509_EXT_EXTENDED_KEY_USAGE).parsed_extension() {
        ParsedExtension::ExtendedKeyUsage(e) => {
            assert!(e.server_auth);
            assert!(e.client_auth);
            assert!(!e.any && !e.code_signing && !e.email_protection);
            assert!(e.other.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let san = ext(&cert, &OID_X509_EXT_SUBJECT_ALT_NAME);
    match san.parsed_extension() {
        ParsedExtension::SubjectAlternativeName(s) => {
            assert_eq!(
                s.general_names,
                vec![
                    GeneralName::URI("spiffe://example.org/ns/prod/sa/web"),
                    GeneralName::DNSName("web.example.org"),
                    GeneralName::DNSName("*.web.example.org"),
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    // Subject O=SPIFFE is set, so SAN criticality is not required.
    let subject = cert.subject();
    assert!(subject.iter_attributes().next().is_some());
    let o: Vec<_> = subject
        .iter_organization()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(o, vec!["SPIFFE"]);
    assert_eq!(subject.iter_common_name().count(), 0);
    assert!(!san.critical);

    let ski = ski_of(&cert);
    assert!(!ski.is_empty());
    let ca_ski = ski_of(&ca_cert);
    assert_ne!(ski, ca_ski);
    match ext(&cert, &OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER).parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(a) => {
            assert_eq!(a.key_identifier.as_ref().unwrap().0, &ca_ski[..]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cert.issuer(), ca_cert.subject());
    assert_eq!(cert.raw_serial(), &[0x00, 0x80, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(cert.validity().not_before.timestamp(), t0().timestamp());
    assert_eq!(cert.validity().not_after.timestamp(), na.timestamp());

    // Signed by the CA, and not by anything else.
    cert.verify_signature(Some(ca_cert.public_key()))
        .expect("leaf signature verifies with the CA key");
    assert!(cert.verify_signature(None).is_err());
    let other_ca = make_ca(None);
    let other = parse(&other_ca.ca_der);
    assert!(cert.verify_signature(Some(other.public_key())).is_err());

    let info = check_leaf(&der).unwrap();
    assert_eq!(info.spiffe_id, id);
    assert_eq!(info.dns_names, vec!["web.example.org", "*.web.example.org"]);
    assert_eq!(info.not_before, t0());
    assert_eq!(info.not_after, na);
    assert_eq!(info.serial_hex, "8001020304050607");
    assert_eq!(info.subject_key_id.as_deref(), Some(&ski[..]));
    assert_eq!(info.authority_key_id.as_deref(), Some(&ca_ski[..]));
    assert_eq!(info.public_key_spki_der, {
        use rcgen::PublicKeyData;
        leaf_key.subject_public_key_info()
    });
    assert_eq!(spiffe_id_of(&der).unwrap(), id);
    assert_eq!(cert_validity(&der).unwrap(), (t0(), na));

    // Each checker rejects the other kind.
    assert_eq!(check_leaf(&pki.ca_der), Err(ProfileError::LeafIsCa));
    assert_eq!(check_ca(&der), Err(ProfileError::CaNotCa));
}

#[test]
fn p384_leaf_is_accepted() {
    let pki = make_ca(None);
    let id = SpiffeId::parse("spiffe://example.org/p384").unwrap();
    let params = leaf_params(&id, &[], &[7], t0(), t0() + Duration::minutes(5)).unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let issuer = Issuer::from_params(&pki.ca_params, &pki.ca_key);
    let der = params.signed_by(&key, &issuer).unwrap().der().to_vec();
    let info = check_leaf(&der).unwrap();
    assert_eq!(info.spiffe_id, id);
    assert!(info.dns_names.is_empty());
    assert_eq!(info.serial_hex, "07");
}

#[test]
fn leaf_params_rejects_bad_inputs() {
    let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
    let end = t0() + Duration::hours(1);

    let e = leaf_params(&td().id(), &[], &[1], t0(), end).unwrap_err();
    assert!(matches!(
        e,
        ProfileError::Id(trustdeck_spiffe::IdError::MissingPath { .. })
    ));
    assert!(e.to_string().contains("spiffe://example.org"));

    assert!(matches!(
        leaf_params(&id, &[], &[1], t0(), t0()),
        Err(ProfileError::InvalidValidity { .. })
    ));
    assert!(matches!(
        leaf_params(&id, &[], &[1], end, t0()),
        Err(ProfileError::InvalidValidity { .. })
    ));

    for bad in [
        "", "a..b", "-a.org", "a-.org", "a_b.org", "a b.org", "10.0.0.1", "x.*.org",
    ] {
        let e = leaf_params(&id, &[bad.to_string()], &[1], t0(), end).unwrap_err();
        assert!(
            matches!(&e, ProfileError::InvalidDnsName { name, .. } if name == bad),
            "{bad:?}: {e:?}"
        );
        assert!(e.to_string().contains(&format!("{bad:?}")));
    }
    let long_label = format!("{}.org", "a".repeat(64));
    assert!(leaf_params(&id, &[long_label], &[1], t0(), end).is_err());

    assert!(matches!(
        leaf_params(&id, &[], &[], t0(), end),
        Err(ProfileError::InvalidSerial { .. })
    ));
    assert!(matches!(
        leaf_params(&id, &[], &[0, 0], t0(), end),
        Err(ProfileError::InvalidSerial { .. })
    ));
    assert!(leaf_params(&id, &[], &[0x7f; 20], t0(), end).is_ok());
    assert!(matches!(
        leaf_params(&id, &[], &[0x80; 20], t0(), end),
        Err(ProfileError::InvalidSerial { .. })
    ));
    assert!(matches!(
        leaf_params(&id, &[], &[1; 21], t0(), end),
        Err(ProfileError::InvalidSerial { .. })
    ));

    assert!(matches!(
        ca_params(&td(), "", &[1], t0(), end, None),
        Err(ProfileError::InvalidCommonName { .. })
    ));
    assert!(matches!(
        ca_params(&td(), "CA", &[1], end, t0(), None),
        Err(ProfileError::InvalidValidity { .. })
    ));
}

/// A DER GeneralNames with the given URIs.
fn san_uris(uris: &[&str]) -> Vec<u8> {
    let mut body = Vec::new();
    for u in uris {
        body.push(0x86);
        body.push(u.len() as u8);
        body.extend_from_slice(u.as_bytes());
    }
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// Leaf-like parameters built by hand with plain rcgen.
fn raw_leaf(uris: &[&str]) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.not_before = x509::to_offset_datetime(t0()).unwrap();
    p.not_after = x509::to_offset_datetime(t0() + Duration::hours(1)).unwrap();
    p.serial_number = Some(vec![1u8].into());
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "SPIFFE");
    p.distinguished_name = dn;
    p.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI((*u).try_into().unwrap()))
        .collect();
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    p
}

#[test]
fn check_leaf_rejects_each_profile_violation() {
    let pki = make_ca(None);
    let sign = |p: &CertificateParams| sign_leaf(&pki, p).0;

    // Baseline built by hand is accepted, so each failure below is due to its one change.
    check_leaf(&sign(&raw_leaf(&["spiffe://example.org/a"]))).unwrap();

    let two = sign(&raw_leaf(&[
        "spiffe://example.org/a",
        "spiffe://example.org/b",
    ]));
    let e = check_leaf(&two).unwrap_err();
    assert!(
        matches!(e, ProfileError::UriSanCount { count: 2, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("spiffe://example.org/b"));
    assert!(matches!(
        spiffe_id_of(&two),
        Err(ProfileError::UriSanCount { count: 2, .. })
    ));

    assert!(matches!(
        check_leaf(&sign(&raw_leaf(&[]))),
        Err(ProfileError::MissingSan)
    ));
    let mut dns_only = raw_leaf(&[]);
    dns_only.subject_alt_names = vec![SanType::DnsName("a.org".try_into().unwrap())];
    assert!(matches!(
        check_leaf(&sign(&dns_only)),
        Err(ProfileError::UriSanCount { count: 0, .. })
    ));
    assert!(matches!(
        check_leaf(&sign(&raw_leaf(&["spiffe://example.org"]))),
        Err(ProfileError::LeafIdWithoutPath { .. })
    ));
    let e = check_leaf(&sign(&raw_leaf(&["https://example.org/a"]))).unwrap_err();
    assert!(matches!(e, ProfileError::InvalidUriSan { .. }), "{e:?}");
    assert!(e.to_string().contains("https://example.org/a"));

    let mut p = raw_leaf(&["spiffe://example.org/a"]);
    p.is_ca = IsCa::NoCa;
    assert_eq!(
        check_leaf(&sign(&p)),
        Err(ProfileError::MissingBasicConstraints)
    );

    let mut p = raw_leaf(&["spiffe://example.org/a"]);
    p.key_usages.push(KeyUsagePurpose::KeyCertSign);
    assert_eq!(
        check_leaf(&sign(&p)),
        Err(ProfileError::ForbiddenKeyUsage {
            usage: "keyCertSign"
        })
    );
    let mut p = raw_leaf(&["spiffe://example.org/a"]);
    p.key_usages.push(KeyUsagePurpose::CrlSign);
    assert_eq!(
        check_leaf(&sign(&p)),
        Err(ProfileError::ForbiddenKeyUsage { usage: "cRLSign" })
    );
    let mut p = raw_leaf(&["spiffe://example.org/a"]);
    p.key_usages = vec![KeyUsagePurpose::KeyAgreement];
    assert_eq!(
        check_leaf(&sign(&p)),
        Err(ProfileError::MissingDigitalSignature)
    );
    let mut p = raw_leaf(&["spiffe://example.org/a"]);
    p.key_usages = vec![];
    assert_eq!(check_leaf(&sign(&p)), Err(ProfileError::MissingKeyUsage));

    // keyUsage digitalSignature, written by hand as a non-critical extension.
    let mut p = raw_leaf(&["spiffe://example.org/a"]);
    p.key_usages = vec![];
    p.custom_extensions = vec![CustomExtension::from_oid_content(
        &[2, 5, 29, 15],
        vec![0x03, 0x02, 0x07, 0x80],
    )];
    assert_eq!(
        check_leaf(&sign(&p)),
        Err(ProfileError::KeyUsageNotCritical)
    );

    let mut p = raw_leaf(&["spiffe://example.org/a"]);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    assert_eq!(
        check_leaf(&sign(&p)),
        Err(ProfileError::MissingExtendedKeyUsage {
            purpose: "clientAuth"
        })
    );

    // Empty subject with a non-critical SAN (written by hand; rcgen would mark it critical).
    let mut p = raw_leaf(&[]);
    p.distinguished_name = DistinguishedName::new();
    p.custom_extensions = vec![CustomExtension::from_oid_content(
        &[2, 5, 29, 17],
        san_uris(&["spiffe://example.org/a"]),
    )];
    assert_eq!(
        check_leaf(&sign(&p)),
        Err(ProfileError::SanNotCriticalWithEmptySubject)
    );
    // The same with a critical SAN is fine.
    let mut ext =
        CustomExtension::from_oid_content(&[2, 5, 29, 17], san_uris(&["spiffe://example.org/a"]));
    ext.set_criticality(true);
    p.custom_extensions = vec![ext];
    check_leaf(&sign(&p)).unwrap();

    let mut p = raw_leaf(&["spiffe://example.org/a"]);
    let mut unknown = CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0]);
    unknown.set_criticality(true);
    p.custom_extensions = vec![unknown];
    assert!(matches!(
        check_leaf(&sign(&p)),
        Err(ProfileError::UnsupportedCriticalExtension { .. })
    ));

    let mut with_trailer = sign(&raw_leaf(&["spiffe://example.org/a"]));
    with_trailer.push(0);
    assert_eq!(
        check_leaf(&with_trailer),
        Err(ProfileError::TrailingData { count: 1 })
    );
    assert!(matches!(
        check_leaf(b"not a certificate"),
        Err(ProfileError::Parse { .. })
    ));
}

#[test]
fn check_ca_rejects_profile_violations() {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let base = || ca_params(&td(), "CA", &[1], t0(), t0() + Duration::days(1), None).unwrap();
    check_ca(base().self_signed(&ca_key).unwrap().der()).unwrap();

    let mut p = base();
    p.key_usages = vec![KeyUsagePurpose::CrlSign];
    assert_eq!(
        check_ca(p.self_signed(&ca_key).unwrap().der()),
        Err(ProfileError::MissingKeyCertSign)
    );

    let mut p = base();
    p.subject_alt_names = vec![SanType::URI("spiffe://example.org/ca".try_into().unwrap())];
    assert!(matches!(
        check_ca(p.self_signed(&ca_key).unwrap().der()),
        Err(ProfileError::CaIdWithPath { .. })
    ));

    // A CA without a URI SAN (e.g. an upstream root) is accepted without trust domain.
    let mut p = base();
    p.subject_alt_names = vec![];
    assert_eq!(
        check_ca(p.self_signed(&ca_key).unwrap().der())
            .unwrap()
            .trust_domain,
        None
    );
}

#[test]
fn chain_key_ids_names_every_issuer_up_to_the_root() {
    let root = make_ca(None);
    let hex = |k: &[u8]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let root_ski = hex(&ski_of(&parse(&root.ca_der)));
    let mid_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mid_params = ca_params(
        &td(),
        "trustdeck test intermediate",
        &[0x0c],
        t0(),
        t0() + Duration::days(10),
        Some(0),
    )
    .unwrap();
    let root_issuer = Issuer::from_params(&root.ca_params, &root.ca_key);
    let mid_der = mid_params
        .signed_by(&mid_key, &root_issuer)
        .unwrap()
        .der()
        .to_vec();
    let mid_ski = hex(&ski_of(&parse(&mid_der)));
    let mid = Pki {
        ca_key: mid_key,
        ca_params: mid_params,
        ca_der: mid_der.clone(),
    };
    let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
    let params = leaf_params(&id, &[], &[0x0d], t0(), t0() + Duration::hours(1)).unwrap();
    let (leaf, _) = sign_leaf(&mid, &params);

    let ids = x509::chain_key_ids(&[leaf.clone(), mid_der]).unwrap();
    assert_eq!(ids, vec![mid_ski.clone(), root_ski.clone()]);
    // A leaf alone still names its issuer; a root alone names itself.
    assert_eq!(x509::chain_key_ids(&[leaf]).unwrap(), vec![mid_ski]);
    assert_eq!(x509::chain_key_ids(&[]).unwrap(), Vec::<String>::new());
    assert!(x509::chain_key_ids(&[b"not a certificate".to_vec()]).is_err());
}
