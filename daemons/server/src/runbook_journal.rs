//! The rules of the runbook execution journal, pure (`now` is a parameter): what a begin,
//! claim or record may store, and the refusal ([`RunbookRefusal`]) when it may not. The admin
//! API ([`crate::admin_api::runbooks`]) runs them inside the transaction that stores the
//! result, so a rule is checked against the row as it is committed.

use std::collections::BTreeMap;

use trustdeck_datastore::{RunbookPhase as Phase, RunbookRecord, RunbookState as State};
use trustdeck_proto::admin::{
    BeginRunbookRequest, ClaimRunbookRequest, RecordRunbookRequest, RunbookExecution, RunbookPhase,
    RunbookRefusal, RunbookState,
};

/// Longest name, id, input or saved value (bytes).
pub const MAX_FIELD: usize = 256;
/// Longest `reason` (bytes): it is for people and may quote an error.
pub const MAX_REASON: usize = 1024;
/// Most inputs, and most saved values an execution keeps.
pub const MAX_VALUES: usize = 64;
/// How long after a session's last record another session may not claim its execution.
pub const HOLD_SECS: i64 = 30;
/// Longest `trustdeck-runbook` header value considered (bytes).
pub const MAX_STEP_HEADER: usize = 300;

/// Audit actions of the journal (their events are `EVENT_KIND_RUNBOOK`).
pub const BEGIN: &str = "runbook.begin";
pub const CLAIM: &str = "runbook.claim";
pub const STEP: &str = "runbook.step";
pub const FINISH: &str = "runbook.finish";
pub const ACTIONS: &[&str] = &[BEGIN, CLAIM, STEP, FINISH];

/// A journal call refused by a rule: nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub refusal: RunbookRefusal,
    /// The execution holding the target (`TargetBusy`) or the caller holding it.
    pub holder: String,
    pub message: String,
}

fn refused(refusal: RunbookRefusal, holder: &str, message: String) -> Refused {
    Refused {
        refusal,
        holder: holder.into(),
        message,
    }
}

fn invalid(message: String) -> Refused {
    refused(RunbookRefusal::Invalid, "", message)
}

/// `value` is neither empty nor longer than [`MAX_FIELD`].
fn field(what: &str, value: &str) -> Result<(), Refused> {
    if value.is_empty() {
        return Err(invalid(format!("{what} is empty")));
    }
    if value.len() > MAX_FIELD {
        return Err(invalid(format!(
            "{what} is {} bytes, more than {MAX_FIELD}",
            value.len()
        )));
    }
    Ok(())
}

fn values(what: &str, map: &std::collections::HashMap<String, String>) -> Result<(), Refused> {
    if map.len() > MAX_VALUES {
        return Err(invalid(format!(
            "{} {what}, more than {MAX_VALUES}",
            map.len()
        )));
    }
    for (k, v) in map {
        field(&format!("{what} name"), k)?;
        if v.len() > MAX_FIELD {
            return Err(invalid(format!(
                "{what} {k:?} is {} bytes, more than {MAX_FIELD}",
                v.len()
            )));
        }
    }
    Ok(())
}

/// A new execution for `req`, begun by `actor` at `now` with id `id` (RUNNING, step 0).
pub fn begin(
    req: &BeginRunbookRequest,
    actor: &str,
    id: String,
    now: i64,
) -> Result<RunbookRecord, Refused> {
    field("runbook", &req.runbook)?;
    field("target", &req.target)?;
    field("session", &req.session)?;
    field("runbook digest", &req.runbook_digest)?;
    values("inputs", &req.inputs)?;
    if req.steps == 0 {
        return Err(invalid("a runbook has at least one step".into()));
    }
    Ok(RunbookRecord {
        id,
        runbook: req.runbook.clone(),
        target: req.target.clone(),
        started_by: actor.into(),
        held_by: actor.into(),
        session: req.session.clone(),
        started_at: now,
        updated_at: now,
        state: State::Running,
        step: 0,
        step_id: String::new(),
        phase: Phase::Checking,
        steps: req.steps,
        inputs: req.inputs.clone().into_iter().collect(),
        saved: BTreeMap::new(),
        reason: String::new(),
        rolled_back: false,
        runbook_digest: req.runbook_digest.clone(),
    })
}

/// The refusal of a begin on a target that `holder` holds.
pub fn busy(holder: &RunbookRecord) -> Refused {
    refused(
        RunbookRefusal::TargetBusy,
        &holder.id,
        format!(
            "target {:?} is held by runbook {} (execution {}, {}, held by {}): resume or abort it",
            holder.target, holder.runbook, holder.id, holder.state, holder.held_by
        ),
    )
}

/// The refusal for an id that names no execution.
pub fn unknown(id: &str) -> Refused {
    refused(
        RunbookRefusal::UnknownExecution,
        "",
        format!("no runbook execution {id:?}"),
    )
}

