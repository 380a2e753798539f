//! One execution of a runbook as a state machine. The driver (the CLI or the console) loops:
//! it observes the fleet and calls [`Execution::advance`], which answers what to do next
//! ([`Next`]): observe again, ask for a confirmation, perform an admin call, perform a
//! rollback, or stop. Results come back through [`Execution::confirm`],
//! [`Execution::acted`] and [`Execution::rolled_back`]. Every transition leaves a
//! [`StepEvent`] for the driver to show and journal. No I/O; `now` is a parameter.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use trustdeck_proto::admin::{RecordRunbookRequest, RunbookPhase, RunbookState};

use crate::check::{CheckResult, Observation, evaluate};
use crate::inputs::Vars;
use crate::model::{Action, AuthKind, ConfirmKind, Risk, Runbook, Step};
use crate::param::ParamError;
use crate::plan::planned;

/// Where the current step stands (the journal's `RunbookPhase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Checking,
    Confirming,
    Acting,
    Verifying,
    Done,
    RollingBack,
    Failed,
}

impl Phase {
    /// The journal's phase.
    pub fn journal(self) -> RunbookPhase {
        match self {
            Phase::Checking => RunbookPhase::Checking,
            Phase::Confirming => RunbookPhase::Confirming,
            Phase::Acting => RunbookPhase::Acting,
            Phase::Verifying => RunbookPhase::Verifying,
            Phase::Done => RunbookPhase::Done,
            Phase::RollingBack => RunbookPhase::RollingBack,
            Phase::Failed => RunbookPhase::Failed,
        }
    }

    /// The engine's phase for the journal's (unspecified or unknown: checking, which repeats
    /// nothing).
    pub fn from_journal(p: RunbookPhase) -> Phase {
        match p {
            RunbookPhase::Confirming => Phase::Confirming,
            RunbookPhase::Acting => Phase::Acting,
            RunbookPhase::Verifying => Phase::Verifying,
            RunbookPhase::Done => Phase::Done,
            RunbookPhase::RollingBack => Phase::RollingBack,
            RunbookPhase::Failed => Phase::Failed,
            RunbookPhase::Checking | RunbookPhase::Unspecified => Phase::Checking,
        }
    }
}

/// An admin call with its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    Prepare {
        server: String,
        kind: AuthKind,
        save: String,
    },
    Activate {
        server: String,
        kind: AuthKind,
        id: String,
    },
    Taint {
        server: String,
        kind: AuthKind,
        id: String,
        save: Option<String>,
    },
    Revoke {
        server: String,
        kind: AuthKind,
        id: String,
        force: bool,
    },
    CreateJoinToken {
        server: String,
        save: String,
    },
    EvictAgent {
        server: String,
        agent: String,
    },
    MoveEntries {
        server: String,
        from: String,
        to: String,
        save: Option<String>,
    },
    ExportBundle {
        server: String,
        dir: String,
        save: String,
    },
}

/// The call an action makes with `v`; `None` for one the engine does itself (nothing, a
/// manual step, a read of the observation).
pub fn resolve_call(a: &Action, v: &Vars) -> Result<Option<Call>, ParamError> {
    Ok(Some(match a {
        Action::None | Action::Manual { .. } | Action::Find { .. } | Action::ReadAgentId { .. } => {
            return Ok(None);
        }
        Action::Prepare { server, kind, save } => Call::Prepare {
            server: server.resolve(v)?,
            kind: kind.resolve(v)?,
            save: save.clone(),
        },
        Action::Activate { server, kind, id } => Call::Activate {
            server: server.resolve(v)?,
            kind: kind.resolve(v)?,
            id: id.resolve(v)?,
        },
        Action::Taint {
            server,
            kind,
            id,
            save,
        } => Call::Taint {
            server: server.resolve(v)?,
            kind: kind.resolve(v)?,
            id: id.resolve(v)?,
            save: save.clone(),
        },
        Action::Revoke {
            server,
            kind,
            id,
            force,
        } => Call::Revoke {
            server: server.resolve(v)?,
            kind: kind.resolve(v)?,
            id: id.resolve(v)?,
            force: *force,
        },
        Action::CreateJoinToken { server, save } => Call::CreateJoinToken {
            server: server.resolve(v)?,
            save: save.clone(),
        },
        Action::EvictAgent { server, agent } => Call::EvictAgent {
            server: server.resolve(v)?,
            agent: agent.resolve(v)?,
        },
        Action::MoveEntries {
            server,
            from,
            to,
            save,
        } => Call::MoveEntries {
            server: server.resolve(v)?,
            from: from.resolve(v)?,
            to: to.resolve(v)?,
            save: save.clone(),
        },
        Action::ExportBundle { server, dir, save } => Call::ExportBundle {
            server: server.resolve(v)?,
            dir: dir.resolve(v)?,
            save: save.clone(),
        },
    }))
}

