//! End-to-end: the node runbooks through `trustdeck runbook run --yes --output json`, each
//! against a small live topology, the test playing the operator's manual steps as their step
//! events arrive: `rebootstrap-tpm-node` for a `tpm_devid` agent on a real swtpm whose TPM was
//! cleared, and `recover-downstream` for a downstream server down longer than its SVID and
//! its intermediate. Each reads the step events, the exit code, the journal (`runbook list`),
//! the audit records naming the runbook and step, the workloads' SVIDs (py-spiffe) and
//! `trustdeck status` at the end. Waits come from copies of the shipped runbooks with shorter
//! timeouts (`--runbooks DIR`).

use std::path::PathBuf;

use trustdeck_e2e::runbook::*;
use trustdeck_e2e::tpm::*;
use trustdeck_e2e::*;

/// The TPM node's DevID subject.
const CN: &str = "node-rb";
/// A node alias by DevID subject: entries under it follow the node to its new ID by themselves.
const ALIAS: &str = "spiffe://example.org/node/tpm/node-rb";
/// A workload parented to the agent's own ID: its entry must move.
const WORKER: &str = "spiffe://example.org/prod/tpm/worker";
/// A workload under the node alias.
const ALIAS_WORKER: &str = "spiffe://example.org/prod/tpm/alias-worker";

/// The SPIFFE IDs py-spiffe is served on `agent`'s socket, each with its chain (DER).
fn served(agent: &AgentProc) -> Vec<(String, Vec<Vec<u8>>)> {
    let r = py_spiffe(&agent.socket, &["x509", "--timeout", "20"]);
    r["x509"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let pem = s["chain_pem"].as_str().unwrap_or_default();
            (
                s["spiffe_id"].as_str().unwrap_or_default().to_string(),
                trustdeck_spiffe::pem::decode_certs(pem).unwrap_or_default(),
            )
        })
        .collect()
}

/// Waits until `agent` serves every one of `ids` to this process.
fn wait_served(agent: &AgentProc, ids: &[&str], secs: u64) -> Vec<(String, Vec<Vec<u8>>)> {
    wait_for(secs, &format!("{ids:?} served"), || {
        let s = served(agent);
        ids.iter()
            .all(|id| s.iter().any(|(i, _)| i == id))
            .then_some(s)
    })
}

/// The tiers of a status report taken from daemon `daemon`.
fn tiers_of<'a>(report: &'a Json, daemon: &str) -> Vec<&'a Json> {
    report["tiers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["daemon"] == daemon)
        .collect()
}

/// The upstream state of daemon `name` in a status report.
fn link_state(report: &Json, name: &str) -> Json {
    report["daemons"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == name))
        .map(|d| d["upstream"]["state"].clone())
        .unwrap_or_default()
}

/// How the node with a cleared TPM came to need a new DevID.
#[derive(Clone, Copy)]
enum Cleared {
    /// Cleared under the running agent, then an outage of its server outlasted the agent's
    /// SVID: the agent must attest again, and cannot.
    ThenServerOutage,
    /// Cleared while the node was down longer than the agent's SVID: the agent starts with
    /// an expired SVID and a DevID key its TPM no longer loads.
    WhileNodeDown,
}

/// A `tpm_devid` agent on a swtpm whose TPM was cleared, running but stranded: its SVID
/// expired, and the DevID key it would attest again with no longer loads.
struct ClearedTpmNode {
    ca: DevIdCa,
    node: TpmNode,
    server: ServerProc,
    agent: AgentProc,
    fleet: PathBuf,
    old_id: String,
}

