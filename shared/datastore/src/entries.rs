//! Registration entries: which SPIFFE IDs are issued to which workloads.

use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor};

use crate::connection::Datastore;
use crate::error::DatastoreError;
use crate::row::{Cols, query_err, to_json};

/// How many values go into one `IN (...)` list.
const IN_LIST_CHUNK: usize = 500;

/// A new registration entry, as submitted by an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The SPIFFE ID issued to matching workloads.
    pub spiffe_id: String,
    /// The SPIFFE ID of the node (or entry) the workload runs under.
    pub parent_id: String,
    /// Selectors, each `"type:value"`. Stored sorted and de-duplicated.
    pub selectors: Vec<String>,
    /// Lifetime of X.509 SVIDs, in seconds.
    pub x509_ttl_secs: i64,
    /// Lifetime of JWT SVIDs, in seconds.
    pub jwt_ttl_secs: i64,
    /// Whether the workload may mint SVIDs for others (downstream).
    pub downstream: bool,
    /// DNS names to put into X.509 SVIDs, in order.
    pub dns_names: Vec<String>,
    /// Downstream entries: the SPIFFE ID path prefixes its server may issue under.
    pub namespaces: Vec<String>,
    /// Foreign trust domains whose bundles the workloads receive. Stored sorted and
    /// de-duplicated.
    pub federates_with: Vec<String>,
}

/// A stored registration entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Random identifier: 16 bytes, hex encoded.
    pub id: String,
    /// The SPIFFE ID issued to matching workloads.
    pub spiffe_id: String,
    /// The SPIFFE ID of the node (or entry) the workload runs under.
    pub parent_id: String,
    /// Selectors, each `"type:value"`, sorted and de-duplicated.
    pub selectors: Vec<String>,
    /// Lifetime of X.509 SVIDs, in seconds.
    pub x509_ttl_secs: i64,
    /// Lifetime of JWT SVIDs, in seconds.
    pub jwt_ttl_secs: i64,
    /// Whether the workload may mint SVIDs for others (downstream).
    pub downstream: bool,
    /// DNS names to put into X.509 SVIDs, in order.
    pub dns_names: Vec<String>,
    /// Downstream entries: the SPIFFE ID path prefixes its server may issue under.
    pub namespaces: Vec<String>,
    /// Foreign trust domains whose bundles the workloads receive, sorted.
    pub federates_with: Vec<String>,
    /// When the entry was created (unix seconds).
    pub created_at: i64,
}

const ENTRY_COLUMNS: &str = "id, spiffe_id, parent_id, selectors, x509_ttl_secs, jwt_ttl_secs, \
                             downstream, dns_names, namespaces, federates_with, created_at";

/// The entries of `rows`, in [`sort_entries`] order.
fn sorted_entries(rows: &[sqlx::any::AnyRow]) -> Result<Vec<Entry>, DatastoreError> {
    let mut entries = rows
        .iter()
        .map(entry_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    sort_entries(&mut entries);
    Ok(entries)
}

impl Datastore {
    /// The registration entry with the given id, if any.
    pub async fn get_entry(&self, id: &str) -> Result<Option<Entry>, DatastoreError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM registration_entries WHERE id = $1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("get entry"))?
            .as_ref()
            .map(entry_from_row)
            .transpose()
    }

    /// All registration entries, ordered by SPIFFE ID, then id (byte order).
    pub async fn list_entries(&self) -> Result<Vec<Entry>, DatastoreError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM registration_entries");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("list entries"))?;
        sorted_entries(&rows)
    }

    /// The registration entries for one SPIFFE ID (the identity index's first column: no
    /// scan of the table), ordered by id.
    pub async fn list_entries_by_spiffe_id(
        &self,
        spiffe_id: &str,
    ) -> Result<Vec<Entry>, DatastoreError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM registration_entries WHERE spiffe_id = $1");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(spiffe_id)
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("list entries by SPIFFE ID"))?;
        sorted_entries(&rows)
    }

    /// The registration entries whose parent is one of `parent_ids`, ordered
    /// by SPIFFE ID, then id.
    pub async fn list_entries_by_parent(
        &self,
        parent_ids: &[String],
    ) -> Result<Vec<Entry>, DatastoreError> {
        let mut parents = parent_ids.to_vec();
        parents.sort();
        parents.dedup();
        let mut entries = Vec::new();
        for chunk in parents.chunks(IN_LIST_CHUNK) {
            let placeholders = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT {ENTRY_COLUMNS} FROM registration_entries \
                 WHERE parent_id IN ({placeholders})"
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for parent in chunk {
                query = query.bind(parent.as_str());
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .map_err(query_err("list entries by parent"))?;
            for row in &rows {
                entries.push(entry_from_row(row)?);
            }
        }
        sort_entries(&mut entries);
        Ok(entries)
    }
}

