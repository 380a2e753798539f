//! Attested nodes: the agents that proved their identity, and their SVIDs.

use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor};

use crate::connection::Datastore;
use crate::error::DatastoreError;
use crate::row::{Cols, query_err, to_json};

/// An attested node (agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedNode {
    /// The node's SPIFFE ID; the key.
    pub spiffe_id: String,
    /// The attestation method's name, e.g. `"join_token"` (`trustdeck_attest::Method`).
    pub attestation_type: String,
    /// Serial number of the node's current SVID.
    pub cert_serial: String,
    /// Expiry of the node's current SVID (unix seconds).
    pub cert_not_after: i64,
    /// The SVID a renewal issued that the node has not used yet (SPIRE's
    /// `new_serial_number`); promoted to the current one on its first use.
    pub new_cert: Option<NodeCert>,
    /// Whether the node is banned from re-attesting and renewing.
    pub banned: bool,
    /// Selectors produced by attestation, each `"type:value"`.
    pub selectors: Vec<String>,
    /// When the node first attested (unix seconds).
    pub created_at: i64,
    /// When the record last changed (unix seconds).
    pub updated_at: i64,
}

/// An SVID a node was issued: its serial and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCert {
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Expiry (unix seconds).
    pub not_after: i64,
}

const NODE_COLUMNS: &str = "spiffe_id, attestation_type, cert_serial, cert_not_after, \
                            new_cert_serial, new_cert_not_after, banned, selectors, created_at, \
                            updated_at";

impl Datastore {
    /// Inserts a node, or updates the node with the same SPIFFE ID.
    ///
    /// On update every field is replaced except `created_at`, which keeps the
    /// time the node first attested.
    pub async fn upsert_node(&self, n: &AttestedNode) -> Result<(), DatastoreError> {
        sqlx::query(
            "INSERT INTO attested_nodes (spiffe_id, attestation_type, cert_serial, \
             cert_not_after, new_cert_serial, new_cert_not_after, banned, selectors, \
             created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (spiffe_id) DO UPDATE SET \
             attestation_type = excluded.attestation_type, \
             cert_serial = excluded.cert_serial, \
             cert_not_after = excluded.cert_not_after, \
             new_cert_serial = excluded.new_cert_serial, \
             new_cert_not_after = excluded.new_cert_not_after, \
             banned = excluded.banned, \
             selectors = excluded.selectors, \
             updated_at = excluded.updated_at",
        )
        .bind(&n.spiffe_id)
        .bind(&n.attestation_type)
        .bind(&n.cert_serial)
        .bind(n.cert_not_after)
        .bind(n.new_cert.as_ref().map(|c| c.serial.clone()))
        .bind(n.new_cert.as_ref().map(|c| c.not_after))
        .bind(i64::from(n.banned))
        .bind(to_json(&n.selectors, "node selectors")?)
        .bind(n.created_at)
        .bind(n.updated_at)
        .execute(&self.pool)
        .await
        .map_err(query_err("upsert node"))?;
        Ok(())
    }

