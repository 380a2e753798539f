//! The console's runbooks: operator mode, the list (all, or those that apply to the selected
//! node), the pane's state and the confirmations. Driving an execution is in `rbdrive`.
//! Nothing here does I/O: the runbook files are the ones shipped inside the binary.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{
    ConnectivityState, KeyProbeResult, NodeKind, RunbookExecution, RunbookState,
};
use trustdeck_runbook::exec::Execution;
use trustdeck_runbook::inputs::Selection;
use trustdeck_runbook::model::Applies;
use trustdeck_runbook::{Confirmation, RunbookSet, Vars, resolve_inputs};
use trustdeck_topology::DaemonRole;
use trustdeck_topology::fleet::Level;

use super::model::App;
use super::msg::{Effect, RunbookEffect};
use super::screen::Mode;

/// Seconds between two reads of the journal (the in-progress banner).
pub const LIST_EVERY_SECS: i64 = 15;
/// Seconds between two observations while an execution waits for its verification.
pub const OBSERVE_EVERY_SECS: i64 = 2;
/// How often the journal hears from a run that is only waiting (an operator reading, a long
/// verification): well inside the journal's hold of 30 s.
pub const HEARTBEAT_SECS: i64 = 10;
/// Seconds between two claims of an execution another session held recently (`:resume`).
pub const CLAIM_EVERY_SECS: i64 = 2;
/// How long `:resume` waits for the journal's hold (30 s after the other session's last
/// record) before it gives up.
pub const CLAIM_WAIT_SECS: i64 = 45;

/// What a confirmation is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// Leave read-only mode (type `yes`).
    Operator,
    /// A runbook step asks before it acts.
    Step(Confirmation),
    /// Abort an execution of the journal (type its runbook's name: the journal's target is
    /// a lock key, "trust-domain" or a SPIFFE ID, not what an operator knows it by).
    Abort {
        id: String,
        runbook: String,
        target: String,
    },
}

impl Pending {
    /// What must be typed.
    pub fn expected(&self) -> String {
        match self {
            Pending::Operator => "yes".into(),
            Pending::Step(c) => c.expected.clone().unwrap_or_else(|| "yes".into()),
            Pending::Abort { runbook, .. } => runbook.clone(),
        }
    }
}

/// One runbook in the pane: its execution (a plan when `plan_only`), its journal id and
/// what happened so far.
#[derive(Debug, Clone)]
pub struct Run {
    pub exec: Execution,
    /// Read-only, or asked for the plan: never advanced.
    pub plan_only: bool,
    /// The journal's id, once begun or claimed.
    pub id: Option<String>,
    /// What happened, oldest first (step events and refusals, in words).
    pub log: Vec<(Level, String)>,
    /// An effect is in flight: wait for its answer.
    pub busy: bool,
    /// When it last observed the fleet.
    pub observed_at: Option<DateTime<Utc>>,
    /// A resume waiting for another session's hold to lapse.
    pub claiming: Option<Claiming>,
    /// The begin, until the journal took it: while its server does not answer (the runbook
    /// may be the one that brings it back), steps without an admin call go ahead and the
    /// begin is asked again at every observation; no admin call is made before.
    pub begin: Option<trustdeck_proto::admin::BeginRunbookRequest>,
    /// A begin is in flight (never two at once: the second would find the target held).
    pub begin_in_flight: bool,
    /// When the journal last heard from this run (a heartbeat follows after
    /// [`HEARTBEAT_SECS`], so no other session claims a run that is only waiting).
    pub recorded_at: Option<DateTime<Utc>>,
}

/// `:resume` of an execution that another session recorded into recently: asked again
/// every [`CLAIM_EVERY_SECS`] for up to [`CLAIM_WAIT_SECS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claiming {
    pub id: String,
    /// First refused.
    pub since: DateTime<Utc>,
    /// Asked again then.
    pub next: DateTime<Utc>,
}

/// The runbook part of the console's state.
#[derive(Debug, Default)]
pub struct Runbooks {
    /// The shipped runbooks (None: they did not load, `load_error` says why).
    pub set: Option<Arc<RunbookSet>>,
    pub load_error: Option<String>,
    /// Names shown in the list, and the node they were offered for.
    pub shown: Vec<String>,
    pub offered_for: Option<String>,
    pub selection: Option<Selection>,
    pub cursor: usize,
    pub run: Option<Run>,
    /// The journal's running and stopped executions, as last listed.
    pub journal: Vec<RunbookExecution>,
    pub listed_at: Option<DateTime<Utc>>,
    pub confirm: Option<Pending>,
    /// The typed answer, and what was wrong with the last one.
    pub typed: String,
    pub mismatch: Option<String>,
    /// The mode to go back to after the confirmation.
    pub back: Mode,
    pub scroll: u16,
    pub reads: trustdeck_runbook::ServerReads,
    pub probes: BTreeMap<String, Vec<KeyProbeResult>>,
}

impl Runbooks {
    /// The shipped runbooks.
    pub fn shipped() -> Self {
        match trustdeck_runbook::shipped() {
            Ok(set) => Runbooks::with(set),
            Err(e) => Runbooks {
                load_error: Some(e.to_string()),
                ..Runbooks::default()
            },
        }
    }

