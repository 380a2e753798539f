//! Foreign trust domains: their bundles (imported by hand or fetched by federation), and the
//! receipts peers sent back for ours. Writes go through an
//! [`AuditedChange`](crate::AuditedChange), so they commit with their audit record; each
//! write replaces only the row its caller read (compare-and-set on the sequence), so a
//! decision taken on a read cannot be overtaken by another writer.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor};

use crate::connection::Datastore;
use crate::error::DatastoreError;
use crate::names::stored_names;
use crate::row::{Cols, query_err, to_json};

stored_names! {
    /// How a foreign bundle came.
    pub enum ForeignSource ("foreign bundle source") {
        /// A signed bundle file carried by hand (`bundle import`).
        Import = "import",
        /// Fetched from the partner's federation bundle endpoint.
        Federation = "federation",
    }
}

/// The bundle held for a foreign trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignBundle {
    /// The foreign trust domain; the key.
    pub trust_domain: String,
    /// SPIFFE bundle JSON.
    pub document: String,
    /// The bundle's sequence.
    pub sequence: u64,
    pub source: ForeignSource,
    /// When it was stored (unix seconds).
    pub updated_at: i64,
}

/// The last receipt a peer sent back: it holds `sequence` of our bundle, with these roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReceipt {
    /// The peer trust domain; the key.
    pub peer_trust_domain: String,
    pub sequence: u64,
    /// SHA-256 fingerprints (hex) of the roots of ours it holds.
    pub roots: Vec<String>,
    /// When it was imported (unix seconds).
    pub received_at: i64,
}

fn seq(v: u64, what: &str) -> Result<i64, DatastoreError> {
    i64::try_from(v).map_err(|_| DatastoreError::InvalidInput {
        what: format!("{what} {v} is too large to store"),
    })
}

fn seq_col(cols: &Cols<'_>, column: &'static str) -> Result<u64, DatastoreError> {
    let v = cols.int(column)?;
    u64::try_from(v).map_err(|_| cols.corrupt(column, format!("{v} is not a sequence")))
}

fn changed(what: String) -> DatastoreError {
    DatastoreError::Conflict {
        what: format!("{what} changed since it was read; nothing stored"),
    }
}

const BUNDLE_COLUMNS: &str = "trust_domain, document, sequence, source, updated_at";
const RECEIPT_COLUMNS: &str = "peer_trust_domain, sequence, roots, received_at";

impl Datastore {
    /// The bundle held for `trust_domain`, if any.
    pub async fn get_foreign_bundle(
        &self,
        trust_domain: &str,
    ) -> Result<Option<ForeignBundle>, DatastoreError> {
        sqlx::query(
            "SELECT trust_domain, document, sequence, source, updated_at \
             FROM foreign_bundles WHERE trust_domain = $1",
        )
        .bind(trust_domain)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("get foreign bundle"))?
        .as_ref()
        .map(bundle_from_row)
        .transpose()
    }

    /// Every foreign bundle, by trust domain.
    pub async fn list_foreign_bundles(&self) -> Result<Vec<ForeignBundle>, DatastoreError> {
        let sql = format!("SELECT {BUNDLE_COLUMNS} FROM foreign_bundles ORDER BY trust_domain");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("list foreign bundles"))?
            .iter()
            .map(bundle_from_row)
            .collect()
    }

    /// The last receipt from `peer`, if any.
    pub async fn get_bundle_receipt(
        &self,
        peer: &str,
    ) -> Result<Option<BundleReceipt>, DatastoreError> {
        sqlx::query(
            "SELECT peer_trust_domain, sequence, roots, received_at \
             FROM bundle_receipts WHERE peer_trust_domain = $1",
        )
        .bind(peer)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("get bundle receipt"))?
        .as_ref()
        .map(receipt_from_row)
        .transpose()
    }

    /// Every peer's last receipt, by peer.
    pub async fn list_bundle_receipts(&self) -> Result<Vec<BundleReceipt>, DatastoreError> {
        let sql =
            format!("SELECT {RECEIPT_COLUMNS} FROM bundle_receipts ORDER BY peer_trust_domain");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("list bundle receipts"))?
            .iter()
            .map(receipt_from_row)
            .collect()
    }
}

