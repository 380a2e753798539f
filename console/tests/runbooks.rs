//! The runbook views and flows: the list (all, and those offered on a node), operator mode
//! and its confirmation, read-only refusing to run, a step's typed confirmation (wrong, then
//! right), a declined step, the pane mid-verification with its progress bar and countdown,
//! the outcome, and the journal's in-progress banner. Snapshots in Unicode and ASCII.

mod fixture;

use std::collections::BTreeMap;

use fixture::*;
use trustdeck_console::app::runbooks::Pending;
use trustdeck_console::app::{RunbookEffect, RunbookMsg};
use trustdeck_console::text::glyphs::Charset;
use trustdeck_proto::admin::{
    AuthorityInfo, AuthorityKind, AuthorityStatus, KeyProbe, KeyProbeResult, RunbookExecution,
    RunbookPhase, RunbookState,
};

const W: u16 = 120;
const H: u16 = 40;

/// Snapshots `app` in Unicode and in ASCII (every cell ASCII).
fn both(name: &str, app: &mut App) {
    app.charset = Charset::Unicode;
    snap!(&format!("{name}_unicode"), app, W, H);
    app.charset = Charset::Ascii;
    let t = screen(name, app, W, H);
    assert!(t.is_ascii(), "{name}: ASCII run drew non-ASCII:\n{t}");
    snap!(&format!("{name}_ascii"), app, W, H);
    app.charset = Charset::Unicode;
}

fn enter(app: &mut App) -> Vec<Effect> {
    update(app, key(KeyCode::Enter), now())
}

fn command(app: &mut App, c: &str) -> Vec<Effect> {
    typed(app, &format!(":{c}"));
    enter(app)
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

/// `R` on `label`, the cursor on `name`.
fn offer(app: &mut App, label: &str, name: &str) {
    select(app, label);
    update(app, ch('R'), now());
    assert_eq!(app.mode, Mode::Runbooks);
    let pos = app
        .runbooks
        .shown
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("{name} not offered: {:?}", app.runbooks.shown));
    for _ in 0..pos {
        update(app, key(KeyCode::Down), now());
    }
}

fn operator(w: u16, h: u16) -> App {
    let mut app = base(w, h);
    app.read_only = false;
    app
}

fn probes_ok() -> BTreeMap<String, Vec<KeyProbeResult>> {
    BTreeMap::from([(
        "gcp".to_string(),
        vec![KeyProbeResult {
            kind: AuthorityKind::X509 as i32,
            id: "41".into(),
            probe: KeyProbe::Ok as i32,
            ..Default::default()
        }],
    )])
}

fn authority(id: &str, status: AuthorityStatus) -> BTreeMap<String, Vec<AuthorityInfo>> {
    BTreeMap::from([(
        "gcp".to_string(),
        vec![AuthorityInfo {
            kind: AuthorityKind::X509 as i32,
            id: id.into(),
            status: status as i32,
            ..Default::default()
        }],
    )])
}

fn observed(
    app: &mut App,
    auth: BTreeMap<String, Vec<AuthorityInfo>>,
    off: i64,
) -> Vec<RunbookEffect> {
    answer(
        app,
        RunbookMsg::Observed {
            reads: trustdeck_runbook::ServerReads {
                authorities: auth,
                ..Default::default()
            },
            probes: probes_ok(),
        },
        off,
    )
}

/// rotate-intermediate on gcp begun in operator mode, up to the confirmation of `prepare`.
fn at_prepare() -> App {
    let mut app = operator(W, H);
    offer(&mut app, "gcp", "rotate-intermediate");
    let fx = runbook_fx(&enter(&mut app));
    let Some(RunbookEffect::Begin(req)) = fx.first() else {
        panic!("no begin: {fx:?}");
    };
    assert_eq!(
        (req.runbook.as_str(), req.target.as_str()),
        ("rotate-intermediate", "trust-domain")
    );
    let fx = answer(
        &mut app,
        RunbookMsg::Begun(Ok(RunbookExecution {
            id: "e-1".into(),
            ..Default::default()
        })),
        0,
    );
    assert!(
        fx.contains(&RunbookEffect::Observe {
            probes: vec!["gcp".into()]
        }),
        "{fx:?}"
    );
    observed(&mut app, BTreeMap::new(), 0);
    assert_eq!(app.mode, Mode::Confirm);
    assert!(matches!(&app.runbooks.confirm, Some(Pending::Step(c)) if c.id == "prepare"));
    app
}

#[test]
fn the_list_of_every_runbook() {
    let mut app = base(W, H);
    command(&mut app, "runbooks");
    assert_eq!(app.mode, Mode::Runbooks);
    assert!(app.runbooks.shown.len() >= 7, "{:?}", app.runbooks.shown);
    both("list", &mut app);
}