    /// The runbooks of `set` (loaded from a directory).
    pub fn with(set: RunbookSet) -> Self {
        Runbooks {
            set: Some(Arc::new(set)),
            ..Runbooks::default()
        }
    }

    /// The journal's execution in progress that this console is not stepping (the banner).
    pub fn in_progress(&self) -> Option<&RunbookExecution> {
        let ours = self.run.as_ref().and_then(|r| r.id.as_deref());
        self.journal.iter().find(|e| {
            matches!(
                e.state_wire().known(),
                Some(RunbookState::Running | RunbookState::Stopped)
            ) && Some(e.id.as_str()) != ours
        })
    }
}

/// Which runbooks apply to a node, from its kind, its daemon's role and its link.
pub fn applies(app: &App, idx: usize) -> (Vec<Applies>, Selection) {
    let Some(t) = app.tree().nodes.get(idx) else {
        return (Vec::new(), Selection::default());
    };
    let n = &t.node;
    let src = app.fleet.daemons.get(t.source);
    let role = src.and_then(|d| d.role().known());
    let tier = match role {
        Some(DaemonRole::Upstream) => Some(Applies::Upstream),
        Some(DaemonRole::Downstream) => Some(Applies::Downstream),
        _ => None,
    };
    let mut daemon = src.map(|d| d.name.clone());
    let mut v = Vec::new();
    match n.kind_wire().known() {
        Some(NodeKind::Server) => v.extend(tier),
        Some(NodeKind::X509Authority) => {
            v.extend(tier);
            v.push(Applies::Authority);
        }
        Some(NodeKind::JwtAuthority) => v.extend([Applies::JwtAuthority, Applies::Authority]),
        Some(NodeKind::Agent) => {
            v.push(Applies::Agent);
            let agent = app.fleet.daemons.iter().find(|d| {
                d.identity
                    .as_ref()
                    .is_some_and(|i| i.spiffe_id == n.spiffe_id)
            });
            if let Some(a) = agent {
                daemon = Some(a.name.clone());
                if a.upstream
                    .as_ref()
                    .is_some_and(|u| u.state_wire().known() == Some(ConnectivityState::Stranded))
                {
                    v.push(Applies::StrandedAgent);
                }
            }
        }
        _ => {}
    }
    let sel = Selection {
        daemon,
        node_id: Some(n.id.clone()),
    };
    (v, sel)
}

impl App {
    /// `:runbooks`: every runbook.
    pub(super) fn open_runbooks(&mut self) {
        let Some(set) = &self.runbooks.set else {
            let e = self.runbooks.load_error.clone().unwrap_or_default();
            self.flash(Level::Critical, format!("no runbooks: {e}"));
            return;
        };
        self.runbooks.shown = set.iter().map(|r| r.name.clone()).collect();
        self.runbooks.offered_for = None;
        self.runbooks.selection = None;
        self.runbooks.cursor = 0;
        self.mode = Mode::Runbooks;
    }

    /// `R` on a node: the runbooks that apply to it.
    pub(super) fn offer_runbooks(&mut self) {
        let Some(idx) = self.selected_node() else {
            self.flash(Level::Warning, "select a node first");
            return;
        };
        let Some(set) = self.runbooks.set.clone() else {
            return self.open_runbooks();
        };
        let (kinds, sel) = applies(self, idx);
        let name = self
            .fleet
            .node_name(&self.tree().nodes[idx].node)
            .to_string();
        let shown: Vec<String> = set
            .iter()
            .filter(|r| r.applies_to.iter().any(|a| kinds.contains(a)))
            .map(|r| r.name.clone())
            .collect();
        if shown.is_empty() {
            self.flash(Level::Warning, format!("no runbook applies to {name}"));
            return;
        }
        self.runbooks.shown = shown;
        self.runbooks.offered_for = Some(name);
        self.runbooks.selection = Some(sel);
        self.runbooks.cursor = 0;
        self.mode = Mode::Runbooks;
    }

