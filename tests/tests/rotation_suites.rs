//! SPIFFE's force-rotation suites, three tiers deep (issue 13, "Prove it"): root → mid →
//! leaf, a workload agent under each, and a py-spiffe validator on every agent validating
//! what it holds against the bundle it holds, continuously. Not one failed validation is
//! allowed from before `prepare` to after `revoke`.
//!
//! - the root's X.509 authority: prepare, activate, taint; every tier re-issues (checked
//!   with `openssl verify` against the bundle without the tainted root); revoke (without
//!   `--force`: once the census lets it); the bundle holds exactly the active root;
//! - the mid's intermediate: the same on the mid; the leaf re-intermediates, the agents under
//!   the mid and the leaf re-issue, the root's agent does not;
//! - the root's JWT key: new JWT-SVIDs carry the new kid; after revoke a JWT-SVID of the old
//!   kid validates neither through an agent nor with the bundle py-spiffe holds.
//!
//! Lifetimes are long (CA 10 min, SVIDs 5 min) so that nothing rotates on schedule: every
//! re-issue seen here is the taint's doing.

use std::time::{Duration, Instant};

use trustdeck_e2e::*;
use trustdeck_proto::workload::{JwtsvidRequest, ValidateJwtsvidRequest};

const AUDIENCE: &str = "trustdeck-rotation";

fn rotation_tiers() -> Tiers {
    Tiers::start_with(TiersConfig {
        ca_ttl: "10m".into(),
        svid_ttl: "5m".into(),
        rotation_check_interval: "200ms".into(),
        extra: String::new(),
    })
}

fn validator_options() -> ValidatorOptions {
    ValidatorOptions {
        audience: AUDIENCE.into(),
        ..Default::default()
    }
}

/// Polls the validators' status until `done` holds for every one of them (with its agent);
/// panics at once on a failed validation, or after `secs` with the statuses and every log.
fn validators_until(
    tiers: &Tiers,
    validators: &[Validator],
    secs: u64,
    what: &str,
    done: impl Fn(&Summary, &TierAgent) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let statuses: Vec<Option<Summary>> = validators.iter().map(Validator::status).collect();
        for (v, s) in validators.iter().zip(&statuses) {
            if let Some(s) = s
                && !s.failures.is_empty()
            {
                panic!(
                    "{}: failed validation while waiting for {what}: {:?}\n{}",
                    v.name(),
                    s.failures,
                    tiers.logs()
                );
            }
        }
        if statuses
            .iter()
            .zip(tiers.agents())
            .all(|(s, a)| s.as_ref().is_some_and(|s| done(s, a)))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}: {:?}\n{}",
            statuses
                .iter()
                .map(|s| s.as_ref().map(|s| s.raw.to_string()))
                .collect::<Vec<_>>(),
            tiers.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `authority <kind> revoke --id <id>` without `--force`, retried while it is refused
