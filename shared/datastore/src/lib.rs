#![forbid(unsafe_code)]
//! The trustdeck server's datastore.
//!
//! One sqlx code path serves both SQLite (the default) and PostgreSQL: every
//! query goes through [`sqlx::any`], and the schema is a set of portable
//! migrations embedded at compile time (`./migrations`). The only
//! backend-specific code lives in [`Datastore::open`].
//!
//! Storage conventions, shared by both backends:
//!
//! * column types are `TEXT` and `BIGINT` only;
//! * booleans are `BIGINT` 0/1 and timestamps are `BIGINT` unix seconds;
//! * binary data is stored as text (PEM or base64);
//! * lists of strings are JSON arrays stored as `TEXT`;
//! * query parameters are written `$1`, `$2`, … (PostgreSQL's native style,
//!   which sqlx's SQLite driver also understands).
//!
//! Rows holding data that cannot be decoded are reported as
//! [`DatastoreError::Corrupt`]; nothing read back from the database is
//! unwrapped.

use std::fmt;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Connection};
use sqlx::{AssertSqlSafe, Row};

/// The schema migrations, embedded from `./migrations`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a SQLite connection waits for a lock held by another connection.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 5_000;

/// How long opening the datastore, or waiting for a pooled connection, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How many values go into one `IN (...)` list.
const IN_LIST_CHUNK: usize = 500;

/// Errors returned by the [`Datastore`].
///
/// Messages are written for operators. They never contain database passwords
/// (URLs are shown redacted, see [`redact_url`]) nor join-token values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatastoreError {
    /// The datastore URL names no supported backend.
    #[error(
        "unsupported datastore URL \"{url}\": expected sqlite:///absolute/path.db, \
         sqlite://relative/path.db, sqlite::memory: or postgres://..."
    )]
    UnsupportedUrl {
        /// The URL, with any password redacted.
        url: String,
    },

    /// The SQLite file exists but is not a readable SQLite database. The file
    /// was left untouched.
    #[error(
        "datastore \"{url}\" is not a readable SQLite database \
         (file is corrupt or not a database): {reason}"
    )]
    NotADatabase {
        /// The URL of the datastore.
        url: String,
        /// The underlying driver message.
        reason: String,
    },

    /// The datastore could not be opened or connected to.
    #[error("cannot open datastore \"{url}\": {reason}")]
    Open {
        /// The URL, with any password redacted.
        url: String,
        /// The underlying driver message, with any password redacted.
        reason: String,
    },

    /// The schema migrations could not be applied.
    #[error("cannot migrate datastore \"{url}\" to the current schema: {reason}")]
    Migrate {
        /// The URL, with any password redacted.
        url: String,
        /// The underlying migration error.
        reason: String,
    },

    /// A query or transaction failed.
    #[error("datastore operation \"{op}\" failed: {cause}")]
    Query {
        /// What the datastore was doing.
        op: &'static str,
        /// The underlying sqlx error.
        cause: sqlx::Error,
    },

    /// A stored row holds data that cannot be decoded.
    #[error("datastore holds corrupt data: {what}")]
    Corrupt {
        /// Which row and column, and what is wrong with it.
        what: String,
    },

    /// A record with the same identity already exists; nothing was written.
    #[error("already exists: {what}")]
    AlreadyExists {
        /// The record that already exists.
        what: String,
    },

    /// An optimistic-concurrency check failed; the transaction was rolled back
    /// and nothing was written.
    #[error("conflicting concurrent update: {what}")]
    Conflict {
        /// What was expected and what was found.
        what: String,
    },

    /// No join token with the given value exists.
    #[error("join token not found")]
    TokenNotFound,

    /// The join token was already consumed.
    #[error("join token was already used at {used_at}")]
    TokenUsed {
        /// When the token was consumed (unix seconds).
        used_at: i64,
    },

    /// The join token has expired.
    #[error("join token expired at {expired_at}")]
    TokenExpired {
        /// When the token expired (unix seconds).
        expired_at: i64,
    },

    /// The caller passed data that cannot be stored.
    #[error("invalid input: {what}")]
    InvalidInput {
        /// What is wrong with the input.
        what: String,
    },
}

