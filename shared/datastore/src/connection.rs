//! Opening the datastore: connecting to SQLite or PostgreSQL, the connection
//! pool, and the schema migrations.

use std::fmt;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Connection};

use crate::error::DatastoreError;
use crate::inspect::SqliteFile;
use crate::row::query_err;
use crate::url::{
    Backend, is_sqlite_not_a_database, redact_url, scrub_password, sqlite_connect_url,
};

/// The schema migrations, embedded from `./migrations`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long opening the datastore may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one call may wait for the database by default: for a pooled connection, for a
/// new connection, and (PostgreSQL) for one statement. A call against a database that is down
/// fails after this instead of hanging.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection, waiting at most [`DEFAULT_CALL_TIMEOUT`] for it.
pub(crate) async fn connect_bounded(url: &str) -> Result<AnyConnection, sqlx::Error> {
    tokio::time::timeout(DEFAULT_CALL_TIMEOUT, AnyConnection::connect(url))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
}

/// A handle on the datastore. Cloning is cheap: clones share one connection
/// pool.
#[derive(Clone)]
pub struct Datastore {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// The SQLite file, to notice it removed under the pool.
    file: Option<SqliteFile>,
    /// The URL, password redacted.
    shown: String,
    /// Counts audit records this process appended (bumped after each commit): what wakes a
    /// reader of [`audit_after`](Self::audit_after) at once instead of at its next poll.
    pub(crate) audit_appended: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl fmt::Debug for Datastore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datastore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

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
        Self::open_with(url, DEFAULT_CALL_TIMEOUT).await
    }

    /// [`open`](Self::open), each later call waiting at most `call_timeout` for a connection
    /// and, on PostgreSQL, for each statement (`statement_timeout`).
    pub async fn open_with(url: &str, call_timeout: Duration) -> Result<Datastore, DatastoreError> {
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
        // A pooled connection is pinged before use, so one the database closed (a restart)
        // is replaced instead of failing the call.
        .test_before_acquire(true)
        .acquire_timeout(call_timeout);
        let options = match backend {
            // A SQLite connection waits for a lock held by another connection (another
            // process on the same file included) as long as a call may wait.
            Backend::Sqlite => options.after_connect(move |conn, _meta| {
                let busy_ms = call_timeout.as_millis();
                Box::pin(async move {
                    sqlx::query(AssertSqlSafe(format!("PRAGMA busy_timeout = {busy_ms}")))
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
            Backend::Postgres => {
                let ms = call_timeout.as_millis();
                options.after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        sqlx::query(AssertSqlSafe(format!("SET statement_timeout = {ms}")))
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
            }
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
        let file = match backend {
            Backend::Sqlite => SqliteFile::at(url),
            Backend::Postgres => None,
        };
        Ok(Datastore {
            pool,
            backend,
            file,
            shown,
            audit_appended: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    /// The URL, password redacted.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// Which database this datastore runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers (`SELECT 1`) and, for SQLite, that its file is still
    /// the one opened: an open connection keeps answering from a removed file.
    pub async fn ping(&self) -> Result<(), DatastoreError> {
        if let Some(f) = &self.file {
            f.check(&self.shown)?;
        }
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
}
