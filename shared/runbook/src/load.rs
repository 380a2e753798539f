//! Reading runbook files: TOML into the [`model`](crate::model), then the rules no type says
//! (every variable defined before it is read, destructive steps typed to confirm, ...). Every
//! error names the file, the step when there is one, and the problem.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::model::{Action, ConfirmKind, InputKind, Risk, Runbook, Step};

/// The runbooks shipped inside the binary: `(file name, text)`.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "rotate-root-ca.toml",
        include_str!("../../../runbooks/rotate-root-ca.toml"),
    ),
    (
        "rotate-intermediate.toml",
        include_str!("../../../runbooks/rotate-intermediate.toml"),
    ),
    (
        "taint-authority.toml",
        include_str!("../../../runbooks/taint-authority.toml"),
    ),
    (
        "replace-hsm-token.toml",
        include_str!("../../../runbooks/replace-hsm-token.toml"),
    ),
    (
        "rebootstrap-tpm-node.toml",
        include_str!("../../../runbooks/rebootstrap-tpm-node.toml"),
    ),
    (
        "rebootstrap-agent.toml",
        include_str!("../../../runbooks/rebootstrap-agent.toml"),
    ),
    (
        "recover-downstream.toml",
        include_str!("../../../runbooks/recover-downstream.toml"),
    ),
    (
        "isolated-bundle-rotation.toml",
        include_str!("../../../runbooks/isolated-bundle-rotation.toml"),
    ),
];

/// Largest runbook file read.
pub const MAX_FILE: usize = 256 * 1024;

/// What is wrong with a runbook file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Not TOML, or not the format (the parser's words, with the line).
    Syntax(String),
    /// The file cannot be read.
    Unreadable(String),
    TooLarge(usize),
    /// `name` is not the file's name without `.toml`, or not lowercase letters, digits, `-`.
    BadName(String),
    NoSteps,
    /// `target` names no input (or variable an input implies).
    UnknownTarget(String),
    DuplicateInput(String),
    BadInputName(String),
    DuplicateStep(String),
    BadStepId(String),
    /// A variable read before anything defines it (not an input, not implied by one, not
    /// saved by an earlier step).
    UndefinedVariable(String),
    /// A destructive step must make the operator type the target.
    DestructiveWithoutTypedConfirm,
    /// A step whose action changes something needs risk medium or more and a confirmation.
    ChangeAtLowRisk,
    ChangeWithoutConfirm,
    /// A manual step needs a confirmation (the operator says it is done).
    ManualWithoutConfirm,
    /// A rollback that destroys or grants something (only `taint`, `move_entries` and `none`
    /// undo a step without a confirmation of their own).
    IrreversibleRollback,
    /// A variable saved twice.
    SavedTwice(String),
    /// Two files define the same runbook.
    DuplicateRunbook(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Syntax(e) => write!(f, "{e}"),
            Problem::Unreadable(e) => write!(f, "cannot read: {e}"),
            Problem::TooLarge(n) => write!(f, "{n} bytes: larger than {MAX_FILE}"),
            Problem::BadName(n) => write!(
                f,
                "name {n:?} must be the file's name without .toml (lowercase letters, digits, -)"
            ),
            Problem::NoSteps => f.write_str("no steps"),
            Problem::UnknownTarget(t) => write!(f, "target {t:?} is not an input"),
            Problem::DuplicateInput(n) => write!(f, "input {n:?} is defined twice"),
            Problem::BadInputName(n) => {
                write!(f, "input name {n:?}: lowercase letters, digits and _ only")
            }
            Problem::DuplicateStep(s) => write!(f, "step id {s:?} is used twice"),
            Problem::BadStepId(s) => {
                write!(f, "step id {s:?}: lowercase letters, digits and - only")
            }
            Problem::UndefinedVariable(v) => write!(
                f,
                "${{{v}}} is read before anything defines it (an input, what an input implies, or an earlier step's save)"
            ),
            Problem::DestructiveWithoutTypedConfirm => {
                f.write_str("risk = \"destructive\" needs confirm = \"type_target\"")
            }
            Problem::ChangeAtLowRisk => {
                f.write_str("its action changes the fleet: risk must be medium or more")
            }
            Problem::ChangeWithoutConfirm => {
                f.write_str("its action changes the fleet: it needs a confirm")
            }
            Problem::ManualWithoutConfirm => {
                f.write_str("a manual action needs a confirm (the operator says it is done)")
            }
            Problem::IrreversibleRollback => f.write_str(
                "rollback may only be taint, move_entries or none (it runs without a confirmation)",
            ),
            Problem::SavedTwice(v) => write!(f, "${{{v}}} is saved by two steps"),
            Problem::DuplicateRunbook(n) => write!(f, "runbook {n:?} is defined twice"),
        }
    }
}