fn finished(rec: &RunbookRecord) -> Refused {
    refused(
        RunbookRefusal::Finished,
        &rec.held_by,
        format!(
            "runbook execution {} ({}) {}: it takes no more records",
            rec.id, rec.runbook, rec.state
        ),
    )
}

/// `rec` taken over by `actor`'s session `req.session` at `now`: refused while another
/// session driving it recorded within the last [`HOLD_SECS`]. A stopped execution is driven by
/// no one (stopping is the last thing its session records): anyone may claim it at once.
pub fn claim(
    rec: &RunbookRecord,
    req: &ClaimRunbookRequest,
    actor: &str,
    now: i64,
) -> Result<RunbookRecord, Refused> {
    field("session", &req.session)?;
    if !rec.state.holds_target() {
        return Err(finished(rec));
    }
    let quiet = now.saturating_sub(rec.updated_at);
    if rec.state == State::Running && rec.session != req.session && quiet < HOLD_SECS {
        return Err(refused(
            RunbookRefusal::HeldElsewhere,
            &rec.held_by,
            format!(
                "runbook execution {} is held by {} (another session recorded {quiet}s ago); \
                 claim it once that session has been quiet for {HOLD_SECS}s",
                rec.id, rec.held_by
            ),
        ));
    }
    Ok(RunbookRecord {
        held_by: actor.into(),
        session: req.session.clone(),
        updated_at: now,
        // Taken over: driven again, so another session waits out the hold from here.
        state: State::Running,
        ..rec.clone()
    })
}

/// Whether `holder`, found holding the target of `rec`, is the execution the same session
/// began with the same runbook and inputs (a begin asked again after its answer was lost):
/// answered with `holder`, not refused.
pub fn same_begin(holder: &RunbookRecord, rec: &RunbookRecord) -> bool {
    holder.session == rec.session
        && holder.started_by == rec.started_by
        && holder.runbook == rec.runbook
        && holder.runbook_digest == rec.runbook_digest
        && holder.inputs == rec.inputs
}

/// Whether `req` only says that its session is still there: the holding session, running,
/// nothing changed (a heartbeat is not an operator action: it takes no audit record).
pub fn is_heartbeat(cur: &RunbookRecord, req: &RecordRunbookRequest) -> bool {
    cur.state == State::Running
        && req.state() == RunbookState::Running
        && !req.session.is_empty()
        && req.session == cur.session
        && req.step == cur.step
        && req.step_id == cur.step_id
        && phase_of(req.phase()) == Some(cur.phase)
        && req.saved.len() == cur.saved.len()
        && req.saved.iter().all(|(k, v)| cur.saved.get(k) == Some(v))
        && req.reason == cur.reason
        && req.rolled_back == cur.rolled_back
}

/// The journal's state for the API's; `None` for unspecified.
pub fn state_of(s: RunbookState) -> Option<State> {
    match s {
        RunbookState::Unspecified => None,
        RunbookState::Running => Some(State::Running),
        RunbookState::Succeeded => Some(State::Succeeded),
        RunbookState::Stopped => Some(State::Stopped),
        RunbookState::Aborted => Some(State::Aborted),
    }
}

/// The journal's phase for the API's; `None` for unspecified.
pub fn phase_of(p: RunbookPhase) -> Option<Phase> {
    match p {
        RunbookPhase::Unspecified => None,
        RunbookPhase::Checking => Some(Phase::Checking),
        RunbookPhase::Confirming => Some(Phase::Confirming),
        RunbookPhase::Acting => Some(Phase::Acting),
        RunbookPhase::Verifying => Some(Phase::Verifying),
        RunbookPhase::Done => Some(Phase::Done),
        RunbookPhase::RollingBack => Some(Phase::RollingBack),
        RunbookPhase::Failed => Some(Phase::Failed),
    }
}

fn api_state(s: State) -> RunbookState {
    match s {
        State::Running => RunbookState::Running,
        State::Stopped => RunbookState::Stopped,
        State::Succeeded => RunbookState::Succeeded,
        State::Aborted => RunbookState::Aborted,
    }
}

fn api_phase(p: Phase) -> RunbookPhase {
    match p {
        Phase::Checking => RunbookPhase::Checking,
        Phase::Confirming => RunbookPhase::Confirming,
        Phase::Acting => RunbookPhase::Acting,
        Phase::Verifying => RunbookPhase::Verifying,
        Phase::Done => RunbookPhase::Done,
        Phase::RollingBack => RunbookPhase::RollingBack,
        Phase::Failed => RunbookPhase::Failed,
    }
}

