//! The terminal's edge for runbooks: performs a [`RunbookEffect`] with
//! [`RunbookIo`] (the session filled into journal requests) and answers with a
//! [`RunbookMsg`], in a task of its own so the loop keeps drawing.

use tokio::sync::mpsc::UnboundedSender;
use trustdeck_proto::admin::RunbookRefusal;

use crate::app::{Msg, RunbookEffect, RunbookMsg};
use crate::runbook::io::{RunbookIo, StepTag};

/// Starts `e` on `io` (None: the console has no fleet endpoints; it answers at once).
pub fn spawn(io: Option<&RunbookIo>, e: RunbookEffect, tx: &UnboundedSender<Msg>) {
    let Some(io) = io.cloned() else {
        let _ = tx.send(Msg::Runbook(refused(
            e,
            "no admin endpoints in this console",
        )));
        return;
    };
    let tx = tx.clone();
    tokio::spawn(async move {
        let m = perform(&io, e).await;
        let _ = tx.send(Msg::Runbook(m));
    });
}

/// The answer to `e` when it cannot be performed.
fn refused(e: RunbookEffect, why: &str) -> RunbookMsg {
    let why = why.to_string();
    match e {
        RunbookEffect::Perform { rollback, .. } => RunbookMsg::Performed {
            rollback,
            result: Err(why),
            retry: false,
        },
        RunbookEffect::Observe { .. } => RunbookMsg::Observed {
            reads: Default::default(),
            probes: Default::default(),
        },
        RunbookEffect::Begin(_) => RunbookMsg::Begun(Err(why)),
        RunbookEffect::Record(_) => RunbookMsg::Recorded(Err(why)),
        RunbookEffect::Claim(_) => RunbookMsg::Claimed(Err(why)),
        RunbookEffect::List => RunbookMsg::Listed(Err(why)),
    }
}

/// The journal says this session no longer holds the execution.
fn lost(e: &crate::runbook::io::IoError) -> bool {
    matches!(
        e.refusal,
        Some(RunbookRefusal::NotHolder | RunbookRefusal::Finished)
    )
}

fn s<T>(r: Result<T, crate::runbook::io::IoError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

async fn perform(io: &RunbookIo, e: RunbookEffect) -> RunbookMsg {
    match e {
        RunbookEffect::Perform {
            call,
            execution,
            runbook,
            step,
            rollback,
            journal,
        } => {
            let mut req = *journal;
            req.session = io.session.clone();
            let id = req.id.clone();
            if let Err(e) = io.record(req).await {
                if lost(&e) {
                    return RunbookMsg::TakenOver {
                        id,
                        why: e.to_string(),
                    };
                }
                return RunbookMsg::Performed {
                    rollback,
                    retry: false,
                    result: Err(format!(
                        "journal: {e}; nothing of step {step} was done: resume when the \
                         upstream answers"
                    )),
                };
            }
            let tag = StepTag {
                execution,
                runbook,
                step,
            };
            let r = io.perform(&call, &tag).await;
            RunbookMsg::Performed {
                rollback,
                retry: r.as_ref().is_err_and(|e| e.retry),
                result: s(r),
            }
        }
        RunbookEffect::Observe { probes } => RunbookMsg::Observed {
            reads: io.reads().await,
            probes: io.probes(&probes).await,
        },
        RunbookEffect::Begin(mut req) => {
            req.session = io.session.clone();
            match io.begin(req).await {
                Err(e) if e.unreachable => RunbookMsg::JournalDown(e.to_string()),
                r => RunbookMsg::Begun(s(r)),
            }
        }
        RunbookEffect::Record(mut req) => {
            req.session = io.session.clone();
            let id = req.id.clone();
            match io.record(req).await {
                Err(e) if lost(&e) => RunbookMsg::TakenOver {
                    id,
                    why: e.to_string(),
                },
                r => RunbookMsg::Recorded(s(r)),
            }
        }
        RunbookEffect::Claim(id) => match io.claim(&id).await {
            Err(e) if e.refusal == Some(RunbookRefusal::HeldElsewhere) => RunbookMsg::Held {
                id,
                why: e.to_string(),
            },
            r => RunbookMsg::Claimed(s(r)),
        },
        RunbookEffect::List => RunbookMsg::Listed(s(io.list(false).await)),
    }
}