fn cleared_tpm_node(how: Cleared) -> ClearedTpmNode {
    let ca = DevIdCa::new("DevID CA");
    let node = TpmNode::provision(CN, &ca);
    let mut server = tpm_server(
        &node,
        &ca,
        &format!(
            "bind_address = \"127.0.0.1:{}\"\nagent_svid_ttl = \"5s\"\n",
            free_port()
        ),
    );
    let old_id = node.agent_id();
    server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        ALIAS,
        "--parent-id",
        "spiffe://example.org/trustdeck/server",
        "--selector",
        &format!("tpm_devid:subject:cn:{CN}"),
    ]);
    entry_for_me(&server, &old_id, WORKER, "1m");
    entry_for_me(&server, ALIAS, ALIAS_WORKER, "1m");
    let mut agent = AgentProc::start(
        &server,
        &node.agent_attestation(),
        &format!(
            "name = \"n1\"\nserver_spiffe_id = \"{}\"\n",
            server.server_spiffe_id()
        ),
    );
    wait_served(&agent, &[WORKER, ALIAS_WORKER], 30);
    let fleet = write_fleet(
        node.tpm.dir.path(),
        &[server_entry("up", "upstream", "root", &server)],
        &[agent_entry("n1", "root", "workloads", &agent)],
    );

    match how {
        Cleared::ThenServerOutage => {
            // The agent opens the TPM only to attest.
            node.tpm.clear();
            server.stop();
            wait_status(&fleet, 30, "the agent SVID to expire in the outage", |r| {
                tiers_of(r, "n1").iter().any(|t| {
                    t["kind"] == "AGENT" && t["seconds_remaining"].as_i64().is_some_and(|s| s < 0)
                })
            });
            server.spawn();
        }
        Cleared::WhileNodeDown => {
            agent.terminate();
            node.tpm.clear();
            let agent_id = format!("agent:{old_id}");
            wait_status(&fleet, 30, "the agent SVID to expire while down", |r| {
                tiers_of(r, "up").iter().any(|t| {
                    t["id"] == agent_id.as_str()
                        && t["seconds_remaining"].as_i64().is_some_and(|s| s < 0)
                })
            });
            // It stays up (reachable, naming its old ID) rather than exit.
            agent.spawn();
        }
    }
    wait_for(
        40,
        "the agent to fail attesting with the cleared TPM",
        || {
            agent
                .log()
                .contains("trustdeck-agent tpm provision --force")
                .then_some(())
        },
    );
    ClearedTpmNode {
        ca,
        node,
        server,
        agent,
        fleet,
        old_id,
    }
}

#[test]
fn rebootstrap_a_tpm_node_cleared_then_stranded_by_an_outage() {
    rebootstrap_through_the_cli(cleared_tpm_node(Cleared::ThenServerOutage));
}

#[test]
fn rebootstrap_a_tpm_node_cleared_while_down_past_its_svid() {
    rebootstrap_through_the_cli(cleared_tpm_node(Cleared::WhileNodeDown));
}

