//! The runbook execution journal: one row per execution of a runbook (who began it, on which
//! target, where it stands, what its steps saved). Every write goes through an
//! [`AuditedChange`](crate::AuditedChange), so it commits with its audit record; reads are
//! open. The rules (who may record what) are the server's; this module only stores.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor};

use crate::connection::Datastore;
use crate::error::DatastoreError;
use crate::names::stored_names;
use crate::row::{Cols, query_err};

stored_names! {
    /// Where an execution stands.
    pub enum RunbookState ("runbook state") {
        /// In progress, or its session dropped: it holds its target.
        Running = "running",
        /// A step failed, was refused or timed out: it still holds its target.
        Stopped = "stopped",
        /// Every step verified. Final.
        Succeeded = "succeeded",
        /// An operator aborted it. Final.
        Aborted = "aborted",
    }
}

impl RunbookState {
    /// Whether an execution in this state holds its target (and takes more records).
    pub fn holds_target(self) -> bool {
        matches!(self, RunbookState::Running | RunbookState::Stopped)
    }
}

stored_names! {
    /// Where the current step of an execution stands.
    pub enum RunbookPhase ("runbook phase") {
        Checking = "checking",
        Confirming = "confirming",
        Acting = "acting",
        Verifying = "verifying",
        Done = "done",
        RollingBack = "rolling_back",
        Failed = "failed",
    }
}

/// One execution, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunbookRecord {
    /// Random id; the key.
    pub id: String,
    pub runbook: String,
    /// What it acts on: two executions that hold their target never share one.
    pub target: String,
    /// Who began it and who holds it now (audit log actors).
    pub started_by: String,
    pub held_by: String,
    /// The session stepping through it.
    pub session: String,
    pub started_at: i64,
    /// The last record (unix seconds).
    pub updated_at: i64,
    pub state: RunbookState,
    pub step: u32,
    pub step_id: String,
    pub phase: RunbookPhase,
    pub steps: u32,
    pub inputs: BTreeMap<String, String>,
    pub saved: BTreeMap<String, String>,
    pub reason: String,
    pub rolled_back: bool,
    pub runbook_digest: String,
}

/// What a begin did: stored it, or found the execution that holds its target (nothing
/// stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    Started(RunbookRecord),
    Busy(RunbookRecord),
}

/// Most finished executions a listing returns.
pub const MAX_FINISHED_LISTED: i64 = 100;

const COLUMNS: &str = "id, runbook, target, started_by, held_by, session, started_at, \
                       updated_at, state, step, step_id, phase, steps, inputs, saved, reason, \
                       rolled_back, runbook_digest";

const HOLDING: &str = "state IN ('running', 'stopped')";

fn map_json(map: &BTreeMap<String, String>, what: &str) -> Result<String, DatastoreError> {
    serde_json::to_string(map).map_err(|e| DatastoreError::InvalidInput {
        what: format!("{what} cannot be encoded as JSON: {e}"),
    })
}

impl Datastore {
    /// Executions holding their target (running or stopped), and with `include_finished` also
    /// the newest [`MAX_FINISHED_LISTED`] that succeeded or were aborted; newest update first.
    pub async fn list_runbooks(
        &self,
        include_finished: bool,
    ) -> Result<Vec<RunbookRecord>, DatastoreError> {
        let sql = format!("SELECT {COLUMNS} FROM runbook_executions WHERE {HOLDING}");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("list runbook executions"))?;
        let mut out = rows
            .iter()
            .map(runbook_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if include_finished {
            let sql = format!(
                "SELECT {COLUMNS} FROM runbook_executions WHERE NOT ({HOLDING}) \
                 ORDER BY updated_at DESC, id LIMIT $1"
            );
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(MAX_FINISHED_LISTED)
                .fetch_all(&self.pool)
                .await
                .map_err(query_err("list finished runbook executions"))?;
            for row in &rows {
                out.push(runbook_from_row(row)?);
            }
        }
        out.sort_by(|a, b| (b.updated_at, &a.id).cmp(&(a.updated_at, &b.id)));
        Ok(out)
    }

    /// A heartbeat: execution `id`'s last record moved to `now` if it is running and held by
    /// `session` (nothing else changes, so no audit record); `false` if it is not.
    pub async fn touch_runbook(
        &self,
        id: &str,
        session: &str,
        now: i64,
    ) -> Result<bool, DatastoreError> {
        let r = sqlx::query(
            "UPDATE runbook_executions SET updated_at = $1 \
             WHERE id = $2 AND session = $3 AND state = 'running'",
        )
        .bind(now)
        .bind(id)
        .bind(session)
        .execute(&self.pool)
        .await
        .map_err(query_err("touch runbook execution"))?;
        Ok(r.rows_affected() > 0)
    }

