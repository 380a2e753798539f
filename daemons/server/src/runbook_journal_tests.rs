use super::*;

const OP: &str = "uid:0";

fn begin_req() -> BeginRunbookRequest {
    BeginRunbookRequest {
        runbook: "rotate-root-ca".into(),
        target: "root".into(),
        inputs: [("server".to_string(), "root".to_string())].into(),
        runbook_digest: "ab".repeat(32),
        session: "s1".into(),
        steps: 5,
    }
}

fn begun(now: i64) -> RunbookRecord {
    begin(&begin_req(), OP, "e1".into(), now).expect("begin")
}

fn rec_req(session: &str, step: u32, state: RunbookState) -> RecordRunbookRequest {
    RecordRunbookRequest {
        id: "e1".into(),
        session: session.into(),
        step,
        step_id: format!("s{step}"),
        phase: RunbookPhase::Acting.into(),
        state: state.into(),
        ..Default::default()
    }
}

fn refusal<T: std::fmt::Debug>(r: Result<T, Refused>) -> RunbookRefusal {
    r.expect_err("refused").refusal
}

#[test]
fn begin_starts_running_at_step_zero() {
    let r = begun(100);
    assert_eq!(
        (r.state, r.step, r.started_at, r.updated_at),
        (State::Running, 0, 100, 100)
    );
    assert_eq!((r.started_by.as_str(), r.held_by.as_str()), (OP, OP));
    assert_eq!(r.inputs.get("server").map(String::as_str), Some("root"));
    let e = execution(r);
    assert_eq!(e.state(), RunbookState::Running);
    assert_eq!(e.phase(), RunbookPhase::Checking);
}

/// One change that makes a begin request invalid.
type Spoil = Box<dyn Fn(&mut BeginRunbookRequest)>;

#[test]
fn begin_bounds_every_field() {
    let cases: Vec<Spoil> = vec![
        Box::new(|r| r.runbook.clear()),
        Box::new(|r| r.target.clear()),
        Box::new(|r| r.session.clear()),
        Box::new(|r| r.runbook_digest.clear()),
        Box::new(|r| r.steps = 0),
        Box::new(move |r| r.target = "x".repeat(MAX_FIELD + 1)),
        Box::new(move |r| {
            r.inputs.insert("k".into(), "v".repeat(MAX_FIELD + 1));
        }),
        Box::new(|r| {
            r.inputs.insert(String::new(), "v".into());
        }),
        Box::new(|r| {
            for i in 0..=MAX_VALUES {
                r.inputs.insert(format!("k{i}"), "v".into());
            }
        }),
    ];
    for (i, change) in cases.iter().enumerate() {
        let mut req = begin_req();
        change(&mut req);
        assert_eq!(
            refusal(begin(&req, OP, "e".into(), 1)),
            RunbookRefusal::Invalid,
            "case {i}"
        );
    }
    let mut ok = begin_req();
    ok.target = "x".repeat(MAX_FIELD);
    assert!(
        begin(&ok, OP, "e".into(), 1).is_ok(),
        "exactly the bound is fine"
    );
}

#[test]
fn busy_names_the_holding_execution() {
    let r = busy(&begun(1));
    assert_eq!(r.refusal, RunbookRefusal::TargetBusy);
    assert_eq!(r.holder, "e1");
    assert!(
        r.message.contains(OP) && r.message.contains("rotate-root-ca"),
        "{}",
        r.message
    );
    assert_eq!(unknown("zz").refusal, RunbookRefusal::UnknownExecution);
}

#[test]
fn claim_waits_until_the_holder_is_quiet() {
    let r = begun(100);
    let other = ClaimRunbookRequest {
        id: "e1".into(),
        session: "s2".into(),
    };
    let e = claim(&r, &other, "uid:1000", 100 + HOLD_SECS - 1).expect_err("fresh");
    assert_eq!(
        (e.refusal, e.holder.as_str()),
        (RunbookRefusal::HeldElsewhere, OP)
    );
    let c = claim(&r, &other, "uid:1000", 100 + HOLD_SECS).expect("quiet");
    assert_eq!((c.session.as_str(), c.held_by.as_str()), ("s2", "uid:1000"));
    assert_eq!((c.updated_at, c.started_by.as_str()), (100 + HOLD_SECS, OP));
    // The holding session may claim again at once (a retried call).
    let same = ClaimRunbookRequest {
        id: "e1".into(),
        session: "s1".into(),
    };
    assert!(claim(&r, &same, OP, 101).is_ok());
    let empty = ClaimRunbookRequest::default();
    assert_eq!(
        refusal(claim(&r, &empty, OP, 1000)),
        RunbookRefusal::Invalid
    );
}

