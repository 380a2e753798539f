//! The runbook documents: the list, the pane (steps, the current step's plan and checks with
//! progress bars and the countdown to its deadline, the outcome and what to do now, the log),
//! the confirmation dialog, and the in-progress banner. Text from runbook files is shown in the
//! charset's symbols (an ASCII terminal gets ASCII).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::RunbookExecution;
use trustdeck_runbook::exec::{Outcome, Phase};
use trustdeck_runbook::plan::planned;
use trustdeck_topology::fleet::Level;

use super::format::{bar, deadline_level, left_text};
use super::glyphs::Glyphs;
use super::{Role, TextLine};
use crate::app::App;
use crate::app::runbooks::{Pending, Run};

/// Cells of a check's progress bar.
const BAR: usize = 20;

/// `s` in the charset: every symbol of `g`'s prose, and no non-ASCII left on an ASCII
/// terminal.
pub fn clean(s: &str, g: &Glyphs) -> String {
    let s = g.prose(s).replace('—', g.none).replace('…', g.ellipsis);
    if g.box_drawing {
        s
    } else {
        s.chars()
            .map(|c| if c.is_ascii() { c } else { '?' })
            .collect()
    }
}

fn line(text: impl Into<Cow<'static, str>>, role: Role) -> TextLine {
    TextLine::one(text, role)
}

/// The list: name, title and summary of each runbook shown; the selected one marked.
pub fn list(app: &App) -> Vec<TextLine> {
    let g = app.charset.glyphs();
    let rb = &app.runbooks;
    let mut out = vec![match &rb.offered_for {
        Some(n) => line(format!(" Runbooks that apply to {n}"), Role::Title),
        None => line(" Every runbook", Role::Title),
    }];
    out.push(line(
        if app.read_only {
            " read-only: enter shows the plan (:operator enables actions)"
        } else {
            " operator mode: enter runs the runbook, step by step, with confirmations"
        },
        Role::Dim,
    ));
    let Some(set) = &rb.set else {
        out.push(line(
            format!(
                " no runbooks: {}",
                rb.load_error.clone().unwrap_or_default()
            ),
            Role::Level(Level::Critical),
        ));
        return out;
    };
    for (i, name) in rb.shown.iter().enumerate() {
        let Some(r) = set.get(name) else { continue };
        out.push(TextLine::blank());
        let mark = if i == rb.cursor { g.collapsed } else { " " };
        out.push(TextLine::pair(
            format!(" {mark} {:<26}", r.name),
            if i == rb.cursor {
                Role::Title
            } else {
                Role::Tag
            },
            clean(&r.title, g),
            Role::Plain,
        ));
        out.push(line(
            format!("     {}", clean(r.summary.trim(), g)),
            Role::Dim,
        ));
    }
    out
}

/// The pane's title.
pub fn pane_title(run: &Run) -> String {
    let what = if run.plan_only {
        "plan"
    } else if run.exec.outcome.is_some() {
        "finished"
    } else {
        "running"
    };
    format!(" Runbook {} ({what}) ", run.exec.runbook.name)
}

/// The pane.
pub fn pane(app: &App, now: DateTime<Utc>) -> Vec<TextLine> {
    let g = app.charset.glyphs();
    let Some(run) = &app.runbooks.run else {
        return vec![line(" no runbook open", Role::Dim)];
    };
    let e = &run.exec;
    let rb = &e.runbook;
    let mut out = vec![TextLine::pair(
        format!(" {} ", rb.name),
        Role::Title,
        clean(&rb.title, g),
        Role::Plain,
    )];
    let target = e
        .vars
        .get(&rb.target)
        .cloned()
        .unwrap_or_else(|| g.none.to_string());
    let mut head = format!(" target {} = {target}", rb.target);
    if let Some(id) = &run.id {
        head.push_str(&format!("  {}  execution {id}", g.dot));
    }
    out.push(line(head, Role::Dim));
    if run.plan_only {
        out.push(line(
            " a dry run: nothing below has been done",
            Role::Level(Level::Warning),
        ));
    }
    out.push(TextLine::blank());
    out.push(line(" Steps", Role::Title));
    for (i, s) in rb.steps.iter().enumerate() {
        let (sym, role, state) = step_state(run, i, g);
        out.push(TextLine {
            spans: vec![
                (Cow::Owned(format!("  {sym} ")), role),
                (Cow::Owned(format!("{:>2} {:<22} ", i + 1, s.id)), Role::Tag),
                (Cow::Owned(clean(&s.title, g)), Role::Plain),
                (Cow::Owned(state), Role::Dim),
            ],
        });
    }
    current(app, run, now, &mut out);
    outcome(run, g, &mut out);
    if !run.log.is_empty() {
        out.push(TextLine::blank());
        out.push(line(" What happened", Role::Title));
        for (l, t) in &run.log {
            out.push(TextLine::pair(
                format!("  {} ", g.level(*l)),
                Role::Level(*l),
                clean(t, g),
                Role::Plain,
            ));
        }
    }
    out
}

