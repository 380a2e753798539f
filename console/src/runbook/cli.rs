//! `trustdeck runbook list|show|plan|run|resume|abort`: the console's runbooks for scripts,
//! pipelines and terminals too small for the console. A module of the binary.
//!
//! Exit codes: 0 every step verified (or the command did what it says); 1 the execution
//! stopped (the reason, the step and whether rollback ran are printed) or the journal refused;
//! 2 a usage error (bad input, unknown runbook, no terminal and no `--yes`), before any change.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use trustdeck_console::client::ClientTls;
use trustdeck_console::fleetfile::Target;
use trustdeck_console::runbook::drive::{Answer, Confirmer, Driver, Journal};
use trustdeck_console::runbook::io::{RunbookIo, new_session};
use trustdeck_console::status::out;
use trustdeck_proto::admin::{
    BeginRunbookRequest, RecordRunbookRequest, RunbookExecution, RunbookRefusal, RunbookState,
};
use trustdeck_runbook::exec::{Mismatch, Phase, StopReason};
use trustdeck_runbook::inputs::Vars;
use trustdeck_runbook::plan::plan;
use trustdeck_runbook::{Confirmation, Execution, Outcome, Runbook, RunbookSet, StepEvent};
use trustdeck_topology::ttl::Thresholds;

/// How long `resume` waits for a session that recorded progress recently to let go.
const CLAIM_WAIT: Duration = Duration::from_secs(45);

#[derive(Subcommand)]
pub enum RunbookCmd {
    /// The runbooks, and the journal's executions in progress (with --fleet).
    List,
    /// A runbook's inputs and steps.
    Show { name: String },
    /// The dry run of a runbook against the live fleet: exactly what each step would change.
    Plan { name: String },
    /// Run a runbook against the live fleet.
    Run { name: String },
    /// Take over an execution from the journal and finish it.
    Resume { id: String },
    /// Abort an execution (frees its target; undoes nothing).
    Abort { id: String },
}

#[derive(Args, Clone)]
pub struct RunbookArgs {
    /// An input, `name=value` (repeatable).
    #[arg(long = "set", global = true)]
    pub set: Vec<String>,
    /// What the runbook acts on (its target input).
    #[arg(long, global = true)]
    pub target: Option<String>,
    /// Give every confirmation beforehand (needed without a terminal).
    #[arg(long, global = true)]
    pub yes: bool,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "table", global = true)]
    pub output: Format,
    /// Load runbooks from this directory instead of the shipped ones.
    #[arg(long, global = true)]
    pub runbooks: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Format {
    Json,
    Table,
}

/// What the command needs of the fleet, loaded only when it needs it.
pub struct Fleet {
    pub targets: Result<Vec<Target>>,
    pub tls: Option<Arc<ClientTls>>,
    pub thresholds: Thresholds,
}

/// A usage error: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

fn usage(s: impl Into<String>) -> anyhow::Error {
    anyhow!(Usage(s.into()))
}

/// Runs the command; errors print and exit 2 (usage) or 4.
pub async fn main(cmd: RunbookCmd, a: RunbookArgs, fleet: Fleet) -> ExitCode {
    match dispatch(cmd, &a, fleet).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("trustdeck runbook: {e:#}");
            if e.downcast_ref::<Usage>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(4)
            }
        }
    }
}

