//! End-to-end (issue 14): the runbook execution journal on a real server over its admin
//! socket (begin, a busy second begin, a claim refused while the holder is fresh, records
//! from the holder only, finish, list, `kill -9` in between), on SQLite and PostgreSQL; the
//! `trustdeck-runbook` header naming the step in the audit record of an authority prepare;
//! runbook events on the Watch stream; and agents publishing the sequence of the bundle they
//! hold.

use std::time::Duration;

use tonic::Request;
use trustdeck_e2e::*;
use trustdeck_proto::admin::observe_client::ObserveClient;
use trustdeck_proto::admin::server_admin_client::ServerAdminClient;
use trustdeck_proto::admin::watch_message::Body;
use trustdeck_proto::admin::*;
use trustdeck_proto::refusal::{RUNBOOK_STEP_HEADER, runbook_refusal_of};

type Admin = ServerAdminClient<tonic::transport::Channel>;

fn admin(server: &ServerProc) -> Admin {
    let path = server.info().admin_socket.clone();
    ServerAdminClient::new(trustdeck_transport::connect::watch_channel_uds(path).expect("channel"))
}

fn observe(path: std::path::PathBuf) -> ObserveClient<tonic::transport::Channel> {
    ObserveClient::new(trustdeck_transport::connect::watch_channel_uds(path).expect("channel"))
        .max_decoding_message_size(64 << 20)
}

fn begin_req(target: &str, session: &str) -> BeginRunbookRequest {
    BeginRunbookRequest {
        runbook: "rotate-intermediate".into(),
        target: target.into(),
        inputs: [("downstream".to_string(), target.to_string())].into(),
        runbook_digest: "d".repeat(64),
        session: session.into(),
        steps: 4,
    }
}

fn refusal(r: Result<tonic::Response<RunbookExecution>, tonic::Status>) -> RunbookRefusalDetail {
    let s = r.expect_err("refused");
    runbook_refusal_of(&s).unwrap_or_else(|| panic!("no refusal detail: {s:?}"))
}

async fn audit(c: &mut Admin) -> Vec<AuditRecordInfo> {
    c.list_audit(ListAuditRequest { limit: 200 })
        .await
        .expect("audit")
        .into_inner()
        .records
}