/// Stores `rec` if the row is still as read: absent (`read` = `None`) or at sequence `read`;
/// otherwise [`DatastoreError::Conflict`] and nothing stored.
pub(crate) async fn put_foreign_bundle<'c>(
    ex: impl Executor<'c, Database = Any>,
    rec: &ForeignBundle,
    read: Option<u64>,
) -> Result<(), DatastoreError> {
    let sequence = seq(rec.sequence, "bundle sequence")?;
    let q = match read {
        None => sqlx::query(
            "INSERT INTO foreign_bundles (document, sequence, source, updated_at, trust_domain) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        ),
        Some(_) => sqlx::query(
            "UPDATE foreign_bundles SET document = $1, sequence = $2, source = $3, \
             updated_at = $4 WHERE trust_domain = $5 AND sequence = $6",
        ),
    };
    let mut q = q
        .bind(&rec.document)
        .bind(sequence)
        .bind(rec.source.as_str())
        .bind(rec.updated_at)
        .bind(&rec.trust_domain);
    if let Some(read) = read {
        q = q.bind(seq(read, "bundle sequence")?);
    }
    let done = q
        .execute(ex)
        .await
        .map_err(query_err("store foreign bundle"))?;
    if done.rows_affected() == 0 {
        return Err(changed(format!("the bundle of {}", rec.trust_domain)));
    }
    Ok(())
}

/// Deletes the bundle held for `trust_domain`; what it was (`None`: there was none).
pub(crate) async fn remove_foreign_bundle<'c>(
    ex: impl Executor<'c, Database = Any>,
    trust_domain: &str,
) -> Result<Option<ForeignBundle>, DatastoreError> {
    let sql =
        format!("DELETE FROM foreign_bundles WHERE trust_domain = $1 RETURNING {BUNDLE_COLUMNS}");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(trust_domain)
        .fetch_optional(ex)
        .await
        .map_err(query_err("delete foreign bundle"))?
        .as_ref()
        .map(bundle_from_row)
        .transpose()
}

/// Deletes the receipt recorded from `peer`; what it was (`None`: none).
pub(crate) async fn remove_bundle_receipt<'c>(
    ex: impl Executor<'c, Database = Any>,
    peer: &str,
) -> Result<Option<BundleReceipt>, DatastoreError> {
    let sql = format!(
        "DELETE FROM bundle_receipts WHERE peer_trust_domain = $1 RETURNING {RECEIPT_COLUMNS}"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(peer)
        .fetch_optional(ex)
        .await
        .map_err(query_err("delete bundle receipt"))?
        .as_ref()
        .map(receipt_from_row)
        .transpose()
}

/// Stores `rec` if the row is still as read (see [`put_foreign_bundle`]).
pub(crate) async fn put_bundle_receipt<'c>(
    ex: impl Executor<'c, Database = Any>,
    rec: &BundleReceipt,
    read: Option<u64>,
) -> Result<(), DatastoreError> {
    let sequence = seq(rec.sequence, "receipt sequence")?;
    let q = match read {
        None => sqlx::query(
            "INSERT INTO bundle_receipts (sequence, roots, received_at, peer_trust_domain) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        ),
        Some(_) => sqlx::query(
            "UPDATE bundle_receipts SET sequence = $1, roots = $2, received_at = $3 \
             WHERE peer_trust_domain = $4 AND sequence = $5",
        ),
    };
    let mut q = q
        .bind(sequence)
        .bind(to_json(&rec.roots, "receipt roots")?)
        .bind(rec.received_at)
        .bind(&rec.peer_trust_domain);
    if let Some(read) = read {
        q = q.bind(seq(read, "receipt sequence")?);
    }
    let done = q
        .execute(ex)
        .await
        .map_err(query_err("store bundle receipt"))?;
    if done.rows_affected() == 0 {
        return Err(changed(format!("the receipt of {}", rec.peer_trust_domain)));
    }
    Ok(())
}

fn bundle_from_row(row: &AnyRow) -> Result<ForeignBundle, DatastoreError> {
    let cols = Cols::new(row, "foreign bundle", Some("trust_domain"));
    Ok(ForeignBundle {
        trust_domain: cols.text("trust_domain")?,
        document: cols.text("document")?,
        sequence: seq_col(&cols, "sequence")?,
        source: cols.name("source")?,
        updated_at: cols.int("updated_at")?,
    })
}

fn receipt_from_row(row: &AnyRow) -> Result<BundleReceipt, DatastoreError> {
    let cols = Cols::new(row, "bundle receipt", Some("peer_trust_domain"));
    Ok(BundleReceipt {
        peer_trust_domain: cols.text("peer_trust_domain")?,
        sequence: seq_col(&cols, "sequence")?,
        roots: cols.list("roots")?,
        received_at: cols.int("received_at")?,
    })
}