/// `rebootstrap-tpm-node` on `n`, the test doing the manual steps, to a node attested under
/// its new DevID whose workloads get SVIDs again.
fn rebootstrap_through_the_cli(mut n: ClearedTpmNode) {
    let rb = runbooks_dir(n.node.tpm.dir.path(), "runbooks", 60, |_, t| t);
    let cmd = runbook_cmd(
        &n.fleet,
        &rb,
        &[
            "run",
            "rebootstrap-tpm-node",
            "--target",
            "n1",
            "--yes",
            "--output",
            "json",
        ],
    );
    // The operator's manual steps, as their instructions say, when each step is given.
    let (mut csr, mut played) = (None, Vec::new());
    let run = run_streamed(cmd, |e| {
        if e["event"] != "acted" {
            return;
        }
        let id = e["id"].as_str().unwrap_or_default();
        match id {
            "provision" => csr = Some(n.node.reprovision(CN)),
            "sign" => {
                let csr = csr.as_ref().expect("provision played before sign");
                n.ca.sign_with_openssl(csr, &n.node.cert_path);
            }
            "restart" => {
                n.agent.terminate();
                n.agent.spawn();
            }
            _ => return,
        }
        played.push(id.to_string());
    });
    let (status, ev, err) = (run.status, run.events, run.stderr);
    let all = format!(
        "{ev:#?}\n{err}\nagent:\n{}\nserver:\n{}",
        n.agent.log(),
        n.server.log()
    );
    assert_eq!(played, ["provision", "sign", "restart"], "{all}");
    assert_eq!(status.code(), Some(0), "{all}");
    assert_eq!(finished(&ev)["outcome"]["result"], "succeeded", "{all}");
    assert_eq!(
        verified(&ev),
        [
            "preflight",
            "provision",
            "sign",
            "evict",
            "restart",
            "new-id",
            "move-entries"
        ],
        "{all}"
    );
    // Without a prompt (--yes) the manual steps' instructions are printed, naming the agent.
    assert!(
        err.contains("On n1's host: trustdeck-agent tpm provision"),
        "{err}"
    );
    let new_id = event(&ev, "acted", "new-id")
        .and_then(|e| e["saved"]["new_id"].as_str())
        .expect("new-id saved new_id")
        .to_string();
    assert_eq!(new_id, n.node.current_agent_id(), "{all}");
    assert_ne!(new_id, n.old_id);
    // The step saved what it moved, and verified the agent serves each of them.
    assert_eq!(
        event(&ev, "acted", "move-entries").and_then(|e| e["saved"]["moved"].as_str()),
        Some(WORKER),
        "{all}"
    );
    let exec = execution(&ev);

    // The node is attested under its new DevID only; the entry parented to the old ID moved.
    let agents = n.server.cli_ok(&["agent", "list"]);
    assert!(agents.contains(&new_id), "{agents}");
    assert!(!agents.contains(&n.old_id), "{agents}");
    let entries: Json = serde_json::from_str(&n.server.cli_ok(&[
        "entry",
        "show",
        "--spiffe-id",
        WORKER,
        "--output",
        "json",
    ]))
    .expect("entry show JSON");
    let parents: Vec<&Json> = entries
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["parent_id"])
        .collect();
    assert_eq!(parents, [&Json::from(new_id.clone())], "{entries}");
    // Both workloads get SVIDs again, chaining to the server's root.
    let roots = n.server.bundle_roots();
    for (id, chain) in wait_served(&n.agent, &[WORKER, ALIAS_WORKER], 30) {
        let (ok, out) = openssl_verify(n.agent.dir.path(), &roots, &chain);
        assert!(ok, "{id}: {out}");
    }
    // Each change is audited with the runbook and its step.
    for (step, action) in [
        ("evict", "agent.evict|ok"),
        ("move-entries", "entry.create|ok"),
        ("move-entries", "entry.delete|ok"),
    ] {
        let recs = audited(&n.server.config, "rebootstrap-tpm-node", step, &exec);
        assert!(
            recs.iter().any(|r| r.starts_with(action)),
            "no {action} record for step {step}: {recs:?}"
        );
    }
    assert_eq!(journal(&n.fleet, &rb), Vec::<Json>::new());
    // Healthy but for the key policy (this small topology keeps its root key on disk).
    let report = healthy_but(&n.fleet, &["key policy:"]);
    assert_eq!(link_state(&report, "n1"), "connected", "{report}");
}

/// Lifetime of the downstream's intermediate.
const MID_CA_TTL: &str = "12s";
/// Lifetime of the downstream's own SVID (the root's default).
const MID_SVID_TTL: &str = "15s";
/// The workload in the downstream's segment.
const MID_WORKLOAD: &str = "spiffe://example.org/prod/mid/db";

/// A downstream server `mid` stopped until its own SVID and its intermediate expired, with its
/// local agent (beside it, attested to the root) and an x509pop workload agent (it attests
/// again by itself).
struct DownMid {
    dir: tempfile::TempDir,
    root: ServerProc,
    mid: Downstream,
    agent: AgentProc,
    fleet: PathBuf,
    old_ca: String,
}