    /// Enter (run) or `p` (plan) on the list.
    pub(super) fn choose_runbook(&mut self, plan: bool, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let rb = self
            .runbooks
            .shown
            .get(self.runbooks.cursor)
            .and_then(|n| self.runbooks.set.as_ref()?.get(n).cloned());
        let Some(rb) = rb else { return };
        if !plan
            && self
                .runbooks
                .run
                .as_ref()
                .is_some_and(|r| !r.plan_only && r.exec.outcome.is_none())
        {
            self.flash(Level::Warning, "a runbook is under way: :runbook shows it");
            return;
        }
        let plan_only = plan || self.read_only;
        let (vars, log) = match resolve_inputs(
            &rb,
            &Vars::new(),
            &self.fleet.own_trust_domain(),
            self.runbooks.selection.as_ref(),
        ) {
            Ok(v) => (v, Vec::new()),
            Err(errs) => (
                Vars::new(),
                errs.iter()
                    .map(|e| (Level::Critical, e.to_string()))
                    .collect(),
            ),
        };
        let inputs_ok = log.is_empty();
        let mut run = Run {
            exec: Execution::start(rb.clone(), vars),
            plan_only: plan_only || !inputs_ok,
            id: None,
            log,
            busy: false,
            observed_at: None,
            claiming: None,
            begin: None,
            begin_in_flight: false,
            recorded_at: None,
        };
        run.exec.take_events();
        if !plan && self.read_only {
            run.log.push((
                Level::Warning,
                "read-only: this is the plan; :operator enables actions".into(),
            ));
        }
        let begin = !run.plan_only;
        if begin {
            let req = trustdeck_proto::admin::BeginRunbookRequest {
                runbook: rb.name.clone(),
                // The engine's lock (the target's SPIFFE ID, or the trust domain) and
                // every resolved value, so a resume means what this run meant.
                target: run.exec.lock_key(),
                inputs: run.exec.journal_inputs().into_iter().collect(),
                runbook_digest: rb.digest.clone(),
                session: String::new(),
                steps: u32::try_from(rb.steps.len()).unwrap_or(u32::MAX),
            };
            run.begin = Some(req.clone());
            run.begin_in_flight = true;
            fx.push(Effect::Runbook(RunbookEffect::Begin(req)));
            run.busy = true;
            run.log
                .push((Level::Ok, "asking the journal to begin it".into()));
        }
        let _ = now;
        self.runbooks.run = Some(run);
        self.runbooks.scroll = 0;
        self.mode = Mode::Runbook;
    }

    /// `:operator`: asks before leaving read-only mode; back to read-only at once.
    pub(super) fn toggle_operator(&mut self) {
        if self.read_only {
            self.ask(Pending::Operator);
        } else {
            self.read_only = true;
            self.flash(Level::Ok, "read-only again: runbooks show their plans");
        }
    }

    /// `:abort`: asks (the runbook's name typed) before aborting the execution in progress.
    pub(super) fn ask_abort(&mut self) {
        if self.read_only {
            self.flash(Level::Warning, "read-only: :operator enables actions");
            return;
        }
        let Some(e) = self.runbooks.in_progress().or_else(|| {
            let id = self.runbooks.run.as_ref()?.id.as_deref()?;
            self.runbooks.journal.iter().find(|e| e.id == id)
        }) else {
            self.flash(Level::Warning, "no runbook in progress to abort");
            return;
        };
        let p = Pending::Abort {
            id: e.id.clone(),
            runbook: e.runbook.clone(),
            target: e.target.clone(),
        };
        self.ask(p);
    }

    /// Opens the confirmation dialog for `p`.
    pub(super) fn ask(&mut self, p: Pending) {
        if self.mode != Mode::Confirm {
            self.runbooks.back = self.mode;
        }
        self.runbooks.confirm = Some(p);
        self.runbooks.typed.clear();
        self.runbooks.mismatch = None;
        self.mode = Mode::Confirm;
    }

    pub(super) fn close_confirm(&mut self) {
        self.runbooks.confirm = None;
        self.runbooks.typed.clear();
        self.runbooks.mismatch = None;
        self.mode = match self.runbooks.back {
            Mode::Confirm => Mode::Normal,
            m => m,
        };
    }

    /// Enter in the confirmation: a wrong answer says so and changes nothing.
    pub(super) fn submit_confirm(&mut self, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let Some(p) = self.runbooks.confirm.clone() else {
            return self.close_confirm();
        };
        let typed = self.runbooks.typed.trim().to_string();
        let expected = p.expected();
        let ok = match &p {
            Pending::Step(c) if c.expected.is_none() => matches!(typed.as_str(), "y" | "yes"),
            _ => typed == expected,
        };
        if !ok {
            self.runbooks.mismatch = Some(format!(
                "typed {typed:?}, expected {expected:?}: nothing done"
            ));
            self.runbooks.typed.clear();
            return;
        }
        self.close_confirm();
        match p {
            Pending::Operator => {
                self.read_only = false;
                self.flash(
                    Level::Warning,
                    "operator mode: runbooks can act (:operator again: read-only)",
                );
            }
            Pending::Step(_) => {
                if let Some(run) = &mut self.runbooks.run {
                    let _ = run.exec.confirm(&typed);
                }
                self.drive(now, fx);
            }
            Pending::Abort { id, runbook, .. } => {
                fx.push(Effect::Runbook(RunbookEffect::Record(
                    trustdeck_proto::admin::RecordRunbookRequest {
                        id,
                        state: RunbookState::Aborted as i32,
                        reason: "aborted from the console".into(),
                        ..Default::default()
                    },
                )));
                self.flash(Level::Warning, format!("aborting {runbook}"));
            }
        }
    }

    /// Esc in the confirmation: a step's confirmation declined stops its run.
    pub(super) fn decline_confirm(&mut self, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let p = self.runbooks.confirm.clone();
        self.close_confirm();
        if let Some(Pending::Step(_)) = p {
            if let Some(run) = &mut self.runbooks.run {
                run.exec.decline();
            }
            self.drive(now, fx);
        }
    }
}