fn step_state(run: &Run, i: usize, g: &Glyphs) -> (&'static str, Role, String) {
    let e = &run.exec;
    let failed = matches!(e.outcome, Some(Outcome::Stopped { step, .. }) if step == i);
    if failed {
        return (
            g.critical,
            Role::Strong(Level::Critical),
            "  stopped".into(),
        );
    }
    if i < e.step && e.skips(i) {
        return (g.info, Role::Dim, "  skipped: nothing to do".into());
    }
    if i < e.step || (i == e.step && e.phase == Phase::Done) {
        return (g.ok, Role::Level(Level::Ok), "  verified".into());
    }
    if i == e.step && !run.plan_only {
        let w = match e.phase {
            Phase::Checking => "checking",
            Phase::Confirming => "waiting for confirmation",
            Phase::Acting => "acting",
            Phase::Verifying => "verifying",
            Phase::RollingBack => "rolling back",
            Phase::Done | Phase::Failed => "",
        };
        return (g.collapsed, Role::Title, format!("  {w}"));
    }
    (g.info, Role::Dim, String::new())
}

/// The current step: why, its plan, its checks (with progress) and the countdown.
fn current(app: &App, run: &Run, now: DateTime<Utc>, out: &mut Vec<TextLine>) {
    let g = app.charset.glyphs();
    let e = &run.exec;
    let shown = if run.plan_only { 0 } else { e.step };
    let Some(s) = e.runbook.steps.get(shown) else {
        return;
    };
    let p = planned(shown, s, &e.vars);
    out.push(TextLine::blank());
    out.push(TextLine::pair(
        format!(" Step {}: ", shown + 1),
        Role::Title,
        format!("{}  (risk {})", clean(&p.title, g), p.risk.as_str()),
        Role::Plain,
    ));
    out.push(TextLine::pair(
        "   why   ",
        Role::Dim,
        clean(p.why.trim(), g),
        Role::Plain,
    ));
    out.push(TextLine::pair(
        "   does  ",
        Role::Dim,
        clean(&p.action, g),
        Role::Plain,
    ));
    for (k, l) in p.plan.trim().lines().enumerate() {
        let label = if k == 0 { "   plan  " } else { "         " };
        out.push(TextLine::pair(label, Role::Dim, clean(l, g), Role::Plain));
    }
    if run.plan_only || e.last.is_empty() {
        for c in p.pre.iter().chain(&p.verify) {
            out.push(TextLine::pair(
                "   check ",
                Role::Dim,
                clean(c, g),
                Role::Plain,
            ));
        }
    } else {
        out.push(line("   checks", Role::Dim));
        for r in &e.last {
            let l = if r.ok { Level::Ok } else { Level::Warning };
            let mut spans = vec![
                (Cow::Owned(format!("     {} ", g.level(l))), Role::Level(l)),
                (Cow::Owned(clean(&r.check, g)), Role::Plain),
            ];
            if let Some((done, of)) = r.progress {
                let frac = if of == 0 {
                    1.0
                } else {
                    done as f64 / of as f64
                };
                spans.push((
                    Cow::Owned(format!("  {} {done}/{of}", bar(frac, BAR, g))),
                    Role::Level(l),
                ));
            }
            out.push(TextLine { spans });
            if !r.detail.is_empty() {
                out.push(line(format!("         {}", clean(&r.detail, g)), Role::Dim));
            }
        }
    }
    if let (Some(d), Phase::Verifying) = (e.deadline, e.phase) {
        let left = (d - now).num_seconds();
        let l = deadline_level(left, p.timeout_secs / 4);
        out.push(TextLine::pair(
            "   deadline ",
            Role::Dim,
            format!(
                "{} (then {})",
                left_text(left),
                p.rollback
                    .as_deref()
                    .map_or("it stops".into(), |r| format!("rollback: {}", clean(r, g)))
            ),
            Role::Countdown(l),
        ));
    } else {
        out.push(TextLine::pair(
            "   timeout  ",
            Role::Dim,
            format!("{} s to verify", p.timeout_secs),
            Role::Plain,
        ));
    }
}

