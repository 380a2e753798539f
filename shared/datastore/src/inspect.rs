//! Looking at a datastore without changing it: whether it holds a server's state, and whether
//! a SQLite file is still the one the pool opened.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sqlx::{AnyConnection, Connection, Row};

use crate::connection::Datastore;
use crate::error::DatastoreError;
use crate::row::query_err;
use crate::url::{Backend, is_sqlite_not_a_database, redact_url, scrub_password, sqlite_file_path};

/// What a datastore holds, as far as starting a server is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// No bundle and no CA journal record: a new installation, or a lost database.
    Empty,
    /// A bundle or CA journal records: a server was initialised on it.
    Initialised,
    /// A private in-memory database: empty at every start by design.
    InMemory,
}

/// A SQLite file as the pool opened it (device and inode), to notice it removed or replaced.
#[derive(Debug, Clone)]
pub(crate) struct SqliteFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl SqliteFile {
    pub(crate) fn at(url: &str) -> Option<SqliteFile> {
        let path = sqlite_file_path(url)?;
        let identity = file_identity(&path);
        Some(SqliteFile { path, identity })
    }

    /// The file is still at its path and is the same file; `shown`: the redacted URL.
    pub(crate) fn check(&self, shown: &str) -> Result<(), DatastoreError> {
        let now = file_identity(&self.path);
        if now.is_some() && now == self.identity {
            return Ok(());
        }
        Err(DatastoreError::Unreachable {
            url: shown.to_owned(),
            reason: format!(
                "SQLite file {} was removed or replaced while the server had it open",
                self.path.display()
            ),
        })
    }
}

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Counts what shows a server was initialised; run only once the tables exist.
const STATE_ROWS: &str =
    "SELECT (SELECT count(*) FROM bundles) + (SELECT count(*) FROM ca_journal)";

/// A look at the datastore at `url` that cannot create or write anything.
pub(crate) enum Look {
    /// A private in-memory database: nothing was ever stored.
    InMemory,
    /// No SQLite file, or an empty one: nothing to open.
    NoFile,
    /// A connection, read-only for SQLite (`mode=ro`).
    Conn(AnyConnection, Backend),
}

/// Opens a [`Look`] at `url`.
pub(crate) async fn look(url: &str) -> Result<Look, DatastoreError> {
    sqlx::any::install_default_drivers();
    let backend = Backend::from_url(url).ok_or_else(|| DatastoreError::UnsupportedUrl {
        url: redact_url(url),
    })?;
    let connect_url = match backend {
        Backend::Sqlite => {
            let Some(path) = sqlite_file_path(url) else {
                return Ok(Look::InMemory);
            };
            if std::fs::metadata(&path).map_or(true, |m| m.len() == 0) {
                return Ok(Look::NoFile);
            }
            format!("sqlite://{}?mode=ro", path.display())
        }
        Backend::Postgres => url.to_owned(),
    };
    let conn = crate::connection::connect_bounded(&connect_url)
        .await
        .map_err(|e| DatastoreError::Open {
            url: redact_url(url),
            reason: scrub_password(url, &e.to_string()),
        })?;
    Ok(Look::Conn(conn, backend))
}

/// How many of `tables` exist (names from this crate, never from input).
pub(crate) async fn count_tables(
    conn: &mut AnyConnection,
    backend: Backend,
    tables: &[&'static str],
) -> Result<i64, DatastoreError> {
    let names = tables
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = match backend {
        Backend::Sqlite => {
            format!("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({names})")
        }
        Backend::Postgres => format!(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name IN ({names})"
        ),
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut *conn)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(query_err("inspect tables"))
}

/// Closes a look's connection; a SQLite file that is no database is said so.
pub(crate) async fn close<T>(
    conn: AnyConnection,
    url: &str,
    result: Result<T, DatastoreError>,
) -> Result<T, DatastoreError> {
    let _ = conn.close().await;
    result.map_err(|e| match e {
        DatastoreError::Query { cause, .. } if is_sqlite_not_a_database(&cause) => {
            DatastoreError::NotADatabase {
                url: redact_url(url),
                reason: cause.to_string(),
            }
        }
        e => e,
    })
}

impl Datastore {
    /// What the datastore at `url` holds, without creating, migrating or writing anything
    /// (a SQLite file is opened read-only, and only if it exists and is not empty).
    pub async fn inspect(url: &str) -> Result<Contents, DatastoreError> {
        match look(url).await? {
            Look::InMemory => Ok(Contents::InMemory),
            Look::NoFile => Ok(Contents::Empty),
            Look::Conn(mut conn, backend) => {
                let result = count_state(&mut conn, backend).await;
                close(conn, url, result).await
            }
        }
    }

    /// Whether the datastore holds a server's state (its schema is current).
    pub async fn contents(&self) -> Result<Contents, DatastoreError> {
        let rows: i64 = sqlx::query(STATE_ROWS)
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(query_err("count state"))?;
        Ok(Contents::from_rows(rows))
    }
}

impl Contents {
    fn from_rows(rows: i64) -> Contents {
        if rows == 0 {
            Contents::Empty
        } else {
            Contents::Initialised
        }
    }
}

async fn count_state(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<Contents, DatastoreError> {
    let tables = count_tables(conn, backend, &["bundles", "ca_journal"]).await?;
    if tables < 2 {
        return Ok(Contents::Empty);
    }
    let rows: i64 = sqlx::query(STATE_ROWS)
        .fetch_one(&mut *conn)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(query_err("inspect state"))?;
    Ok(Contents::from_rows(rows))
}