/// The database behind a [`Datastore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite, a local file (or memory, for tests).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The backend a datastore URL names, if any.
    pub fn from_url(url: &str) -> Option<Backend> {
        let lower = url.trim_start().to_ascii_lowercase();
        if lower.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// A short lowercase name: `"sqlite"` or `"postgres"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// When the entry was created (unix seconds).
    pub created_at: i64,
}

/// An attested node (agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedNode {
    /// The node's SPIFFE ID; the key.
    pub spiffe_id: String,
    /// The attestation method used, e.g. `"join_token"`.
    pub attestation_type: String,
    /// Serial number of the node's current SVID.
    pub cert_serial: String,
    /// Expiry of the node's current SVID (unix seconds).
    pub cert_not_after: i64,
    /// Whether the node is banned from re-attesting and renewing.
    pub banned: bool,
    /// Selectors produced by attestation, each `"type:value"`.
    pub selectors: Vec<String>,
    /// When the node first attested (unix seconds).
    pub created_at: i64,
    /// When the record last changed (unix seconds).
    pub updated_at: i64,
}

/// A join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The secret token value.
    pub token: String,
    /// When the token stops being accepted (unix seconds); a token is valid
    /// while `now < expires_at`.
    pub expires_at: i64,
    /// When the token was consumed (unix seconds), if it was.
    pub used_at: Option<i64>,
    /// When the token was created (unix seconds).
    pub created_at: i64,
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
    /// `"x509"` or `"jwt"`.
    pub kind: String,
    /// `"prepared"`, `"active"` or `"old"`.
    pub status: String,
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

/// One audit log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Unique identifier of the record.
    pub id: String,
    /// When it happened (unix seconds).
    pub at: i64,
    /// Who did it.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// Free-form details.
    pub detail: String,
    /// How it ended, e.g. `"ok"` or an error.
    pub outcome: String,
}

/// A handle on the datastore. Cloning is cheap: clones share one connection
/// pool.
#[derive(Clone)]
pub struct Datastore {
    pool: AnyPool,
    backend: Backend,
}

impl fmt::Debug for Datastore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datastore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

const ENTRY_COLUMNS: &str = "id, spiffe_id, parent_id, selectors, x509_ttl_secs, jwt_ttl_secs, \
                             downstream, dns_names, created_at";

const NODE_COLUMNS: &str = "spiffe_id, attestation_type, cert_serial, cert_not_after, banned, \
                            selectors, created_at, updated_at";

const CA_JOURNAL_COLUMNS: &str = "id, kind, status, key_backend, key_ref, certificate_chain_pem, \
                                  public_key_der_b64, kid, not_before, not_after, created_at";

impl Datastore {
    /// Opens the datastore at `url` and brings its schema up to date.
    ///
    /// Accepted URLs:
    ///
    /// * `sqlite:///absolute/path.db` and `sqlite://relative/path.db`: the file
    ///   is created if missing; connections use WAL journaling, a busy timeout
    ///   and enforced foreign keys. A file that is not an SQLite database is
    ///   rejected with [`DatastoreError::NotADatabase`] and left untouched.
    /// * `sqlite::memory:`: a private in-memory database (tests).
    /// * `postgres://user:password@host:port/database` (or `postgresql://`).
    pub async fn open(url: &str) -> Result<Datastore, DatastoreError> {
        sqlx::any::install_default_drivers();
        let shown = redact_url(url);
        let backend = Backend::from_url(url)
            .ok_or_else(|| DatastoreError::UnsupportedUrl { url: shown.clone() })?;

        let (connect_url, in_memory) = match backend {
            Backend::Sqlite => sqlite_connect_url(url),
            Backend::Postgres => (url.to_owned(), false),
        };
        let open_err = |e: sqlx::Error| {
            if backend == Backend::Sqlite && is_sqlite_not_a_database(&e) {
                DatastoreError::NotADatabase {
                    url: shown.clone(),
                    reason: e.to_string(),
                }
            } else {
                DatastoreError::Open {
                    url: shown.clone(),
                    reason: scrub_password(url, &e.to_string()),
                }
            }
        };

        // Probe with one plain connection first: the pool retries failed
        // connection attempts until its timeout and then reports only the
        // timeout, while operators need the actual cause. For SQLite, reading
        // the schema fails on a file that is not a database, before anything
        // could write to it.
        let mut probe = tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect(&connect_url))
            .await
            .map_err(|_| DatastoreError::Open {
                url: shown.clone(),
                reason: format!("no connection within {} seconds", CONNECT_TIMEOUT.as_secs()),
            })?
            .map_err(open_err)?;
        let probe_sql = match backend {
            Backend::Sqlite => "SELECT count(*) FROM sqlite_master",
            Backend::Postgres => "SELECT 1",
        };
        let probed = sqlx::query(probe_sql).fetch_one(&mut probe).await;
        // Closing can only fail on a broken connection; the probe result says
        // all there is to say.
        let _ = probe.close().await;
        probed.map_err(open_err)?;

