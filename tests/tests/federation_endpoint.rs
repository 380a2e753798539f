//! End-to-end: the federation bundle endpoint of real servers (issue 15, seed 004) and the
//! fetch client against it. `curl` reads an `https_web` endpoint (a test CA made here); the
//! fetch client reads another trust domain's `https_spiffe` endpoint with the right endpoint
//! SPIFFE ID and bootstrap bundle, is refused (typed) with an unexpected ID or a bootstrap
//! bundle that lacks the partner's root, and sees a root rotation as a higher sequence.

use std::path::{Path, PathBuf};
use std::process::Command;

use trustdeck_e2e::*;
use trustdeck_federation::{
    Accepted, EndpointProfile, FetchFailure, Partner, PartnerState, RefreshPolicy, Refusal,
    TransportKind, Warning,
};
use trustdeck_server::federation::fetch::{Endpoint, fetch_bundle};
use trustdeck_spiffe::{Bundle, SpiffeId, TrustDomain};

/// A test CA and a serving certificate for `bundle.test` and `localhost` signed by it, as PEM files in `dir`:
/// (ca, certificate, key).
fn web_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "federation test CA");
    let ca_pem = ca.self_signed(&ca_key).expect("ca cert").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["bundle.test".into(), "localhost".into()])
        .expect("leaf params");
    let leaf_pem = leaf.signed_by(&key, &issuer).expect("leaf cert").pem();
    let paths = (dir.join("ca.pem"), dir.join("web.pem"), dir.join("web.key"));
    std::fs::write(&paths.0, ca_pem).expect("write ca");
    std::fs::write(&paths.1, leaf_pem).expect("write cert");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    paths
}

fn web_endpoint(cert: &Path, key: &Path) -> String {
    format!(
        "[federation.bundle_endpoint]\nbind_address = \"127.0.0.1:0\"\nprofile = \"https_web\"\n\
         certificate_path = \"{}\"\nkey_path = \"{}\"\nrefresh_hint = \"7s\"\n",
        cert.display(),
        key.display()
    )
}

fn curl(ca: Option<&Path>, port: u16) -> std::process::Output {
    let mut c = Command::new("curl");
    c.args(["--silent", "--show-error", "--fail", "--max-time", "10"])
        .args(["--resolve", &format!("bundle.test:{port}:127.0.0.1")]);
    if let Some(ca) = ca {
        c.arg("--cacert").arg(ca);
    }
    c.arg(format!("https://bundle.test:{port}/"))
        .output()
        .expect("run curl")
}

#[tokio::test]
async fn curl_reads_the_bundle_from_an_https_web_endpoint() {
    let pki = tempfile::tempdir().expect("tmp");
    let (ca, cert, key) = web_pki(pki.path());
    let server = ServerProc::start(&web_endpoint(&cert, &key));
    let port = server.bundle_endpoint_port();

    let out = curl(Some(&ca), port);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bundle JSON");
    assert_eq!(
        doc["spiffe_sequence"].as_u64(),
        Some(server.bundle_sequence())
    );
    assert_eq!(doc["spiffe_refresh_hint"].as_u64(), Some(7));
    let td = TrustDomain::parse("example.org").expect("td");
    let served = Bundle::from_json(&td, &out.stdout).expect("a SPIFFE bundle");
    assert_eq!(served.x509_authorities, server.bundle_roots());
    assert!(
        !served.jwt_authorities.is_empty(),
        "JWT authorities too: {doc}"
    );

    // Without the test CA the certificate is not trusted.
    let out = curl(None, port);
    assert!(!out.status.success(), "curl trusted a test certificate");

    // The fetch client: trusted through the configured CA file, by DNS name.
    let partner = Partner::new(td, EndpointProfile::HttpsWeb).expect("partner");
    let state = PartnerState::new(None);
    let mut endpoint = Endpoint::new(format!("https://bundle.test:{port}/"));
    endpoint.ca_file = Some(ca.clone());
    // By DNS name (localhost resolves; the certificate names it): the bundle, typed.
    let by_name = Endpoint {
        url: format!("https://localhost:{port}/"),
        ..endpoint.clone()
    };
    let fetched = fetch_bundle(&partner, &by_name, &state).await;
    match &fetched.result {
        Ok(Accepted::First(b)) => assert_eq!(b, &served),
        other => panic!("https_web fetch: {other:?}"),
    }
    // A bundle larger than allowed is refused.
    let small = Endpoint {
        max_body: 100,
        ..by_name.clone()
    };
    let fetched = fetch_bundle(&partner, &small, &state).await;
    assert!(
        matches!(
            fetched.result,
            Err(FetchFailure::Transport {
                kind: TransportKind::TooLarge,
                ..
            })
        ),
        "{:?}",
        fetched.result
    );
    // By IP address, which the certificate does not name: refused in the handshake.
    let by_ip = Endpoint {
        url: format!("https://127.0.0.1:{port}/"),
        ..endpoint
    };
    let fetched = fetch_bundle(&partner, &by_ip, &state).await;
    assert!(
        matches!(
            fetched.result,
            Err(FetchFailure::Transport {
                kind: TransportKind::Tls,
                ..
            })
        ),
        "{:?}",
        fetched.result
    );
    // Without the CA file the system's CAs do not know the test CA.
    let fetched = fetch_bundle(
        &partner,
        &Endpoint::new(format!("https://localhost:{port}/")),
        &state,
    )
    .await;
    assert!(fetched.result.is_err(), "{:?}", fetched.result);
}