async fn journal_flow(server: &mut ServerProc) {
    let mut c = admin(server);
    let e = c
        .begin_runbook(begin_req("eu-1", "s1"))
        .await
        .expect("begin")
        .into_inner();
    assert_eq!(e.state(), RunbookState::Running);
    assert_eq!((e.step, e.steps, e.session.as_str()), (0, 4, "s1"));
    assert!(!e.started_by.is_empty() && e.started_by == e.held_by);

    // The target is busy: refused with the holding execution, nothing stored.
    let busy = refusal(c.begin_runbook(begin_req("eu-1", "s2")).await);
    assert_eq!(busy.refusal(), RunbookRefusal::TargetBusy);
    assert_eq!(busy.holder, e.id);
    // Another target is free.
    let other = c
        .begin_runbook(begin_req("us-1", "s3"))
        .await
        .expect("another target")
        .into_inner();
    // Hostile sizes are refused.
    let mut huge = begin_req(&"t".repeat(300), "s4");
    huge.inputs.insert("k".into(), "v".into());
    assert_eq!(
        refusal(c.begin_runbook(huge).await).refusal(),
        RunbookRefusal::Invalid
    );

    // Another session may not take it over while s1 is fresh, nor record for it.
    let claim = |session: &str| ClaimRunbookRequest {
        id: e.id.clone(),
        session: session.into(),
    };
    let held = refusal(c.claim_runbook(claim("s2")).await);
    assert_eq!(held.refusal(), RunbookRefusal::HeldElsewhere);
    assert_eq!(held.holder, e.held_by);
    let step = |session: &str, step: u32, state: RunbookState| RecordRunbookRequest {
        id: e.id.clone(),
        session: session.into(),
        step,
        step_id: format!("step-{step}"),
        phase: RunbookPhase::Acting.into(),
        state: state.into(),
        saved: [("prepared".to_string(), "x509-1".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(
        refusal(c.record_runbook(step("s2", 1, RunbookState::Running)).await).refusal(),
        RunbookRefusal::NotHolder
    );
    let unknown = ClaimRunbookRequest {
        id: "nope".into(),
        session: "s2".into(),
    };
    let s = c.claim_runbook(unknown).await.expect_err("unknown");
    assert_eq!(s.code(), tonic::Code::NotFound);
    assert_eq!(
        runbook_refusal_of(&s).map(|d| d.refusal()),
        Some(RunbookRefusal::UnknownExecution)
    );

    let r = c
        .record_runbook(step("s1", 1, RunbookState::Running))
        .await
        .expect("record")
        .into_inner();
    assert_eq!(
        (r.step, r.step_id.as_str(), r.phase()),
        (1, "step-1", RunbookPhase::Acting)
    );
    assert_eq!(r.saved.get("prepared").map(String::as_str), Some("x509-1"));

    // A dropped session loses nothing: the server restarts (kill -9), the journal stays.
    if let Some(mut child) = server.child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    server.spawn();
    let mut c = admin(server);
    let mut watch = observe(server.info().admin_socket.clone())
        .watch(WatchRequest {})
        .await
        .expect("watch")
        .into_inner();
    let listed = c
        .list_runbooks(ListRunbooksRequest::default())
        .await
        .expect("list")
        .into_inner()
        .executions;
    let mut ids: Vec<&str> = listed.iter().map(|x| x.id.as_str()).collect();
    ids.sort();
    let mut want = vec![e.id.as_str(), other.id.as_str()];
    want.sort();
    assert_eq!(ids, want);
    let again = listed.iter().find(|x| x.id == e.id).expect("listed");
    assert_eq!((again.step, again.state()), (1, RunbookState::Running));

    // Finish it; it then takes no more records and frees its target.
    let done = c
        .record_runbook(step("s1", 4, RunbookState::Succeeded))
        .await
        .expect("finish")
        .into_inner();
    assert_eq!(done.state(), RunbookState::Succeeded);
    assert_eq!(
        refusal(c.record_runbook(step("s1", 4, RunbookState::Running)).await).refusal(),
        RunbookRefusal::Finished
    );
    // Any operator session aborts the other one.
    let abort = RecordRunbookRequest {
        id: other.id.clone(),
        session: "someone-else".into(),
        step: 0,
        state: RunbookState::Aborted.into(),
        reason: "operator abort".into(),
        ..Default::default()
    };
    let aborted = c.record_runbook(abort).await.expect("abort").into_inner();
    assert_eq!(aborted.state(), RunbookState::Aborted);
    let open = c
        .list_runbooks(ListRunbooksRequest::default())
        .await
        .expect("list")
        .into_inner()
        .executions;
    assert!(open.is_empty(), "{open:?}");
    let all = c
        .list_runbooks(ListRunbooksRequest {
            include_finished: true,
            id: String::new(),
        })
        .await
        .expect("list all")
        .into_inner()
        .executions;
    assert_eq!(all.len(), 2);
    let one = c
        .list_runbooks(ListRunbooksRequest {
            include_finished: false,
            id: e.id.clone(),
        })
        .await
        .expect("one")
        .into_inner()
        .executions;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].state(), RunbookState::Succeeded);
    c.begin_runbook(begin_req("eu-1", "s5"))
        .await
        .expect("the target is free again");

    // Every call is in the audit log, with the target and the execution.
    let records = audit(&mut c).await;
    let with = |action: &str, outcome_ok: bool| {
        records
            .iter()
            .filter(|r| r.action == action && (r.outcome == "ok") == outcome_ok)
            .count()
    };
    assert_eq!(with("runbook.begin", true), 3, "{records:#?}");
    assert_eq!(
        with("runbook.begin", false),
        2,
        "busy and invalid are recorded"
    );
    assert_eq!(with("runbook.claim", false), 2);
    assert_eq!(with("runbook.step", true), 1);
    assert_eq!(with("runbook.finish", true), 2);
    let fin = records
        .iter()
        .find(|r| r.action == "runbook.finish" && r.target == "eu-1")
        .expect("finish record");
    assert!(
        fin.detail
            .contains(&format!("runbook rotate-intermediate execution {}", e.id)),
        "{fin:?}"
    );

    // The Watch stream told those after the restart as runbook events.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(|t: &String| t.contains("runbook.begin")) {
        let m = tokio::time::timeout_at(deadline, watch.message())
            .await
            .expect("runbook events within 20 s");
        let Ok(Some(m)) = m else { break };
        let events = match m.body {
            Some(Body::Snapshot(s)) => s.events,
            Some(Body::Delta(d)) => d.events,
            None => vec![],
        };
        seen.extend(
            events
                .into_iter()
                .filter(|e| e.kind_wire() == EventKind::Runbook)
                .map(|e| e.message),
        );
    }
    assert!(
        seen.iter()
            .any(|t| t.contains("runbook.finish") && t.contains("eu-1")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|t| t.contains("runbook.begin") && t.contains("eu-1")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn journal_on_sqlite() {
    let mut server = ServerProc::start("");
    journal_flow(&mut server).await;
}

#[tokio::test]
async fn journal_on_postgresql() {
    let Some(pg) = PgDatabase::create("runbooks") else {
        return;
    };
    let mut server = ServerProc::start(&pg.config_line());
    journal_flow(&mut server).await;
}

/// An authority prepare made for a runbook step names the step in its audit record; a
/// malformed header is ignored.
#[tokio::test]
async fn the_step_header_lands_in_the_audit_record() {
    let server = ServerProc::start("");
    let mut c = admin(&server);
    let prepare = |header: &str| {
        let mut r = Request::new(AuthorityRequest {
            kind: AuthorityKind::X509.into(),
            ..Default::default()
        });
        r.metadata_mut()
            .insert(RUNBOOK_STEP_HEADER, header.parse().expect("ascii"));
        r
    };
    let id = c
        .prepare_authority(prepare("e42/rotate-root-ca/prepare"))
        .await
        .expect("prepare")
        .into_inner()
        .authority
        .expect("authority")
        .id;
    // Activate it, with a header that is not three parts: ignored, the call works.
    let mut act = Request::new(AuthorityRequest {
        kind: AuthorityKind::X509.into(),
        id: id.clone(),
        ..Default::default()
    });
    act.metadata_mut()
        .insert(RUNBOOK_STEP_HEADER, "garbage".parse().expect("ascii"));
    c.activate_authority(act).await.expect("activate");
    // A call that fails carries the step too.
    let mut bad = prepare("e42/rotate-root-ca/retry");
    bad.get_mut().kind = AuthorityKind::Unspecified.into();
    c.prepare_authority(bad).await.expect_err("no kind");

    let records = audit(&mut c).await;
    let prep = records
        .iter()
        .find(|r| r.action == "authority.x509.prepare" && r.outcome == "ok")
        .expect("prepare record");
    assert_eq!(prep.target, id);
    assert!(
        prep.detail
            .ends_with("; runbook rotate-root-ca step prepare (execution e42)"),
        "{prep:?}"
    );
    let act = records
        .iter()
        .find(|r| r.action == "authority.x509.activate")
        .expect("activate record");
    assert!(!act.detail.contains("runbook"), "{act:?}");
    let failed = records
        .iter()
        .find(|r| r.action.starts_with("authority.") && r.outcome.starts_with("failed"))
        .expect("failed record");
    assert!(
        failed
            .detail
            .contains("runbook rotate-root-ca step retry (execution e42)"),
        "{failed:?}"
    );
}

/// Reads an agent's published bundle sequence from its admin stream's snapshot.
async fn agent_bundle_sequence(agent: &AgentProc) -> Option<u64> {
    published_sequence(agent.dir.path().join("data").join("admin.sock")).await
}

#[tokio::test]
async fn agents_publish_the_sequence_of_the_bundle_they_hold() {
    let server = ServerProc::start("");
    let token = server.token("10m");
    let agent = AgentProc::start(
        &server,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
        "",
    );
    let mut c = admin(&server);
    let seq = |c: &mut Admin| {
        let mut c = c.clone();
        async move {
            c.get_bundle(GetBundleRequest::default())
                .await
                .expect("bundle")
                .into_inner()
                .sequence
        }
    };
    let before = seq(&mut c).await;
    assert!(before > 0);
    wait_for_async(20, "the agent's bundle sequence", || async {
        (agent_bundle_sequence(&agent).await? == before).then_some(())
    })
    .await;
    c.prepare_authority(AuthorityRequest {
        kind: AuthorityKind::X509.into(),
        ..Default::default()
    })
    .await
    .expect("prepare");
    let after = seq(&mut c).await;
    assert_eq!(after, before + 1);
    wait_for_async(20, "the agent to publish the new sequence", || async {
        (agent_bundle_sequence(&agent).await? == after).then_some(())
    })
    .await;
}

/// A daemon's published bundle sequence, from the snapshot of its admin stream.
async fn published_sequence(admin_socket: std::path::PathBuf) -> Option<u64> {
    let mut s = observe(admin_socket)
        .watch(WatchRequest {})
        .await
        .ok()?
        .into_inner();
    let m = tokio::time::timeout(Duration::from_secs(5), s.message())
        .await
        .ok()?
        .ok()??;
    match m.body? {
        Body::Snapshot(s) => s.upstream.map(|u| u.last_bundle_sequence),
        Body::Delta(_) => None,
    }
}

/// A downstream publishes the sequence of the upstream bundle it holds, and probes its own
/// intermediates (it has no JWT keys).
#[tokio::test]
async fn a_downstream_publishes_its_bundle_sequence_and_probes_its_intermediates() {
    let root = ServerProc::start("");
    let ds = Downstream::start(&root, "eu", "");
    let c = admin(&root);
    let seq = |c: &Admin| {
        let mut c = c.clone();
        async move {
            c.get_bundle(GetBundleRequest::default())
                .await
                .expect("bundle")
                .into_inner()
                .sequence
        }
    };
    let socket = ds.server.info().admin_socket.clone();
    let before = seq(&c).await;
    wait_for_async(20, "the downstream's bundle sequence", || async {
        (published_sequence(socket.clone()).await? == before).then_some(())
    })
    .await;
    c.clone()
        .prepare_authority(AuthorityRequest {
            kind: AuthorityKind::X509.into(),
            ..Default::default()
        })
        .await
        .expect("prepare");
    let after = seq(&c).await;
    assert_eq!(after, before + 1);
    wait_for_async(20, "the downstream to publish the new sequence", || async {
        (published_sequence(socket.clone()).await? == after).then_some(())
    })
    .await;

    let keys = admin(&ds.server)
        .probe_keys(ProbeKeysRequest {})
        .await
        .expect("probe")
        .into_inner()
        .keys;
    assert!(!keys.is_empty());
    for k in &keys {
        assert_eq!(k.kind(), AuthorityKind::X509, "{k:?}");
        assert_eq!(k.probe(), KeyProbe::Ok, "{k:?}");
    }
}

async fn wait_for_async<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
