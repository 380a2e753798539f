//! Who owns the CA journal: the one server instance allowed to change CA state in this
//! datastore, and the lease that says it is running.

use sqlx::AnyConnection;

use crate::ca::{CA_JOURNAL_COLUMNS, CaJournalRecord, CaStatus, decode_journal};
use crate::connection::Datastore;
use crate::error::DatastoreError;
use crate::inspect::{Look, close, count_tables, look};
use crate::row::{Cols, query_err};
use crate::url::Backend;

/// The owner record of the CA journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaOwner {
    /// The owner's instance id, kept in its data directory.
    pub instance_id: String,
    /// Random per process start.
    pub session: String,
    /// The owner's SPIFFE ID.
    pub server_id: String,
    /// The host it ran on, for people.
    pub host: String,
    /// Its data directory, for people.
    pub data_dir: String,
    /// Its key manager (`memory`, `disk <dir>`, `pkcs11 <token>`), for people.
    pub key_manager: String,
    /// When this instance claimed the journal (unix seconds).
    pub claimed_at: i64,
    /// When the lease was last renewed (unix seconds).
    pub renewed_at: i64,
    /// Until when the owner is taken to be running (unix seconds; 0 after a clean stop).
    pub lease_until: i64,
}

const OWNER_COLUMNS: &str = "instance_id, session, server_id, host, data_dir, key_manager, \
                             claimed_at, renewed_at, lease_until";

fn decode(row: &sqlx::any::AnyRow) -> Result<CaOwner, DatastoreError> {
    let cols = Cols::new(row, "CA owner", Some("instance_id"));
    Ok(CaOwner {
        instance_id: cols.text("instance_id")?,
        session: cols.text("session")?,
        server_id: cols.text("server_id")?,
        host: cols.text("host")?,
        data_dir: cols.text("data_dir")?,
        key_manager: cols.text("key_manager")?,
        claimed_at: cols.int("claimed_at")?,
        renewed_at: cols.int("renewed_at")?,
        lease_until: cols.int("lease_until")?,
    })
}

impl Datastore {
    /// The owner of the CA journal, if a server claimed it.
    pub async fn ca_owner(&self) -> Result<Option<CaOwner>, DatastoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(query_err("read CA owner"))?;
        select_owner(&mut conn, Lock::No).await
    }

    /// Makes `new` the owner, if the owner is still the one the caller decided on: the
    /// session `previous`, or no owner at all (`None`). Otherwise nothing is written and
    /// [`DatastoreError::Conflict`] is returned.
    pub async fn claim_ca_owner(
        &self,
        new: &CaOwner,
        previous: Option<&str>,
    ) -> Result<(), DatastoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(query_err("claim CA owner"))?;
        write_claim(&mut conn, new, previous).await
    }

    /// Renews the lease of `session` until `lease_until`; `false` when `session` no longer
    /// owns the journal (nothing written).
    pub async fn renew_ca_lease(
        &self,
        session: &str,
        renewed_at: i64,
        lease_until: i64,
    ) -> Result<bool, DatastoreError> {
        let written = sqlx::query(
            "UPDATE ca_owner SET renewed_at = $1, lease_until = $2 \
             WHERE id = 'ca' AND session = $3",
        )
        .bind(renewed_at)
        .bind(lease_until)
        .bind(session)
        .execute(&self.pool)
        .await
        .map_err(query_err("renew CA lease"))?
        .rows_affected();
        Ok(written == 1)
    }

    /// Ends the lease of `session` (a clean stop): the same instance may start again at once.
    pub async fn release_ca_lease(&self, session: &str) -> Result<(), DatastoreError> {
        sqlx::query("UPDATE ca_owner SET lease_until = 0 WHERE id = 'ca' AND session = $1")
            .bind(session)
            .execute(&self.pool)
            .await
            .map_err(query_err("release CA lease"))?;
        Ok(())
    }

    /// The owner of the CA journal at `url` and the records of its live authorities, read
    /// without creating, migrating or writing anything; `None` when there is no owner (or no
    /// such table yet, or no such file).
    pub async fn inspect_ca_owner(
        url: &str,
    ) -> Result<Option<(CaOwner, Vec<CaJournalRecord>)>, DatastoreError> {
        match look(url).await? {
            Look::InMemory | Look::NoFile => Ok(None),
            Look::Conn(mut conn, backend) => {
                let result = read_owner(&mut conn, backend).await;
                close(conn, url, result).await
            }
        }
    }
}

async fn read_owner(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<Option<(CaOwner, Vec<CaJournalRecord>)>, DatastoreError> {
    if count_tables(conn, backend, &["ca_owner"]).await? == 0 {
        return Ok(None);
    }
    let Some(owner) = select_owner(conn, Lock::No).await? else {
        return Ok(None);
    };
    let sql = format!("SELECT {CA_JOURNAL_COLUMNS} FROM ca_journal WHERE status IN ($1, $2)");
    let live = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(CaStatus::Prepared.as_str())
        .bind(CaStatus::Active.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err("inspect CA journal"))?
        .iter()
        .map(decode_journal)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((owner, live)))
}

/// Whether [`select_owner`] locks the owner row until the transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    No,
    /// No claim commits between this read and the end of the transaction (a plain read would
    /// allow that under PostgreSQL's READ COMMITTED).
    Yes,
}

/// The one read of the owner record.
pub(crate) async fn select_owner(
    conn: &mut AnyConnection,
    lock: Lock,
) -> Result<Option<CaOwner>, DatastoreError> {
    let sql = match lock {
        Lock::No => format!("SELECT {OWNER_COLUMNS} FROM ca_owner WHERE id = 'ca'"),
        Lock::Yes => format!(
            "UPDATE ca_owner SET session = session WHERE id = 'ca' RETURNING {OWNER_COLUMNS}"
        ),
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_err("read CA owner"))?
        .as_ref()
        .map(decode)
        .transpose()
}

/// Makes `new` the owner if the owner is still the session `previous` (or none): see
/// [`Datastore::claim_ca_owner`].
pub(crate) async fn write_claim(
    conn: &mut AnyConnection,
    new: &CaOwner,
    previous: Option<&str>,
) -> Result<(), DatastoreError> {
    let q = match previous {
        Some(session) => sqlx::query(
            "UPDATE ca_owner SET instance_id = $1, session = $2, server_id = $3, host = $4, \
             data_dir = $5, key_manager = $6, claimed_at = $7, renewed_at = $8, \
             lease_until = $9 WHERE id = 'ca' AND session = $10",
        )
        .bind_owner(new)
        .bind(session.to_owned()),
        None => sqlx::query(
            "INSERT INTO ca_owner (id, instance_id, session, server_id, host, data_dir, \
             key_manager, claimed_at, renewed_at, lease_until) \
             VALUES ('ca', $1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind_owner(new),
    };
    let written = q
        .execute(&mut *conn)
        .await
        .map_err(query_err("claim CA owner"))?
        .rows_affected();
    if written == 0 {
        return Err(DatastoreError::Conflict {
            what: "the CA owner changed while this server claimed it".into(),
        });
    }
    Ok(())
}

trait BindOwner {
    fn bind_owner(self, o: &CaOwner) -> Self;
}

impl<'q> BindOwner for sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    fn bind_owner(self, o: &CaOwner) -> Self {
        self.bind(o.instance_id.clone())
            .bind(o.session.clone())
            .bind(o.server_id.clone())
            .bind(o.host.clone())
            .bind(o.data_dir.clone())
            .bind(o.key_manager.clone())
            .bind(o.claimed_at)
            .bind(o.renewed_at)
            .bind(o.lease_until)
    }
}
