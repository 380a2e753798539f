//! Driving the pane's execution from `update`: each answer ([`RunbookMsg`]) or tick advances
//! it with an [`Observation`] of the model's fleet and the last authorities and probes, at the
//! `now` `update` was given; what it asks for leaves as [`RunbookEffect`]s, and what happened
//! is recorded in the journal.

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{RecordRunbookRequest, RunbookPhase, RunbookState};
use trustdeck_runbook::exec::{Execution, Next, Outcome, Phase, StepEvent};
use trustdeck_runbook::{Observation, Vars};
use trustdeck_topology::fleet::Level;

use super::model::App;
use super::msg::{Effect, RunbookEffect, RunbookMsg};
use super::runbooks::{
    CLAIM_EVERY_SECS, CLAIM_WAIT_SECS, Claiming, HEARTBEAT_SECS, LIST_EVERY_SECS,
    OBSERVE_EVERY_SECS, Pending, Run,
};
use super::screen::Mode;

/// Most transitions in one drive (each step needs a few).
const MAX_TRANSITIONS: usize = 64;

/// A step event in words, with its level.
pub fn event_line(e: &StepEvent) -> (Level, String) {
    let level = match e {
        StepEvent::Checked { results, .. } if results.iter().any(|r| !r.ok) => Level::Warning,
        StepEvent::Retrying { .. } | StepEvent::RolledBack { ok: true, .. } => Level::Warning,
        StepEvent::RolledBack { ok: false, .. }
        | StepEvent::Finished {
            outcome: Outcome::Stopped { .. },
        } => Level::Critical,
        _ => Level::Ok,
    };
    (level, e.summary())
}

impl App {
    /// A runbook answer.
    pub(super) fn runbook_msg(&mut self, m: RunbookMsg, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        match m {
            RunbookMsg::Listed(Ok(list)) => {
                self.runbooks.journal = list;
            }
            RunbookMsg::Listed(Err(e)) => tracing::debug!(error = %e, "runbook journal not listed"),
            RunbookMsg::Begun(r) | RunbookMsg::Claimed(r) => {
                let Some(run) = &mut self.runbooks.run else {
                    return;
                };
                run.busy = false;
                run.begin_in_flight = false;
                run.claiming = None;
                match r {
                    Ok(e) => {
                        run.id = Some(e.id.clone());
                        run.recorded_at = Some(now);
                        run.log
                            .push((Level::Ok, format!("journal: execution {}", e.id)));
                        // Begun late (its server was down): where it stands already.
                        let late = run.begin.take().is_some() && run.observed_at.is_some();
                        if let Some(req) = journal_request(run).filter(|_| late) {
                            run.recorded_at = Some(now);
                            fx.push(Effect::Runbook(RunbookEffect::Record(req)));
                        }
                        self.observe(now, fx);
                    }
                    Err(e) => {
                        run.plan_only = true;
                        run.begin = None;
                        run.log.push((
                            Level::Critical,
                            format!(
                                "the journal refused: {e}; nothing was changed through the \
                                 admin API"
                            ),
                        ));
                    }
                }
            }
            RunbookMsg::Held { id, why } => self.held(id, why, now),
            RunbookMsg::TakenOver { id, why } => {
                let Some(run) = self
                    .runbooks
                    .run
                    .as_mut()
                    .filter(|r| r.id.as_deref() == Some(id.as_str()))
                else {
                    // Not the pane's run (an abort of one that had finished): say so.
                    self.flash(Level::Critical, format!("journal: {why}"));
                    return;
                };
                run.busy = false;
                run.plan_only = true;
                run.log.push((
                    Level::Critical,
                    format!(
                        "{why}: another session holds this execution now, or it was aborted; \
                         this console stops driving it (nothing more is done here)"
                    ),
                ));
                if matches!(self.runbooks.confirm, Some(Pending::Step(_))) {
                    self.close_confirm();
                }
                self.flash(Level::Critical, format!("runbook {id}: taken over"));
                fx.push(Effect::Runbook(RunbookEffect::List));
            }
            RunbookMsg::JournalDown(why) => {
                let Some(run) = &mut self.runbooks.run else {
                    return;
                };
                run.busy = false;
                run.begin_in_flight = false;
                if run.observed_at.is_none() {
                    run.log.push((
                        Level::Warning,
                        format!(
                            "journal: {why}; steps without an admin call go ahead, and it is \
                             journaled as soon as the server answers (no admin call before)"
                        ),
                    ));
                }
                self.observe(now, fx);
            }
            RunbookMsg::Recorded(r) => match r {
                Ok(e) if e.state_wire() == RunbookState::Aborted => {
                    self.runbooks.journal.retain(|x| x.id != e.id);
                    self.flash(
                        Level::Ok,
                        format!("{} aborted: its target is free", e.runbook),
                    );
                    fx.push(Effect::Runbook(RunbookEffect::List));
                }
                Ok(_) => {}
                Err(e) => self.flash(Level::Critical, format!("journal: {e}")),
            },
            RunbookMsg::Observed { reads, probes } => {
                self.runbooks.reads = reads;
                self.runbooks.probes = probes;
                if let Some(run) = &mut self.runbooks.run {
                    run.busy = false;
                    run.observed_at = Some(now);
                }
                self.drive(now, fx);
            }
            RunbookMsg::Performed {
                rollback,
                result,
                retry,
            } => {
                let Some(run) = &mut self.runbooks.run else {
                    return;
                };
                run.busy = false;
                match (rollback, result) {
                    (true, r) => run.exec.rolled_back(r.map(|_| ())),
                    (false, Err(why)) if retry => run.exec.retry_later(now, why),
                    (false, r) => run.exec.acted(now, r),
                }
                self.observe(now, fx);
            }
        }
    }

