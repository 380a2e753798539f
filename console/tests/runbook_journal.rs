//! The runbook pane and the journal, as a live fleet answers: a run that succeeds is recorded
//! past its last step (the journal takes "succeeded" only there), and `:resume` of an
//! execution another session held recently waits for the hold to lapse, then takes it over,
//! or gives up and says so.

mod fixture;

use std::collections::HashMap;
use std::sync::Arc;

use fixture::*;
use trustdeck_console::app::runbooks::{
    CLAIM_EVERY_SECS, CLAIM_WAIT_SECS, HEARTBEAT_SECS, OBSERVE_EVERY_SECS, Runbooks,
};
use trustdeck_console::app::{RunbookEffect, RunbookMsg};
use trustdeck_proto::admin::{RunbookExecution, RunbookPhase, RunbookState};

/// A runbook of one step that changes nothing and checks nothing.
const NOOP: &str = r#"
name = "noop"
title = "Nothing"
summary = "Looks, changes nothing."
applies_to = ["downstream"]
target = "server"
[[inputs]]
name = "server"
kind = "downstream_server"
help = "h"
default_from = "selected"
[[steps]]
id = "look"
title = "Look"
why = "w"
timeout = "10s"
action = { call = "none" }
plan = "nothing changes"
"#;

fn operator() -> App {
    let mut app = base(120, 40);
    app.read_only = false;
    app
}

