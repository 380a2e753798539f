//! End-to-end: `trustdeck demo` starts, beside demo.trustdeck, a federated partner trust
//! domain and an isolated one (issue 15). The fleet file names each daemon's trust domain;
//! a workload of a downstream segment holds both foreign bundles (the partner's fetched over
//! `https_spiffe`, the isolated one's imported from a signed file, relayed by the upstream);
//! the partner's workload holds ours, fetched over `https_web` with the demo's CA.

use std::path::Path;

use trustdeck_e2e::runbook::{config_of, server_json};
use trustdeck_e2e::*;

/// The X.509 roots (fingerprints) of the demo server `name`'s bundle.
fn roots_of(demo: &DemoProc, name: &str) -> Vec<String> {
    let out = std::process::Command::new(bin("trustdeck-server"))
        .args(["bundle", "show", "--format", "pem", "--config"])
        .arg(config_of(demo, name))
        .output()
        .expect("trustdeck-server");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = String::from_utf8_lossy(&out.stdout);
    fingerprints(&trustdeck_spiffe::pem::decode_certs(&pem).expect("PEM"))
}

fn socket(demo: &DemoProc, agent: &str) -> std::path::PathBuf {
    demo.dir.path().join(agent).join("workload.sock")
}

fn held(sock: &Path, td: &str) -> Vec<String> {
    let v = foreign_view(sock, td, None, None).unwrap_or_else(|e| panic!("{e}"));
    let mut roots: Vec<String> = v["context_roots"]
        .as_array()
        .expect("roots")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    roots.sort();
    roots
}

#[test]
fn the_demo_federates_with_a_partner_and_an_isolated_trust_domain() {
    let demo = DemoProc::start_full(&[]);
    let tds: Vec<(String, String)> = ["servers", "agents"]
        .iter()
        .flat_map(|k| demo.fleet[k].as_array().cloned().unwrap_or_default())
        .map(|d| {
            let td = d["trust_domain"]
                .as_str()
                .unwrap_or("demo.trustdeck")
                .to_string();
            (d["name"].as_str().expect("name").to_string(), td)
        })
        .collect();
    for (name, td) in [
        ("partner", "partner.trustdeck"),
        ("partner-workloads", "partner.trustdeck"),
        ("isolated", "isolated.trustdeck"),
        ("isolated-workloads", "isolated.trustdeck"),
        ("gcp-workloads-1", "demo.trustdeck"),
    ] {
        assert!(
            tds.contains(&(name.to_string(), td.to_string())),
            "{name} of {td} in {tds:?}"
        );
    }

    let gcp = socket(&demo, "gcp-workloads-1");
    assert_eq!(held(&gcp, "partner.trustdeck"), roots_of(&demo, "partner"));
    assert_eq!(
        held(&gcp, "isolated.trustdeck"),
        roots_of(&demo, "isolated")
    );
    let partner = socket(&demo, "partner-workloads");
    assert_eq!(
        held(&partner, "demo.trustdeck"),
        roots_of(&demo, "upstream")
    );
    let isolated = socket(&demo, "isolated-workloads");
    assert_eq!(
        held(&isolated, "demo.trustdeck"),
        roots_of(&demo, "upstream")
    );

    // The partner's relationship to us runs over https_web, with the demo's own CA.
    let rel = server_json(
        &config_of(&demo, "partner"),
        &[
            "federation",
            "show",
            "--trust-domain",
            "demo.trustdeck",
            "--output",
            "json",
        ],
    );
    assert_eq!(rel["profile"], "https_web", "{rel}");
    assert!(rel["last_success_at"].is_string(), "{rel}");
    // The files carried at start are there to read.
    assert!(demo.dir.path().join("carry/demo.trustdeck.bundle").exists());
    assert!(
        demo.dir
            .path()
            .join("carry/isolated.trustdeck.bundle.receipt")
            .exists()
    );
    let (code, report) = demo.status(&[]);
    assert_eq!(code, 0, "{report}");
    let partner = report["daemons"]
        .as_array()
        .and_then(|d| d.iter().find(|x| x["name"] == "partner"))
        .expect("the partner in the report");
    assert_eq!(partner["trust_domain"], "partner.trustdeck", "{partner}");
    let upstream = report["daemons"]
        .as_array()
        .and_then(|d| d.iter().find(|x| x["name"] == "upstream"))
        .expect("the upstream in the report");
    assert!(
        upstream.get("trust_domain").is_none(),
        "the fleet's own: {upstream}"
    );
}