    /// Each tick: the journal now and then; an observation while an execution waits.
    pub(super) fn runbook_tick(&mut self, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let rb = &mut self.runbooks;
        if rb.set.is_some()
            && rb
                .listed_at
                .is_none_or(|t| (now - t).num_seconds() >= LIST_EVERY_SECS)
        {
            rb.listed_at = Some(now);
            fx.push(Effect::Runbook(RunbookEffect::List));
        }
        let due = rb.run.as_ref().is_some_and(|r| {
            !r.plan_only
                && !r.busy
                && (r.id.is_some() || r.begin.is_some())
                && r.exec.outcome.is_none()
                && r.exec.phase != Phase::Confirming
                && r.observed_at
                    .is_none_or(|t| (now - t).num_seconds() >= OBSERVE_EVERY_SECS)
        });
        if due {
            self.observe(now, fx);
        }
        self.heartbeat(now, fx);
        self.claim_again(now, fx);
    }

    /// The claim of `id` refused while another session holds it: said once, asked again in
    /// a moment.
    fn held(&mut self, id: String, why: String, now: DateTime<Utc>) {
        let Some(run) = &mut self.runbooks.run else {
            return;
        };
        if run.id.is_some() || run.plan_only {
            return;
        }
        run.busy = false;
        let since = match &run.claiming {
            Some(c) => c.since,
            None => {
                run.log.push((
                    Level::Warning,
                    format!(
                        "another session held it recently: waiting for it to let go (asking \
                         every {CLAIM_EVERY_SECS} s, up to {CLAIM_WAIT_SECS} s): {why}"
                    ),
                ));
                now
            }
        };
        run.claiming = Some(Claiming {
            id,
            since,
            next: now + chrono::Duration::seconds(CLAIM_EVERY_SECS),
        });
    }

    /// The journal hears from a run under way that recorded nothing for [`HEARTBEAT_SECS`].
    fn heartbeat(&mut self, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let Some(run) = &mut self.runbooks.run else {
            return;
        };
        let due = !run.plan_only
            && run.exec.outcome.is_none()
            && run
                .recorded_at
                .is_some_and(|t| (now - t).num_seconds() >= HEARTBEAT_SECS);
        if let Some(req) = journal_request(run).filter(|_| due) {
            run.recorded_at = Some(now);
            fx.push(Effect::Runbook(RunbookEffect::Record(req)));
        }
    }

    /// A resume waiting for the journal's hold: claims again when due, or gives up.
    fn claim_again(&mut self, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let Some(run) = &mut self.runbooks.run else {
            return;
        };
        let Some(c) = run.claiming.clone() else {
            return;
        };
        if run.busy || now < c.next {
            return;
        }
        if (now - c.since).num_seconds() >= CLAIM_WAIT_SECS {
            run.claiming = None;
            run.plan_only = true;
            run.log.push((
                Level::Critical,
                format!(
                    "still held by another session after {CLAIM_WAIT_SECS} s: it is stepping \
                     the execution; nothing was done (:resume tries again)"
                ),
            ));
            return;
        }
        run.busy = true;
        fx.push(Effect::Runbook(RunbookEffect::Claim(c.id)));
    }

    fn observe(&mut self, _now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let Some(run) = &mut self.runbooks.run else {
            return;
        };
        if run.plan_only || run.exec.outcome.is_some() {
            return;
        }
        if let (None, Some(req)) = (&run.id, &run.begin)
            && run.observed_at.is_some()
            && !run.begin_in_flight
        {
            run.begin_in_flight = true;
            fx.push(Effect::Runbook(RunbookEffect::Begin(req.clone())));
        }
        run.busy = true;
        fx.push(Effect::Runbook(RunbookEffect::Observe {
            probes: run.exec.probes_wanted(),
        }));
    }