/// What the operator is asked before a step acts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confirmation {
    pub step: usize,
    pub id: String,
    pub title: String,
    pub risk: Risk,
    pub kind: ConfirmKind,
    /// What will change.
    pub plan: String,
    /// For a manual step: what the operator must do before confirming.
    pub instruction: Option<String>,
    /// For `type_target`: what must be typed.
    pub expected: Option<String>,
}

/// Why an execution stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A precondition did not hold: nothing of this step was done.
    Precondition,
    /// The operator declined the confirmation.
    Declined,
    /// The admin call failed or was refused.
    ActionFailed,
    /// The verification did not hold within the step's timeout.
    TimedOut,
    /// A value the step needs is missing or invalid.
    Invalid,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Stopped {
        step: usize,
        id: String,
        reason: StopReason,
        detail: String,
        rolled_back: bool,
        /// What the operator should do now.
        what_now: String,
    },
}

/// Something that happened, for the driver to show and journal.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StepEvent {
    StepStarted {
        step: usize,
        id: String,
        title: String,
        risk: Risk,
        plan: String,
    },
    Checked {
        step: usize,
        id: String,
        stage: Stage,
        results: Vec<CheckResult>,
    },
    Confirmed {
        step: usize,
        id: String,
    },
    Acted {
        step: usize,
        id: String,
        saved: BTreeMap<String, String>,
    },
    Verified {
        step: usize,
        id: String,
        seconds: i64,
    },
    /// The call was refused for now and is asked again shortly.
    Retrying {
        step: usize,
        id: String,
        detail: String,
    },
    /// A resumed step whose verification already held: its action is not repeated.
    AlreadyDone {
        step: usize,
        id: String,
    },
    /// A step whose `when` rendered empty: nothing to do.
    Skipped {
        step: usize,
        id: String,
        detail: String,
    },
    RolledBack {
        step: usize,
        id: String,
        ok: bool,
        detail: String,
    },
    Finished {
        outcome: Outcome,
    },
}

impl StepEvent {
    /// The event in one line of words (the CLI and the console both say this).
    pub fn summary(&self) -> String {
        match self {
            StepEvent::StepStarted { step, title, .. } => format!("step {}: {title}", step + 1),
            StepEvent::Checked { results, stage, .. } => {
                let held = results.iter().filter(|r| r.ok).count();
                let stage = match stage {
                    Stage::Pre => "pre",
                    Stage::Verify => "verify",
                };
                format!("{stage} checks: {held} of {} hold", results.len())
            }
            StepEvent::Confirmed { id, .. } => format!("{id}: confirmed"),
            StepEvent::Acted { id, .. } => format!("{id}: done, verifying"),
            StepEvent::Verified { id, seconds, .. } => format!("{id}: verified after {seconds} s"),
            StepEvent::Retrying { id, detail, .. } => {
                format!("{id}: refused for now, asking again: {detail}")
            }
            StepEvent::AlreadyDone { id, .. } => format!("{id}: already done (not repeated)"),
            StepEvent::Skipped { id, detail, .. } => format!("{id}: skipped, {detail}"),
            StepEvent::RolledBack { id, ok, detail, .. } => format!(
                "{id}: rollback {}{}{detail}",
                if *ok { "done" } else { "FAILED" },
                if detail.is_empty() { "" } else { ": " }
            ),
            StepEvent::Finished { outcome } => match outcome {
                Outcome::Succeeded => "every step verified".into(),
                Outcome::Stopped { id, detail, .. } => format!("stopped at {id}: {detail}"),
            },
        }
    }
}

/// Which checks a [`StepEvent::Checked`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Pre,
    Verify,
}

/// How long before a call refused for now is asked again.
pub const RETRY_AFTER: chrono::Duration = chrono::Duration::seconds(2);

