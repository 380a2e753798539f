//! The audit log: who changed what, and how it ended.

use sqlx::AnyConnection;

use crate::chain::{ChainBreak, ChainHead, ChainedRecord, next_link, verify};
use crate::checkpoints::read_head;
use crate::connection::Datastore;
use crate::error::DatastoreError;
use crate::row::{Cols, query_err};

/// One audit log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Unique identifier of the record.
    pub id: String,
    /// When it happened (unix seconds).
    pub at: i64,
    /// Who did it: the caller as the admin API authenticated it.
    pub actor: String,
    /// What was done, e.g. `entry.create`.
    pub action: String,
    /// What it was done to.
    pub target: String,
    pub detail: String,
    /// How it ended, e.g. `"ok"` or an error.
    pub outcome: String,
}

/// An audit record as listed, with its place in the hash chain (`None` for a record written
/// before the chain existed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedAudit {
    pub record: AuditRecord,
    pub seq: Option<i64>,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

impl Datastore {
    /// Appends an audit record on its own (a refused call, or a change that did not happen);
    /// a change and its record commit together through [`AuditedChange`](crate::AuditedChange).
    /// A record with an existing id is rejected with [`DatastoreError::AlreadyExists`].
    pub async fn append_audit(&self, r: &AuditRecord) -> Result<(), DatastoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_err("begin audit transaction"))?;
        append(&mut tx, r).await?;
        tx.commit()
            .await
            .map_err(query_err("commit audit transaction"))?;
        self.note_audit_appended();
        Ok(())
    }

    /// Tells readers waiting on [`audit_appended`](Self::audit_appended) that a record was
    /// committed. Every writer of an audit record calls it after its commit.
    pub(crate) fn note_audit_appended(&self) {
        self.audit_appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes each time this process commits an audit record (through any clone of this
    /// datastore). Records written by other processes are seen only by reading.
    pub fn audit_appended(&self) -> tokio::sync::watch::Receiver<u64> {
        self.audit_appended.subscribe()
    }

    /// The chained audit records after `after_seq`, oldest first, at most `limit`: how a
    /// reader follows the log (records written before the chain existed are never returned).
    pub async fn audit_after(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<ListedAudit>, DatastoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, detail, outcome, seq, prev_hash, hash \
             FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("follow audit records"))?;
        rows.iter().map(listed).collect()
    }

    /// The newest `limit` audit records, newest first (by `at`, then by id,
    /// descending). A `limit` of zero or less returns nothing.
    pub async fn list_audit(&self, limit: i64) -> Result<Vec<AuditRecord>, DatastoreError> {
        let listed = self.list_audit_links(limit).await?;
        Ok(listed.into_iter().map(|l| l.record).collect())
    }

    /// [`list_audit`](Self::list_audit) with each record's place in the hash chain.
    pub async fn list_audit_links(&self, limit: i64) -> Result<Vec<ListedAudit>, DatastoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, detail, outcome, seq, prev_hash, hash \
             FROM audit_log ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("list audit records"))?;
        let mut records = rows
            .iter()
            .map(listed)
            .collect::<Result<Vec<_>, DatastoreError>>()?;
        // Same order whatever the database's collation.
        records.sort_by(|a, b| (b.record.at, &b.record.id).cmp(&(a.record.at, &a.record.id)));
        Ok(records)
    }

    /// Every chained audit record, by seq, and the chain's head: what
    /// [`verify`](crate::chain::verify) checks. Records written before the chain existed (seq
    /// NULL) are left out.
    pub async fn audit_chain(&self) -> Result<(Vec<ChainedRecord>, ChainHead), DatastoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_err("begin reading the audit chain"))?;
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, detail, outcome, seq, prev_hash, hash \
             FROM audit_log WHERE seq IS NOT NULL ORDER BY seq",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(query_err("read the audit chain"))?;
        let records = rows
            .iter()
            .map(|row| {
                let cols = Cols::new(row, "audit record", Some("id"));
                Ok(ChainedRecord {
                    seq: cols.int("seq")?,
                    prev_hash: cols.text("prev_hash")?,
                    hash: cols.text("hash")?,
                    record: decode(&cols)?,
                })
            })
            .collect::<Result<Vec<_>, DatastoreError>>()?;
        let head = read_head(&mut *tx).await?;
        tx.commit()
            .await
            .map_err(query_err("end reading the audit chain"))?;
        Ok((records, head))
    }

    /// Reads the chain and checks it: how many records are intact, or the first break.
    pub async fn verify_audit(&self) -> Result<Result<i64, ChainBreak>, DatastoreError> {
        let (records, head) = self.audit_chain().await?;
        Ok(verify(&records, &head))
    }
}

fn decode(cols: &Cols<'_>) -> Result<AuditRecord, DatastoreError> {
    Ok(AuditRecord {
        id: cols.text("id")?,
        at: cols.int("at")?,
        actor: cols.text("actor")?,
        action: cols.text("action")?,
        target: cols.text("target")?,
        detail: cols.text("detail")?,
        outcome: cols.text("outcome")?,
    })
}

fn listed(row: &sqlx::any::AnyRow) -> Result<ListedAudit, DatastoreError> {
    let cols = Cols::new(row, "audit record", Some("id"));
    Ok(ListedAudit {
        record: decode(&cols)?,
        seq: cols.opt_int("seq")?,
        prev_hash: cols.opt_text("prev_hash")?,
        hash: cols.opt_text("hash")?,
    })
}

/// The one place an audit record is written, always inside the transaction of what it
/// records, so a record can depend on the one before it (a hash chain) without a gap or a
/// fork between them. Every caller writes (or has written) first, so the transaction already
/// holds the write lock when this runs.
pub(crate) async fn append(
    conn: &mut AnyConnection,
    r: &AuditRecord,
) -> Result<(), DatastoreError> {
    // The head first: a write, so a concurrent append waits here for this transaction and
    // then reads the head it left (PostgreSQL re-reads an updated row after its lock).
    let row =
        sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 'audit' RETURNING seq, hash")
            .fetch_one(&mut *conn)
            .await
            .map_err(query_err("advance audit chain head"))?;
    let cols = Cols::new(&row, "audit chain head", None);
    let head = ChainHead {
        seq: cols.int("seq")? - 1,
        hash: cols.text("hash")?,
    };
    let link = next_link(&head, r);
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 'audit'")
        .bind(&link.hash)
        .execute(&mut *conn)
        .await
        .map_err(query_err("advance audit chain head"))?;
    let result = sqlx::query(
        "INSERT INTO audit_log (id, at, actor, action, target, detail, outcome, seq, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
    )
    .bind(&r.id)
    .bind(r.at)
    .bind(&r.actor)
    .bind(&r.action)
    .bind(&r.target)
    .bind(&r.detail)
    .bind(&r.outcome)
    .bind(link.seq)
    .bind(&link.prev_hash)
    .bind(&link.hash)
    .execute(conn)
    .await
    .map_err(query_err("append audit record"))?;
    if result.rows_affected() == 0 {
        return Err(DatastoreError::AlreadyExists {
            what: format!("audit record {}", r.id),
        });
    }
    Ok(())
}