/// Inserts a new entry (see [`AuditedChange::create_entry`](crate::AuditedChange::create_entry))
/// on a pool or in a transaction.
pub(crate) async fn insert_entry<'c>(
    ex: impl Executor<'c, Database = Any>,
    e: &NewEntry,
    now: i64,
) -> Result<Entry, DatastoreError> {
    let mut selectors = e.selectors.clone();
    selectors.sort();
    selectors.dedup();
    let mut federates_with = e.federates_with.clone();
    federates_with.sort();
    federates_with.dedup();
    let entry = Entry {
        id: crate::random_id::<16>(),
        spiffe_id: e.spiffe_id.clone(),
        parent_id: e.parent_id.clone(),
        selectors,
        x509_ttl_secs: e.x509_ttl_secs,
        jwt_ttl_secs: e.jwt_ttl_secs,
        downstream: e.downstream,
        dns_names: e.dns_names.clone(),
        namespaces: e.namespaces.clone(),
        federates_with,
        created_at: now,
    };
    let selectors_json = to_json(&entry.selectors, "entry selectors")?;
    let result = sqlx::query(
        "INSERT INTO registration_entries (id, spiffe_id, parent_id, selectors, \
         x509_ttl_secs, jwt_ttl_secs, downstream, dns_names, namespaces, federates_with, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
    )
    .bind(&entry.id)
    .bind(&entry.spiffe_id)
    .bind(&entry.parent_id)
    .bind(&selectors_json)
    .bind(entry.x509_ttl_secs)
    .bind(entry.jwt_ttl_secs)
    .bind(i64::from(entry.downstream))
    .bind(to_json(&entry.dns_names, "entry DNS names")?)
    .bind(to_json(&entry.namespaces, "entry namespaces")?)
    .bind(to_json(&entry.federates_with, "entry federates_with")?)
    .bind(entry.created_at)
    .execute(ex)
    .await
    .map_err(query_err("create entry"))?;
    if result.rows_affected() == 0 {
        return Err(DatastoreError::AlreadyExists {
            what: format!(
                "registration entry for {} under parent {} with selectors {}",
                entry.spiffe_id, entry.parent_id, selectors_json
            ),
        });
    }
    Ok(entry)
}

/// Deletes an entry and returns what it was (one statement: a write, never a read first).
pub(crate) async fn remove_entry<'c>(
    ex: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<Entry>, DatastoreError> {
    let sql = format!("DELETE FROM registration_entries WHERE id = $1 RETURNING {ENTRY_COLUMNS}");
    sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(ex)
        .await
        .map_err(query_err("delete entry"))?
        .as_ref()
        .map(entry_from_row)
        .transpose()
}

fn sort_entries(entries: &mut [Entry]) {
    entries.sort_by(|a, b| (&a.spiffe_id, &a.id).cmp(&(&b.spiffe_id, &b.id)));
}

fn entry_from_row(row: &AnyRow) -> Result<Entry, DatastoreError> {
    let cols = Cols::new(row, "registration entry", Some("id"));
    Ok(Entry {
        id: cols.text("id")?,
        spiffe_id: cols.text("spiffe_id")?,
        parent_id: cols.text("parent_id")?,
        selectors: cols.list("selectors")?,
        x509_ttl_secs: cols.int("x509_ttl_secs")?,
        jwt_ttl_secs: cols.int("jwt_ttl_secs")?,
        downstream: cols.flag("downstream")?,
        dns_names: cols.list("dns_names")?,
        namespaces: cols.list("namespaces")?,
        federates_with: cols.list("federates_with")?,
        created_at: cols.int("created_at")?,
    })
}