#[test]
fn a_stopped_execution_is_claimed_at_once() {
    let r = begun(100);
    let stopped = record(&r, &rec_req("s1", 1, RunbookState::Stopped), OP, 105).expect("stop");
    let other = ClaimRunbookRequest {
        id: "e1".into(),
        session: "s2".into(),
    };
    let c = claim(&stopped, &other, "uid:1000", 106).expect("no one drives a stopped execution");
    assert_eq!((c.session.as_str(), c.held_by.as_str()), ("s2", "uid:1000"));
    // Taken over, it runs again: a third session waits out the hold.
    assert_eq!(c.state, State::Running);
    let third = ClaimRunbookRequest {
        id: "e1".into(),
        session: "s3".into(),
    };
    assert_eq!(
        refusal(claim(&c, &third, OP, 107)),
        RunbookRefusal::HeldElsewhere
    );
}

#[test]
fn a_begin_asked_again_by_its_session_is_the_same_execution() {
    let r = begun(100);
    let again = RunbookRecord {
        id: "e2".into(),
        ..r.clone()
    };
    assert!(same_begin(&r, &again));
    let other = RunbookRecord {
        session: "s9".into(),
        ..again.clone()
    };
    assert!(
        !same_begin(&r, &other),
        "another session's begin is refused"
    );
}

#[test]
fn a_record_that_changes_nothing_is_a_heartbeat() {
    let r = begun(100);
    let same = RecordRunbookRequest {
        id: "e1".into(),
        session: "s1".into(),
        step: r.step,
        step_id: r.step_id.clone(),
        phase: RunbookPhase::Checking.into(),
        state: RunbookState::Running.into(),
        ..Default::default()
    };
    assert!(is_heartbeat(&r, &same));
    let moved = RecordRunbookRequest {
        step: 1,
        ..same.clone()
    };
    assert!(!is_heartbeat(&r, &moved));
    let other = RecordRunbookRequest {
        session: "s2".into(),
        ..same
    };
    assert!(!is_heartbeat(&r, &other));
}

#[test]
fn only_the_holder_records_but_anyone_aborts() {
    let r = begun(100);
    let step = record(&r, &rec_req("s1", 1, RunbookState::Running), OP, 105).expect("step");
    assert_eq!(
        (step.step, step.phase, step.updated_at),
        (1, Phase::Acting, 105)
    );
    let e = record(
        &step,
        &rec_req("s2", 2, RunbookState::Running),
        "uid:7",
        106,
    )
    .expect_err("x");
    assert_eq!(
        (e.refusal, e.holder.as_str()),
        (RunbookRefusal::NotHolder, OP)
    );
    let a = record(
        &step,
        &rec_req("s2", 1, RunbookState::Aborted),
        "uid:7",
        107,
    )
    .expect("abort");
    assert_eq!(a.state, State::Aborted);
    assert_eq!((a.session.as_str(), a.held_by.as_str()), ("s1", OP));
    assert!(!a.state.holds_target());
}

#[test]
fn finished_executions_take_no_more_records() {
    let r = begun(100);
    for fin in [RunbookState::Succeeded, RunbookState::Aborted] {
        let done = record(&r, &rec_req("s1", 5, fin), OP, 101).expect("finish");
        for next in [
            RunbookState::Running,
            RunbookState::Aborted,
            RunbookState::Unspecified,
        ] {
            assert_eq!(
                refusal(record(&done, &rec_req("s1", 5, next), OP, 102)),
                RunbookRefusal::Finished
            );
        }
        let c = ClaimRunbookRequest {
            id: "e1".into(),
            session: "s9".into(),
        };
        assert_eq!(
            refusal(claim(&done, &c, OP, 1000)),
            RunbookRefusal::Finished
        );
    }
}

#[test]
fn stopped_and_running_go_both_ways_and_unspecified_keeps_the_state() {
    let r = begun(100);
    let mut s = rec_req("s1", 2, RunbookState::Stopped);
    s.reason = "verification timed out".into();
    s.rolled_back = true;
    s.saved = [("prepared".to_string(), "k1".to_string())].into();
    let stopped = record(&r, &s, OP, 101).expect("stop");
    assert_eq!((stopped.state, stopped.rolled_back), (State::Stopped, true));
    assert!(stopped.state.holds_target());
    let mut again = rec_req("s1", 2, RunbookState::Unspecified);
    again.phase = RunbookPhase::Unspecified.into();
    again.saved = [("token".to_string(), "t".to_string())].into();
    let same = record(&stopped, &again, OP, 102).expect("unchanged");
    assert_eq!((same.state, same.phase), (State::Stopped, Phase::Acting));
    assert_eq!(same.saved.len(), 2, "saved values merge");
    let running = record(&same, &rec_req("s1", 2, RunbookState::Running), OP, 103).expect("run");
    assert_eq!(running.state, State::Running);
    assert!(audit_detail(&stopped).contains("runbook rotate-root-ca execution e1 step 2 (s2)"));
}

