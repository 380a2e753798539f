//! The runbook execution journal on the admin API: `BeginRunbook`, `ClaimRunbook` and
//! `RecordRunbook` for operators, each checked by the rules of [`crate::runbook_journal`]
//! inside the transaction that stores it with its audit record (`runbook.begin`,
//! `runbook.claim`, `runbook.step`, `runbook.finish`); `ListRunbooks` for viewers. A refusal
//! carries its [`RunbookRefusal`](trustdeck_proto::admin::RunbookRefusal) and changes nothing.

use tonic::Status;
use trustdeck_datastore::{Begun, RunbookRecord};
use trustdeck_proto::admin::{
    BeginRunbookRequest, ClaimRunbookRequest, ListRunbooksRequest, ListRunbooksResponse,
    RecordRunbookRequest, RunbookExecution,
};
use trustdeck_proto::refusal::runbook_refusal_status;

use super::audit::{Audit, Operator, audited};
use crate::ctx::{ServerCtx, ds_status};
use crate::runbook_journal::{self as rules, MAX_FIELD, Refused};

fn status(r: Refused) -> Status {
    runbook_refusal_status(r.refusal, &r.holder, r.message)
}

/// `s` cut to at most [`MAX_FIELD`] bytes, for an audit record of a call that may be invalid.
fn bounded(s: &str) -> String {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

pub async fn begin(
    ctx: &ServerCtx,
    op: &Operator,
    req: BeginRunbookRequest,
) -> Result<RunbookExecution, Status> {
    let audit = Audit {
        action: rules::BEGIN.into(),
        target: bounded(&req.target),
        detail: format!("runbook {}", bounded(&req.runbook)),
    };
    let now = ctx.clock.now().timestamp();
    let id = trustdeck_datastore::random_id::<16>();
    let rec = audited(ctx, op, audit, async |tx, audit| {
        let rec = rules::begin(&req, &op.actor, id, now).map_err(status)?;
        match tx.begin_runbook(&rec).await.map_err(ds_status)? {
            Begun::Started(r) => {
                audit.detail = rules::audit_detail(&r);
                Ok(r)
            }
            Begun::Busy(holder) if rules::same_begin(&holder, &rec) => {
                audit.detail = format!("{} (asked again)", rules::audit_detail(&holder));
                Ok(holder)
            }
            Begun::Busy(holder) => Err(status(rules::busy(&holder))),
        }
    })
    .await?;
    Ok(rules::execution(rec))
}

pub async fn claim(
    ctx: &ServerCtx,
    op: &Operator,
    req: ClaimRunbookRequest,
) -> Result<RunbookExecution, Status> {
    let audit = Audit {
        action: rules::CLAIM.into(),
        target: String::new(),
        detail: format!("execution {}", bounded(&req.id)),
    };
    let now = ctx.clock.now().timestamp();
    change(ctx, op, audit, &req.id, |cur| {
        let next = rules::claim(cur, &req, &op.actor, now)?;
        let detail = format!(
            "{} (held by {} before)",
            rules::audit_detail(&next),
            cur.held_by
        );
        Ok((next, detail))
    })
    .await
}

pub async fn record(
    ctx: &ServerCtx,
    op: &Operator,
    req: RecordRunbookRequest,
) -> Result<RunbookExecution, Status> {
    let audit = Audit {
        action: rules::record_action(&req).into(),
        target: String::new(),
        detail: format!("execution {} step {}", bounded(&req.id), req.step),
    };
    let now = ctx.clock.now().timestamp();
    if let Some(cur) = ctx.ds.get_runbook(&req.id).await.map_err(ds_status)?
        && rules::is_heartbeat(&cur, &req)
        && ctx
            .ds
            .touch_runbook(&req.id, &req.session, now)
            .await
            .map_err(ds_status)?
    {
        return Ok(rules::execution(RunbookRecord {
            updated_at: now,
            ..cur
        }));
    }
    change(ctx, op, audit, &req.id, |cur| {
        let next = rules::record(cur, &req, &op.actor, now)?;
        let detail = rules::audit_detail(&next);
        Ok((next, detail))
    })
    .await
}

/// Execution `id` locked, changed by `rule` (the next record and its audit detail) and
/// stored with its audit record; unknown or refused, nothing changes.
async fn change(
    ctx: &ServerCtx,
    op: &Operator,
    audit: Audit,
    id: &str,
    rule: impl Fn(&RunbookRecord) -> Result<(RunbookRecord, String), Refused>,
) -> Result<RunbookExecution, Status> {
    let rec = audited(ctx, op, audit, async |tx, audit| {
        let cur = tx
            .lock_runbook(id)
            .await
            .map_err(ds_status)?
            .ok_or_else(|| status(rules::unknown(id)))?;
        audit.target = cur.target.clone();
        audit.detail = rules::audit_detail(&cur);
        let (next, detail) = rule(&cur).map_err(status)?;
        tx.update_runbook(&next).await.map_err(ds_status)?;
        audit.detail = detail;
        Ok(next)
    })
    .await?;
    Ok(rules::execution(rec))
}

pub async fn list(
    ctx: &ServerCtx,
    req: ListRunbooksRequest,
) -> Result<ListRunbooksResponse, Status> {
    let records = if req.id.is_empty() {
        ctx.ds
            .list_runbooks(req.include_finished)
            .await
            .map_err(ds_status)?
    } else {
        ctx.ds
            .get_runbook(&req.id)
            .await
            .map_err(ds_status)?
            .into_iter()
            .collect()
    };
    Ok(ListRunbooksResponse {
        executions: records.into_iter().map(rules::execution).collect(),
    })
}
