//! End-to-end: federation relationships (issue 15) between two servers of different trust
//! domains. Server A federates with partner B over `https_spiffe`, B's bundle given as the
//! bootstrap bundle: `federation refresh` stores B's bundle (sequence, roots), `show` tells
//! the last success; a wrong endpoint SPIFFE ID is refused with its typed reason, the last
//! good bundle kept and the failures counted; B prepares a new root and A's refresher picks
//! it up at a higher sequence. Typed refusals of `create` are named.

use std::path::Path;

use trustdeck_e2e::*;

const PARTNER: &str = "partner.test";

/// A at `refresh_minimum` 1s; B serves its bundle over https_spiffe with a 2s hint.
fn servers() -> (ServerProc, ServerProc) {
    let b = ServerProc::start_in(
        PARTNER,
        "[federation.bundle_endpoint]\nbind_address = \"127.0.0.1:0\"\n\
         profile = \"https_spiffe\"\nrefresh_hint = \"2s\"\n",
    );
    let a = ServerProc::start_in("home.test", "[federation]\nrefresh_minimum = \"1s\"\n");
    (a, b)
}

fn json_of(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn show(a: &ServerProc) -> serde_json::Value {
    json_of(&a.cli_ok(&[
        "federation",
        "show",
        "--trust-domain",
        PARTNER,
        "--output",
        "json",
    ]))
}

/// `federation refresh --output json`: (exit ok, answer).
fn refresh(a: &ServerProc) -> (bool, serde_json::Value) {
    let out = a.cli(&[
        "federation",
        "refresh",
        "--trust-domain",
        PARTNER,
        "--output",
        "json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.success(), json_of(&stdout))
}

fn settings<'a>(url: &'a str, id: &'a str) -> Vec<&'a str> {
    vec![
        "--trust-domain",
        PARTNER,
        "--endpoint-url",
        url,
        "--profile",
        "https_spiffe",
        "--endpoint-spiffe-id",
        id,
        "--output",
        "json",
    ]
}

/// B's X.509 roots as SHA-256 fingerprints (as `federation show` lists them).
fn fingerprints(b: &ServerProc) -> Vec<String> {
    b.bundle_roots()
        .iter()
        .map(|der| {
            let d = ring::digest::digest(&ring::digest::SHA256, der);
            d.as_ref().iter().map(|x| format!("{x:02x}")).collect()
        })
        .collect()
}

fn write_bootstrap(b: &ServerProc, dir: &Path) -> String {
    let path = dir.join("partner-bundle.pem");
    std::fs::write(&path, b.cli_ok(&["bundle", "show", "--format", "pem"])).expect("write");
    path.display().to_string()
}

#[test]
fn a_relationship_refreshes_the_partners_bundle() {
    let (a, b) = servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("https://127.0.0.1:{}/", b.bundle_endpoint_port());
    let server_id = b.server_spiffe_id();
    let bootstrap = write_bootstrap(&b, dir.path());

    // https_spiffe without a bootstrap bundle (none held): refused, typed; nothing stored.
    let out = a.cli(&[&["federation", "create"][..], &settings(&url, &server_id)].concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused: bootstrap required"), "{err}");
    let own = a.cli(&[
        "federation",
        "create",
        "--trust-domain",
        "home.test",
        "--endpoint-url",
        &url,
        "--profile",
        "https_web",
    ]);
    let err = String::from_utf8_lossy(&own.stderr);
    assert!(err.contains("refused: own trust domain"), "{err}");
    let listed = json_of(&a.cli_ok(&["federation", "list", "--output", "json"]));
    assert_eq!(listed["federations"], serde_json::json!([]));

    // Created with B's roots as the bootstrap bundle (PEM: sequence 0).
    let created = json_of(
        &a.cli_ok(
            &[
                &["federation", "create"][..],
                &settings(&url, &server_id),
                &["--bootstrap-bundle", &bootstrap],
            ]
            .concat(),
        ),
    );
    assert_eq!(created["profile"], "https_spiffe");
    assert_eq!(created["endpoint_spiffe_id"], server_id.as_str());
    assert_eq!(created["roots"], serde_json::json!(fingerprints(&b)));

    // A refresh stores B's bundle at its sequence (the refresher may have been first).
    let s0 = b.bundle_sequence();
    let (ok, r) = refresh(&a);
    assert!(ok, "{r}");
    assert!(
        ["first bundle", "updated", "unchanged"].contains(&r["outcome"].as_str().unwrap_or("")),
        "{r}"
    );
    assert_eq!(r["sequence"], s0, "{r}");
    let shown = show(&a);
    assert_eq!(shown["sequence"], s0, "{shown}");
    assert_eq!(shown["roots"], serde_json::json!(fingerprints(&b)));
    assert!(shown["last_success_at"].is_string(), "{shown}");
    assert_eq!(shown["failures"], 0, "{shown}");
    let foreign = json_of(&a.cli_ok(&["bundle", "foreign", "--output", "json"]));
    assert_eq!(foreign["bundles"][0]["trust_domain"], PARTNER);
    assert_eq!(foreign["bundles"][0]["source"], "federation");
    assert_eq!(foreign["bundles"][0]["sequence"], s0);

    // A wrong endpoint SPIFFE ID: refused with its reason; the last good bundle kept.
    let wrong = format!("spiffe://{PARTNER}/not-the-server");
    a.cli_ok(&[&["federation", "update"][..], &settings(&url, &wrong)].concat());
    let (ok, r) = refresh(&a);
    assert!(!ok, "a refused refresh exits non-zero: {r}");
    assert_eq!(r["outcome"], "refused", "{r}");
    assert_eq!(r["refusal"], "unexpected endpoint SPIFFE ID", "{r}");
    assert_eq!(r["sequence"], s0, "{r}");
    let shown = show(&a);
    assert_eq!(shown["sequence"], s0, "{shown}");
    assert!(
        shown["failures"].as_u64().expect("failures") >= 1,
        "{shown}"
    );
    let last_error = shown["last_error"].as_str().expect("last error");
    assert!(last_error.contains("not-the-server"), "{last_error}");

    // Back to the right ID; B prepares a new root: the refresher stores it, higher sequence.
    a.cli_ok(&[&["federation", "update"][..], &settings(&url, &server_id)].concat());
    b.cli_ok(&["authority", "x509", "prepare"]);
    let s1 = b.bundle_sequence();
    assert!(s1 > s0);
    let roots = fingerprints(&b);
    assert_eq!(roots.len(), 2);
    let shown = wait_for(20, "the refresher stores B's prepared root", || {
        let v = show(&a);
        (v["sequence"] == s1).then_some(v)
    });
    assert_eq!(shown["roots"], serde_json::json!(roots));
    assert_eq!(shown["failures"], 0, "{shown}");
    assert!(shown["last_error"].is_null(), "{shown}");
    let (ok, r) = refresh(&a);
    assert!(
        ok && r["outcome"] == "unchanged" && r["sequence"] == s1,
        "{r}"
    );

    // Every change audited; delete keeps the bundle held.
    let audit = a.audit_log().join("\n");
    for action in [
        "federation.create",
        "federation.update",
        "federation.refresh",
    ] {
        assert!(audit.contains(action), "{action} not audited: {audit}");
    }
    a.cli_ok(&["federation", "delete", "--trust-domain", PARTNER]);
    let listed = json_of(&a.cli_ok(&["federation", "list", "--output", "json"]));
    assert_eq!(listed["federations"], serde_json::json!([]));
    let foreign = json_of(&a.cli_ok(&["bundle", "foreign", "--output", "json"]));
    assert_eq!(foreign["bundles"][0]["sequence"], s1);
}

/// A partner whose endpoint accepts and never answers stalls only its own fetch (until the
/// fetch timeout): another partner keeps being refreshed at its hint meanwhile.
#[test]
fn a_stalled_partner_delays_no_other() {
    let (a, b) = servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let stall = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let stall_port = stall.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in stall.incoming().flatten() {
            held.push(c);
        }
    });
    a.cli_ok(&[
        "federation",
        "create",
        "--trust-domain",
        "stall.test",
        "--endpoint-url",
        &format!("https://127.0.0.1:{stall_port}/"),
        "--profile",
        "https_web",
    ]);
    let url = format!("https://127.0.0.1:{}/", b.bundle_endpoint_port());
    let bootstrap = write_bootstrap(&b, dir.path());
    a.cli_ok(
        &[
            &["federation", "create"][..],
            &settings(&url, &b.server_spiffe_id()),
            &["--bootstrap-bundle", &bootstrap],
        ]
        .concat(),
    );
    // While stall.test's fetches hang (10 s each), B's attempts go on at its 2 s hint.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let mut seen = std::collections::BTreeSet::new();
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(7) {
        if let Some(t) = show(&a)["last_attempt_at"].as_str() {
            seen.insert(t.to_string());
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert!(
        seen.len() >= 3,
        "B refreshed while stall.test hung: {seen:?}"
    );
}