#[test]
fn record_bounds() {
    let r = begun(100);
    let mut past = rec_req("s1", 6, RunbookState::Running);
    assert_eq!(refusal(record(&r, &past, OP, 101)), RunbookRefusal::Invalid);
    past.step = 5;
    assert!(record(&r, &past, OP, 101).is_ok());
    let mut long = rec_req("s1", 1, RunbookState::Running);
    long.reason = "r".repeat(MAX_REASON + 1);
    assert_eq!(refusal(record(&r, &long, OP, 101)), RunbookRefusal::Invalid);
    let mut id = rec_req("s1", 1, RunbookState::Running);
    id.step_id = "s".repeat(MAX_FIELD + 1);
    assert_eq!(refusal(record(&r, &id, OP, 101)), RunbookRefusal::Invalid);
    // 64 saved values at most, counted after the merge.
    let mut a = rec_req("s1", 1, RunbookState::Running);
    a.saved = (0..MAX_VALUES)
        .map(|i| (format!("a{i}"), "v".into()))
        .collect();
    let full = record(&r, &a, OP, 101).expect("64");
    let mut b = rec_req("s1", 1, RunbookState::Running);
    b.saved = [("b".to_string(), "v".to_string())].into();
    assert_eq!(refusal(record(&full, &b, OP, 102)), RunbookRefusal::Invalid);
}

#[test]
fn record_actions() {
    assert_eq!(record_action(&rec_req("s", 1, RunbookState::Running)), STEP);
    assert_eq!(
        record_action(&rec_req("s", 1, RunbookState::Unspecified)),
        STEP
    );
    for s in [
        RunbookState::Succeeded,
        RunbookState::Stopped,
        RunbookState::Aborted,
    ] {
        assert_eq!(record_action(&rec_req("s", 1, s)), FINISH);
    }
}

#[test]
fn vocabularies_map_both_ways() {
    for s in [
        State::Running,
        State::Stopped,
        State::Succeeded,
        State::Aborted,
    ] {
        assert_eq!(state_of(api_state(s)), Some(s));
    }
    for p in [
        Phase::Checking,
        Phase::Confirming,
        Phase::Acting,
        Phase::Verifying,
        Phase::Done,
        Phase::RollingBack,
        Phase::Failed,
    ] {
        assert_eq!(phase_of(api_phase(p)), Some(p));
    }
    assert_eq!(state_of(RunbookState::Unspecified), None);
}

#[test]
fn step_header_is_parsed_or_ignored() {
    assert_eq!(
        step_note(Some("e1/rotate-root-ca/prepare")).as_deref(),
        Some("runbook rotate-root-ca step prepare (execution e1)")
    );
    // The step id may hold a slash; the first two separate the id and the runbook.
    assert_eq!(
        step_note(Some("e1/rb/a/b")).as_deref(),
        Some("runbook rb step a/b (execution e1)")
    );
    for bad in [
        None,
        Some(""),
        Some("e1/rb"),
        Some("e1//step"),
        Some("/rb/step"),
        Some("e1/rb/ "),
        Some("e1/rb/st\u{e9}p"),
        Some("e1/rb/a\nb"),
    ] {
        assert_eq!(step_note(bad), None, "{bad:?}");
    }
    let long = format!("e1/rb/{}", "s".repeat(MAX_STEP_HEADER));
    assert_eq!(step_note(Some(&long)), None);
}

#[test]
fn a_copied_session_id_does_not_make_another_operator_the_holder() {
    let r = begun(100);
    let e = record(&r, &rec_req("s1", 1, RunbookState::Running), "uid:7", 101)
        .expect_err("another caller in the holder's session");
    assert_eq!(e.refusal, RunbookRefusal::NotHolder);
    assert!(
        execution(r).session.is_empty(),
        "answers never show the session"
    );
}

#[test]
fn only_an_execution_past_its_last_step_succeeds() {
    let r = begun(100);
    let e = record(&r, &rec_req("s1", 0, RunbookState::Succeeded), OP, 101).expect_err("early");
    assert_eq!(e.refusal, RunbookRefusal::Invalid);
    let done = record(
        &r,
        &rec_req("s1", r.steps, RunbookState::Succeeded),
        OP,
        102,
    );
    assert_eq!(done.expect("last").state, State::Succeeded);
}