        let options = match backend {
            // Every connection to a `:memory:` URL shares one database only
            // while some connection stays open: keep exactly one, forever.
            Backend::Sqlite if in_memory => AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None),
            Backend::Sqlite => AnyPoolOptions::new().max_connections(8),
            Backend::Postgres => AnyPoolOptions::new().max_connections(16),
        }
        .acquire_timeout(CONNECT_TIMEOUT);
        let options = match backend {
            Backend::Sqlite => options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::query(AssertSqlSafe(format!(
                        "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"
                    )))
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            }),
            Backend::Postgres => options,
        };
        let pool = options.connect(&connect_url).await.map_err(open_err)?;

        if let Err(e) = MIGRATOR.run(&pool).await {
            pool.close().await;
            return Err(DatastoreError::Migrate {
                url: shown,
                reason: scrub_password(url, &e.to_string()),
            });
        }
        tracing::info!(backend = %backend, url = %shown, "datastore opened");
        Ok(Datastore { pool, backend })
    }

    /// Which database this datastore runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers (`SELECT 1`).
    pub async fn ping(&self) -> Result<(), DatastoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(query_err("ping"))?;
        Ok(())
    }

    /// Closes every connection; later calls on this datastore (or its clones)
    /// fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ----------------------------------------------------------------------
    // Registration entries
    // ----------------------------------------------------------------------

    /// Creates a registration entry with a fresh random id.
    ///
    /// Selectors are stored sorted and de-duplicated; the returned [`Entry`]
    /// shows them that way. An entry with the same SPIFFE ID, parent ID and
    /// selector set is rejected with [`DatastoreError::AlreadyExists`] and
    /// nothing is written.
    pub async fn create_entry(&self, e: &NewEntry, now: i64) -> Result<Entry, DatastoreError> {
        let mut selectors = e.selectors.clone();
        selectors.sort();
        selectors.dedup();
        let entry = Entry {
            id: hex::encode(rand::random::<[u8; 16]>()),
            spiffe_id: e.spiffe_id.clone(),
            parent_id: e.parent_id.clone(),
            selectors,
            x509_ttl_secs: e.x509_ttl_secs,
            jwt_ttl_secs: e.jwt_ttl_secs,
            downstream: e.downstream,
            dns_names: e.dns_names.clone(),
            created_at: now,
        };
        let selectors_json = to_json(&entry.selectors, "entry selectors")?;
        let result = sqlx::query(
            "INSERT INTO registration_entries (id, spiffe_id, parent_id, selectors, \
             x509_ttl_secs, jwt_ttl_secs, downstream, dns_names, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(&entry.id)
        .bind(&entry.spiffe_id)
        .bind(&entry.parent_id)
        .bind(&selectors_json)
        .bind(entry.x509_ttl_secs)
        .bind(entry.jwt_ttl_secs)
        .bind(i64::from(entry.downstream))
        .bind(to_json(&entry.dns_names, "entry DNS names")?)
        .bind(entry.created_at)
        .execute(&self.pool)
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
        let mut entries = rows
            .iter()
            .map(entry_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        sort_entries(&mut entries);
        Ok(entries)
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

    /// Deletes a registration entry; `false` if there was none.
    pub async fn delete_entry(&self, id: &str) -> Result<bool, DatastoreError> {
        let result = sqlx::query("DELETE FROM registration_entries WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(query_err("delete entry"))?;
        Ok(result.rows_affected() > 0)
    }

    // ----------------------------------------------------------------------
    // Attested nodes
    // ----------------------------------------------------------------------

    /// Inserts a node, or updates the node with the same SPIFFE ID.
    ///
    /// On update every field is replaced except `created_at`, which keeps the
    /// time the node first attested.
    pub async fn upsert_node(&self, n: &AttestedNode) -> Result<(), DatastoreError> {
        sqlx::query(
            "INSERT INTO attested_nodes (spiffe_id, attestation_type, cert_serial, \
             cert_not_after, banned, selectors, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (spiffe_id) DO UPDATE SET \
             attestation_type = excluded.attestation_type, \
             cert_serial = excluded.cert_serial, \
             cert_not_after = excluded.cert_not_after, \
             banned = excluded.banned, \
             selectors = excluded.selectors, \
             updated_at = excluded.updated_at",
        )
        .bind(&n.spiffe_id)
        .bind(&n.attestation_type)
        .bind(&n.cert_serial)
        .bind(n.cert_not_after)
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

    /// Records a node's renewed SVID; `false` if there is no such node.
    pub async fn update_node_cert(
        &self,
        spiffe_id: &str,
        serial: &str,
        not_after: i64,
        now: i64,
    ) -> Result<bool, DatastoreError> {
        let result = sqlx::query(
            "UPDATE attested_nodes SET cert_serial = $1, cert_not_after = $2, updated_at = $3 \
             WHERE spiffe_id = $4",
        )
        .bind(serial)
        .bind(not_after)
        .bind(now)
        .bind(spiffe_id)
        .execute(&self.pool)
        .await
        .map_err(query_err("update node certificate"))?;
        Ok(result.rows_affected() > 0)
    }

    /// Bans or unbans a node; `false` if there is no such node.
    pub async fn set_node_banned(
        &self,
        spiffe_id: &str,
        banned: bool,
        now: i64,
    ) -> Result<bool, DatastoreError> {
        let result = sqlx::query(
            "UPDATE attested_nodes SET banned = $1, updated_at = $2 WHERE spiffe_id = $3",
        )
        .bind(i64::from(banned))
        .bind(now)
        .bind(spiffe_id)
        .execute(&self.pool)
        .await
        .map_err(query_err("set node banned"))?;
        Ok(result.rows_affected() > 0)
    }

    /// Deletes (evicts) a node; `false` if there was none.
    pub async fn delete_node(&self, spiffe_id: &str) -> Result<bool, DatastoreError> {
        let result = sqlx::query("DELETE FROM attested_nodes WHERE spiffe_id = $1")
            .bind(spiffe_id)
            .execute(&self.pool)
            .await
            .map_err(query_err("delete node"))?;
        Ok(result.rows_affected() > 0)
    }

    // ----------------------------------------------------------------------
    // Join tokens
    // ----------------------------------------------------------------------

    /// Stores a new, unused join token. An existing token with the same value
    /// is rejected with [`DatastoreError::AlreadyExists`].
    pub async fn create_join_token(
        &self,
        token: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), DatastoreError> {
        let result = sqlx::query(
            "INSERT INTO join_tokens (token, expires_at, used_at, created_at) \
             VALUES ($1, $2, NULL, $3) ON CONFLICT DO NOTHING",
        )
        .bind(token)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(query_err("create join token"))?;
        if result.rows_affected() == 0 {
            return Err(DatastoreError::AlreadyExists {
                what: "a join token with this value".to_owned(),
            });
        }
        Ok(())
    }

    /// Consumes a join token, atomically: of any number of concurrent calls
    /// for one token, exactly one succeeds.
    ///
    /// Fails with [`DatastoreError::TokenNotFound`],
    /// [`DatastoreError::TokenUsed`] or [`DatastoreError::TokenExpired`]
    /// (a token is valid while `now < expires_at`).
    pub async fn consume_join_token(&self, token: &str, now: i64) -> Result<(), DatastoreError> {
        let result = sqlx::query(
            "UPDATE join_tokens SET used_at = $1 \
             WHERE token = $2 AND used_at IS NULL AND expires_at > $3",
        )
        .bind(now)
        .bind(token)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(query_err("consume join token"))?;
        if result.rows_affected() > 0 {
            return Ok(());
        }

        // Not consumed by this call: find out why. `used_at` is never cleared,
        // so what we read now explains the failed update.
        let row = sqlx::query("SELECT expires_at, used_at FROM join_tokens WHERE token = $1")
            .bind(token)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("inspect join token"))?;
        let Some(row) = row else {
            return Err(DatastoreError::TokenNotFound);
        };
        let cols = Cols::new(&row, "join token", None);
        let expires_at = cols.int("expires_at")?;
        if let Some(used_at) = cols.opt_int("used_at")? {
            return Err(DatastoreError::TokenUsed { used_at });
        }
        if expires_at <= now {
            return Err(DatastoreError::TokenExpired {
                expired_at: expires_at,
            });
        }
        Err(DatastoreError::Corrupt {
            what: "join token is unused and unexpired, yet could not be consumed".to_owned(),
        })
    }

    /// All join tokens, ordered by creation time, then token.
    pub async fn list_join_tokens(&self) -> Result<Vec<JoinToken>, DatastoreError> {
        let rows = sqlx::query("SELECT token, expires_at, used_at, created_at FROM join_tokens")
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("list join tokens"))?;
        let mut tokens = rows
            .iter()
            .map(|row| {
                let cols = Cols::new(row, "join token", None);
                Ok(JoinToken {
                    token: cols.text("token")?,
                    expires_at: cols.int("expires_at")?,
                    used_at: cols.opt_int("used_at")?,
                    created_at: cols.int("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, DatastoreError>>()?;
        tokens.sort_by(|a, b| (a.created_at, &a.token).cmp(&(b.created_at, &b.token)));
        Ok(tokens)
    }

    // ----------------------------------------------------------------------
    // Bundles and the CA journal
    // ----------------------------------------------------------------------

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
            .map(|row| {
                let cols = Cols::new(row, "CA journal record", Some("id"));
                Ok(CaJournalRecord {
                    id: cols.text("id")?,
                    kind: cols.text("kind")?,
                    status: cols.text("status")?,
                    key_backend: cols.text("key_backend")?,
                    key_ref: cols.text("key_ref")?,
                    certificate_chain_pem: cols.opt_text("certificate_chain_pem")?,
                    public_key_der_b64: cols.opt_text("public_key_der_b64")?,
                    kid: cols.opt_text("kid")?,
                    not_before: cols.int("not_before")?,
                    not_after: cols.int("not_after")?,
                    created_at: cols.int("created_at")?,
                })
            })
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
    pub async fn commit_ca_state(
        &self,
        upserts: &[CaJournalRecord],
        deletes: &[String],
        bundle: &BundleRecord,
        expected_sequence: Option<i64>,
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
            .bind(&r.kind)
            .bind(&r.status)
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

        tx.commit()
            .await
            .map_err(query_err("commit CA state transaction"))
    }

    // ----------------------------------------------------------------------
    // Audit log
    // ----------------------------------------------------------------------

    /// Appends an audit record. A record with an existing id is rejected with
    /// [`DatastoreError::AlreadyExists`].
    pub async fn append_audit(&self, r: &AuditRecord) -> Result<(), DatastoreError> {
        let result = sqlx::query(
            "INSERT INTO audit_log (id, at, actor, action, target, detail, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&r.id)
        .bind(r.at)
        .bind(&r.actor)
        .bind(&r.action)
        .bind(&r.target)
        .bind(&r.detail)
        .bind(&r.outcome)
        .execute(&self.pool)
        .await
        .map_err(query_err("append audit record"))?;
        if result.rows_affected() == 0 {
            return Err(DatastoreError::AlreadyExists {
                what: format!("audit record {}", r.id),
            });
        }
        Ok(())
    }

    /// The newest `limit` audit records, newest first (by `at`, then by id,
    /// descending). A `limit` of zero or less returns nothing.
    pub async fn list_audit(&self, limit: i64) -> Result<Vec<AuditRecord>, DatastoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, detail, outcome FROM audit_log \
             ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("list audit records"))?;
        let mut records = rows
            .iter()
            .map(|row| {
                let cols = Cols::new(row, "audit record", Some("id"));
                Ok(AuditRecord {
                    id: cols.text("id")?,
                    at: cols.int("at")?,
                    actor: cols.text("actor")?,
                    action: cols.text("action")?,
                    target: cols.text("target")?,
                    detail: cols.text("detail")?,
                    outcome: cols.text("outcome")?,
                })
            })
            .collect::<Result<Vec<_>, DatastoreError>>()?;
        // Same order whatever the database's collation.
        records.sort_by(|a, b| (b.at, &b.id).cmp(&(a.at, &a.id)));
        Ok(records)
    }
}

/// Returns `url` with any password replaced by `***`: both the password of
/// `scheme://user:password@host` and a `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let (head, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = if head.is_empty() {
        0
    } else {
        rest.find(['/', '?', '#']).unwrap_or(rest.len())
    };
    let (authority, tail) = rest.split_at(authority_end);

    let mut out = String::with_capacity(url.len());
    out.push_str(head);
    match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(host);
        }
        None => out.push_str(authority),
    }

    let (path, query) = match tail.find('?') {
        Some(q) => tail.split_at(q),
        None => (tail, ""),
    };
    out.push_str(path);
    if let Some(query) = query.strip_prefix('?') {
        let (query, fragment) = match query.find('#') {
            Some(f) => query.split_at(f),
            None => (query, ""),
        };
        out.push('?');
        let pairs = query.split('&').map(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            if key.to_ascii_lowercase().contains("password") {
                format!("{key}=***")
            } else {
                pair.to_owned()
            }
        });
        out.push_str(&pairs.collect::<Vec<_>>().join("&"));
        out.push_str(fragment);
    }
    out
}

/// Removes every password found in `url` from `message`.
fn scrub_password(url: &str, message: &str) -> String {
    let mut secrets = Vec::new();
    if let Some(i) = url.find("://") {
        let rest = &url[i + 3..];
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@')
            && let Some((_, password)) = authority[..at].split_once(':')
        {
            secrets.push(password.to_owned());
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split(['&', '#']) {
            if let Some((key, value)) = pair.split_once('=')
                && key.to_ascii_lowercase().contains("password")
            {
                secrets.push(value.to_owned());
            }
        }
    }
    let mut out = message.to_owned();
    for secret in secrets {
        for form in [percent_decode(&secret), secret] {
            if !form.is_empty() {
                out = out.replace(&form, "***");
            }
        }
    }
    out
}

/// Decodes `%XX` escapes; anything malformed is kept as is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL to hand to sqlx for a SQLite datastore, and whether it is in
/// memory. Files are created if missing (`mode=rwc`) unless the URL sets a
/// mode itself.
fn sqlite_connect_url(url: &str) -> (String, bool) {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path == ":memory:" || query.split('&').any(|p| p == "mode=memory");
    let has_mode = query.split('&').any(|p| p.starts_with("mode="));
    if in_memory || has_mode {
        (url.to_owned(), in_memory)
    } else if url.contains('?') {
        (format!("{url}&mode=rwc"), false)
    } else {
        (format!("{url}?mode=rwc"), false)
    }
}

/// Whether `e` says the SQLite file is not a database or is corrupt
/// (`SQLITE_NOTADB`, `SQLITE_CORRUPT`).
fn is_sqlite_not_a_database(e: &sqlx::Error) -> bool {
    const SQLITE_CORRUPT: i64 = 11;
    const SQLITE_NOTADB: i64 = 26;
    match e {
        sqlx::Error::Database(db) => {
            let primary = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            matches!(primary, Some(SQLITE_CORRUPT | SQLITE_NOTADB))
        }
        _ => false,
    }
}

fn query_err(op: &'static str) -> impl Fn(sqlx::Error) -> DatastoreError {
    move |cause| DatastoreError::Query { op, cause }
}

fn to_json(list: &[String], what: &str) -> Result<String, DatastoreError> {
    serde_json::to_string(list).map_err(|e| DatastoreError::InvalidInput {
        what: format!("{what} cannot be encoded as JSON: {e}"),
    })
}

fn describe_sequence(sequence: Option<i64>) -> String {
    match sequence {
        Some(s) => format!("sequence {s}"),
        None => "no stored bundle".to_owned(),
    }
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
        created_at: cols.int("created_at")?,
    })
}