/// A runbook file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {}{problem}", .step.as_ref().map(|s| format!("step {s:?}: ")).unwrap_or_default())]
pub struct LoadError {
    pub file: String,
    pub step: Option<String>,
    pub problem: Problem,
}

/// The runbooks one can run, by name.
#[derive(Debug, Clone, Default)]
pub struct RunbookSet {
    pub runbooks: BTreeMap<String, Arc<Runbook>>,
}

impl RunbookSet {
    pub fn get(&self, name: &str) -> Option<&Arc<Runbook>> {
        self.runbooks.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Runbook>> {
        self.runbooks.values()
    }
}

/// The shipped runbooks (a broken one is a build defect, caught by the tests).
pub fn shipped() -> Result<RunbookSet, LoadError> {
    let mut set = RunbookSet::default();
    for (file, text) in SHIPPED {
        let rb = parse(&format!("shipped:{file}"), file, text)?;
        set.runbooks.insert(rb.name.clone(), Arc::new(rb));
    }
    Ok(set)
}

/// The shipped runbooks with those of `dir` (`*.toml`) over them, a file of the same name
/// replacing the shipped one. Every broken file is reported.
pub fn load_dir(dir: &Path) -> Result<RunbookSet, Vec<LoadError>> {
    let mut set = shipped().map_err(|e| vec![e])?;
    let err = |file: String, problem| LoadError {
        file,
        step: None,
        problem,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![err(
            dir.display().to_string(),
            Problem::Unreadable(e.to_string()),
        )]
    })?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for path in files {
        let shown = path.display().to_string();
        let text = match read_bounded(&path) {
            Ok(t) => t,
            Err(p) => {
                errors.push(err(shown, p));
                continue;
            }
        };
        let fname = path.file_name().map(|f| f.to_string_lossy().to_string());
        match parse(&shown, &fname.unwrap_or_default(), &text) {
            Ok(rb) if !seen.insert(rb.name.clone()) => {
                errors.push(err(shown, Problem::DuplicateRunbook(rb.name)));
            }
            Ok(rb) => {
                set.runbooks.insert(rb.name.clone(), Arc::new(rb));
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

fn read_bounded(path: &Path) -> Result<String, Problem> {
    let meta = std::fs::metadata(path).map_err(|e| Problem::Unreadable(e.to_string()))?;
    if meta.len() > MAX_FILE as u64 {
        return Err(Problem::TooLarge(meta.len() as usize));
    }
    std::fs::read_to_string(path).map_err(|e| Problem::Unreadable(e.to_string()))
}

/// One runbook from its text; `shown` names the file in errors, `fname` is its file name.
pub fn parse(shown: &str, fname: &str, text: &str) -> Result<Runbook, LoadError> {
    let fail = |step: Option<&str>, problem| LoadError {
        file: shown.to_string(),
        step: step.map(str::to_string),
        problem,
    };
    if text.len() > MAX_FILE {
        return Err(fail(None, Problem::TooLarge(text.len())));
    }
    let mut rb: Runbook =
        toml::from_str(text).map_err(|e| fail(None, Problem::Syntax(e.to_string())))?;
    rb.source = shown.to_string();
    rb.digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()));
    validate(&rb, fname).map_err(|(step, p)| fail(step.as_deref(), p))?;
    Ok(rb)
}

fn is_name(s: &str, extra: char) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == extra)
}

