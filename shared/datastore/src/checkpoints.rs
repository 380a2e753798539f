//! Signed checkpoints of the audit chain: stored and read here, signed by the server and
//! checked by [`verify_checkpoints`](crate::chain::verify_checkpoints).

use crate::chain::{ChainHead, Checkpoint};
use crate::connection::Datastore;
use crate::error::DatastoreError;
use crate::row::{Cols, query_err};

impl Datastore {
    /// The chain's head as stored now.
    pub async fn audit_head(&self) -> Result<ChainHead, DatastoreError> {
        read_head(&self.pool).await
    }

    /// Stores a checkpoint; one at a seq already checkpointed is rejected with
    /// [`DatastoreError::AlreadyExists`]. Not an audit record: it would move the head it
    /// vouches for.
    pub async fn append_checkpoint(&self, cp: &Checkpoint) -> Result<(), DatastoreError> {
        let result = sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, at, signer, signature) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(cp.seq)
        .bind(&cp.hash)
        .bind(cp.at)
        .bind(hex::encode(&cp.signer))
        .bind(hex::encode(&cp.signature))
        .execute(&self.pool)
        .await
        .map_err(query_err("append audit checkpoint"))?;
        if result.rows_affected() == 0 {
            return Err(DatastoreError::AlreadyExists {
                what: format!("audit checkpoint at {}", cp.seq),
            });
        }
        Ok(())
    }

    /// Every checkpoint, by seq.
    pub async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, DatastoreError> {
        let rows = sqlx::query(
            "SELECT seq, hash, at, signer, signature FROM audit_checkpoints ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read audit checkpoints"))?;
        rows.iter()
            .map(|row| {
                let cols = Cols::new(row, "audit checkpoint", Some("seq"));
                Ok(Checkpoint {
                    seq: cols.int("seq")?,
                    hash: cols.text("hash")?,
                    at: cols.int("at")?,
                    signer: unhex(&cols, "signer")?,
                    signature: unhex(&cols, "signature")?,
                })
            })
            .collect()
    }

    /// The newest checkpoint's seq (0 when there is none).
    pub async fn last_checkpoint_seq(&self) -> Result<i64, DatastoreError> {
        let row = sqlx::query("SELECT seq FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("read the last audit checkpoint"))?;
        match row {
            Some(row) => Cols::new(&row, "audit checkpoint", None).int("seq"),
            None => Ok(0),
        }
    }
}

/// The one-row head of the audit chain.
pub(crate) async fn read_head<'c>(
    conn: impl sqlx::Executor<'c, Database = sqlx::Any>,
) -> Result<ChainHead, DatastoreError> {
    let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 'audit'")
        .fetch_optional(conn)
        .await
        .map_err(query_err("read the audit chain head"))?;
    let Some(row) = row else {
        return Err(DatastoreError::Corrupt {
            what: "audit chain head: the row is missing".to_owned(),
        });
    };
    let cols = Cols::new(&row, "audit chain head", None);
    Ok(ChainHead {
        seq: cols.int("seq")?,
        hash: cols.text("hash")?,
    })
}

fn unhex(cols: &Cols<'_>, column: &str) -> Result<Vec<u8>, DatastoreError> {
    hex::decode(cols.text(column)?).map_err(|e| DatastoreError::Corrupt {
        what: format!("audit checkpoint {column}: {e}"),
    })
}