    /// The node with the given SPIFFE ID, if any.
    pub async fn get_node(&self, spiffe_id: &str) -> Result<Option<AttestedNode>, DatastoreError> {
        let sql = format!("SELECT {NODE_COLUMNS} FROM attested_nodes WHERE spiffe_id = $1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(spiffe_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("get node"))?
            .as_ref()
            .map(node_from_row)
            .transpose()
    }

    /// All nodes, ordered by SPIFFE ID (byte order).
    pub async fn list_nodes(&self) -> Result<Vec<AttestedNode>, DatastoreError> {
        let sql = format!("SELECT {NODE_COLUMNS} FROM attested_nodes");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("list nodes"))?;
        let mut nodes = rows
            .iter()
            .map(node_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        nodes.sort_by(|a, b| a.spiffe_id.cmp(&b.spiffe_id));
        Ok(nodes)
    }

    /// Records the SVID a renewal issued as the node's *new* one, replacing any earlier new
    /// one that was never used; the current one stays valid until the new one is used
    /// ([`promote_node_cert`](Self::promote_node_cert)). `false` if there is no such node.
    pub async fn set_node_new_cert(
        &self,
        spiffe_id: &str,
        cert: &NodeCert,
        now: i64,
    ) -> Result<bool, DatastoreError> {
        let result = sqlx::query(
            "UPDATE attested_nodes SET new_cert_serial = $1, new_cert_not_after = $2, \
             updated_at = $3 WHERE spiffe_id = $4",
        )
        .bind(&cert.serial)
        .bind(cert.not_after)
        .bind(now)
        .bind(spiffe_id)
        .execute(&self.pool)
        .await
        .map_err(query_err("set node new certificate"))?;
        Ok(result.rows_affected() > 0)
    }

    /// The node used its new SVID: it becomes the current one (current := new, new := none),
    /// provided the new one still has serial `serial` (checked in the same statement, so of
    /// two concurrent calls one promotes and the other finds it current). `false` when the
    /// node has no such new SVID.
    pub async fn promote_node_cert(
        &self,
        spiffe_id: &str,
        serial: &str,
        now: i64,
    ) -> Result<bool, DatastoreError> {
        let result = sqlx::query(
            "UPDATE attested_nodes SET cert_serial = new_cert_serial, \
             cert_not_after = new_cert_not_after, new_cert_serial = NULL, \
             new_cert_not_after = NULL, updated_at = $1 \
             WHERE spiffe_id = $2 AND new_cert_serial = $3 AND new_cert_not_after IS NOT NULL",
        )
        .bind(now)
        .bind(spiffe_id)
        .bind(serial)
        .execute(&self.pool)
        .await
        .map_err(query_err("promote node certificate"))?;
        Ok(result.rows_affected() > 0)
    }
}

/// Bans or unbans a node and returns it as changed; `None` if there is no such node.
pub(crate) async fn update_node_banned<'c>(
    ex: impl Executor<'c, Database = Any>,
    spiffe_id: &str,
    banned: bool,
    now: i64,
) -> Result<Option<AttestedNode>, DatastoreError> {
    let sql = format!(
        "UPDATE attested_nodes SET banned = $1, updated_at = $2 WHERE spiffe_id = $3 \
         RETURNING {NODE_COLUMNS}"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(i64::from(banned))
        .bind(now)
        .bind(spiffe_id)
        .fetch_optional(ex)
        .await
        .map_err(query_err("set node banned"))?
        .as_ref()
        .map(node_from_row)
        .transpose()
}

/// Deletes a node and returns what it was; `None` if there was none.
pub(crate) async fn remove_node<'c>(
    ex: impl Executor<'c, Database = Any>,
    spiffe_id: &str,
) -> Result<Option<AttestedNode>, DatastoreError> {
    let sql = format!("DELETE FROM attested_nodes WHERE spiffe_id = $1 RETURNING {NODE_COLUMNS}");
    sqlx::query(AssertSqlSafe(sql))
        .bind(spiffe_id)
        .fetch_optional(ex)
        .await
        .map_err(query_err("delete node"))?
        .as_ref()
        .map(node_from_row)
        .transpose()
}

fn node_from_row(row: &AnyRow) -> Result<AttestedNode, DatastoreError> {
    let cols = Cols::new(row, "attested node", Some("spiffe_id"));
    Ok(AttestedNode {
        spiffe_id: cols.text("spiffe_id")?,
        attestation_type: cols.text("attestation_type")?,
        cert_serial: cols.text("cert_serial")?,
        cert_not_after: cols.int("cert_not_after")?,
        new_cert: match (
            cols.opt_text("new_cert_serial")?,
            cols.opt_int("new_cert_not_after")?,
        ) {
            (Some(serial), Some(not_after)) => Some(NodeCert { serial, not_after }),
            (None, None) => None,
            _ => {
                return Err(DatastoreError::Corrupt {
                    what: format!(
                        "attested node {:?}: new_cert_serial and new_cert_not_after must be \
                         set together",
                        cols.text("spiffe_id")?
                    ),
                });
            }
        },
        banned: cols.flag("banned")?,
        selectors: cols.list("selectors")?,
        created_at: cols.int("created_at")?,
        updated_at: cols.int("updated_at")?,
    })
}