#[test]
fn a_node_is_offered_the_runbooks_that_apply() {
    let mut app = base(W, H);
    offer(&mut app, "gcp", "rotate-intermediate");
    assert!(!app.runbooks.shown.contains(&"rotate-root-ca".to_string()));
    assert!(
        app.runbooks
            .shown
            .contains(&"recover-downstream".to_string())
    );
    update(&mut app, key(KeyCode::Esc), now());
    offer(&mut app, "root CA 2026", "rotate-root-ca");
    assert!(app.runbooks.shown.contains(&"taint-authority".to_string()));
    assert!(
        !app.runbooks
            .shown
            .contains(&"rotate-intermediate".to_string())
    );
}

#[test]
fn read_only_shows_the_plan_and_never_runs() {
    let mut app = base(W, H);
    offer(&mut app, "gcp", "rotate-intermediate");
    let fx = enter(&mut app);
    assert!(
        runbook_fx(&fx).is_empty(),
        "read-only asked for I/O: {fx:?}"
    );
    assert_eq!(app.mode, Mode::Runbook);
    let run = app.runbooks.run.as_ref().expect("pane");
    assert!(run.plan_only);
    both("plan_read_only", &mut app);
    // A tick does not advance a plan.
    let fx = update(&mut app, Msg::Tick, at(5));
    assert!(
        runbook_fx(&fx).iter().all(|e| *e == RunbookEffect::List),
        "{fx:?}"
    );
}

#[test]
fn operator_mode_asks_and_a_wrong_answer_changes_nothing() {
    let mut app = base(W, H);
    assert!(app.read_only);
    command(&mut app, "operator");
    assert_eq!(app.mode, Mode::Confirm);
    typed(&mut app, "no");
    enter(&mut app);
    assert!(app.read_only);
    assert_eq!(app.mode, Mode::Confirm);
    assert!(
        app.runbooks
            .mismatch
            .as_deref()
            .unwrap_or("")
            .contains("nothing done")
    );
    typed(&mut app, "yes");
    enter(&mut app);
    assert!(!app.read_only);
    assert_eq!(app.mode, Mode::Normal);
    let t = text(&draw(&app, W, H, false));
    assert!(t.contains(" OPERATOR "), "{t}");
    command(&mut app, "operator");
    assert!(
        app.read_only,
        ":operator again goes back to read-only at once"
    );
}

#[test]
fn typed_confirmation_wrong_then_right() {
    let mut app = at_prepare();
    typed(&mut app, "yes");
    let fx = runbook_fx(&enter(&mut app));
    let Some(RunbookEffect::Perform {
        call,
        execution,
        step,
        rollback,
        journal,
        ..
    }) = fx.first()
    else {
        panic!("no call: {fx:?}");
    };
    assert_eq!(
        (execution.as_str(), step.as_str(), *rollback),
        ("e-1", "prepare", false)
    );
    // The call carries where the execution stands (acting on prepare), recorded before the
    // call is made; no record goes out beside it.
    assert_eq!(
        (
            journal.id.as_str(),
            journal.step_id.as_str(),
            journal.phase()
        ),
        ("e-1", "prepare", RunbookPhase::Acting)
    );
    assert!(
        !fx.iter().any(|e| matches!(e, RunbookEffect::Record(_))),
        "{fx:?}"
    );
    assert!(format!("{call:?}").contains("Prepare"), "{call:?}");
    let saved = BTreeMap::from([("new_ca".to_string(), "42".to_string())]);
    answer(
        &mut app,
        RunbookMsg::Performed {
            rollback: false,
            retry: false,
            result: Ok(saved),
        },
        1,
    );
    observed(&mut app, authority("42", AuthorityStatus::Prepared), 2);
    // activate: type the target's name.
    assert!(matches!(&app.runbooks.confirm, Some(Pending::Step(c)) if c.id == "activate"));
    typed(&mut app, "dmz");
    both("confirm_typed", &mut app);
    let fx = runbook_fx(&enter(&mut app));
    assert!(
        fx.iter()
            .all(|e| !matches!(e, RunbookEffect::Perform { .. })),
        "{fx:?}"
    );
    assert_eq!(app.mode, Mode::Confirm);
    both("confirm_mismatch", &mut app);
    typed(&mut app, "gcp");
    let fx = runbook_fx(&enter(&mut app));
    assert!(
        matches!(fx.first(), Some(RunbookEffect::Perform { step, .. }) if step == "activate"),
        "{fx:?}"
    );
    answer(
        &mut app,
        RunbookMsg::Performed {
            rollback: false,
            retry: false,
            result: Ok(BTreeMap::new()),
        },
        3,
    );
    observed(&mut app, authority("42", AuthorityStatus::Active), 4);
    // move: confirmed, performed, then verifying with a progress bar and a countdown.
    typed(&mut app, "gcp");
    enter(&mut app);
    answer(
        &mut app,
        RunbookMsg::Performed {
            rollback: false,
            retry: false,
            result: Ok(BTreeMap::new()),
        },
        5,
    );
    observed(&mut app, authority("42", AuthorityStatus::Active), 6);
    let run = app.runbooks.run.as_ref().expect("run");
    assert_eq!(run.exec.current().map(|s| s.id.as_str()), Some("move"));
    assert!(
        run.exec.last.iter().any(|r| r.progress.is_some()),
        "{:?}",
        run.exec.last
    );
    update(&mut app, key(KeyCode::Esc), now());
    command(&mut app, "runbook");
    assert_eq!(app.mode, Mode::Runbook);
    both("pane_verifying", &mut app);
}