/// What the driver does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Observe the fleet (after the poll interval while verifying) and advance again.
    Observe,
    Confirm(Confirmation),
    /// Perform this call and report with [`Execution::acted`].
    Act(Call),
    /// Perform this call and report with [`Execution::rolled_back`].
    Rollback(Call),
    Finished(Outcome),
}

/// A wrong answer to a confirmation: it is asked again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("typed {got:?}, expected {expected:?}: nothing done")]
pub struct Mismatch {
    pub got: String,
    pub expected: String,
}

/// One execution.
#[derive(Debug, Clone)]
pub struct Execution {
    pub runbook: Arc<Runbook>,
    pub vars: Vars,
    /// The keys of `vars` that steps saved (what the journal records as saved).
    pub saved: Vec<String>,
    pub step: usize,
    pub phase: Phase,
    /// When the current verification gives up.
    pub deadline: Option<DateTime<Utc>>,
    pub verify_started: Option<DateTime<Utc>>,
    /// The last results of the current step's checks.
    pub last: Vec<CheckResult>,
    pub outcome: Option<Outcome>,
    /// Resumed in the middle of an action: verify first, act only if it does not hold.
    reconcile: bool,
    /// Why the rollback under way was started.
    rollback_why: Option<String>,
    /// A call refused for now: asked again at `.0`, first refused at `.1`.
    retry: Option<(DateTime<Utc>, DateTime<Utc>)>,
    events: Vec<StepEvent>,
}

#[path = "exec_steps.rs"]
mod steps;

impl Execution {
    /// Where this execution stands, as journal execution `id` records it (the session is the
    /// caller's to fill in). Once every step verified its step is past the last one: the
    /// journal takes "succeeded" only there.
    pub fn journal_record(&self, id: &str) -> RecordRunbookRequest {
        let (state, reason, rolled_back) = match &self.outcome {
            None => (RunbookState::Running, String::new(), false),
            Some(Outcome::Succeeded) => (RunbookState::Succeeded, String::new(), false),
            Some(Outcome::Stopped {
                detail,
                rolled_back,
                reason,
                ..
            }) => (
                RunbookState::Stopped,
                format!("{reason:?}: {detail}"),
                *rolled_back,
            ),
        };
        RecordRunbookRequest {
            id: id.to_string(),
            session: String::new(),
            step: u32::try_from(self.step).unwrap_or(u32::MAX),
            step_id: self.current().map(|s| s.id.clone()).unwrap_or_default(),
            phase: self.phase.journal() as i32,
            state: state as i32,
            saved: self.saved_values().into_iter().collect(),
            reason,
            rolled_back,
        }
    }

    /// Whether step `i` is skipped with the values known now (its `when` renders empty).
    pub fn skips(&self, i: usize) -> bool {
        self.runbook
            .steps
            .get(i)
            .and_then(|s| s.when.as_ref())
            .is_some_and(|w| w.resolve(&self.vars).is_ok_and(|v| v.trim().is_empty()))
    }

    /// A new execution at its first step.
    pub fn start(runbook: Arc<Runbook>, vars: Vars) -> Execution {
        let mut e = Execution {
            runbook,
            vars,
            saved: Vec::new(),
            step: 0,
            phase: Phase::Checking,
            deadline: None,
            verify_started: None,
            last: Vec::new(),
            outcome: None,
            reconcile: false,
            rollback_why: None,
            retry: None,
            events: Vec::new(),
        };
        e.started();
        e
    }

    /// An execution taken up from the journal at `step`, whose phase was `phase`: an action
    /// that may have happened is verified before it is repeated; a verification starts its
    /// timeout again; a failed step is tried again.
    pub fn resume(
        runbook: Arc<Runbook>,
        vars: Vars,
        saved: Vec<String>,
        step: usize,
        phase: Phase,
        now: DateTime<Utc>,
    ) -> Execution {
        let mut e = Execution::start(runbook, vars);
        e.events.clear();
        e.saved = saved;
        e.step = step.min(e.runbook.steps.len());
        match phase {
            Phase::Checking | Phase::Confirming => {}
            Phase::Acting | Phase::Failed => e.reconcile = true,
            Phase::Verifying => e.verifying(now),
            Phase::RollingBack => e.phase = Phase::RollingBack,
            Phase::Done => e.step += 1,
        }
        if e.step >= e.runbook.steps.len() {
            e.finish(Outcome::Succeeded);
        } else {
            e.started();
        }
        e
    }

