//! End-to-end: a taint propagates without further operator action (issue 13), three tiers
//! deep (root → mid → leaf → agents), with real processes. Needs the authority operations
//! (`trustdeck-server authority x509|jwt prepare|activate|taint`).
//!
//! - taint of the root's old X.509 authority: every downstream replaces its intermediate at
//!   every depth, every agent re-issues its workload SVIDs and its own SVID, all of which
//!   then verify (openssl) against a bundle without the tainted root; the downstreams name
//!   their replaced intermediates tainted;
//! - taint of the old JWT key: cached JWT-SVIDs signed by it are dropped; the next ones carry
//!   the new kid.

use std::time::{Duration, Instant};

use trustdeck_e2e::*;
use trustdeck_proto::workload::JwtsvidRequest;

/// Workload entries under the leaf's agent.
const WORKLOADS: usize = 20;

/// Whether `show` (the JSON of `authority x509 show`) names an authority tainted.
fn names_tainted(show: &serde_json::Value) -> bool {
    match show {
        serde_json::Value::String(s) => s.to_ascii_lowercase().contains("tainted"),
        serde_json::Value::Array(a) => a.iter().any(names_tainted),
        serde_json::Value::Object(o) => o.values().any(names_tainted),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tainted_root_is_replaced_at_every_tier_without_operator_action() {
    let root = ServerProc::start("");
    let mid = Downstream::start(&root, "mid", "");
    // Inside the mid's namespace (`/prod/mid/`), as a downstream of a downstream must be.
    let leaf = Downstream::start(&mid.server, "prod/mid/leaf", "");
    let (mid_agent, mid_agent_id) = mid.workload_agent();
    let (leaf_agent, leaf_agent_id) = leaf.workload_agent();
    entry_for_me(
        &mid.server,
        &mid_agent_id,
        "spiffe://example.org/prod/mid/svc",
        "10m",
    );
    for i in 0..WORKLOADS {
        entry_for_me(
            &leaf.server,
            &leaf_agent_id,
            &format!("spiffe://example.org/prod/mid/leaf/w{i}"),
            "10m",
        );
    }
    let old_roots = root_key_ids(&root.bundle_roots());
    assert_eq!(old_roots.len(), 1);
    let old = old_roots[0].clone();
    // Before: every leaf SVID chains leaf → leaf intermediate → mid intermediate → root.
    let before = all_clean(&leaf_agent, WORKLOADS, "none", 30).await;
    assert!(chain_keys(&before[0].1).contains(&old));

    authority(&root, "x509", "prepare", None);
    let roots = wait_for(10, "prepared root in the bundle", || {
        let r = root_key_ids(&root.bundle_roots());
        (r.len() == 2).then_some(r)
    });
    let new = roots.iter().find(|k| **k != old).expect("new root").clone();
    authority(&root, "x509", "activate", Some(&new));
    let t0 = Instant::now();
    authority(&root, "x509", "taint", Some(&old));

    // No further operator action: every tier re-issues.
    let leaf_svids = all_clean(&leaf_agent, WORKLOADS, &old, 30).await;
    let took = t0.elapsed();
    let mid_svids = all_clean(&mid_agent, 1, &old, 30).await;
    eprintln!("taint of the root: {WORKLOADS} leaf SVIDs clean after {took:?}");
    let trusted: Vec<Vec<u8>> = root
        .bundle_roots()
        .into_iter()
        .filter(|r| ski(r) != old)
        .collect();
    for (id, chain, _) in leaf_svids.iter().chain(&mid_svids) {
        assert_eq!(chain_keys(chain).last(), Some(&new), "{id}");
        let (ok, text) = openssl_verify(leaf_agent.dir.path(), &trusted, chain);
        assert!(ok, "{id} without the tainted root: {text}");
    }
    // The agents' own SVIDs too.
    for agent in [&leaf_agent, &mid_agent] {
        wait_for(15, "agent SVID re-issued", || {
            let chain = agent_own_chain(agent);
            (!chain_keys(&chain).contains(&old)).then_some(())
        });
    }
    // Each downstream names its replaced intermediate tainted, with no operator action.
    for ds in [&mid, &leaf] {
        let show = authority(&ds.server, "x509", "show", None);
        assert!(names_tainted(&show), "{show}");
    }
    assert!(
        leaf_agent.log().contains("chaining to tainted key"),
        "{}",
        leaf_agent.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_svids_of_a_tainted_kid_are_dropped_from_agent_caches() {
    let root = ServerProc::start("");
    let seg = Downstream::start(&root, "gcp", "");
    let (agent, agent_id) = seg.workload_agent();
    let id = "spiffe://example.org/prod/gcp/api";
    entry_for_me(&seg.server, &agent_id, id, "10m");
    all_clean(&agent, 1, "none", 30).await;
    let jwt = |agent: &AgentProc| {
        let mut c = agent.client();
        async move {
            c.fetch_jwtsvid(JwtsvidRequest {
                audience: vec!["db".into()],
                spiffe_id: String::new(),
            })
            .await
            .expect("JWT-SVID")
            .into_inner()
            .svids[0]
                .svid
                .clone()
        }
    };
    let first = jwt(&agent).await;
    let old = jwt_kid(&first);
    // Cached: the same token again.
    assert_eq!(jwt(&agent).await, first);

    authority(&root, "jwt", "prepare", None);
    let deadline = Instant::now() + Duration::from_secs(15);
    let new = loop {
        let kids = jwt_kids(&agent).await;
        if let Some(k) = kids.iter().find(|k| **k != old) {
            break k.clone();
        }
        assert!(
            Instant::now() < deadline,
            "prepared kid never published: {kids:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    authority(&root, "jwt", "activate", Some(&new));
    authority(&root, "jwt", "taint", Some(&old));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let tok = jwt(&agent).await;
        if jwt_kid(&tok) == new {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still served a JWT-SVID of tainted kid {old}:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Re-issue and first issue alike respect the server's per-agent signing rate limit: a
/// batch the limit holds back is signed at the next round (the sync interval, no backoff),
/// never dropped.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_batch_is_retried_at_the_next_round_not_dropped() {
    const N: usize = 150;
    let server = ServerProc::start("[rate_limit]\nsigns_per_second = 5.0\nburst = 20.0\n");
    let token = server.token("10m");
    let agent_id = format!("spiffe://example.org/trustdeck/agent/join_token/{token}");
    for i in 0..N {
        entry_for_me(
            &server,
            &agent_id,
            &format!("spiffe://example.org/w/{i}"),
            "10m",
        );
    }
    let agent = AgentProc::start(
        &server,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
        "max_backoff = \"30s\"\n",
    );
    let t0 = Instant::now();
    all_clean(&agent, N, "none", 30).await;
    let took = t0.elapsed();
    let log = agent.log();
    assert!(log.contains("server rate limit reached"), "{log}");
    assert!(!log.contains("sync failed"), "{log}");
    // Batches of 100 and 50 each need a full bucket (20 tokens, 4 s apart at 5/s).
    assert!(took < Duration::from_secs(15), "{N} SVIDs took {took:?}");
}