#[test]
fn a_declined_step_stops_the_run_and_says_what_now() {
    let mut app = at_prepare();
    let fx = runbook_fx(&update(&mut app, key(KeyCode::Esc), now()));
    let run = app.runbooks.run.as_ref().expect("run");
    assert!(run.exec.outcome.is_some(), "declined: stopped");
    let rec = fx
        .iter()
        .find_map(|e| match e {
            RunbookEffect::Record(r) => Some(r.clone()),
            _ => None,
        })
        .expect("journaled");
    assert_eq!(rec.state, RunbookState::Stopped as i32);
    assert_eq!(rec.step_id, "prepare");
    assert!(
        fx.iter()
            .all(|e| !matches!(e, RunbookEffect::Perform { .. }))
    );
    assert_eq!(app.mode, Mode::Runbook);
    both("outcome_declined", &mut app);
}

#[test]
fn the_journal_shows_a_runbook_in_progress_with_resume_and_abort() {
    let mut app = base(W, H);
    let fx = runbook_fx(&update(&mut app, Msg::Tick, now()));
    assert!(fx.contains(&RunbookEffect::List), "{fx:?}");
    let e = RunbookExecution {
        id: "e-9".into(),
        runbook: "rotate-intermediate".into(),
        target: "gcp".into(),
        started_by: "spiffe://demo.trustdeck/ops/alice".into(),
        state: RunbookState::Stopped as i32,
        step: 2,
        step_id: "activate".into(),
        steps: 6,
        ..Default::default()
    };
    answer(&mut app, RunbookMsg::Listed(Ok(vec![e])), 0);
    both("banner", &mut app);
    // Read-only: abort is refused, nothing asked.
    command(&mut app, "abort");
    assert_eq!(app.mode, Mode::Normal);
    app.read_only = false;
    command(&mut app, "abort");
    assert!(matches!(app.runbooks.confirm, Some(Pending::Abort { .. })));
    typed(&mut app, "gcp");
    let fx = runbook_fx(&enter(&mut app));
    assert!(fx.is_empty(), "a mismatch aborts nothing: {fx:?}");
    typed(&mut app, "rotate-intermediate");
    let fx = runbook_fx(&enter(&mut app));
    assert!(
        matches!(fx.first(), Some(RunbookEffect::Record(r)) if r.id == "e-9" && r.state == RunbookState::Aborted as i32),
        "{fx:?}"
    );
}

#[test]
fn resume_never_replaces_a_run_under_way_in_this_console() {
    let mut app = at_prepare();
    typed(&mut app, "yes");
    let fx = runbook_fx(&enter(&mut app));
    assert!(
        matches!(fx.first(), Some(RunbookEffect::Perform { .. })),
        "{fx:?}"
    );
    let other = RunbookExecution {
        id: "e-2".into(),
        runbook: "rotate-root-ca".into(),
        target: "trust-domain".into(),
        state: RunbookState::Stopped as i32,
        steps: 7,
        ..Default::default()
    };
    answer(&mut app, RunbookMsg::Listed(Ok(vec![other])), 1);
    // Back to the tree (the pane's run goes on), then :resume.
    update(&mut app, key(KeyCode::Esc), now());
    assert_eq!(app.mode, Mode::Normal);
    let fx = runbook_fx(&command(&mut app, "resume"));
    assert!(
        !fx.iter().any(|e| matches!(e, RunbookEffect::Claim(_))),
        "{fx:?}"
    );
    let said = app
        .status
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default();
    assert!(said.contains("before :resume"), "{said}");
    let run = app.runbooks.run.as_ref().expect("the run is still there");
    assert_eq!(run.id.as_deref(), Some("e-1"));
    assert_eq!(run.exec.runbook.name, "rotate-intermediate");
}
