//! The dry run: every step with its plan, checks, confirmation and rollback in words, with
//! the execution's variables filled in (a value a step saves later shows as `<name>`).

use serde::Serialize;

use crate::check::describe;
use crate::inputs::Vars;
use crate::model::{Action, ConfirmKind, Risk, Runbook, Step};

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedStep {
    pub index: usize,
    pub id: String,
    pub title: String,
    pub why: String,
    pub risk: Risk,
    pub confirm: ConfirmKind,
    /// What the action changes, exactly.
    pub plan: String,
    /// The action, as a command line would say it.
    pub action: String,
    pub pre: Vec<String>,
    pub verify: Vec<String>,
    pub timeout_secs: i64,
    pub rollback: Option<String>,
    pub on_failure: Option<String>,
}

/// The plan of every step.
pub fn plan(rb: &Runbook, vars: &Vars) -> Vec<PlannedStep> {
    rb.steps
        .iter()
        .enumerate()
        .map(|(i, s)| planned(i, s, vars))
        .collect()
}

/// The plan of one step.
pub fn planned(index: usize, s: &Step, vars: &Vars) -> PlannedStep {
    PlannedStep {
        index,
        id: s.id.clone(),
        title: s.title.clone(),
        why: s.why.trim().to_string(),
        risk: s.risk,
        confirm: s.confirm,
        plan: s.plan.render(vars).trim().to_string(),
        action: action_words(&s.action, vars),
        pre: s.pre.iter().map(|c| describe(c, vars)).collect(),
        verify: s.verify.iter().map(|c| describe(c, vars)).collect(),
        timeout_secs: s.timeout.num_seconds(),
        rollback: s.rollback.as_ref().map(|a| action_words(a, vars)),
        on_failure: s
            .on_failure
            .as_ref()
            .map(|t| t.render(vars).trim().to_string()),
    }
}

/// An action in words: the `trustdeck-server` command it amounts to, or the instruction.
pub fn action_words(a: &Action, v: &Vars) -> String {
    match a {
        Action::None => "nothing (checks only)".into(),
        Action::Manual { instruction } => format!("manual: {}", instruction.render(v).trim()),
        Action::Prepare { server, kind, .. } => {
            format!(
                "on {}: authority {} prepare",
                server.text.render(v),
                kind.text.render(v)
            )
        }
        Action::Activate { server, kind, id } => format!(
            "on {}: authority {} activate --id {}",
            server.text.render(v),
            kind.text.render(v),
            id.text.render(v)
        ),
        Action::Taint {
            server, kind, id, ..
        } => format!(
            "on {}: authority {} taint --id {}",
            server.text.render(v),
            kind.text.render(v),
            id.text.render(v)
        ),
        Action::Revoke {
            server,
            kind,
            id,
            force,
        } => format!(
            "on {}: authority {} revoke --id {}{}",
            server.text.render(v),
            kind.text.render(v),
            id.text.render(v),
            if *force { " --force" } else { "" }
        ),
        Action::CreateJoinToken { server, .. } => {
            format!("on {}: token generate", server.text.render(v))
        }
        Action::Find {
            server,
            kind,
            status,
            save,
            optional,
        } => format!(
            "read: the {} {} authority of {} (saved as {save}{})",
            status.text.render(v),
            kind.text.render(v),
            server.text.render(v),
            if *optional {
                "; empty when there is none"
            } else {
                ""
            }
        ),
        Action::ReadAgentId { agent, save } => format!(
            "read: the SPIFFE ID {} has now (saved as {save})",
            agent.text.render(v)
        ),
        Action::MoveEntries {
            server, from, to, ..
        } => format!(
            "on {}: every entry whose parent is {} re-created under {}, then the old one deleted",
            server.text.render(v),
            from.text.render(v),
            to.text.render(v)
        ),
        Action::EvictAgent { server, agent } => format!(
            "on {}: agent evict {}",
            server.text.render(v),
            agent.text.render(v)
        ),
        Action::ExportBundle { server, dir, save } => format!(
            "on {}: bundle export --signed into {} (saved as {save})",
            server.text.render(v),
            dir.text.render(v)
        ),
    }
}