/// The audit action of a record request: `runbook.finish` when it moves the execution to
/// SUCCEEDED, STOPPED or ABORTED, else `runbook.step`.
pub fn record_action(req: &RecordRunbookRequest) -> &'static str {
    match req.state() {
        RunbookState::Succeeded | RunbookState::Stopped | RunbookState::Aborted => FINISH,
        RunbookState::Running | RunbookState::Unspecified => STEP,
    }
}

/// `rec` after `req` from `actor` at `now`. Only the holding session records, except an
/// abort (any operator's session). An unspecified state or phase leaves it as it is; saved
/// values are merged.
pub fn record(
    rec: &RunbookRecord,
    req: &RecordRunbookRequest,
    actor: &str,
    now: i64,
) -> Result<RunbookRecord, Refused> {
    field("session", &req.session)?;
    if !req.step_id.is_empty() {
        field("step id", &req.step_id)?;
    }
    if req.reason.len() > MAX_REASON {
        return Err(invalid(format!(
            "reason is {} bytes, more than {MAX_REASON}",
            req.reason.len()
        )));
    }
    values("saved values", &req.saved)?;
    if !rec.state.holds_target() {
        return Err(finished(rec));
    }
    let state = state_of(req.state()).unwrap_or(rec.state);
    // The session alone proves nothing (it is a random string a client chose): the holder is
    // the caller who began or claimed it, in that session.
    if state != State::Aborted && (rec.session != req.session || rec.held_by != actor) {
        return Err(refused(
            RunbookRefusal::NotHolder,
            &rec.held_by,
            format!(
                "runbook execution {} is held by {} in another session: claim it first",
                rec.id, rec.held_by
            ),
        ));
    }
    if req.step > rec.steps {
        return Err(invalid(format!(
            "step {} of a runbook with {} steps",
            req.step, rec.steps
        )));
    }
    if state == State::Succeeded && req.step != rec.steps {
        return Err(invalid(format!(
            "succeeded at step {} of {}: only an execution past its last step succeeds",
            req.step, rec.steps
        )));
    }
    let mut saved = rec.saved.clone();
    saved.extend(req.saved.clone());
    if saved.len() > MAX_VALUES {
        return Err(invalid(format!(
            "{} saved values, more than {MAX_VALUES}",
            saved.len()
        )));
    }
    let aborted_elsewhere = state == State::Aborted && rec.session != req.session;
    Ok(RunbookRecord {
        held_by: if aborted_elsewhere {
            rec.held_by.clone()
        } else {
            actor.into()
        },
        session: rec.session.clone(),
        updated_at: now,
        state,
        step: req.step,
        step_id: req.step_id.clone(),
        phase: phase_of(req.phase()).unwrap_or(rec.phase),
        saved,
        reason: req.reason.clone(),
        rolled_back: req.rolled_back,
        ..rec.clone()
    })
}

/// What an audit record of a journal call says about the execution.
pub fn audit_detail(rec: &RunbookRecord) -> String {
    let step = if rec.step_id.is_empty() {
        format!("step {}", rec.step)
    } else {
        format!("step {} ({})", rec.step, rec.step_id)
    };
    format!(
        "runbook {} execution {} {step} {} {}{}",
        rec.runbook,
        rec.id,
        rec.phase,
        rec.state,
        if rec.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", rec.reason)
        }
    )
}

/// The execution as the API shows it.
pub fn execution(rec: RunbookRecord) -> RunbookExecution {
    RunbookExecution {
        state: api_state(rec.state).into(),
        phase: api_phase(rec.phase).into(),
        id: rec.id,
        runbook: rec.runbook,
        target: rec.target,
        started_by: rec.started_by,
        held_by: rec.held_by,
        started_at: rec.started_at,
        updated_at: rec.updated_at,
        step: rec.step,
        step_id: rec.step_id,
        inputs: rec.inputs.into_iter().collect(),
        saved: rec.saved.into_iter().collect(),
        reason: rec.reason,
        rolled_back: rec.rolled_back,
        runbook_digest: rec.runbook_digest,
        // Never shown: a session id is the holder's, not something to copy.
        session: String::new(),
        steps: rec.steps,
    }
}

/// What the audit record of a call made for a runbook step adds to its detail, from the
/// `trustdeck-runbook` header (`<execution id>/<runbook>/<step id>`); `None` when it is
/// absent, longer than [`MAX_STEP_HEADER`], not printable ASCII or not three non-empty parts.
pub fn step_note(header: Option<&str>) -> Option<String> {
    let h = header?;
    if h.len() > MAX_STEP_HEADER || !h.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return None;
    }
    let mut parts = h.splitn(3, '/');
    let (id, runbook, step) = (parts.next()?, parts.next()?, parts.next()?);
    if [id, runbook, step].iter().any(|p| p.trim().is_empty()) {
        return None;
    }
    Some(format!("runbook {runbook} step {step} (execution {id})"))
}

#[cfg(test)]
#[path = "runbook_journal_tests.rs"]
mod tests;