fn runbook_fx(fx: &[Effect]) -> Vec<RunbookEffect> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Runbook(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn answer(app: &mut App, m: RunbookMsg, off: i64) -> Vec<RunbookEffect> {
    runbook_fx(&update(app, Msg::Runbook(m), at(off)))
}

fn tick(app: &mut App, off: i64) -> Vec<RunbookEffect> {
    runbook_fx(&update(app, Msg::Tick, at(off)))
}

fn claims(fx: &[RunbookEffect]) -> usize {
    fx.iter()
        .filter(|e| matches!(e, RunbookEffect::Claim(id) if id == "e-7"))
        .count()
}

fn log(app: &App) -> Vec<String> {
    let run = app.runbooks.run.as_ref().expect("a run in the pane");
    run.log.iter().map(|(_, t)| t.clone()).collect()
}

#[test]
fn a_run_that_succeeds_is_journaled_past_its_last_step() {
    let mut app = operator();
    offer_extra(&mut app, "noop", NOOP);
    let fx = runbook_fx(&update(&mut app, key(KeyCode::Enter), now()));
    assert!(
        matches!(fx.first(), Some(RunbookEffect::Begin(r)) if r.runbook == "noop"),
        "{fx:?}"
    );
    let begun = RunbookExecution {
        id: "e-2".into(),
        ..Default::default()
    };
    answer(&mut app, RunbookMsg::Begun(Ok(begun)), 0);
    let fx = answer(
        &mut app,
        RunbookMsg::Observed {
            reads: Default::default(),
            probes: Default::default(),
        },
        1,
    );
    let rec = fx
        .iter()
        .find_map(|e| match e {
            RunbookEffect::Record(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("journaled: {fx:?}"));
    assert_eq!(rec.state, RunbookState::Succeeded as i32, "{rec:?}");
    assert_eq!((rec.step, rec.step_id.as_str()), (1, ""), "{rec:?}");
}

/// A manual step, then one that makes an admin call.
const MANUAL_THEN_CALL: &str = r#"
name = "bring-back"
title = "Bring back"
summary = "A manual step, then a call."
applies_to = ["downstream"]
target = "server"
[[inputs]]
name = "server"
kind = "downstream_server"
help = "h"
default_from = "selected"
[[steps]]
id = "start"
title = "Start it"
why = "w"
risk = "medium"
confirm = "yes"
timeout = "1m"
action = { call = "manual", instruction = "start ${server}" }
plan = "nothing changes here"
[[steps]]
id = "prepare"
title = "Prepare"
why = "w"
risk = "high"
confirm = "yes"
timeout = "1m"
action = { call = "prepare", server = "${server}", kind = "x509", save = "new" }
plan = "prepares on ${server}"
"#;

/// Adds runbook `name` (TOML `text`) to the shipped ones and moves the cursor onto it in the
/// list `R` offers on gcp.
fn offer_extra(app: &mut App, name: &str, text: &str) {
    let mut set = trustdeck_runbook::shipped().expect("shipped runbooks");
    let file = format!("{name}.toml");
    let rb = trustdeck_runbook::load::parse(&format!("t/{file}"), &file, text).expect("rb");
    set.runbooks.insert(rb.name.clone(), Arc::new(rb));
    app.runbooks = Runbooks::with(set);
    select(app, "gcp");
    update(app, ch('R'), now());
    let pos = app.runbooks.shown.iter().position(|n| n == name);
    for _ in 0..pos.expect("offered on gcp") {
        update(app, key(KeyCode::Down), now());
    }
}

fn observed(app: &mut App, off: i64) -> Vec<RunbookEffect> {
    answer(
        app,
        RunbookMsg::Observed {
            reads: Default::default(),
            probes: Default::default(),
        },
        off,
    )
}

#[test]
fn a_run_whose_journal_is_down_makes_no_call_before_it_is_journaled() {
    let mut app = operator();
    offer_extra(&mut app, "bring-back", MANUAL_THEN_CALL);
    let fx = runbook_fx(&update(&mut app, key(KeyCode::Enter), now()));
    assert!(
        matches!(fx.first(), Some(RunbookEffect::Begin(_))),
        "{fx:?}"
    );
    // The journal's server is down: the manual step goes ahead.
    let fx = answer(
        &mut app,
        RunbookMsg::JournalDown("connection refused".into()),
        0,
    );
    assert!(
        fx.iter()
            .any(|e| matches!(e, RunbookEffect::Observe { .. })),
        "{fx:?}"
    );
    assert!(
        log(&app)
            .iter()
            .any(|l| l.contains("as soon as the server answers"))
    );
    observed(&mut app, 1);
    assert_eq!(app.mode, Mode::Confirm, "{:?}", log(&app));
    typed(&mut app, "yes");
    let fx = runbook_fx(&update(&mut app, key(KeyCode::Enter), at(1)));
    assert!(
        !fx.iter()
            .any(|e| matches!(e, RunbookEffect::Perform { .. })),
        "{fx:?}"
    );
    observed(&mut app, 2);
    // prepare makes an admin call: confirmed, but not made while the journal is down.
    assert_eq!(app.mode, Mode::Confirm, "{:?}", log(&app));
    typed(&mut app, "yes");
    let fx = runbook_fx(&update(&mut app, key(KeyCode::Enter), at(2)));
    assert!(
        !fx.iter()
            .any(|e| matches!(e, RunbookEffect::Perform { .. })),
        "{fx:?}"
    );
    assert!(
        log(&app).iter().any(|l| l.contains("does not answer yet")),
        "{:?}",
        log(&app)
    );
    // The next observation asks the journal again; it answers.
    let fx = tick(&mut app, 2 + OBSERVE_EVERY_SECS);
    assert!(
        fx.iter().any(|e| matches!(e, RunbookEffect::Begin(_))),
        "{fx:?}"
    );
    let fx = answer(
        &mut app,
        RunbookMsg::Begun(Ok(RunbookExecution {
            id: "e-5".into(),
            ..Default::default()
        })),
        5,
    );
    let rec = fx
        .iter()
        .find_map(|e| match e {
            RunbookEffect::Record(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("journaled where it stands: {fx:?}"));
    assert_eq!((rec.id.as_str(), rec.step_id.as_str()), ("e-5", "prepare"));
    // Then the call, carrying its journal record.
    let fx = observed(&mut app, 8);
    assert!(
        fx.iter()
            .any(|e| matches!(e, RunbookEffect::Perform { journal, .. } if journal.id == "e-5")),
        "{fx:?}"
    );
}

/// `bring-back` begun as execution `id`, waiting at the confirmation of its manual step.
fn at_manual_step(id: &str) -> App {
    let mut app = operator();
    offer_extra(&mut app, "bring-back", MANUAL_THEN_CALL);
    update(&mut app, key(KeyCode::Enter), now());
    answer(
        &mut app,
        RunbookMsg::Begun(Ok(RunbookExecution {
            id: id.into(),
            ..Default::default()
        })),
        0,
    );
    observed(&mut app, 1);
    assert_eq!(app.mode, Mode::Confirm, "waiting at the manual step");
    app
}

#[test]
fn a_run_waiting_for_its_operator_keeps_its_hold() {
    let mut app = at_manual_step("e-6");
    let records = |fx: &[RunbookEffect]| {
        fx.iter()
            .filter(|e| matches!(e, RunbookEffect::Record(r) if r.id == "e-6"))
            .count()
    };
    // The operator reads the instruction for a while: the journal hears from the run.
    assert_eq!(records(&tick(&mut app, 5)), 0);
    assert_eq!(records(&tick(&mut app, 1 + HEARTBEAT_SECS)), 1);
    assert_eq!(records(&tick(&mut app, 2 + HEARTBEAT_SECS)), 0);
    assert_eq!(records(&tick(&mut app, 1 + 2 * HEARTBEAT_SECS)), 1);
}

#[test]
fn a_run_taken_over_by_another_session_stops_here() {
    let mut app = at_manual_step("e-8");
    let fx = answer(
        &mut app,
        RunbookMsg::TakenOver {
            id: "e-8".into(),
            why: "held by uid:1000".into(),
        },
        2,
    );
    assert!(fx.contains(&RunbookEffect::List), "{fx:?}");
    let run = app
        .runbooks
        .run
        .as_ref()
        .expect("the run stays in the pane");
    assert!(run.plan_only, "no longer driven");
    assert_ne!(app.mode, Mode::Confirm, "its question is withdrawn");
    assert!(
        log(&app).iter().any(|l| l.contains("stops driving it")),
        "{:?}",
        log(&app)
    );
    // Nothing more leaves for it: no call, no record.
    let fx = tick(&mut app, 2 + HEARTBEAT_SECS);
    assert!(
        !fx.iter()
            .any(|e| matches!(e, RunbookEffect::Record(_) | RunbookEffect::Perform { .. })),
        "{fx:?}"
    );
}

/// rotate-intermediate on gcp, waiting at the confirmation of activate, last recorded by
/// another session.
fn held_elsewhere(app: &App) -> RunbookExecution {
    let rb = app
        .runbooks
        .set
        .as_ref()
        .and_then(|s| s.get("rotate-intermediate"))
        .expect("rotate-intermediate");
    let inputs: HashMap<String, String> = [
        ("server", "gcp"),
        ("server_upstream", "upstream"),
        ("server_active_x509", "41"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    RunbookExecution {
        id: "e-7".into(),
        runbook: rb.name.clone(),
        runbook_digest: rb.digest.clone(),
        target: "trust-domain".into(),
        started_by: "uid:1000".into(),
        held_by: "uid:1000".into(),
        state: RunbookState::Running as i32,
        phase: RunbookPhase::Confirming as i32,
        step: 2,
        step_id: "activate".into(),
        steps: 6,
        inputs,
        saved: HashMap::from([("new_ca".to_string(), "42".to_string())]),
        ..Default::default()
    }
}

/// `:resume` of [`held_elsewhere`], refused once: the claim is asked again later.
fn resumed_and_held() -> App {
    let mut app = operator();
    let e = held_elsewhere(&app);
    answer(&mut app, RunbookMsg::Listed(Ok(vec![e])), 0);
    typed(&mut app, ":resume");
    let fx = runbook_fx(&update(&mut app, key(KeyCode::Enter), at(0)));
    assert_eq!(claims(&fx), 1, "{fx:?}");
    let held = RunbookMsg::Held {
        id: "e-7".into(),
        why: "upstream: claim runbook: held by uid:1000 (another session recorded 3s ago)".into(),
    };
    let fx = answer(&mut app, held, 0);
    assert_eq!(claims(&fx), 0, "not at once: {fx:?}");
    let said = log(&app);
    assert!(
        said.iter()
            .any(|l| l.contains("waiting for it to let go") && l.contains("uid:1000")),
        "{said:?}"
    );
    app
}

#[test]
fn resume_waits_while_another_session_holds_the_execution_then_takes_it_over() {
    let mut app = resumed_and_held();
    assert_eq!(claims(&tick(&mut app, CLAIM_EVERY_SECS - 1)), 0);
    assert_eq!(claims(&tick(&mut app, CLAIM_EVERY_SECS)), 1);
    // Still held: asked again later, said only once.
    let again = RunbookMsg::Held {
        id: "e-7".into(),
        why: "held by uid:1000".into(),
    };
    answer(&mut app, again, CLAIM_EVERY_SECS);
    let waiting = log(&app)
        .iter()
        .filter(|l| l.contains("waiting for it to let go"))
        .count();
    assert_eq!(waiting, 1);
    assert_eq!(claims(&tick(&mut app, 2 * CLAIM_EVERY_SECS)), 1);
    let mut e = held_elsewhere(&app);
    e.held_by = "uid:0".into();
    let fx = answer(&mut app, RunbookMsg::Claimed(Ok(e)), 2 * CLAIM_EVERY_SECS);
    assert!(
        fx.iter()
            .any(|e| matches!(e, RunbookEffect::Observe { .. })),
        "{fx:?}"
    );
    let run = app.runbooks.run.as_ref().expect("run");
    assert_eq!(run.id.as_deref(), Some("e-7"));
    assert!(run.claiming.is_none() && !run.plan_only);
    assert_eq!(claims(&tick(&mut app, 3 * CLAIM_EVERY_SECS)), 0);
}

#[test]
fn resume_gives_up_when_the_other_session_keeps_holding_it() {
    let mut app = resumed_and_held();
    let mut off = 0;
    while off + CLAIM_EVERY_SECS < CLAIM_WAIT_SECS {
        off += CLAIM_EVERY_SECS;
        assert_eq!(claims(&tick(&mut app, off)), 1, "at {off} s");
        let held = RunbookMsg::Held {
            id: "e-7".into(),
            why: "held by uid:1000".into(),
        };
        answer(&mut app, held, off);
    }
    // The next time it is due, past the wait: no more claims.
    off += CLAIM_EVERY_SECS;
    assert!(off >= CLAIM_WAIT_SECS);
    assert_eq!(claims(&tick(&mut app, off)), 0);
    let run = app.runbooks.run.as_ref().expect("run");
    assert!(run.plan_only && run.id.is_none() && run.claiming.is_none());
    let said = log(&app);
    assert!(
        said.last().is_some_and(
            |l| l.contains("still held by another session") && l.contains("nothing was done")
        ),
        "{said:?}"
    );
    assert_eq!(claims(&tick(&mut app, off + 10)), 0);
}