/// Silent connections from one source address take at most an eighth of the places (two of
/// 16): more from it are closed at once, while another source is still served.
#[test]
fn one_source_cannot_take_every_place() {
    let pki = tempfile::tempdir().expect("tmp");
    let (ca, cert, key) = web_pki(pki.path());
    let extra = format!(
        "[connections]\nhandshake_timeout = \"30s\"\nidle_timeout = \"30s\"\nmax_unidentified = 16\n\n{}",
        web_endpoint(&cert, &key)
    );
    let server = ServerProc::start(&extra);
    let port = server.bundle_endpoint_port();
    let from = |source: &str| {
        Command::new("curl")
            .args(["--silent", "--max-time", "5", "--output", "/dev/null"])
            .args(["--interface", source])
            .args(["--resolve", &format!("bundle.test:{port}:127.0.0.1")])
            .arg("--cacert")
            .arg(&ca)
            .arg(format!("https://bundle.test:{port}/"))
            .output()
            .expect("curl")
    };
    assert!(from("127.0.0.1").status.success());
    let _silent: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    wait_for(10, "a third connection from 127.0.0.1 closed", || {
        (!from("127.0.0.1").status.success()).then_some(())
    });
    let other = from("127.0.0.2");
    assert!(
        other.status.success(),
        "another source is served: {other:?}"
    );
}

