//! The detail popup of a workload SVID, an intermediate and an agent, with the real DER chain
//! their daemon answers: labels in a column, every field once, the key type by name, the CLI
//! command, and the issuer path to the root (live, last-known, or where it leaves what the
//! console knows).

mod fixture;

use fixture::*;
use rcgen::{DistinguishedName, DnType, Issuer, KeyIdMethod, KeyPair};
use trustdeck_spiffe::x509::{ca_params, leaf_params};
use trustdeck_spiffe::{SpiffeId, TrustDomain};

/// An authority for the tests: its parameters (subject key id fixed) and key.
struct Ca {
    params: rcgen::CertificateParams,
    key: KeyPair,
}

fn subject(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "trustdeck");
    dn.push(DnType::CommonName, cn);
    dn
}

fn hexbytes(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A CA certificate with subject key id `ski`, signed by `issuer` (self-signed without one).
fn ca(cn: &str, ski: &str, life: (i64, i64), issuer: Option<&Ca>) -> (Ca, Vec<u8>) {
    let td = TrustDomain::parse("demo.trustdeck").expect("td");
    let mut params =
        ca_params(&td, cn, &hexbytes(ski), at(life.0), at(life.1), Some(1)).expect("ca params");
    params.distinguished_name = subject(cn);
    params.key_identifier_method = KeyIdMethod::PreSpecified(hexbytes(ski));
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let der = match issuer {
        Some(i) => params.signed_by(&key, &Issuer::from_params(&i.params, &i.key)),
        None => params.self_signed(&key),
    }
    .expect("ca cert")
    .der()
    .to_vec();
    (Ca { params, key }, der)
}

/// A leaf for node `n` (its SPIFFE ID, serial and lifetime), signed by `issuer`.
fn leaf(n: &Node, issuer: &Ca) -> Vec<u8> {
    let id = SpiffeId::parse(&n.spiffe_id).expect("spiffe id");
    let serial = match n.serial.replace(':', "") {
        s if s.is_empty() => "0a6e17".to_string(),
        s if s.len() % 2 == 1 => format!("0{s}"),
        s => s,
    };
    let serial = hexbytes(&serial);
    let nb = DateTime::from_timestamp(n.not_before, 0).expect("nb");
    let na = DateTime::from_timestamp(n.not_after, 0).expect("na");
    let mut params = leaf_params(&id, &[], &serial, nb, na).expect("leaf params");
    params.key_identifier_method = KeyIdMethod::PreSpecified(hexbytes("0f0f0f0f"));
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    params
        .signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key))
        .expect("leaf")
        .der()
        .to_vec()
}

/// The upstream's root CA 2026 and gcp's intermediate 41, as the fixture's nodes say.
fn gcp_cas() -> (Ca, Vec<u8>, Ca, Vec<u8>) {
    let (root, root_der) = ca(
        "demo.trustdeck root 2026",
        "a1b2c3d4",
        (-60 * D, 305 * D),
        None,
    );
    let (int, int_der) = ca(
        "gcp intermediate 41",
        "11aa41",
        (-10 * H, 2 * H),
        Some(&root),
    );
    (root, root_der, int, int_der)
}

/// Opens the detail of node `id` and answers it with `chain` (leaf first).
fn open(mut app: App, id: &str, chain: impl FnOnce(&Node) -> Vec<Vec<u8>>) -> App {
    assert!(app.show_in_tree(id, now()), "{id} is in the tree");
    update(&mut app, ch('d'), now());
    assert_eq!(app.mode, Mode::Detail);
    let node = app.detail.as_ref().map(|d| d.node.clone()).expect("detail");
    let chain_der = chain(&node);
    update(
        &mut app,
        Msg::Detail {
            node_id: id.to_string(),
            result: Ok(NodeDetail {
                node: Some(node),
                chain_der,
                fields: vec!["subject: daemon fields are not shown twice".into()],
            }),
        },
        now(),
    );
    app
}

/// The whole document at `w`×`h`: the first page, and at 80×24 the last one too.
fn snap_all(name: &str, app: &mut App, w: u16, h: u16) {
    let top = screen(name, app, w, h);
    insta::assert_snapshot!(format!("{name}_{w}x{h}"), top);
    if w == 80 {
        update(app, ch('G'), now());
        let end = screen(name, app, w, h);
        insta::assert_snapshot!(format!("{name}_end_{w}x{h}"), end);
    }
}

#[test]
fn workload_svid_with_its_path_to_the_root() {
    for (w, h) in SIZES {
        let mut app = open(base(w, h), &worker_id(), |n| {
            let (_, _, int, int_der) = gcp_cas();
            vec![leaf(n, &int), int_der]
        });
        let doc = lines(&draw(&app, w, h, false)).join("\n");
        assert!(
            !doc.contains("daemon fields"),
            "the certificate's fields come from the DER"
        );
        snap_all("svid", &mut app, w, h);
    }
}

#[test]
fn intermediate_whose_path_leaves_what_the_console_knows() {
    for (w, h) in SIZES {
        let mut app = open(base(w, h), "x509:33cc17", |_| {
            let (foreign, _) = ca("offline root", "5e5e5e", (-90 * D, 90 * D), None);
            let (_, der) = ca(
                "dmz intermediate 17",
                "33cc17",
                (-10 * H, 2 * H),
                Some(&foreign),
            );
            vec![der]
        });
        snap_all("intermediate", &mut app, w, h);
    }
}

#[test]
fn agent_of_an_unreachable_server_shows_its_issuer_as_last_known() {
    let id = format!("agent:{TD}/trustdeck/agent/gcp/node-1");
    for (w, h) in SIZES {
        let mut app = open(unreachable(w, h), &id, |n| {
            let (_, root_der, int, int_der) = gcp_cas();
            vec![leaf(n, &int), int_der, root_der]
        });
        snap_all("agent", &mut app, w, h);
    }
}

/// A JWT key is no certificate: no issuer path to look for, and no "issuer not known" alarm.
#[test]
fn a_jwt_key_has_no_issuer_path() {
    let mut app = open(base(120, 30), "jwt:7f3a", |_| Vec::new());
    let doc = lines(&draw(&app, 120, 30, false)).join("\n");
    assert!(
        doc.contains("a JWT signing key has no certificate"),
        "{doc}"
    );
    assert!(!doc.contains("Issuer path"), "{doc}");
    assert!(!doc.contains("issuer not known"), "{doc}");
    update(&mut app, key(KeyCode::Esc), now());
    assert_eq!(app.mode, Mode::Normal);
}

/// When the daemon could not answer, the path's end says why the issuer is unknown.
#[test]
fn an_unfetched_certificate_is_why_the_issuer_is_unknown() {
    let mut app = base(120, 30);
    let id = server_id("gcp").replace("spiffe://", "server:spiffe://");
    assert!(app.show_in_tree(&id, now()), "{id}");
    update(&mut app, ch('d'), now());
    update(
        &mut app,
        Msg::Detail {
            node_id: id.clone(),
            result: Err(DetailError::Rpc("keep-alive timed out".into())),
        },
        now(),
    );
    let doc = lines(&draw(&app, 120, 30, false)).join("\n");
    assert!(
        doc.contains("not fetched from gcp: keep-alive timed out"),
        "{doc}"
    );
    assert!(
        doc.contains("issuer not known: the certificate could not be fetched"),
        "{doc}"
    );
}
