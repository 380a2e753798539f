//! The transitions of an [`Execution`], one function per phase.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{
    Confirmation, Execution, Mismatch, Next, Outcome, Phase, Stage, StepEvent, StopReason,
    resolve_call,
};
use crate::check::Observation;
use crate::model::{Action, ConfirmKind};
use crate::plan::planned;

impl Execution {
    pub(super) fn check(&mut self, o: &Observation) -> Next {
        let Some(s) = self.current().cloned() else {
            return Next::Observe;
        };
        if let Some(w) = &s.when {
            match w.resolve(&self.vars) {
                Ok(v) if v.trim().is_empty() => {
                    self.events.push(StepEvent::Skipped {
                        step: self.step,
                        id: s.id.clone(),
                        detail: format!("nothing to do ({w} is empty)"),
                    });
                    return self.step_done();
                }
                Ok(_) => {}
                Err(e) => return self.stop_invalid(&e.to_string()),
            }
        }
        if self.reconcile {
            self.reconcile = false;
            let verify = self.results(&s.verify, o);
            if s.action.changes() && !verify.is_empty() && verify.iter().all(|r| r.ok) {
                self.events.push(StepEvent::AlreadyDone {
                    step: self.step,
                    id: s.id.clone(),
                });
                self.last = verify;
                return self.step_done();
            }
        }
        if !probes_here(&s.pre, &self.vars, o) {
            return Next::Observe;
        }
        let results = self.results(&s.pre, o);
        let failed: Vec<String> = results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| format!("{} ({})", r.check, r.detail))
            .collect();
        self.events.push(StepEvent::Checked {
            step: self.step,
            id: s.id.clone(),
            stage: Stage::Pre,
            results: results.clone(),
        });
        self.last = results;
        if !failed.is_empty() {
            return self.stop(
                StopReason::Precondition,
                format!("not true: {}", failed.join("; ")),
                false,
            );
        }
        if s.confirm == ConfirmKind::None {
            return self.act(o);
        }
        self.phase = Phase::Confirming;
        self.confirmation()
    }

    pub(super) fn confirmation(&self) -> Next {
        let Some(s) = self.current() else {
            return Next::Observe;
        };
        let p = planned(self.step, s, &self.vars);
        let instruction = match &s.action {
            Action::Manual { instruction } => Some(instruction.render(&self.vars).trim().into()),
            _ => None,
        };
        let expected = (s.confirm == ConfirmKind::TypeTarget).then(|| {
            self.vars
                .get(&self.runbook.target)
                .cloned()
                .unwrap_or_default()
        });
        if expected.as_deref() == Some("") {
            // Never a destructive step confirmed by an empty answer.
            return Next::Observe;
        }
        Next::Confirm(Confirmation {
            step: self.step,
            id: p.id,
            title: p.title,
            risk: p.risk,
            kind: s.confirm,
            plan: p.plan,
            instruction,
            expected,
        })
    }

    /// The operator's answer: `type_target` needs the target's value exactly, `yes` takes
    /// `y` or `yes`. A wrong answer changes nothing.
    pub fn confirm(&mut self, answer: &str) -> Result<(), Mismatch> {
        if self.phase != Phase::Confirming {
            return Ok(());
        }
        let Next::Confirm(c) = self.confirmation() else {
            return Ok(());
        };
        let a = answer.trim();
        let ok = match &c.expected {
            Some(e) => a == e,
            None => matches!(a, "y" | "yes"),
        };
        if !ok {
            return Err(Mismatch {
                got: a.to_string(),
                expected: c.expected.unwrap_or_else(|| "yes".into()),
            });
        }
        self.confirmed();
        Ok(())
    }

    /// Confirmation given beforehand (`--yes`).
    pub fn confirm_given(&mut self) {
        if self.phase == Phase::Confirming {
            self.confirmed();
        }
    }

    fn confirmed(&mut self) {
        let id = self.current().map(|s| s.id.clone()).unwrap_or_default();
        self.events.push(StepEvent::Confirmed {
            step: self.step,
            id,
        });
        self.phase = Phase::Acting;
    }

    /// The operator declined: the execution stops here, nothing of this step done.
    pub fn decline(&mut self) {
        if self.phase == Phase::Confirming {
            self.stop(
                StopReason::Declined,
                "declined by the operator".into(),
                false,
            );
        }
    }

    pub(super) fn act(&mut self, o: &Observation) -> Next {
        let Some(s) = self.current() else {
            return Next::Observe;
        };
        if matches!(s.action, Action::Find { .. } | Action::ReadAgentId { .. }) {
            let action = s.action.clone();
            self.phase = Phase::Acting;
            let found = find(&action, &self.vars, o);
            match found {
                Ok(saved) => self.acted(o.now, Ok(saved)),
                Err(e) => return self.stop(StopReason::ActionFailed, e, false),
            }
            return Next::Observe;
        }
        match resolve_call(&s.action, &self.vars) {
            Ok(Some(call)) => {
                // What held before the confirmation must still hold (the operator may have
                // taken minutes to answer).
                let pre = s.pre.clone();
                if !probes_here(&pre, &self.vars, o) {
                    return Next::Observe;
                }
                let failed: Vec<String> = self
                    .results(&pre, o)
                    .into_iter()
                    .filter(|r| !r.ok)
                    .map(|r| format!("{} ({})", r.check, r.detail))
                    .collect();
                if !failed.is_empty() {
                    return self.stop(
                        StopReason::Precondition,
                        format!("no longer true: {}", failed.join("; ")),
                        false,
                    );
                }
                self.phase = Phase::Acting;
                Next::Act(call)
            }
            Ok(None) => {
                self.phase = Phase::Acting;
                self.acted(o.now, Ok(BTreeMap::new()));
                Next::Observe
            }
            Err(e) => self.stop(StopReason::Invalid, e.to_string(), false),
        }
    }

    /// The [`Next::Act`] call was refused for now (a server whose census is still warming
    /// up): the same call is asked again after [`super::RETRY_AFTER`], until the step's timeout.
    pub fn retry_later(&mut self, now: DateTime<Utc>, why: String) {
        if self.phase != Phase::Acting {
            return;
        }
        let Some(s) = self.current() else {
            return;
        };
        let (id, timeout) = (s.id.clone(), s.timeout);
        let first = self.retry.map_or(now, |(_, first)| first);
        if now - first >= timeout {
            self.retry = None;
            let why = format!("{why} (still refused after {} s)", timeout.num_seconds());
            self.stop(StopReason::ActionFailed, why, false);
            return;
        }
        self.retry = Some((now + super::RETRY_AFTER, first));
        self.events.push(StepEvent::Retrying {
            step: self.step,
            id,
            detail: why,
        });
    }

    /// The result of the [`Next::Act`] call: what it saved, or why it failed.
    pub fn acted(&mut self, now: DateTime<Utc>, result: Result<BTreeMap<String, String>, String>) {
        if self.phase != Phase::Acting {
            return;
        }
        self.retry = None;
        match result {
            Ok(saved) => {
                let id = self.current().map(|s| s.id.clone()).unwrap_or_default();
                for k in saved.keys() {
                    if !self.saved.contains(k) {
                        self.saved.push(k.clone());
                    }
                }
                self.vars.extend(saved.clone());
                self.events.push(StepEvent::Acted {
                    step: self.step,
                    id,
                    saved,
                });
                self.verifying(now);
            }
            Err(e) => {
                self.stop(StopReason::ActionFailed, e, false);
            }
        }
    }

    pub(super) fn verify(&mut self, o: &Observation) -> Next {
        let Some(s) = self.current().cloned() else {
            return Next::Observe;
        };
        let results = self.results(&s.verify, o);
        let ok = results.iter().all(|r| r.ok);
        let changed = results != self.last;
        self.last = results.clone();
        if changed || ok {
            self.events.push(StepEvent::Checked {
                step: self.step,
                id: s.id.clone(),
                stage: Stage::Verify,
                results: results.clone(),
            });
        }
        if ok {
            let seconds = self
                .verify_started
                .map_or(0, |t| (o.now - t).num_seconds().max(0));
            self.events.push(StepEvent::Verified {
                step: self.step,
                id: s.id,
                seconds,
            });
            return self.step_done();
        }
        if self.deadline.is_some_and(|d| o.now >= d) {
            let failed: Vec<String> = results
                .iter()
                .filter(|r| !r.ok)
                .map(|r| format!("{} ({})", r.check, r.detail))
                .collect();
            let why = format!(
                "not verified within {} s: {}",
                s.timeout.num_seconds(),
                failed.join("; ")
            );
            if s.rollback.as_ref().is_some_and(|a| a.changes()) {
                self.phase = Phase::RollingBack;
                self.rollback_why = Some(why);
                return self.rollback_call(o.now);
            }
            return self.stop(StopReason::TimedOut, why, false);
        }
        Next::Observe
    }

    pub(super) fn rollback_call(&mut self, _now: DateTime<Utc>) -> Next {
        let Some(s) = self.current() else {
            return Next::Observe;
        };
        let why = self
            .rollback_why
            .clone()
            .unwrap_or_else(|| "resumed during a rollback".into());
        match s.rollback.as_ref().map(|a| resolve_call(a, &self.vars)) {
            Some(Ok(Some(call))) => Next::Rollback(call),
            Some(Err(e)) => self.stop(StopReason::TimedOut, format!("{why}; rollback: {e}"), false),
            _ => self.stop(StopReason::TimedOut, why, false),
        }
    }

    /// The result of the [`Next::Rollback`] call.
    pub fn rolled_back(&mut self, result: Result<(), String>) {
        if self.phase != Phase::RollingBack {
            return;
        }
        let id = self.current().map(|s| s.id.clone()).unwrap_or_default();
        let why = self.rollback_why.take().unwrap_or_default();
        let (ok, detail) = match &result {
            Ok(()) => (true, "rollback done".to_string()),
            Err(e) => (false, format!("rollback failed: {e}")),
        };
        self.events.push(StepEvent::RolledBack {
            step: self.step,
            id,
            ok,
            detail: detail.clone(),
        });
        self.stop(StopReason::TimedOut, format!("{why}; {detail}"), ok);
    }

    fn step_done(&mut self) -> Next {
        self.step += 1;
        self.phase = Phase::Checking;
        self.deadline = None;
        self.verify_started = None;
        if self.step >= self.runbook.steps.len() {
            self.finish(Outcome::Succeeded);
            return Next::Finished(Outcome::Succeeded);
        }
        self.started();
        Next::Observe
    }

    pub(super) fn stop_invalid(&mut self, why: &str) -> Next {
        self.stop(StopReason::Invalid, why.to_string(), false)
    }

    fn stop(&mut self, reason: StopReason, detail: String, rolled_back: bool) -> Next {
        let s = self.current();
        let id = s.map(|s| s.id.clone()).unwrap_or_default();
        let what_now = s
            .and_then(|s| s.on_failure.as_ref())
            .map(|t| t.render(&self.vars).trim().to_string())
            .unwrap_or_else(|| default_advice(reason).to_string());
        let o = Outcome::Stopped {
            step: self.step,
            id,
            reason,
            detail,
            rolled_back,
            what_now,
        };
        self.finish(o.clone());
        Next::Finished(o)
    }
}