fn load(a: &RunbookArgs) -> Result<RunbookSet> {
    match &a.runbooks {
        None => trustdeck_runbook::shipped().map_err(|e| anyhow!("shipped runbooks: {e}")),
        Some(d) => trustdeck_runbook::load_dir(d).map_err(|errs| {
            usage(
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        }),
    }
}

fn find(set: &RunbookSet, name: &str) -> Result<Arc<Runbook>> {
    set.get(name).cloned().ok_or_else(|| {
        let known: Vec<_> = set.iter().map(|r| r.name.as_str()).collect();
        usage(format!("no runbook {name:?} (known: {})", known.join(", ")))
    })
}

fn given(a: &RunbookArgs, rb: &Runbook) -> Result<Vars> {
    let mut v = Vars::new();
    for s in &a.set {
        let (k, val) = s
            .split_once('=')
            .ok_or_else(|| usage(format!("--set {s:?}: expected name=value")))?;
        v.insert(k.trim().to_string(), val.to_string());
    }
    if let Some(t) = &a.target {
        v.insert(rb.target.clone(), t.clone());
    }
    Ok(v)
}

async fn dispatch(cmd: RunbookCmd, a: &RunbookArgs, fleet: Fleet) -> Result<ExitCode> {
    let set = load(a)?;
    match cmd {
        RunbookCmd::List => list(&set, a, Some(fleet)).await,
        RunbookCmd::Show { name } => {
            let rb = find(&set, &name)?;
            show(&rb, &Vars::new(), a.output)?;
            Ok(ExitCode::SUCCESS)
        }
        RunbookCmd::Plan { name } => {
            let rb = find(&set, &name)?;
            let g = given(a, &rb)?;
            let d = driver(fleet).await?;
            let vars = resolve(&rb, &g, &d);
            d.stop().await;
            show(&rb, &vars?, a.output)?;
            Ok(ExitCode::SUCCESS)
        }
        RunbookCmd::Run { name } => {
            let rb = find(&set, &name)?;
            let g = given(a, &rb)?;
            interactive_or_yes(a)?;
            run(rb, g, a, fleet).await
        }
        RunbookCmd::Resume { id } => {
            interactive_or_yes(a)?;
            resume(&set, &id, a, fleet).await
        }
        RunbookCmd::Abort { id } => abort(&id, fleet).await,
    }
}

fn interactive_or_yes(a: &RunbookArgs) -> Result<()> {
    if !a.yes && !std::io::stdin().is_terminal() {
        return Err(usage(
            "stdin is not a terminal: give the confirmations with --yes (nothing was done)",
        ));
    }
    Ok(())
}

async fn driver(f: Fleet) -> Result<Driver> {
    let io = RunbookIo {
        targets: trustdeck_console::fleetfile::own(&f.targets?),
        tls: f.tls,
        session: new_session(),
    };
    Ok(Driver::start(io, f.thresholds, trustdeck_process::clock::system()).await?)
}

fn resolve(rb: &Runbook, g: &Vars, d: &Driver) -> Result<Vars> {
    trustdeck_runbook::resolve_inputs(rb, g, &d.fleet, None).map_err(|errs| {
        usage(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

fn show(rb: &Runbook, vars: &Vars, f: Format) -> Result<()> {
    let steps = plan(rb, vars);
    if f == Format::Json {
        let v = serde_json::json!({
            "name": rb.name, "title": rb.title, "summary": rb.summary.trim(),
            "source": rb.source, "digest": rb.digest, "target": rb.target,
            "inputs": rb.inputs.iter().map(|i| serde_json::json!({
                "name": i.name, "help": i.help, "default": i.default,
            })).collect::<Vec<_>>(),
            "vars": vars, "steps": steps,
        });
        out(&serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mut s = format!("{}: {}\n{}\n", rb.name, rb.title, rb.summary.trim());
    for i in &rb.inputs {
        let v = vars
            .get(&i.name)
            .map_or(String::new(), |v| format!(" = {v}"));
        s.push_str(&format!("  input {}{v}: {}\n", i.name, i.help));
    }
    for p in steps {
        s.push_str(&format!(
            "\n{}. {} [{}] ({})\n   risk {}, confirm {:?}, timeout {} s\n   action: {}\n   changes: {}\n",
            p.index + 1,
            p.title,
            p.id,
            p.why,
            p.risk.as_str(),
            p.confirm,
            p.timeout_secs,
            p.action,
            p.plan
        ));
        for c in &p.pre {
            s.push_str(&format!("   before: {c}\n"));
        }
        for c in &p.verify {
            s.push_str(&format!("   after:  {c}\n"));
        }
        if let Some(r) = &p.rollback {
            s.push_str(&format!("   rollback: {r}\n"));
        }
    }
    out(s.trim_end());
    Ok(())
}

fn in_progress(e: &RunbookExecution) -> String {
    format!(
        "runbook {} in progress at step {} ({}, {}), started by {}: {} [{}] target {}{}",
        e.runbook,
        e.step + 1,
        e.step_id,
        e.phase().as_str_name(),
        e.started_by,
        e.id,
        e.state().as_str_name(),
        e.target,
        if e.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", e.reason)
        }
    )
}

async fn list(set: &RunbookSet, a: &RunbookArgs, fleet: Option<Fleet>) -> Result<ExitCode> {
    let mut execs = Vec::new();
    let mut journal_error = None;
    if let Some(f) = fleet.and_then(|f| f.targets.ok().map(|t| (t, f.tls))) {
        let io = RunbookIo {
            targets: trustdeck_console::fleetfile::own(&f.0),
            tls: f.1,
            session: new_session(),
        };
        match io.list(false).await {
            Ok(l) => execs = l,
            Err(e) => journal_error = Some(e.message),
        }
    }
    if a.output == Format::Json {
        let v = serde_json::json!({
            "runbooks": set.iter().map(|r| serde_json::json!({
                "name": r.name, "title": r.title, "summary": r.summary.trim(), "steps": r.steps.len(),
            })).collect::<Vec<_>>(),
            "executions": execs.iter().map(exec_json).collect::<Vec<_>>(),
            "journal_error": journal_error,
        });
        out(&serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    for r in set.iter() {
        out(&format!("{:<24} {}", r.name, r.title));
    }
    for e in &execs {
        out(&in_progress(e));
    }
    if let Some(e) = journal_error {
        eprintln!("journal: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

fn exec_json(e: &RunbookExecution) -> serde_json::Value {
    serde_json::json!({
        "id": e.id, "runbook": e.runbook, "target": e.target, "started_by": e.started_by,
        "held_by": e.held_by, "started_at": e.started_at, "updated_at": e.updated_at,
        "state": e.state().as_str_name(), "step": e.step, "step_id": e.step_id,
        "phase": e.phase().as_str_name(), "reason": e.reason, "rolled_back": e.rolled_back,
        "steps": e.steps,
    })
}

async fn run(rb: Arc<Runbook>, g: Vars, a: &RunbookArgs, f: Fleet) -> Result<ExitCode> {
    let mut d = driver(f).await?;
    let vars = match resolve(&rb, &g, &d) {
        Ok(v) => v,
        Err(e) => {
            d.stop().await;
            return Err(e);
        }
    };
    let e = Execution::start(rb.clone(), vars);
    let req = BeginRunbookRequest {
        runbook: rb.name.clone(),
        // What it holds: its target's SPIFFE ID, or the whole trust domain for runbooks
        // that change authorities.
        target: e.lock_key(),
        // Every resolved value, implied ones included (secrets never): a resumed execution
        // means what this one meant (`<server>_active_x509` is the root before the rotation).
        inputs: e.journal_inputs().into_iter().collect(),
        runbook_digest: rb.digest.clone(),
        session: d.io.session.clone(),
        steps: u32::try_from(rb.steps.len()).unwrap_or(u32::MAX),
    };
    let mut journal = match d.io.begin(req.clone()).await {
        Ok(b) => {
            if a.output == Format::Table {
                eprintln!("execution {} ({} on {})", b.id, rb.name, b.target);
            }
            Journal::Begun(b.id)
        }
        // The journal's server is down (the runbook may be the one that brings it back):
        // steps without an admin call go ahead; it is begun as soon as the server answers.
        Err(e) if e.unreachable => {
            eprintln!(
                "journal: {e}; {} goes ahead with steps that make no admin call and is \
                 journaled as soon as the server answers",
                rb.name
            );
            Journal::Pending(req)
        }
        Err(e) => {
            d.stop().await;
            eprintln!("trustdeck runbook: refused before any change: {e}");
            return Ok(ExitCode::from(
                if e.refusal == Some(RunbookRefusal::Invalid) {
                    2
                } else {
                    1
                },
            ));
        }
    };
    let mut e = e;
    drive(&mut d, &mut journal, &mut e, a).await
}

async fn drive(
    d: &mut Driver,
    j: &mut Journal,
    e: &mut Execution,
    a: &RunbookArgs,
) -> Result<ExitCode> {
    let mut c = Prompt { yes: a.yes };
    let mut sink = Sink {
        json: a.output == Format::Json,
        last_checked: None,
    };
    let r = d
        .run(
            j,
            e,
            &mut c,
            &mut |ev: &StepEvent, at: DateTime<Utc>, id: &str| sink.event(ev, at, id),
        )
        .await;
    let Journal::Begun(id) = j else {
        // Never journaled: nothing was changed through the admin API.
        let said = match r {
            Ok(Outcome::Stopped { id, detail, .. }) => format!("stopped at {id}: {detail}"),
            Ok(Outcome::Succeeded) => "finished".into(),
            Err(err) => err.to_string(),
        };
        eprintln!(
            "{} {said}; the journal never answered, so nothing was changed through the admin API: run it again",
            e.runbook.name
        );
        return Ok(ExitCode::from(1));
    };
    let code = match r {
        Ok(Outcome::Succeeded) => {
            eprintln!("execution {id}: every step verified");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Stopped {
            step,
            id: step_id,
            reason,
            detail,
            rolled_back,
            what_now,
        }) => {
            eprintln!(
                "execution {id} STOPPED at step {} ({step_id}): {}: {detail}\nrollback: {}\nwhat now: {what_now}\n(resume with `trustdeck runbook resume {id}`, or abort with `trustdeck runbook abort {id}`)",
                step + 1,
                reason_words(reason),
                if rolled_back { "ran" } else { "did not run" },
            );
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("execution {id} interrupted: {err}");
            ExitCode::from(1)
        }
    };
    Ok(code)
}

fn reason_words(r: StopReason) -> &'static str {
    match r {
        StopReason::Precondition => "a precondition does not hold (nothing of this step was done)",
        StopReason::Declined => "declined",
        StopReason::ActionFailed => "the action failed or was refused",
        StopReason::TimedOut => "the verification did not hold in time",
        StopReason::Invalid => "a value the step needs is missing or invalid",
    }
}

async fn claim(
    io: &RunbookIo,
    id: &str,
) -> Result<RunbookExecution, trustdeck_console::runbook::io::IoError> {
    let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
    let mut said = false;
    loop {
        match io.claim(id).await {
            Err(e)
                if e.refusal == Some(RunbookRefusal::HeldElsewhere)
                    && tokio::time::Instant::now() < deadline =>
            {
                if !said {
                    eprintln!("{e}: waiting for it to let go ...");
                    said = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            r => return r,
        }
    }
}

async fn resume(set: &RunbookSet, id: &str, a: &RunbookArgs, f: Fleet) -> Result<ExitCode> {
    let mut d = driver(f).await?;
    let r = resumed(set, id, &d).await;
    let mut e = match r {
        Ok(e) => e,
        Err(err) => {
            d.stop().await;
            return Err(err);
        }
    };
    drive(&mut d, &mut Journal::Begun(id.to_string()), &mut e, a).await
}

async fn resumed(set: &RunbookSet, id: &str, d: &Driver) -> Result<Execution> {
    let ex = claim(&d.io, id).await.map_err(|e| match e.refusal {
        Some(RunbookRefusal::UnknownExecution | RunbookRefusal::Finished) => usage(e.message),
        _ => anyhow!(e.message),
    })?;
    let rb = find(set, &ex.runbook)?;
    if rb.digest != ex.runbook_digest {
        bail!(Usage(format!(
            "execution {id} was begun with another version of {} (digest {}, the file now {}): resume refused; abort it and run again",
            rb.name, ex.runbook_digest, rb.digest
        )));
    }
    let mut vars: Vars = ex.inputs.clone().into_iter().collect();
    let saved: Vec<String> = ex.saved.keys().cloned().collect();
    vars.extend(ex.saved.clone());
    eprintln!("{}", in_progress(&ex));
    Ok(Execution::resume(
        rb,
        vars,
        saved,
        ex.step as usize,
        Phase::from_journal(ex.phase()),
        Utc::now(),
    ))
}

async fn abort(id: &str, f: Fleet) -> Result<ExitCode> {
    let io = RunbookIo {
        targets: trustdeck_console::fleetfile::own(&f.targets?),
        tls: f.tls,
        session: new_session(),
    };
    let r = io
        .record(RecordRunbookRequest {
            id: id.to_string(),
            session: io.session.clone(),
            state: RunbookState::Aborted as i32,
            reason: "aborted from the CLI".into(),
            ..Default::default()
        })
        .await;
    match r {
        Ok(e) => {
            out(&format!(
                "execution {} ({}) aborted; its target {} is free",
                e.id, e.runbook, e.target
            ));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if matches!(e.refusal, Some(RunbookRefusal::UnknownExecution)) => {
            Err(usage(e.message))
        }
        Err(e) => {
            eprintln!("trustdeck runbook: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Confirmations: `--yes`, else a prompt on the terminal.
struct Prompt {
    yes: bool,
}

impl Confirmer for Prompt {
    async fn confirm(&mut self, c: &Confirmation, retry: Option<&Mismatch>) -> Answer {
        if self.yes {
            // Given beforehand, a manual step still needs its instruction (with a join
            // token the operator sees nowhere else in table output).
            if let Some(i) = &c.instruction {
                eprintln!("step {} {}: do this now: {i}", c.step + 1, c.id);
            }
            return Answer::Given;
        }
        let mut q = String::new();
        if let Some(m) = retry {
            q.push_str(&format!("{m}\n"));
        }
        q.push_str(&format!(
            "\nstep {} {} ({} risk)\n  changes: {}\n",
            c.step + 1,
            c.title,
            c.risk.as_str(),
            c.plan
        ));
        if let Some(i) = &c.instruction {
            q.push_str(&format!("  do this first: {i}\n"));
        }
        q.push_str(&match &c.expected {
            Some(t) => format!("type {t} to go ahead (empty line: stop here): "),
            None => "go ahead? [yes/no] ".into(),
        });
        let line = tokio::task::spawn_blocking(move || {
            eprint!("{q}");
            let _ = std::io::stderr().flush();
            let mut l = String::new();
            std::io::stdin().lock().read_line(&mut l).map(|_| l)
        })
        .await;
        match line {
            Ok(Ok(l)) if !l.trim().is_empty() && !matches!(l.trim(), "n" | "no") => {
                Answer::Typed(l.trim().to_string())
            }
            _ => Answer::Declined,
        }
    }
}

/// Prints step events (a verification's unchanged results once).
struct Sink {
    json: bool,
    last_checked: Option<StepEvent>,
}

impl Sink {
    fn event(&mut self, ev: &StepEvent, at: DateTime<Utc>, id: &str) {
        if matches!(ev, StepEvent::Checked { .. }) {
            if self.last_checked.as_ref() == Some(ev) {
                return;
            }
            self.last_checked = Some(ev.clone());
        }
        if self.json {
            let mut v = serde_json::to_value(ev).unwrap_or_default();
            if let Some(m) = v.as_object_mut() {
                m.insert("at".into(), serde_json::json!(at.to_rfc3339()));
                m.insert("execution".into(), serde_json::json!(id));
            }
            out(&v.to_string());
        } else {
            out(&line(ev, at));
        }
    }
}

fn line(ev: &StepEvent, at: DateTime<Utc>) -> String {
    let t = at.format("%H:%M:%S");
    match ev {
        StepEvent::StepStarted {
            step,
            id,
            title,
            risk,
            plan,
        } => {
            format!(
                "{t} step {} {id}: {title} ({} risk)\n{t}   {plan}",
                step + 1,
                risk.as_str()
            )
        }
        StepEvent::Checked { stage, results, .. } => results
            .iter()
            .map(|r| {
                let p = r
                    .progress
                    .map_or(String::new(), |(a, b)| format!(" [{a}/{b}]"));
                format!(
                    "{t}   {:?} {} {}{p}: {}",
                    stage,
                    if r.ok { "ok  " } else { "wait" },
                    r.check,
                    r.detail
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        StepEvent::Acted { id, saved, .. } => {
            let s: BTreeMap<_, _> = saved.iter().filter(|(k, _)| !k.contains("token")).collect();
            format!("{t}   {id}: done {s:?}")
        }
        StepEvent::Finished { .. } => format!("{t} finished: {}", ev.summary()),
        other => format!("{t}   {}", other.summary()),
    }
}
