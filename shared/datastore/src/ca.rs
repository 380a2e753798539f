//! The trust bundle and the CA journal (every CA key with its kind and
//! status), written together in one transaction.

use sqlx::AssertSqlSafe;

use crate::audit::AuditRecord;
use crate::connection::Datastore;
use crate::error::DatastoreError;
use crate::names::stored_names;
use crate::owner::{Lock, select_owner};
use crate::row::{Cols, query_err};

stored_names! {
    /// What a CA journal record holds a key for.
    pub enum CaKind ("CA kind") {
        /// An X.509 CA, signing X509-SVIDs (and, on the root, downstream intermediates).
        X509 = "x509",
        /// A JWT signing key, signing JWT-SVIDs.
        Jwt = "jwt",
    }
}

stored_names! {
    /// Where a CA key is in its lifecycle: prepared → active → old, then
    /// pruned from the journal once it expires.
    pub enum CaStatus ("CA status") {
        /// Published in the bundle, not yet signing: the active one's successor.
        Prepared = "prepared",
        /// The one key of its kind that signs.
        Active = "active",
        /// Replaced (or its key was lost): trusted until it expires, never signs.
        Old = "old",
        /// Distrusted by an operator: still in the bundle, never signs. Not
        /// produced yet (reserved for authority operations).
        Tainted = "tainted",
        /// Removed from trust by an operator: out of the bundle, never signs.
        /// Not produced yet (reserved for authority operations).
        Revoked = "revoked",
    }
}

impl CaStatus {
    /// Whether a key in this status holds a signing slot (active, or prepared to be).
    pub fn is_live(self) -> bool {
        matches!(self, CaStatus::Prepared | CaStatus::Active)
    }

    /// Whether a key in this status belongs in the trust bundle.
    pub fn is_trusted(self) -> bool {
        self != CaStatus::Revoked
    }
}

/// The trust bundle of one trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleRecord {
    /// The trust domain name.
    pub trust_domain: String,
    /// Bundle sequence number, used for optimistic concurrency.
    pub sequence: i64,
    /// The SPIFFE bundle JSON document.
    pub document: String,
    /// When the bundle was last written (unix seconds).
    pub updated_at: i64,
}

/// One CA key in the CA journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaJournalRecord {
    /// Identifier of the record.
    pub id: String,
    /// What the key is for.
    pub kind: CaKind,
    /// Where the key is in its lifecycle.
    pub status: CaStatus,
    /// The key manager holding the private key.
    pub key_backend: String,
    /// Reference to the private key within the key manager.
    pub key_ref: String,
    /// The CA certificate chain, PEM (X.509 keys).
    pub certificate_chain_pem: Option<String>,
    /// The public key, DER then base64 (JWT keys).
    pub public_key_der_b64: Option<String>,
    /// The JWT key ID (JWT keys).
    pub kid: Option<String>,
    /// Start of validity (unix seconds).
    pub not_before: i64,
    /// End of validity (unix seconds).
    pub not_after: i64,
    /// When the record was created (unix seconds).
    pub created_at: i64,
}

pub(crate) const CA_JOURNAL_COLUMNS: &str = "id, kind, status, key_backend, key_ref, certificate_chain_pem, \
                                  public_key_der_b64, kid, not_before, not_after, created_at";