#[test]
fn the_endpoint_is_bounded() {
    use std::io::Read;
    let pki = tempfile::tempdir().expect("tmp");
    let (ca, cert, key) = web_pki(pki.path());
    let extra = format!(
        "[connections]\nhandshake_timeout = \"2s\"\nidle_timeout = \"2s\"\nmax_unidentified = 2\n\n{}",
        web_endpoint(&cert, &key)
    );
    let server = ServerProc::start(&extra);
    let port = server.bundle_endpoint_port();
    assert!(curl(Some(&ca), port).status.success());

    // Two connections that never start TLS fill the endpoint: a third is closed at once.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let other = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let out = curl(Some(&ca), port);
    assert!(!out.status.success(), "a third connection was served");

    // The handshake timeout closes a silent connection.
    idle.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    match idle.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the silent connection was not closed: {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
    drop(other);
    wait_for(10, "the endpoint serves again", || {
        curl(Some(&ca), port).status.success().then_some(())
    });

    // A request head larger than 8 KiB is answered 431.
    let out = Command::new("curl")
        .args(["--silent", "--max-time", "10", "--output", "/dev/null"])
        .args(["--write-out", "%{http_code}"])
        .args(["--resolve", &format!("bundle.test:{port}:127.0.0.1")])
        .arg("--cacert")
        .arg(&ca)
        .args(["-H", &format!("X-Big: {}", "a".repeat(9000))])
        .arg(format!("https://bundle.test:{port}/"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "431");
}

#[tokio::test]
async fn check_config_reads_the_endpoint_files() {
    let pki = tempfile::tempdir().expect("tmp");
    let (_, cert, _) = web_pki(pki.path());
    let other = tempfile::tempdir().expect("tmp");
    let (_, _, other_key) = web_pki(other.path());
    let server = ServerProc::prepare(&web_endpoint(&cert, &other_key), &[], &[]);
    let out = server.cli(&["check-config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a key of another certificate was accepted"
    );
    assert!(err.contains("is not the key of the certificate"), "{err}");
    let missing = pki.path().join("missing.pem");
    let server = ServerProc::prepare(&web_endpoint(&missing, &other_key), &[], &[]);
    let out = server.cli(&["check-config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an unreadable certificate was accepted"
    );
    assert!(err.contains("certificate_path"), "{err}");
}

const SPIFFE_ENDPOINT: &str = "[federation.bundle_endpoint]\nbind_address = \"127.0.0.1:0\"\n\
                               profile = \"https_spiffe\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_from_an_https_spiffe_endpoint_of_another_trust_domain() {
    let partner_server = ServerProc::start_in("partner.test", SPIFFE_ENDPOINT);
    let td = TrustDomain::parse("partner.test").expect("td");
    let server_id = partner_server.info().spiffe_id.clone();
    assert_eq!(server_id.trust_domain(), &td);
    let url = format!(
        "https://127.0.0.1:{}/",
        partner_server.bundle_endpoint_port()
    );
    let endpoint = Endpoint::new(url);
    let pem = partner_server.cli_ok(&["bundle", "show", "--format", "pem"]);
    let bootstrap = Bundle::from_pem_x509(&td, &pem).expect("bootstrap bundle");
    let spiffe = |id: &SpiffeId| {
        Partner::new(
            td.clone(),
            EndpointProfile::HttpsSpiffe {
                endpoint_id: id.clone(),
            },
        )
        .expect("partner")
    };

    // The right endpoint ID and bootstrap bundle: the partner's bundle.
    let partner = spiffe(&server_id);
    let mut state = PartnerState::new(Some(bootstrap.clone()));
    let fetched = fetch_bundle(&partner, &endpoint, &state).await;
    let first = match &fetched.result {
        Ok(Accepted::First(b)) => b.clone(),
        other => panic!("first fetch: {other:?}"),
    };
    let s0 = partner_server.bundle_sequence();
    assert_eq!(first.sequence, s0);
    assert_eq!(first.x509_authorities, bootstrap.x509_authorities);
    state.record(fetched, chrono::Utc::now());

    // An unexpected endpoint ID: refused, typed, the chain it presented reported.
    let wrong = SpiffeId::parse("spiffe://partner.test/not-the-server").expect("id");
    let fetched = fetch_bundle(&spiffe(&wrong), &endpoint, &state).await;
    assert_eq!(
        fetched.result,
        Err(FetchFailure::Refused(Refusal::UnexpectedEndpointId {
            expected: wrong,
            presented: server_id.clone(),
        }))
    );
    assert!(fetched.presented_chain.is_some());

    // A bootstrap bundle without the partner's root: refused, and the freshness facts say
    // our copy lacks the root the partner signs with.
    let stranger = ServerProc::start("");
    let stale = Bundle::from_pem_x509(
        &td,
        &stranger.cli_ok(&["bundle", "show", "--format", "pem"]),
    )
    .expect("stale");
    let mut stale_state = PartnerState::new(Some(stale));
    let fetched = fetch_bundle(&partner, &endpoint, &stale_state).await;
    assert!(
        matches!(
            fetched.result,
            Err(FetchFailure::Refused(Refusal::EndpointRootUnknown {
                missing: Some(_),
                ..
            }))
        ),
        "{:?}",
        fetched.result
    );
    stale_state.record(fetched, chrono::Utc::now());
    let f = stale_state.freshness(&RefreshPolicy::default(), chrono::Utc::now());
    assert!(
        f.warnings
            .iter()
            .any(|w| matches!(w, Warning::MissingSigningRoot(_))),
        "{f:?}"
    );

    // The partner prepares a new root: the next fetch has it, at a higher sequence.
    let prepared = partner_server.cli_ok(&["authority", "x509", "prepare", "--output", "json"]);
    let prepared: serde_json::Value = serde_json::from_str(&prepared).expect("json");
    let new_root = prepared["authority"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let fetched = fetch_bundle(&partner, &endpoint, &state).await;
    match &fetched.result {
        Ok(Accepted::Updated {
            bundle,
            previous_sequence,
            added_roots,
            removed_roots,
        }) => {
            assert_eq!(*previous_sequence, s0);
            assert!(bundle.sequence > s0, "{} > {s0}", bundle.sequence);
            assert_eq!((*added_roots, *removed_roots), (1, 0));
            assert_eq!(bundle.x509_authorities, partner_server.bundle_roots());
        }
        other => panic!("after prepare: {other:?}"),
    }
    state.record(fetched, chrono::Utc::now());
    let f = state.freshness(&RefreshPolicy::default(), chrono::Utc::now());
    assert!(f.warnings.is_empty(), "{f:?}");
    assert!(f.sequence > Some(s0));

    // It activates the new root: the endpoint presents an SVID from it (renewed as the CA
    // rotates), which our copy holds, while the bootstrap bundle alone lacks it.
    partner_server.cli_ok(&["authority", "x509", "activate", "--id", &new_root]);
    let chain = wait_for(15, "the endpoint presents an SVID of the new root", || {
        let fetched = futures_block(fetch_bundle(&partner, &endpoint, &state));
        let chain = fetched.presented_chain.clone()?;
        let key_ids = trustdeck_spiffe::x509::chain_key_ids(&chain).ok()?;
        key_ids.contains(&new_root).then(|| {
            assert!(fetched.result.is_ok(), "{:?}", fetched.result);
            chain
        })
    });
    assert!(
        trustdeck_federation::missing_signing_root(&bootstrap, &chain).is_some(),
        "the bootstrap bundle lacks the root the partner now signs with"
    );
    assert_eq!(
        trustdeck_federation::missing_signing_root(state.held().expect("held"), &chain),
        None
    );
}

/// Runs a future to completion from synchronous code inside a multi-thread runtime.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