fn outcome(run: &Run, g: &Glyphs, out: &mut Vec<TextLine>) {
    let Some(o) = &run.exec.outcome else { return };
    out.push(TextLine::blank());
    match o {
        Outcome::Succeeded => out.push(TextLine::pair(
            format!(" {} ", g.ok),
            Role::Strong(Level::Ok),
            "every step verified: done",
            Role::Strong(Level::Ok),
        )),
        Outcome::Stopped {
            step,
            id,
            reason,
            detail,
            rolled_back,
            what_now,
        } => {
            out.push(TextLine::pair(
                format!(" {} ", g.critical),
                Role::Strong(Level::Critical),
                format!("stopped at step {} ({id}): {reason:?}", step + 1).to_lowercase(),
                Role::Strong(Level::Critical),
            ));
            out.push(TextLine::pair(
                "   why      ",
                Role::Dim,
                clean(detail, g),
                Role::Plain,
            ));
            out.push(TextLine::pair(
                "   rollback ",
                Role::Dim,
                if *rolled_back { "ran" } else { "did not run" },
                Role::Plain,
            ));
            out.push(TextLine::pair(
                "   now      ",
                Role::Dim,
                clean(what_now, g),
                Role::Title,
            ));
        }
    }
}

/// The confirmation dialog: what it is for, the exact action, and the typed answer.
pub fn confirm(app: &App) -> Vec<TextLine> {
    let g = app.charset.glyphs();
    let rb = &app.runbooks;
    let Some(p) = &rb.confirm else {
        return Vec::new();
    };
    let mut out = Vec::new();
    match p {
        Pending::Operator => {
            out.push(line(" Leave read-only mode?", Role::Title));
            out.push(line(
                " Runbooks will be able to change the fleet (each step still asks).",
                Role::Plain,
            ));
        }
        Pending::Step(c) => {
            out.push(TextLine::pair(
                format!(" Step {}: ", c.step + 1),
                Role::Title,
                format!("{}  (risk {})", clean(&c.title, g), c.risk.as_str()),
                Role::Plain,
            ));
            out.push(TextLine::blank());
            out.push(line(" This will:", Role::Dim));
            for l in c.plan.trim().lines() {
                out.push(line(format!("   {}", clean(l, g)), Role::Plain));
            }
            if let Some(i) = &c.instruction {
                out.push(TextLine::blank());
                out.push(line(" Do this first:", Role::Dim));
                for l in i.lines() {
                    out.push(line(format!("   {}", clean(l, g)), Role::Title));
                }
            }
        }
        Pending::Abort {
            id,
            runbook,
            target,
        } => {
            out.push(line(format!(" Abort {runbook} on {target}?"), Role::Title));
            out.push(line(
                format!(" Execution {id} stops where it is (no rollback) and frees its target."),
                Role::Plain,
            ));
        }
    }
    out.push(TextLine::blank());
    let expected = p.expected();
    let ask = if expected == "yes" {
        " Type yes and press enter (esc declines):".to_string()
    } else {
        format!(" Type {expected} to confirm, then enter (esc declines):")
    };
    out.push(line(ask, Role::Strong(Level::Warning)));
    out.push(TextLine::pair(
        " > ",
        Role::Tag,
        clean(&rb.typed, g),
        Role::Title,
    ));
    if let Some(m) = &rb.mismatch {
        out.push(TextLine::pair(
            format!(" {} ", g.critical),
            Role::Level(Level::Critical),
            clean(m, g),
            Role::Level(Level::Critical),
        ));
    }
    out
}

/// The banner for an execution in progress that this console is not stepping.
pub fn banner(e: &RunbookExecution) -> String {
    format!(
        "runbook {} in progress at step {}/{} ({}), started by {}: :resume or :abort",
        e.runbook,
        e.step + 1,
        e.steps.max(e.step + 1),
        e.step_id,
        e.started_by
    )
}
