//! End-to-end: a join-token agent whose SVID expires while its server is down is stranded
//! when the server returns (its token is spent): it says so on its admin stream and in
//! `trustdeck status`, and backs off instead of re-attesting every second.

use std::time::Duration;

use trustdeck_e2e::*;

/// `trustdeck status --output json` on `fleet`: (exit code, report).
fn status(fleet: &std::path::Path) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(bin("trustdeck"))
        .args(["status", "--output", "json", "--fleet"])
        .arg(fleet)
        .output()
        .expect("trustdeck status");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status JSON: {e}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

/// The agent's upstream link in a status report.
fn agent_link(report: &serde_json::Value) -> serde_json::Value {
    report["daemons"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == "a1"))
        .map(|d| d["upstream"].clone())
        .unwrap_or_default()
}

/// Attestation attempts the server refused, from its log.
fn refused(server: &ServerProc) -> usize {
    server.log().matches("attestation failed").count()
}

#[test]
fn an_agent_whose_token_is_spent_is_stranded_and_backs_off() {
    let port = free_port();
    let mut server = ServerProc::start(&format!(
        "bind_address = \"127.0.0.1:{port}\"\nagent_svid_ttl = \"5s\"\n"
    ));
    // The harness's agents retry every second at most (max_backoff = 1s).
    let agent = AgentProc::start(
        &server,
        &format!("type = \"join_token\"\ntoken = \"{}\"", server.token("10m")),
        "name = \"a1\"\n",
    );
    wait_for(20, "attestation", || {
        agent.log().contains("node attested").then_some(())
    });
    let fleet = agent.dir.path().join("fleet.json");
    std::fs::write(
        &fleet,
        serde_json::json!({
            "trust_domain": "example.org",
            "servers": [{"name": "up", "role": "upstream", "segment": "root",
                         "admin": format!("unix://{}", server.info().admin_socket.display())}],
            "agents": [{"name": "a1", "segment": "root",
                        "admin": format!("unix://{}", agent.dir.path().join("data/admin.sock").display())}],
        })
        .to_string(),
    )
    .expect("fleet file");

    // The outage outlasts the agent SVID.
    server.stop();
    wait_for(30, "the agent SVID to expire during the outage", || {
        let (_, report) = status(&fleet);
        let tiers = report["tiers"].as_array().cloned().unwrap_or_default();
        tiers
            .iter()
            .any(|t| {
                t["kind"] == "AGENT"
                    && t["daemon"] == "a1"
                    && t["seconds_remaining"].as_i64().is_some_and(|s| s < 0)
            })
            .then_some(())
    });
    assert_ne!(
        agent_link(&status(&fleet).1)["state"],
        "stranded",
        "unreachable is not stranded"
    );
    server.spawn();

    // Back: the server refuses the spent token; the agent reports it is stranded.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (code, report) = loop {
        let (code, report) = status(&fleet);
        if agent_link(&report)["state"] == "stranded" {
            break (code, report);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not report it is stranded: {report}\n{}\n{}",
            agent.log(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let link = agent_link(&report);
    assert_eq!(link["stranded"]["reason"], "token used", "{link}");
    assert_eq!(
        link["stranded"]["needs"], "stranded: needs a new join token",
        "{link}"
    );
    assert!(
        link["stranded"]["recovery"]
            .as_str()
            .is_some_and(|r| r.starts_with("trustdeck-server token generate")),
        "{link}"
    );
    assert_eq!(code, 2, "{report}");
    assert_eq!(report["health"], "critical");
    assert!(
        report["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r
                .as_str()
                .is_some_and(|r| r.starts_with("a1: stranded: needs a new join token")))),
        "{report}"
    );

    // It does not hammer the server: over 12 s, attempts 1, 2, 4, 8 s apart (at most 4),
    // where the configured backoff (1 s) made about 12.
    let at_stranding = refused(&server);
    std::thread::sleep(Duration::from_secs(12));
    let attempts = refused(&server) - at_stranding;
    assert!(
        attempts <= 4,
        "{attempts} attempts in 12 s:\n{}",
        server.log()
    );
    // One error with the recovery; later attempts are warnings.
    let log = agent.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("needs a new join token"))
        .collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("token generate"), "{}", errors[0]);
    assert!(log.contains("still stranded"), "{log}");
    // Still stranded.
    let (_, report) = status(&fleet);
    assert_eq!(agent_link(&report)["state"], "stranded", "{report}");
}