/// What a [`Action::Find`] (from the observation's `ShowAuthorities`) or an
/// [`Action::ReadAgentId`] (from the fleet) saves.
fn find(
    a: &Action,
    v: &crate::inputs::Vars,
    o: &Observation,
) -> Result<BTreeMap<String, String>, String> {
    if let Action::ReadAgentId { agent, save } = a {
        let name = agent.resolve(v).map_err(|e| e.to_string())?;
        let id = crate::facts::daemon(o.fleet, &name)
            .and_then(|d| d.identity.as_ref())
            .map(|i| i.spiffe_id.clone())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{name} has not said its SPIFFE ID"))?;
        return Ok(BTreeMap::from([(save.clone(), id)]));
    }
    let Action::Find {
        server,
        kind,
        status,
        save,
        optional,
    } = a
    else {
        return Ok(BTreeMap::new());
    };
    let (s, k, st) = (
        server.resolve(v).map_err(|e| e.to_string())?,
        kind.resolve(v).map_err(|e| e.to_string())?,
        status.resolve(v).map_err(|e| e.to_string())?,
    );
    let list = o
        .reads
        .authorities
        .get(&s)
        .ok_or_else(|| format!("the authorities of {s} could not be read"))?;
    let found: Vec<_> = list
        .iter()
        .filter(|x| x.kind_wire() == k.proto() && x.status_wire() == st.proto())
        .collect();
    let st = st.proto().as_str_name();
    match found.as_slice() {
        [one] => Ok(BTreeMap::from([(save.clone(), one.id.clone())])),
        [] if *optional => Ok(BTreeMap::from([(save.clone(), String::new())])),
        [] => Err(format!("{s} has no {k} authority that is {st}")),
        many => Err(format!(
            "{s} has {} {k} authorities that are {st}: handle them one by one with taint-authority",
            many.len()
        )),
    }
}

/// Whether the observation has a probe answer for every `keys_answer` check among `checks`
/// (without one the check waits, it does not fail).
fn probes_here(checks: &[crate::model::Check], v: &crate::inputs::Vars, o: &Observation) -> bool {
    checks.iter().all(|c| match c {
        crate::model::Check::KeysAnswer { server } => server
            .resolve(v)
            .map_or(true, |s| o.probes.contains_key(&s)),
        _ => true,
    })
}

fn default_advice(r: StopReason) -> &'static str {
    match r {
        StopReason::Precondition => {
            "Nothing was changed by this step. Make the failed checks true, then resume."
        }
        StopReason::Declined => "Nothing was changed by this step. Resume when ready, or abort.",
        StopReason::ActionFailed => {
            "The call failed; read the error, fix its cause, then resume (the step is verified before it is repeated)."
        }
        StopReason::TimedOut => {
            "The change did not take effect in time. Check the daemons named above, then resume or abort."
        }
        StopReason::Invalid => "A value this step needs is missing; abort and start again.",
    }
}