/// because live SVIDs still chain to the authority (the census catching up) or the server
/// started too recently to know, for at most
/// `secs`; any other refusal fails at once.
fn revoke_when_allowed(server: &ServerProc, kind: &str, id: &str, secs: u64, tiers: &Tiers) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let out = server.cli(&["authority", kind, "revoke", "--id", id, "--output", "json"]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("revoke json");
            assert_eq!(v["authority"]["status"], "revoked", "{v}");
            return;
        }
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            err.contains("refused: live SVIDs still chain to it")
                || err.contains("refused: started too recently"),
            "revoke {kind} {id}: {err}"
        );
        assert!(
            Instant::now() < deadline,
            "revoke {kind} {id} still refused after {secs}s: {err}\nshow: {}\n{}",
            authority(server, kind, "show", None),
            tiers.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Stops the validators: none failed, each saw its workload SVID re-issued, and each now
/// holds an SVID that avoids `gone`.
fn finish_clean(tiers: &Tiers, validators: Vec<Validator>, reissued: [bool; 3], gone: &str) {
    for ((v, a), reissued) in validators.into_iter().zip(tiers.agents()).zip(reissued) {
        let name = v.name().to_string();
        let s = v.finish();
        s.assert_clean(&name);
        let serials = s.serials_of(&a.workload_id).len();
        if reissued {
            assert!(serials >= 2, "{name}: never re-issued: {}", s.raw);
        } else {
            assert_eq!(serials, 1, "{name}: re-issued for nothing: {}", s.raw);
        }
        let held = &s.held_chains[&a.workload_id];
        assert!(!held.iter().any(|k| k == gone), "{name}: {}", s.raw);
    }
}

/// The root's X.509 authority, rotated by force through every tier.
#[tokio::test(flavor = "multi_thread")]
async fn force_rotation_of_the_root_through_three_tiers() {
    let tiers = rotation_tiers();
    let validators = tiers.validators(&validator_options());
    let root = &tiers.root;
    let old = with_status(&authority(root, "x509", "show", None), "active").remove(0);
    for a in tiers.agents() {
        let svids = all_clean(&a.agent, 1, "none", 10).await;
        assert_eq!(chain_keys(&svids[0].1).last(), Some(&old));
    }

    let new = authority(root, "x509", "prepare", None)["authority"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    validators_until(&tiers, &validators, 15, "the prepared root held", |s, _| {
        s.held_roots.contains(&new) && s.held_roots.contains(&old)
    });
    authority(root, "x509", "activate", Some(&new));
    let t0 = Instant::now();
    authority(root, "x509", "taint", Some(&old));

    // Every tier re-issues: workload SVIDs, the agents' own, the intermediates in between.
    let trusted: Vec<Vec<u8>> = root
        .bundle_roots()
        .into_iter()
        .filter(|r| ski(r) != old)
        .collect();
    assert_eq!(root_key_ids(&trusted), vec![new.clone()]);
    let dir = tempfile::tempdir().expect("tmp");
    for a in tiers.agents() {
        let svids = all_clean(&a.agent, 1, &old, 30).await;
        let chain = &svids[0].1;
        // root: SVID; mid: SVID, mid's; leaf: SVID, leaf's, mid's intermediate.
        assert_eq!(chain_keys(chain).last(), Some(&new), "{}", a.workload_id);
        let (ok, text) = openssl_verify(dir.path(), &trusted, chain);
        assert!(ok, "{} without the tainted root: {text}", a.workload_id);
        let own = wait_for(15, "agent SVID re-issued", || {
            let c = agent_own_chain(&a.agent);
            (!chain_keys(&c).contains(&old)).then_some(c)
        });
        let (ok, text) = openssl_verify(dir.path(), &trusted, &own);
        assert!(
            ok,
            "{}'s agent without the tainted root: {text}",
            a.workload_id
        );
    }
    eprintln!("root taint: every tier clean after {:?}", t0.elapsed());
    validators_until(
        &tiers,
        &validators,
        15,
        "held SVIDs avoiding the old root",
        |s, a| {
            s.held_chains
                .get(&a.workload_id)
                .is_some_and(|c| c.last() == Some(&new))
        },
    );

    revoke_when_allowed(root, "x509", &old, 20, &tiers);
    assert_eq!(root_key_ids(&root.bundle_roots()), vec![new.clone()]);
    validators_until(
        &tiers,
        &validators,
        15,
        "a bundle of the active root only",
        |s, _| s.held_roots == [new.clone()],
    );
    finish_clean(&tiers, validators, [true; 3], &old);
}

/// The mid's intermediate, rotated by force: the leaf re-intermediates, the agents under
/// the mid and the leaf re-issue; the root's agent is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn force_rotation_of_a_downstream_intermediate() {
    let tiers = rotation_tiers();
    let validators = tiers.validators(&validator_options());
    let mid = &tiers.mid.server;
    let root_key = with_status(&authority(&tiers.root, "x509", "show", None), "active").remove(0);
    let old = with_status(&authority(mid, "x509", "show", None), "active").remove(0);
    for a in [&tiers.mid_agent, &tiers.leaf_agent] {
        let svids = all_clean(&a.agent, 1, "none", 10).await;
        assert!(chain_keys(&svids[0].1).contains(&old), "{}", a.workload_id);
    }

    let prepared = authority(mid, "x509", "prepare", None);
    let new = prepared["authority"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(prepared["authority"]["status"], "prepared", "{prepared}");
    authority(mid, "x509", "activate", Some(&new));
    let t0 = Instant::now();
    authority(mid, "x509", "taint", Some(&old));

    let roots = tiers.root.bundle_roots();
    assert_eq!(root_key_ids(&roots), vec![root_key.clone()]);
    let dir = tempfile::tempdir().expect("tmp");
    for a in [&tiers.mid_agent, &tiers.leaf_agent] {
        let svids = all_clean(&a.agent, 1, &old, 30).await;
        let chain = &svids[0].1;
        let keys = chain_keys(chain);
        assert!(keys.contains(&new), "{}: {keys:?}", a.workload_id);
        let (ok, text) = openssl_verify(dir.path(), &roots, chain);
        assert!(ok, "{}: {text}", a.workload_id);
        let own = wait_for(15, "agent SVID re-issued", || {
            let c = agent_own_chain(&a.agent);
            (!chain_keys(&c).contains(&old)).then_some(c)
        });
        let (ok, text) = openssl_verify(dir.path(), &roots, &own);
        assert!(ok, "{}'s agent: {text}", a.workload_id);
    }
    eprintln!("mid taint: mid and leaf clean after {:?}", t0.elapsed());
    // The leaf names its replaced intermediate tainted, with no operator action.
    let leaf_show = authority(&tiers.leaf.server, "x509", "show", None);
    assert!(
        !with_status(&leaf_show, "tainted").is_empty(),
        "{leaf_show}"
    );
    validators_until(
        &tiers,
        &validators,
        15,
        "held SVIDs avoiding the old intermediate",
        |s, a| {
            s.held_chains
                .get(&a.workload_id)
                .is_some_and(|c| !c.contains(&old))
        },
    );

    revoke_when_allowed(mid, "x509", &old, 20, &tiers);
    let show = authority(mid, "x509", "show", None);
    assert_eq!(with_status(&show, "revoked"), vec![old.clone()], "{show}");
    assert_eq!(with_status(&show, "active"), vec![new.clone()], "{show}");
    // The trust domain's bundle never changed: the root is its only authority.
    assert_eq!(
        root_key_ids(&tiers.root.bundle_roots()),
        vec![root_key.clone()]
    );
    validators_until(&tiers, &validators, 5, "the root's bundle held", |s, _| {
        s.held_roots == [root_key.clone()]
    });
    finish_clean(&tiers, validators, [false, true, true], &old);
}

/// A JWT-SVID for this process from `agent`.
async fn jwt_svid(agent: &AgentProc) -> String {
    let r = agent
        .client()
        .fetch_jwtsvid(JwtsvidRequest {
            audience: vec![AUDIENCE.into()],
            spiffe_id: String::new(),
        })
        .await
        .expect("JWT-SVID")
        .into_inner();
    r.svids[0].svid.clone()
}

/// `token` validated through `agent` (ValidateJWTSVID): Ok or the status.
async fn agent_validates(agent: &AgentProc, token: &str) -> Result<(), tonic::Status> {
    agent
        .client()
        .validate_jwtsvid(ValidateJwtsvidRequest {
            audience: AUDIENCE.into(),
            svid: token.into(),
        })
        .await
        .map(|_| ())
}

/// The root's JWT key, rotated by force: new JWT-SVIDs carry the new kid; after revoke the
/// old kid's JWT-SVIDs validate nowhere.
#[tokio::test(flavor = "multi_thread")]
async fn force_rotation_of_the_jwt_key() {
    let tiers = rotation_tiers();
    let validators = tiers.validators(&validator_options());
    let root = &tiers.root;
    let old = with_status(&authority(root, "jwt", "show", None), "active").remove(0);
    // A JWT-SVID of the old kid from every tier, valid everywhere for now.
    let mut old_tokens = Vec::new();
    for a in tiers.agents() {
        let tok = jwt_svid(&a.agent).await;
        assert_eq!(jwt_kid(&tok), old);
        for b in tiers.agents() {
            agent_validates(&b.agent, &tok)
                .await
                .unwrap_or_else(|e| panic!("{} before rotation: {e:?}", a.workload_id));
        }
        old_tokens.push(tok);
    }

    let new = authority(root, "jwt", "prepare", None)["authority"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    validators_until(&tiers, &validators, 15, "the prepared kid held", |s, _| {
        s.held_kids.contains(&new)
    });
    authority(root, "jwt", "activate", Some(&new));
    authority(root, "jwt", "taint", Some(&old));
    for a in tiers.agents() {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let tok = jwt_svid(&a.agent).await;
            if jwt_kid(&tok) == new {
                agent_validates(&a.agent, &tok)
                    .await
                    .expect("new kid validates");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: still a JWT-SVID of tainted kid {old}\n{}",
                a.workload_id,
                tiers.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    revoke_when_allowed(root, "jwt", &old, 20, &tiers);
    validators_until(
        &tiers,
        &validators,
        15,
        "a JWT bundle of the new kid only",
        |s, _| s.held_kids == [new.clone()],
    );
    for a in tiers.agents() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while jwt_kids(&a.agent).await.contains(&old) {
            assert!(
                Instant::now() < deadline,
                "{}: old kid still in the agent's JWT bundle",
                a.workload_id
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for tok in &old_tokens {
            let e = agent_validates(&a.agent, tok)
                .await
                .expect_err("a JWT-SVID of the revoked kid");
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
            let v = py_spiffe(
                &a.agent.socket,
                &["jwt-check", "--audience", AUDIENCE, "--token", tok],
            );
            assert_eq!(v["bundle_kids"], serde_json::json!([new.clone()]), "{v}");
            assert!(v["local"].is_string(), "py-spiffe validated it: {v}");
            assert!(v["agent"].is_string(), "the agent validated it: {v}");
        }
    }
    for (v, _) in validators.into_iter().zip(tiers.agents()) {
        let name = v.name().to_string();
        let s = v.finish();
        s.assert_clean(&name);
        assert!(s.jwt_validations > 0, "{name}: {}", s.raw);
        assert!(
            s.jwt_kids.contains(&old) && s.jwt_kids.contains(&new),
            "{name}: {}",
            s.raw
        );
    }
}
