//! End-to-end: a demo server killed and started again from its own config file, with nothing
//! but `trustdeck-server run --config FILE` (no environment), comes back where its clients
//! look for it: its agents renew from it and it links to its upstream again.

use std::process::{Command, Stdio};

use trustdeck_e2e::*;

/// The newest `not_before` (RFC 3339) of the workload SVIDs `daemon` holds.
fn newest_svid(report: &serde_json::Value, daemon: &str) -> Option<String> {
    report["tiers"]
        .as_array()?
        .iter()
        .filter(|t| t["kind"] == "WORKLOAD_SVID" && t["daemon"] == daemon)
        .filter_map(|t| t["not_before"].as_str().map(str::to_string))
        .max()
}

fn daemon<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["daemons"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
fn a_demo_server_restarted_from_its_own_config_serves_its_clients_again() {
    let demo = DemoProc::start(&["--segments", "dmz", "--svid-ttl", "30s"]);
    let config = demo.dir.path().join("dmz").join("server.toml");
    let text = std::fs::read_to_string(&config).expect("dmz config");
    let dmz = demo.fleet["servers"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "dmz"))
        .expect("dmz in the fleet file");
    // Where its agents look for it is what it binds on a restart.
    let node_api = dmz["node_api"].as_str().expect("node_api");
    assert!(
        text.contains(&format!("bind_address = \"{node_api}\"")),
        "{text}"
    );

    // An HSM-backed server's config carries what its PKCS#11 module needs.
    assert!(
        !text.contains("pkcs11") || text.contains("SOFTHSM2_CONF"),
        "{text}"
    );

    signal(demo.pid("dmz"), "KILL");
    wait_for(10, "the dmz server to die", || {
        (!alive(demo.pid("dmz"))).then_some(())
    });
    let restarted = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let log = std::fs::File::create(demo.dir.path().join("dmz-restart.log")).expect("log");
    let mut server = Command::new(bin("trustdeck-server"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env_clear()
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("restart dmz");
    let restart_log =
        || std::fs::read_to_string(demo.dir.path().join("dmz-restart.log")).unwrap_or_default();

    // Its workload agent renews from it, and it is linked to its upstream again.
    let outcome = std::panic::catch_unwind(|| {
        wait_for(60, "dmz's agent renewing from the restarted server", || {
            let (_, r) = demo.status(&[]);
            let renewed = newest_svid(&r, "dmz-workloads-1").is_some_and(|t| t > restarted);
            let linked = daemon(&r, "dmz")["reachable"] == true
                && daemon(&r, "dmz")["upstream"]["state"] == "connected";
            (renewed && linked).then_some(())
        })
    });
    let _ = server.kill();
    let _ = server.wait();
    if outcome.is_err() {
        panic!(
            "restarted dmz:\n{}\nagent:\n{}",
            restart_log(),
            demo.daemon_log("dmz-workloads-1")
        );
    }
    assert!(
        restart_log().contains(node_api),
        "serving on its old port:\n{}",
        restart_log()
    );
}