    /// The current step.
    pub fn current(&self) -> Option<&Step> {
        self.runbook.steps.get(self.step)
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<StepEvent> {
        std::mem::take(&mut self.events)
    }

    /// The servers whose keys the current step's checks probe.
    pub fn probes_wanted(&self) -> Vec<String> {
        let Some(s) = self.current() else {
            return Vec::new();
        };
        s.pre
            .iter()
            .chain(&s.verify)
            .filter_map(|c| match c {
                crate::model::Check::KeysAnswer { server } => server.resolve(&self.vars).ok(),
                _ => None,
            })
            .collect()
    }

    /// The values steps saved, for the journal: secrets (a join token) left out.
    pub fn saved_values(&self) -> BTreeMap<String, String> {
        let secrets = self.secrets();
        self.saved
            .iter()
            .filter(|k| !secrets.contains(k))
            .filter_map(|k| self.vars.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }

    /// Every variable known when it began (inputs and what they imply), for the journal's
    /// inputs: a resumed execution reads these, never the fleet as it is by then (after an
    /// activation, "the active root" is another one).
    pub fn journal_inputs(&self) -> BTreeMap<String, String> {
        let secrets = self.secrets();
        self.vars
            .iter()
            .filter(|(k, _)| !self.saved.contains(k) && !secrets.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// What the execution holds in the journal: the trust domain, or its target (the
    /// target daemon's SPIFFE ID when known, its fleet name otherwise).
    pub fn lock_key(&self) -> String {
        let t = &self.runbook.target;
        match self.runbook.lock {
            crate::model::Lock::TrustDomain => "trust-domain".into(),
            crate::model::Lock::Target => self
                .vars
                .get(&format!("{t}_spiffe_id"))
                .or_else(|| self.vars.get(t))
                .cloned()
                .unwrap_or_default(),
        }
    }

    fn secrets(&self) -> Vec<String> {
        self.runbook
            .steps
            .iter()
            .flat_map(|s| s.action.secrets())
            .collect()
    }

    fn started(&mut self) {
        if let Some(s) = self.current() {
            let p = planned(self.step, s, &self.vars);
            self.events.push(StepEvent::StepStarted {
                step: self.step,
                id: p.id,
                title: p.title,
                risk: p.risk,
                plan: p.plan,
            });
        }
    }

    fn finish(&mut self, o: Outcome) {
        self.phase = match o {
            Outcome::Succeeded => Phase::Done,
            Outcome::Stopped { .. } => Phase::Failed,
        };
        self.deadline = None;
        self.events.push(StepEvent::Finished { outcome: o.clone() });
        self.outcome = Some(o);
    }

    fn verifying(&mut self, now: DateTime<Utc>) {
        self.phase = Phase::Verifying;
        let timeout = self
            .current()
            .map_or(chrono::Duration::zero(), |s| s.timeout);
        self.deadline = Some(now + timeout);
        self.verify_started = Some(now);
    }

    /// Evaluates what the current phase needs over `o` and says what to do next: steps that
    /// need no I/O (checks that hold, nothing to do) are passed through with the same
    /// observation, so `Observe` means waiting for the fleet to change.
    pub fn advance(&mut self, o: &Observation) -> Next {
        for _ in 0..=self.runbook.steps.len() * 4 {
            let before = (self.step, self.phase);
            let next = self.advance_once(o);
            if next != Next::Observe || (self.step, self.phase) == before {
                return next;
            }
        }
        Next::Observe
    }

    fn advance_once(&mut self, o: &Observation) -> Next {
        if let Some(out) = &self.outcome {
            return Next::Finished(out.clone());
        }
        match self.phase {
            Phase::Checking => self.check(o),
            Phase::Confirming => match self.confirmation() {
                Next::Observe => self.stop_invalid("the target to type has no value"),
                n => n,
            },
            Phase::Acting if self.retry.is_some_and(|(at, _)| o.now < at) => Next::Observe,
            Phase::Acting => self.act(o),
            Phase::Verifying => self.verify(o),
            Phase::RollingBack => self.rollback_call(o.now),
            Phase::Done | Phase::Failed => Next::Observe,
        }
    }

    fn results(&self, checks: &[crate::model::Check], o: &Observation) -> Vec<CheckResult> {
        checks.iter().map(|c| evaluate(c, &self.vars, o)).collect()
    }
}

#[cfg(test)]
#[path = "exec_tests.rs"]
mod tests;
