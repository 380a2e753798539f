//! The audit log of the admin API: a change commits together with its record (or neither
//! happens), an attempt that failed is recorded on its own, and refused callers are recorded
//! at a bounded rate ([`RefusalAudit`]). The `Watch` stream learns of every record from
//! [`audit_feed`](crate::audit_feed) once it is stored, not from here.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tonic::Status;
use trustdeck_admin::refusals::{REFUSAL_WINDOW, RefusalLimiter, RefusalSink, ToRecord};
use trustdeck_datastore::{AuditRecord, AuditedChange, Datastore};
use trustdeck_process::clock::Clock;

use crate::ctx::{ServerCtx, ds_status};

/// How an admin call ended, as the audit log says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The change is stored, with this record.
    Ok,
    /// An operator's call failed (invalid, not found, datastore error): nothing changed.
    Failed(String),
    /// The caller may not make this call.
    Refused,
}

impl Outcome {
    /// Whether a stored outcome says the change happened (what [`Outcome::Ok`] writes).
    pub fn is_ok(recorded: &str) -> bool {
        recorded == OUTCOME_OK
    }
}

/// What [`Outcome::Ok`] is stored as.
const OUTCOME_OK: &str = "ok";

/// Audit actions about an attested agent (the target is its SPIFFE ID): their events are
/// attached to the agent's node.
pub const AGENT_EVICT: &str = "agent.evict";
pub const AGENT_BAN: &str = "agent.ban";
pub const AGENT_ACTIONS: &[&str] = &[AGENT_EVICT, AGENT_BAN];

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ok => f.write_str(OUTCOME_OK),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
            Outcome::Refused => f.write_str("refused"),
        }
    }
}

/// What an audit record says besides who, when and how it ended.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    /// E.g. `entry.create`; for a refused call, the method (`CreateEntry`).
    pub action: String,
    /// What it was done to (an entry id, an agent's SPIFFE ID).
    pub target: String,
    pub detail: String,
}

/// An operator making a change: who, and the runbook step it is made for (from the
/// `trustdeck-runbook` header, see [`crate::runbook_journal::step_note`]), which its audit
/// record names.
#[derive(Debug, Clone, Default)]
pub struct Operator {
    pub actor: String,
    /// `runbook <name> step <step> (execution <id>)`, or `None`.
    pub step: Option<String>,
}

impl Operator {
    /// `detail` with the runbook step this call is made for, if any.
    pub fn noted(&self, detail: &str) -> String {
        match (&self.step, detail.is_empty()) {
            (None, _) => detail.to_string(),
            (Some(step), true) => step.clone(),
            (Some(step), false) => format!("{detail}; {step}"),
        }
    }

    /// `audit` with the runbook step in its detail.
    pub fn note(&self, audit: &Audit) -> Audit {
        Audit {
            detail: self.noted(&audit.detail),
            ..audit.clone()
        }
    }
}

/// A record with a fresh random id.
pub(crate) fn record(
    clock: &dyn Clock,
    actor: &str,
    audit: &Audit,
    outcome: &Outcome,
) -> AuditRecord {
    AuditRecord {
        id: trustdeck_datastore::random_id::<12>(),
        at: clock.now().timestamp(),
        actor: actor.into(),
        action: audit.action.clone(),
        target: audit.target.clone(),
        detail: audit.detail.clone(),
        outcome: outcome.to_string(),
    }
}

/// Tells the log what happened (the `Watch` stream hears it from the stored record).
pub(crate) fn log(rec: &AuditRecord) {
    let (actor, action, target, outcome) = (&rec.actor, &rec.action, &rec.target, &rec.outcome);
    tracing::info!(%actor, %action, %target, %outcome, "audit");
}

/// Runs `change` in one transaction with its audit record: the change is stored only if
/// the record is. `change` may fill in the record's target and detail as it learns them. A
/// call that fails is recorded on its own (best effort: its error goes to the caller
/// whatever happens to the record).
pub async fn audited<T>(
    ctx: &ServerCtx,
    op: &Operator,
    mut audit: Audit,
    change: impl AsyncFnOnce(&mut AuditedChange, &mut Audit) -> Result<T, Status>,
) -> Result<T, Status> {
    let clock = ctx.clock.as_ref();
    let actor = op.actor.as_str();
    let result: Result<T, Status> = async {
        let mut tx = ctx.ds.begin_audited().await.map_err(ds_status)?;
        let value = change(&mut tx, &mut audit).await?;
        let rec = record(clock, actor, &op.note(&audit), &Outcome::Ok);
        tx.commit(&rec).await.map_err(ds_status)?;
        log(&rec);
        Ok(value)
    }
    .await;
    if let Err(status) = &result {
        let rec = record(
            clock,
            actor,
            &op.note(&audit),
            &Outcome::Failed(status.message().into()),
        );
        if let Err(e) = ctx.ds.append_audit(&rec).await {
            tracing::error!(error = %e, action = %audit.action, "could not record a failed admin call");
        }
        log(&rec);
    }
    result
}

/// Records refused admin calls: the first of a caller and method, then one per
/// [`REFUSAL_WINDOW`] with the count of the repeats in between, and at most
/// [`MAX_REFUSAL_RECORDS`](trustdeck_admin::refusals::MAX_REFUSAL_RECORDS) per window from
/// all callers together (the rest counted under `others`), so hostile callers cannot grow the
/// audit log faster than that.
pub struct RefusalAudit {
    limiter: Mutex<RefusalLimiter>,
    ds: Datastore,
    clock: Arc<dyn Clock>,
}

impl RefusalAudit {
    pub fn new(ds: Datastore, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            limiter: Mutex::new(RefusalLimiter::default()),
            ds,
            clock,
        })
    }

    /// The sink for [`AdminAccess::refusals`](trustdeck_admin::AdminAccess::refusals).
    pub fn sink(self: &Arc<Self>) -> RefusalSink {
        let me = self.clone();
        RefusalSink(Arc::new(move |refusal| {
            let now = me.clock.now();
            let due = me
                .limiter
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .note(refusal, now);
            if let Some(r) = due {
                me.write(r);
            }
        }))
    }

    /// Writes one record, off the caller's task.
    fn write(self: &Arc<Self>, r: ToRecord) {
        let audit = Audit {
            action: r.refusal.method.clone(),
            target: String::new(),
            detail: r.detail(),
        };
        let rec = record(
            self.clock.as_ref(),
            &r.refusal.actor,
            &audit,
            &Outcome::Refused,
        );
        log(&rec);
        let ds = self.ds.clone();
        tokio::spawn(async move {
            if let Err(e) = ds.append_audit(&rec).await {
                tracing::error!(error = %e, "could not record a refused admin call");
            }
        });
    }

    /// Records, once a window, the repeats of callers that went quiet, until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let period = REFUSAL_WINDOW
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let now = self.clock.now();
            let due = self
                .limiter
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .flush(now);
            for r in due {
                self.write(r);
            }
        }
    }
}