impl Datastore {
    /// The bundle of `trust_domain`, if one was written.
    pub async fn get_bundle(
        &self,
        trust_domain: &str,
    ) -> Result<Option<BundleRecord>, DatastoreError> {
        sqlx::query(
            "SELECT trust_domain, sequence, document, updated_at FROM bundles \
             WHERE trust_domain = $1",
        )
        .bind(trust_domain)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("get bundle"))?
        .as_ref()
        .map(|row| {
            let cols = Cols::new(row, "bundle", Some("trust_domain"));
            Ok(BundleRecord {
                trust_domain: cols.text("trust_domain")?,
                sequence: cols.int("sequence")?,
                document: cols.text("document")?,
                updated_at: cols.int("updated_at")?,
            })
        })
        .transpose()
    }

    /// All CA journal records, ordered by creation time, then id.
    pub async fn list_ca_journal(&self) -> Result<Vec<CaJournalRecord>, DatastoreError> {
        let sql = format!("SELECT {CA_JOURNAL_COLUMNS} FROM ca_journal");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("list CA journal"))?;
        let mut records = rows
            .iter()
            .map(decode_journal)
            .collect::<Result<Vec<_>, DatastoreError>>()?;
        records.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(records)
    }

    /// Writes CA state in one transaction: upserts `upserts` (by id), deletes
    /// the journal records `deletes` (after the upserts), and writes `bundle`.
    ///
    /// The bundle is written only if the stored bundle's sequence equals
    /// `expected_sequence` (`None`: no bundle is stored yet for the trust
    /// domain). Otherwise the transaction is rolled back, nothing is written,
    /// and [`DatastoreError::Conflict`] is returned. Any other failure also
    /// leaves everything as it was.
    ///
    /// Once a server claimed the journal ([`Datastore::claim_ca_owner`]), only its session
    /// `owner_session` commits: any other gets [`DatastoreError::NotCaOwner`], nothing written.
    ///
    /// `audit` (the records of what changed: scheduled rotation steps, operator operations)
    /// is appended to the audit chain in the same transaction: the CA change and its records
    /// commit together or not at all.
    pub async fn commit_ca_state(
        &self,
        owner_session: &str,
        upserts: &[CaJournalRecord],
        deletes: &[String],
        bundle: &BundleRecord,
        expected_sequence: Option<i64>,
        audit: &[AuditRecord],
    ) -> Result<(), DatastoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_err("begin CA state transaction"))?;

        // The bundle goes first: the compare-and-set decides whether anything
        // is written at all, and (on SQLite) a write as the first statement
        // takes the write lock up front, so the transaction cannot fail later
        // on a lock upgrade.
        let written = match expected_sequence {
            Some(expected) => sqlx::query(
                "UPDATE bundles SET sequence = $1, document = $2, updated_at = $3 \
                 WHERE trust_domain = $4 AND sequence = $5",
            )
            .bind(bundle.sequence)
            .bind(&bundle.document)
            .bind(bundle.updated_at)
            .bind(&bundle.trust_domain)
            .bind(expected),
            None => sqlx::query(
                "INSERT INTO bundles (trust_domain, sequence, document, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(&bundle.trust_domain)
            .bind(bundle.sequence)
            .bind(&bundle.document)
            .bind(bundle.updated_at),
        }
        .execute(&mut *tx)
        .await
        .map_err(query_err("write bundle"))?
        .rows_affected();

        if written == 0 {
            let stored = sqlx::query("SELECT sequence FROM bundles WHERE trust_domain = $1")
                .bind(&bundle.trust_domain)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_err("read bundle sequence"))?
                .as_ref()
                .map(|row| Cols::new(row, "bundle", Some("trust_domain")).int("sequence"))
                .transpose()?;
            tx.rollback()
                .await
                .map_err(query_err("roll back CA state transaction"))?;
            return Err(DatastoreError::Conflict {
                what: format!(
                    "bundle of trust domain \"{}\": expected {}, found {}",
                    bundle.trust_domain,
                    describe_sequence(expected_sequence),
                    describe_sequence(stored),
                ),
            });
        }

        if let Some(owner) = select_owner(&mut tx, Lock::Yes).await?
            && owner.session != owner_session
        {
            tx.rollback()
                .await
                .map_err(query_err("roll back CA state transaction"))?;
            return Err(DatastoreError::NotCaOwner);
        }

        for r in upserts {
            sqlx::query(
                "INSERT INTO ca_journal (id, kind, status, key_backend, key_ref, \
                 certificate_chain_pem, public_key_der_b64, kid, not_before, not_after, \
                 created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (id) DO UPDATE SET \
                 kind = excluded.kind, \
                 status = excluded.status, \
                 key_backend = excluded.key_backend, \
                 key_ref = excluded.key_ref, \
                 certificate_chain_pem = excluded.certificate_chain_pem, \
                 public_key_der_b64 = excluded.public_key_der_b64, \
                 kid = excluded.kid, \
                 not_before = excluded.not_before, \
                 not_after = excluded.not_after, \
                 created_at = excluded.created_at",
            )
            .bind(&r.id)
            .bind(r.kind.as_str())
            .bind(r.status.as_str())
            .bind(&r.key_backend)
            .bind(&r.key_ref)
            .bind(r.certificate_chain_pem.as_deref())
            .bind(r.public_key_der_b64.as_deref())
            .bind(r.kid.as_deref())
            .bind(r.not_before)
            .bind(r.not_after)
            .bind(r.created_at)
            .execute(&mut *tx)
            .await
            .map_err(query_err("upsert CA journal record"))?;
        }

        for id in deletes {
            sqlx::query("DELETE FROM ca_journal WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(query_err("delete CA journal record"))?;
        }

        for r in audit {
            crate::audit::append(&mut tx, r).await?;
        }

        tx.commit()
            .await
            .map_err(query_err("commit CA state transaction"))?;
        if !audit.is_empty() {
            self.note_audit_appended();
        }
        Ok(())
    }
}

/// One CA journal row.
pub(crate) fn decode_journal(row: &sqlx::any::AnyRow) -> Result<CaJournalRecord, DatastoreError> {
    let cols = Cols::new(row, "CA journal record", Some("id"));
    Ok(CaJournalRecord {
        id: cols.text("id")?,
        kind: cols.name("kind")?,
        status: cols.name("status")?,
        key_backend: cols.text("key_backend")?,
        key_ref: cols.text("key_ref")?,
        certificate_chain_pem: cols.opt_text("certificate_chain_pem")?,
        public_key_der_b64: cols.opt_text("public_key_der_b64")?,
        kid: cols.opt_text("kid")?,
        not_before: cols.int("not_before")?,
        not_after: cols.int("not_after")?,
        created_at: cols.int("created_at")?,
    })
}

fn describe_sequence(sequence: Option<i64>) -> String {
    match sequence {
        Some(s) => format!("sequence {s}"),
        None => "no stored bundle".to_owned(),
    }
}