/// The variables an input of `kind` named `name` implies.
pub fn implied(name: &str, kind: InputKind) -> Vec<String> {
    let suffixes: &[&str] = match kind {
        InputKind::UpstreamServer => &["active_x509", "active_jwt", "spiffe_id", "trust_domain"],
        InputKind::Server => &[
            "active_x509",
            "active_jwt",
            "upstream",
            "spiffe_id",
            "trust_domain",
        ],
        InputKind::DownstreamServer => &["active_x509", "upstream", "spiffe_id", "trust_domain"],
        InputKind::Agent => &["spiffe_id", "server", "trust_domain"],
        InputKind::AuthorityId => &["server", "kind"],
        InputKind::AuthorityKind | InputKind::Text => &[],
    };
    suffixes.iter().map(|s| format!("{name}_{s}")).collect()
}

type Invalid = (Option<String>, Problem);

fn validate(rb: &Runbook, fname: &str) -> Result<(), Invalid> {
    if !is_name(&rb.name, '-') || fname.strip_suffix(".toml") != Some(rb.name.as_str()) {
        return Err((None, Problem::BadName(rb.name.clone())));
    }
    if rb.steps.is_empty() {
        return Err((None, Problem::NoSteps));
    }
    let mut defined = BTreeSet::new();
    for i in &rb.inputs {
        if !is_name(&i.name, '_') {
            return Err((None, Problem::BadInputName(i.name.clone())));
        }
        if !defined.insert(i.name.clone()) {
            return Err((None, Problem::DuplicateInput(i.name.clone())));
        }
        defined.extend(implied(&i.name, i.kind));
    }
    if !defined.contains(&rb.target) {
        return Err((None, Problem::UnknownTarget(rb.target.clone())));
    }
    let mut ids = BTreeSet::new();
    for s in &rb.steps {
        let at = |p| (Some(s.id.clone()), p);
        if !is_name(&s.id, '-') {
            return Err(at(Problem::BadStepId(s.id.clone())));
        }
        if !ids.insert(s.id.clone()) {
            return Err(at(Problem::DuplicateStep(s.id.clone())));
        }
        step_rules(s).map_err(at)?;
        let before: Vec<String> = s
            .pre
            .iter()
            .flat_map(|c| c.vars())
            .chain(s.action.vars())
            .chain(s.when.iter().flat_map(|t| t.vars()))
            .collect();
        undefined(&before, &defined).map_err(at)?;
        for v in s.action.saves() {
            if !defined.insert(v.clone()) {
                return Err(at(Problem::SavedTwice(v)));
            }
        }
        let mut after: Vec<String> = s.verify.iter().flat_map(|c| c.vars()).collect();
        after.extend(s.plan.vars());
        after.extend(s.rollback.iter().flat_map(Action::vars));
        after.extend(s.on_failure.iter().flat_map(|t| t.vars()));
        undefined(&after, &defined).map_err(at)?;
    }
    Ok(())
}

fn undefined(used: &[String], defined: &BTreeSet<String>) -> Result<(), Problem> {
    match used.iter().find(|v| !defined.contains(*v)) {
        Some(v) => Err(Problem::UndefinedVariable(v.clone())),
        None => Ok(()),
    }
}

fn step_rules(s: &Step) -> Result<(), Problem> {
    if s.risk == Risk::Destructive && s.confirm != ConfirmKind::TypeTarget {
        return Err(Problem::DestructiveWithoutTypedConfirm);
    }
    if s.action.changes() {
        if s.risk == Risk::Low {
            return Err(Problem::ChangeAtLowRisk);
        }
        if s.confirm == ConfirmKind::None {
            return Err(Problem::ChangeWithoutConfirm);
        }
    }
    if s.rollback.as_ref().is_some_and(|r| !r.reversible()) {
        return Err(Problem::IrreversibleRollback);
    }
    if matches!(s.action, Action::Manual { .. }) && s.confirm == ConfirmKind::None {
        return Err(Problem::ManualWithoutConfirm);
    }
    Ok(())
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