fn downstream_down_past_its_identity() -> DownMid {
    let dir = tempfile::Builder::new()
        .prefix("td-recover-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let pop = PopNode::write(dir.path(), "node-9");
    let root = ServerProc::start(&format!("default_x509_svid_ttl = \"{MID_SVID_TTL}\"\n"));
    let mut mid = Downstream::start(
        &root,
        "mid",
        &format!(
            "bind_address = \"127.0.0.1:{}\"\nca_ttl = \"{MID_CA_TTL}\"\n\
             default_x509_svid_ttl = \"6s\"\n{}",
            free_port(),
            pop.server_section()
        ),
    );
    let alias = "spiffe://example.org/prod/mid/node/node-9";
    pop.register_alias(&mid.server, &mid.server_spiffe_id, alias);
    entry_for_me(&mid.server, alias, MID_WORKLOAD, "6s");
    let agent = AgentProc::start(
        &mid.server,
        &pop.agent_attestation(),
        &format!(
            "name = \"mid-w1\"\nserver_spiffe_id = \"{}\"\n",
            mid.server_spiffe_id
        ),
    );
    wait_served(&agent, &[MID_WORKLOAD], 30);
    let fleet = write_fleet(
        dir.path(),
        &[
            server_entry("up", "upstream", "root", &root),
            server_entry("mid", "downstream", "mid", &mid.server),
        ],
        &[
            agent_entry("mid-node", "mid", "server", &mid.local_agent),
            agent_entry("mid-w1", "mid", "workloads", &agent),
        ],
    );
    let (cas, _) = authorities_of(&mid.server.config);
    let old_ca = ids_with(&cas, "active")
        .pop()
        .expect("an active intermediate");

    mid.server.stop();
    // What the root issued mid (the SVID it presented, its intermediate) is all it tells of
    // mid while mid is down.
    wait_status(
        &fleet,
        40,
        "mid's SVID and intermediate to expire while it is down",
        |r| {
            let own: Vec<&Json> = tiers_of(r, "up")
                .into_iter()
                .filter(|t| t["segment"] == "mid")
                .collect();
            !own.is_empty()
                && own
                    .iter()
                    .all(|t| t["seconds_remaining"].as_i64().is_some_and(|s| s < 0))
        },
    );
    DownMid {
        dir,
        root,
        mid,
        agent,
        fleet,
        old_ca,
    }
}

#[test]
fn recover_a_downstream_down_past_its_identity_through_the_cli() {
    let mut d = downstream_down_past_its_identity();
    let rb = runbooks_dir(d.dir.path(), "runbooks", 60, |_, t| t);
    let cmd = runbook_cmd(
        &d.fleet,
        &rb,
        &[
            "run",
            "recover-downstream",
            "--target",
            "mid",
            "--yes",
            "--output",
            "json",
        ],
    );
    let mut started = false;
    let run = run_streamed(cmd, |e| {
        // The manual step: start the server on its host, as its instruction says.
        if e["event"] == "acted" && e["id"] == "start" && !started {
            d.mid.server.spawn();
            started = true;
        }
    });
    let (status, ev, err) = (run.status, run.events, run.stderr);
    let all = format!(
        "{ev:#?}\n{err}\nmid:\n{}\nagent:\n{}",
        d.mid.server.log(),
        d.agent.log()
    );
    assert!(started, "no start step: {all}");
    assert_eq!(status.code(), Some(0), "{all}");
    assert_eq!(finished(&ev)["outcome"]["result"], "succeeded", "{all}");
    assert_eq!(
        verified(&ev),
        ["preflight", "start", "intermediate", "renew"],
        "{all}"
    );
    assert!(err.contains("On mid's host"), "{err}");
    let new_ca = event(&ev, "acted", "intermediate")
        .and_then(|e| e["saved"]["new_ca"].as_str())
        .expect("intermediate saved new_ca")
        .to_string();
    assert_ne!(new_ca, d.old_ca, "{all}");
    let (cas, _) = authorities_of(&d.mid.server.config);
    assert_eq!(
        status_in(&cas, &new_ca).as_deref(),
        Some("active"),
        "{cas:?}"
    );

    // The segment's workload holds an SVID on the new intermediate, chaining to the root, and
    // a py-spiffe client validating continuously across a renewal sees no failure.
    let served = wait_served(&d.agent, &[MID_WORKLOAD], 30);
    let chain = &served
        .iter()
        .find(|(i, _)| i == MID_WORKLOAD)
        .expect("served")
        .1;
    let keys = chain_keys(chain);
    assert!(
        keys.contains(&new_ca) && !keys.contains(&d.old_ca),
        "{keys:?} (new {new_ca}, old {})",
        d.old_ca
    );
    let (ok, out) = openssl_verify(d.agent.dir.path(), &d.root.bundle_roots(), chain);
    assert!(ok, "{out}");
    let v = Validator::start(&d.agent, "mid-w1", &ValidatorOptions::default());
    wait_for(30, "the validator to see the workload SVID renewed", || {
        v.status()
            .filter(|s| s.serials_of(MID_WORKLOAD).len() >= 2)
            .map(|_| ())
    });
    v.finish().assert_clean("mid-w1");

    assert_eq!(journal(&d.fleet, &rb), Vec::<Json>::new());
    healthy_but(&d.fleet, &["key policy:"]);
}