fn node_from_row(row: &AnyRow) -> Result<AttestedNode, DatastoreError> {
    let cols = Cols::new(row, "attested node", Some("spiffe_id"));
    Ok(AttestedNode {
        spiffe_id: cols.text("spiffe_id")?,
        attestation_type: cols.text("attestation_type")?,
        cert_serial: cols.text("cert_serial")?,
        cert_not_after: cols.int("cert_not_after")?,
        banned: cols.flag("banned")?,
        selectors: cols.list("selectors")?,
        created_at: cols.int("created_at")?,
        updated_at: cols.int("updated_at")?,
    })
}

/// Reads columns of one row, turning bad data into [`DatastoreError::Corrupt`].
struct Cols<'r> {
    row: &'r AnyRow,
    /// Names the row in error messages, e.g. `registration entry "ab12"`.
    context: String,
}

impl<'r> Cols<'r> {
    /// `key` names a column whose value identifies the row in messages; leave
    /// it out for secret keys.
    fn new(row: &'r AnyRow, what: &str, key: Option<&str>) -> Cols<'r> {
        let context = match key.and_then(|k| row.try_get::<String, _>(k).ok()) {
            Some(value) => format!("{what} \"{value}\""),
            None => what.to_owned(),
        };
        Cols { row, context }
    }

    fn corrupt(&self, column: &str, problem: impl fmt::Display) -> DatastoreError {
        DatastoreError::Corrupt {
            what: format!("{}: column {column}: {problem}", self.context),
        }
    }

    fn text(&self, column: &str) -> Result<String, DatastoreError> {
        self.row
            .try_get::<String, _>(column)
            .map_err(|e| self.corrupt(column, e))
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>, DatastoreError> {
        self.row
            .try_get::<Option<String>, _>(column)
            .map_err(|e| self.corrupt(column, e))
    }

    fn int(&self, column: &str) -> Result<i64, DatastoreError> {
        self.row
            .try_get::<i64, _>(column)
            .map_err(|e| self.corrupt(column, e))
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>, DatastoreError> {
        self.row
            .try_get::<Option<i64>, _>(column)
            .map_err(|e| self.corrupt(column, e))
    }

    fn flag(&self, column: &str) -> Result<bool, DatastoreError> {
        match self.int(column)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.corrupt(column, format!("expected 0 or 1, found {other}"))),
        }
    }

    fn list(&self, column: &str) -> Result<Vec<String>, DatastoreError> {
        let text = self.text(column)?;
        serde_json::from_str(&text)
            .map_err(|e| self.corrupt(column, format!("not a JSON array of strings: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://admin:s3cret@db.example:5432/td?sslmode=require"),
            "postgres://admin:***@db.example:5432/td?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://admin@db/td?password=s3cret&sslmode=disable"),
            "postgres://admin@db/td?password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("postgresql://u:p%40ss@[::1]:5432"),
            "postgresql://u:***@[::1]:5432"
        );
        assert_eq!(
            redact_url("sqlite:///var/lib/td@x/datastore.db"),
            "sqlite:///var/lib/td@x/datastore.db"
        );
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn scrubs_passwords_from_messages() {
        let url = "postgres://u:p%40ss@host/db?password=other";
        assert_eq!(
            scrub_password(url, "bad p@ss, bad p%40ss, bad other"),
            "bad ***, bad ***, bad ***"
        );
    }

    #[test]
    fn sqlite_urls_create_files() {
        assert_eq!(
            sqlite_connect_url("sqlite:///a/b.db"),
            ("sqlite:///a/b.db?mode=rwc".to_owned(), false)
        );
        assert_eq!(
            sqlite_connect_url("sqlite://b.db?cache=private"),
            ("sqlite://b.db?cache=private&mode=rwc".to_owned(), false)
        );
        assert_eq!(
            sqlite_connect_url("sqlite://b.db?mode=ro"),
            ("sqlite://b.db?mode=ro".to_owned(), false)
        );
        assert_eq!(
            sqlite_connect_url("sqlite::memory:"),
            ("sqlite::memory:".to_owned(), true)
        );
    }

    #[test]
    fn backends_from_urls() {
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("SQLITE:///x"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::from_url("postgresql://h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://h/db"), None);
    }
}
