//! A federated bundle change until the partner's workloads hold it (issue 15): real
//! processes; partner B (partner.test) serves its bundle over `https_spiffe`, home server A
//! (example.org) has a federation relationship to it, and a workload of A whose entry
//! federates with partner.test watches its FetchX509SVID stream. Each sample is one change of
//! B's roots (a root prepared, then that root tainted and revoked) and the time until the
//! stream's `federated_bundles` says so.
//!
//! ```sh
//! cargo build --bins && cargo bench --profile dev -p trustdeck-e2e --bench federation -- [SAMPLES]
//! ```
//!
//! Two settings, side by side in the same run:
//! - short: B serves a 1 s `spiffe_refresh_hint`, A's `refresh_minimum` is 1 s;
//! - default: no hint configured, so B serves its default (a tenth of its CA lifetime: 10 min
//!   here, so 60 s), and A's `refresh_minimum` is its default (SPIRE's one minute).
//!
//! Each change waits a random part of the refresh interval first, so it falls anywhere between
//! two refreshes. The times are bound by the refresh interval and the agent's sync (500 ms),
//! not by CPU: a debug build measures the same.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use trustdeck_e2e::*;
use trustdeck_proto::workload::X509svidRequest;

const PARTNER: &str = "partner.test";
const PARTNER_KEY: &str = "spiffe://partner.test";

struct Setting {
    name: &'static str,
    /// The refresh interval it comes to: each change waits a random part of it first, so
    /// changes fall anywhere between two refreshes.
    interval: Duration,
    /// B's bundle endpoint section.
    endpoint: &'static str,
    /// A's extra config.
    home: &'static str,
}

const SETTINGS: [Setting; 2] = [
    Setting {
        name: "short hint (1 s), refresh_minimum 1 s",
        interval: Duration::from_secs(1),
        endpoint: "refresh_hint = \"1s\"\n",
        home: "[federation]\nrefresh_minimum = \"1s\"\n",
    },
    Setting {
        name: "defaults (hint = CA TTL 10m / 10 = 60 s; refresh_minimum 1 min)",
        interval: Duration::from_secs(60),
        endpoint: "",
        home: "",
    },
];

fn fingerprints(ders: &[Vec<u8>]) -> BTreeSet<String> {
    trustdeck_e2e::fingerprints(ders).into_iter().collect()
}

/// Home server, partner and a federating workload's stream; samples in milliseconds.
async fn run(s: &Setting, samples: usize) -> Vec<f64> {
    let b = ServerProc::start_in(
        PARTNER,
        &format!(
            "ca_ttl = \"10m\"\ndefault_x509_svid_ttl = \"2m\"\n[federation.bundle_endpoint]\nbind_address = \"127.0.0.1:0\"\n\
             profile = \"https_spiffe\"\n{}",
            s.endpoint
        ),
    );
    let a = ServerProc::start(s.home);
    let dir = tempfile::tempdir().expect("tmp");
    federate_https_spiffe(&a, &b, dir.path());
    a.cli_ok(&["federation", "refresh", "--trust-domain", PARTNER]);
    let (agent, agent_id) = join_agent(&a);
    let out = federating_entry(&a, &agent_id, "spiffe://example.org/bench", &[PARTNER]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut c = agent.client();
    let mut stream = loop {
        if let Ok(st) = c.fetch_x509svid(X509svidRequest {}).await {
            break st.into_inner();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut held = BTreeSet::new();
    let mut out = Vec::new();
    for i in 0..samples * 2 {
        tokio::time::sleep(s.interval.mul_f64(spread())).await;
        let before = fingerprints(&b.bundle_roots());
        let t0 = Instant::now();
        if i % 2 == 0 {
            b.cli_ok(&["authority", "x509", "prepare"]);
        } else {
            let v: serde_json::Value =
                serde_json::from_str(&b.cli_ok(&["authority", "x509", "show", "--output", "json"]))
                    .expect("json");
            let prepared = v["authorities"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["status"] == "prepared"))
                .and_then(|x| x["id"].as_str())
                .expect("a prepared root")
                .to_string();
            b.cli_ok(&["authority", "x509", "taint", "--id", &prepared]);
            b.cli_ok(&["authority", "x509", "revoke", "--id", &prepared, "--force"]);
        }
        // B's own rotation schedule may change its roots meanwhile: wait for this change only.
        let after = fingerprints(&b.bundle_roots());
        let added: BTreeSet<_> = after.difference(&before).cloned().collect();
        let removed: BTreeSet<_> = before.difference(&after).cloned().collect();
        while !(added.is_subset(&held) && removed.is_disjoint(&held)) {
            let m = tokio::time::timeout(Duration::from_secs(300), stream.next())
                .await
                .expect("a change within 5 min")
                .expect("stream open")
                .expect("message");
            let der = m
                .federated_bundles
                .get(PARTNER_KEY)
                .cloned()
                .unwrap_or_default();
            held = fingerprints(&trustdeck_spiffe::pem::split_der(&der).unwrap_or_default());
        }
        out.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    out
}

/// A number in [0, 1) that differs from call to call (the clock's nanoseconds): enough to
/// spread the changes over the interval.
fn spread() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos) / 1e9
}

fn report(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name}: n={} min {:.0} ms, p50 {:.0} ms, max {:.0} ms",
        v.len(),
        v[0],
        p(0.5),
        v[v.len() - 1]
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let samples: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    for s in &SETTINGS {
        let v = run(s, samples).await;
        report(s.name, v);
    }
}