    /// The execution with this id, if any.
    pub async fn get_runbook(&self, id: &str) -> Result<Option<RunbookRecord>, DatastoreError> {
        let sql = format!("SELECT {COLUMNS} FROM runbook_executions WHERE id = $1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("get runbook execution"))?
            .as_ref()
            .map(runbook_from_row)
            .transpose()
    }
}

/// Stores `rec` unless an execution holding its target exists (then returns that one): one
/// insert that does nothing on a conflict with the partial unique index, so the check and
/// the write cannot be separated by another transaction.
pub(crate) async fn insert_runbook(
    tx: &mut sqlx::Transaction<'static, Any>,
    rec: &RunbookRecord,
) -> Result<Begun, DatastoreError> {
    let result = sqlx::query(
        "INSERT INTO runbook_executions (id, runbook, target, started_by, held_by, session, \
         started_at, updated_at, state, step, step_id, phase, steps, inputs, saved, reason, \
         rolled_back, runbook_digest) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18) ON CONFLICT DO NOTHING",
    )
    .bind(&rec.id)
    .bind(&rec.runbook)
    .bind(&rec.target)
    .bind(&rec.started_by)
    .bind(&rec.held_by)
    .bind(&rec.session)
    .bind(rec.started_at)
    .bind(rec.updated_at)
    .bind(rec.state.as_str())
    .bind(i64::from(rec.step))
    .bind(&rec.step_id)
    .bind(rec.phase.as_str())
    .bind(i64::from(rec.steps))
    .bind(map_json(&rec.inputs, "runbook inputs")?)
    .bind(map_json(&rec.saved, "runbook saved values")?)
    .bind(&rec.reason)
    .bind(i64::from(rec.rolled_back))
    .bind(&rec.runbook_digest)
    .execute(&mut **tx)
    .await
    .map_err(query_err("begin runbook execution"))?;
    if result.rows_affected() > 0 {
        return Ok(Begun::Started(rec.clone()));
    }
    let sql = format!("SELECT {COLUMNS} FROM runbook_executions WHERE target = $1 AND {HOLDING}");
    let holder = sqlx::query(AssertSqlSafe(sql))
        .bind(&rec.target)
        .fetch_optional(&mut **tx)
        .await
        .map_err(query_err("find the execution holding a target"))?;
    match holder {
        Some(row) => Ok(Begun::Busy(runbook_from_row(&row)?)),
        None => Err(DatastoreError::Conflict {
            what: format!("runbook execution id {} is taken", rec.id),
        }),
    }
}

/// The execution `id`, locked for this transaction (a no-op write, so on SQLite the write
/// lock is taken before anything is read); `None` if there is none.
pub(crate) async fn lock_runbook<'c>(
    ex: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<RunbookRecord>, DatastoreError> {
    let sql = format!(
        "UPDATE runbook_executions SET updated_at = updated_at WHERE id = $1 RETURNING {COLUMNS}"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(ex)
        .await
        .map_err(query_err("lock runbook execution"))?
        .as_ref()
        .map(runbook_from_row)
        .transpose()
}

/// Writes every changeable field of `rec` (all but id, runbook, target, who began it and
/// when, its inputs and digest).
pub(crate) async fn update_runbook<'c>(
    ex: impl Executor<'c, Database = Any>,
    rec: &RunbookRecord,
) -> Result<(), DatastoreError> {
    let result = sqlx::query(
        "UPDATE runbook_executions SET held_by = $1, session = $2, updated_at = $3, \
         state = $4, step = $5, step_id = $6, phase = $7, saved = $8, reason = $9, \
         rolled_back = $10 WHERE id = $11",
    )
    .bind(&rec.held_by)
    .bind(&rec.session)
    .bind(rec.updated_at)
    .bind(rec.state.as_str())
    .bind(i64::from(rec.step))
    .bind(&rec.step_id)
    .bind(rec.phase.as_str())
    .bind(map_json(&rec.saved, "runbook saved values")?)
    .bind(&rec.reason)
    .bind(i64::from(rec.rolled_back))
    .bind(&rec.id)
    .execute(ex)
    .await
    .map_err(query_err("record runbook execution"))?;
    if result.rows_affected() == 0 {
        return Err(DatastoreError::Conflict {
            what: format!("runbook execution {} vanished during the change", rec.id),
        });
    }
    Ok(())
}

fn u32_col(cols: &Cols<'_>, column: &'static str) -> Result<u32, DatastoreError> {
    let v = cols.int(column)?;
    u32::try_from(v).map_err(|_| cols.corrupt(column, format!("{v} is not a step number")))
}

fn map_col(
    cols: &Cols<'_>,
    column: &'static str,
) -> Result<BTreeMap<String, String>, DatastoreError> {
    let text = cols.text(column)?;
    serde_json::from_str(&text)
        .map_err(|e| cols.corrupt(column, format!("not a JSON object of strings: {e}")))
}

fn runbook_from_row(row: &AnyRow) -> Result<RunbookRecord, DatastoreError> {
    let cols = Cols::new(row, "runbook execution", Some("id"));
    Ok(RunbookRecord {
        id: cols.text("id")?,
        runbook: cols.text("runbook")?,
        target: cols.text("target")?,
        started_by: cols.text("started_by")?,
        held_by: cols.text("held_by")?,
        session: cols.text("session")?,
        started_at: cols.int("started_at")?,
        updated_at: cols.int("updated_at")?,
        state: cols.name("state")?,
        step: u32_col(&cols, "step")?,
        step_id: cols.text("step_id")?,
        phase: cols.name("phase")?,
        steps: u32_col(&cols, "steps")?,
        inputs: map_col(&cols, "inputs")?,
        saved: map_col(&cols, "saved")?,
        reason: cols.text("reason")?,
        rolled_back: cols.flag("rolled_back")?,
        runbook_digest: cols.text("runbook_digest")?,
    })
}