    /// Advances the execution over what was last observed, until it waits for something.
    pub(super) fn drive(&mut self, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let Some(mut run) = self.runbooks.run.take() else {
            return;
        };
        let mut ask = None;
        let mut performing = false;
        if !run.plan_only && !run.busy && (run.id.is_some() || run.begin.is_some()) {
            // Runbooks act on the fleet's own trust domain: partners' daemons are not theirs.
            let own = self.fleet.own_trust_domain();
            let o = Observation {
                now,
                fleet: &own,
                reads: &self.runbooks.reads,
                probes: &self.runbooks.probes,
                thresholds: self.thresholds,
            };
            for _ in 0..MAX_TRANSITIONS {
                let before = (run.exec.step, run.exec.phase);
                match run.exec.advance(&o) {
                    Next::Observe => {
                        if (run.exec.step, run.exec.phase) == before {
                            break;
                        }
                    }
                    Next::Confirm(c) => {
                        ask = Some(c);
                        break;
                    }
                    Next::Act(_) if run.id.is_none() => {
                        run.exec.retry_later(
                            now,
                            "the journal's server does not answer yet: no admin call before \
                             it holds this execution"
                                .into(),
                        );
                        break;
                    }
                    Next::Act(call) | Next::Rollback(call) => {
                        let rollback = run.exec.phase == Phase::RollingBack;
                        let step = run.exec.current().map(|s| s.id.clone()).unwrap_or_default();
                        let Some(journal) = journal_request(&run) else {
                            break;
                        };
                        run.recorded_at = Some(now);
                        fx.push(Effect::Runbook(RunbookEffect::Perform {
                            call,
                            execution: run.id.clone().unwrap_or_default(),
                            runbook: run.exec.runbook.name.clone(),
                            step,
                            rollback,
                            journal: Box::new(journal),
                        }));
                        run.busy = true;
                        performing = true;
                        break;
                    }
                    Next::Finished(_) => break,
                }
            }
        }
        // A call carries its own journal record (recorded before it is made).
        record(&mut run, now, if performing { None } else { Some(fx) });
        self.runbooks.run = Some(run);
        if let Some(c) = ask {
            self.ask(Pending::Step(c));
        }
    }

    /// `:resume`: takes the execution in progress over for this session.
    pub(super) fn resume_runbook(&mut self, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        if self.read_only {
            self.flash(Level::Warning, "read-only: :operator enables actions");
            return;
        }
        if let Some(r) = &self.runbooks.run
            && !r.plan_only
            && r.exec.outcome.is_none()
        {
            self.flash(
                Level::Warning,
                format!(
                    "{} is running in this console: let it finish (or stop it) before :resume",
                    r.exec.runbook.name
                ),
            );
            return;
        }
        let Some(e) = self.runbooks.in_progress().cloned() else {
            self.flash(Level::Warning, "no runbook in progress to resume");
            return;
        };
        let Some(rb) = self
            .runbooks
            .set
            .as_ref()
            .and_then(|s| s.get(&e.runbook))
            .cloned()
        else {
            self.flash(
                Level::Critical,
                format!("{}: no such runbook here", e.runbook),
            );
            return;
        };
        if rb.digest != e.runbook_digest {
            self.flash(
                Level::Critical,
                format!(
                    "{}: the runbook file changed since it began; resume refused",
                    e.runbook
                ),
            );
            return;
        }
        // The values it began with (implied ones included), never the fleet as it is now:
        // after an activation "the active root" is another one.
        let mut vars: Vars = e.inputs.clone().into_iter().collect();
        vars.extend(e.saved.clone());
        let saved = e.saved.keys().cloned().collect();
        let mut exec = Execution::resume(
            rb,
            vars,
            saved,
            e.step as usize,
            Phase::from_journal(e.phase_wire().known().unwrap_or(RunbookPhase::Unspecified)),
            now,
        );
        exec.take_events();
        self.runbooks.run = Some(Run {
            exec,
            plan_only: false,
            id: None,
            log: vec![(
                Level::Ok,
                format!("resuming {} at step {}", e.runbook, e.step + 1),
            )],
            busy: true,
            observed_at: None,
            claiming: None,
            begin: None,
            begin_in_flight: false,
            recorded_at: None,
        });
        fx.push(Effect::Runbook(RunbookEffect::Claim(e.id.clone())));
        self.runbooks.scroll = 0;
        self.mode = Mode::Runbook;
    }

    /// `:runbook`: the pane again.
    pub(super) fn show_runbook(&mut self) {
        if self.runbooks.run.is_some() {
            self.mode = Mode::Runbook;
        } else {
            self.flash(Level::Warning, "no runbook open: :runbooks lists them");
        }
    }
}

/// Logs the events since the last drive and journals where the execution stands (into `fx`,
/// when given).
fn record(run: &mut Run, now: DateTime<Utc>, fx: Option<&mut Vec<Effect>>) {
    let events = run.exec.take_events();
    if events.is_empty() {
        return;
    }
    run.log.extend(events.iter().map(event_line));
    if let (Some(fx), Some(req)) = (fx, journal_request(run)) {
        run.recorded_at = Some(now);
        fx.push(Effect::Runbook(RunbookEffect::Record(req)));
    }
}

/// Where `run` stands, for the journal (None before it is begun).
fn journal_request(run: &Run) -> Option<RecordRunbookRequest> {
    run.id.as_deref().map(|id| run.exec.journal_record(id))
}
