//! Federation relationships: the partner trust domains whose bundle we fetch from their
//! bundle endpoint, and how the last fetches went. The relationship itself changes through
//! an [`AuditedChange`](crate::AuditedChange); the refresh state may also be recorded on its
//! own ([`Datastore::record_federation_refresh`]), since a failing fetch is not an operator's
//! change.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor};

use crate::connection::Datastore;
use crate::error::DatastoreError;
use crate::names::stored_names;
use crate::row::{Cols, query_err};

stored_names! {
    /// How a partner's bundle endpoint proves who it is.
    pub enum FederationProfile ("federation profile") {
        /// A Web PKI certificate, checked by DNS name.
        HttpsWeb = "https_web",
        /// The endpoint's X509-SVID, checked against our copy of the partner's bundle.
        HttpsSpiffe = "https_spiffe",
    }
}

/// How the last fetches from a partner's endpoint went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshState {
    /// When the last fetch was tried (unix seconds).
    pub last_attempt_at: Option<i64>,
    /// When a fetch last succeeded (unix seconds).
    pub last_success_at: Option<i64>,
    /// Why the last fetch failed (`None` once one succeeds).
    pub last_error: Option<String>,
    /// Failures in a row since the last success.
    pub failures: u32,
}

/// One federation relationship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationRelationship {
    /// The partner trust domain; the key.
    pub trust_domain: String,
    /// Its bundle endpoint (`https://...`).
    pub endpoint_url: String,
    pub profile: FederationProfile,
    /// The SPIFFE ID an `https_spiffe` endpoint must present.
    pub endpoint_spiffe_id: Option<String>,
    /// A CA file (PEM) trusted for an `https_web` endpoint instead of the system's.
    pub ca_file: Option<String>,
    /// When it was created and last changed by an operator (unix seconds).
    pub created_at: i64,
    pub updated_at: i64,
    pub refresh: RefreshState,
}

const COLUMNS: &str = "trust_domain, endpoint_url, profile, endpoint_spiffe_id, ca_file, \
     created_at, updated_at, last_attempt_at, last_success_at, last_error, failures";

impl Datastore {
    /// The relationship with `trust_domain`, if any.
    pub async fn get_federation(
        &self,
        trust_domain: &str,
    ) -> Result<Option<FederationRelationship>, DatastoreError> {
        let sql = format!("SELECT {COLUMNS} FROM federation_relationships WHERE trust_domain = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(trust_domain)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("get federation relationship"))?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// Every relationship, by trust domain.
    pub async fn list_federations(&self) -> Result<Vec<FederationRelationship>, DatastoreError> {
        let sql = format!("SELECT {COLUMNS} FROM federation_relationships ORDER BY trust_domain");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("list federation relationships"))?
            .iter()
            .map(from_row)
            .collect()
    }

    /// Records how a fetch went, without an audit record (a refresh is not an operator's
    /// change); `false` when the relationship is gone.
    pub async fn record_federation_refresh(
        &self,
        trust_domain: &str,
        state: &RefreshState,
    ) -> Result<bool, DatastoreError> {
        set_refresh(&self.pool, trust_domain, state).await
    }
}

/// Creates `rec`; [`DatastoreError::AlreadyExists`] when its trust domain has one.
pub(crate) async fn insert_federation<'c>(
    ex: impl Executor<'c, Database = Any>,
    rec: &FederationRelationship,
) -> Result<(), DatastoreError> {
    let done = sqlx::query(
        "INSERT INTO federation_relationships (endpoint_url, profile, endpoint_spiffe_id, \
         ca_file, created_at, updated_at, last_attempt_at, last_success_at, last_error, \
         failures, trust_domain) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&rec.endpoint_url)
    .bind(rec.profile.as_str())
    .bind(rec.endpoint_spiffe_id.as_deref())
    .bind(rec.ca_file.as_deref())
    .bind(rec.created_at)
    .bind(rec.updated_at)
    .bind(rec.refresh.last_attempt_at)
    .bind(rec.refresh.last_success_at)
    .bind(rec.refresh.last_error.as_deref())
    .bind(i64::from(rec.refresh.failures))
    .bind(&rec.trust_domain)
    .execute(ex)
    .await
    .map_err(query_err("create federation relationship"))?;
    if done.rows_affected() == 0 {
        return Err(DatastoreError::AlreadyExists {
            what: format!("a federation relationship with {}", rec.trust_domain),
        });
    }
    Ok(())
}

/// Replaces the operator's settings of `rec` (endpoint, profile, ID, CA file, `updated_at`);
/// the refresh state is left as it is. `false` when there is no such relationship.
pub(crate) async fn update_federation<'c>(
    ex: impl Executor<'c, Database = Any>,
    rec: &FederationRelationship,
) -> Result<bool, DatastoreError> {
    let done = sqlx::query(
        "UPDATE federation_relationships SET endpoint_url = $1, profile = $2, \
         endpoint_spiffe_id = $3, ca_file = $4, updated_at = $5 WHERE trust_domain = $6",
    )
    .bind(&rec.endpoint_url)
    .bind(rec.profile.as_str())
    .bind(rec.endpoint_spiffe_id.as_deref())
    .bind(rec.ca_file.as_deref())
    .bind(rec.updated_at)
    .bind(&rec.trust_domain)
    .execute(ex)
    .await
    .map_err(query_err("update federation relationship"))?;
    Ok(done.rows_affected() > 0)
}

/// Deletes the relationship with `trust_domain`; what it was (`None`: there was none).
pub(crate) async fn remove_federation<'c>(
    ex: impl Executor<'c, Database = Any>,
    trust_domain: &str,
) -> Result<Option<FederationRelationship>, DatastoreError> {
    let sql =
        format!("DELETE FROM federation_relationships WHERE trust_domain = $1 RETURNING {COLUMNS}");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(trust_domain)
        .fetch_optional(ex)
        .await
        .map_err(query_err("delete federation relationship"))?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// Records the refresh state of `trust_domain`; `false` when there is no such relationship.
pub(crate) async fn set_refresh<'c>(
    ex: impl Executor<'c, Database = Any>,
    trust_domain: &str,
    state: &RefreshState,
) -> Result<bool, DatastoreError> {
    let done = sqlx::query(
        "UPDATE federation_relationships SET last_attempt_at = $1, last_success_at = $2, \
         last_error = $3, failures = $4 WHERE trust_domain = $5",
    )
    .bind(state.last_attempt_at)
    .bind(state.last_success_at)
    .bind(state.last_error.as_deref())
    .bind(i64::from(state.failures))
    .bind(trust_domain)
    .execute(ex)
    .await
    .map_err(query_err("record federation refresh"))?;
    Ok(done.rows_affected() > 0)
}

fn from_row(row: &AnyRow) -> Result<FederationRelationship, DatastoreError> {
    let cols = Cols::new(row, "federation relationship", Some("trust_domain"));
    let failures = cols.int("failures")?;
    Ok(FederationRelationship {
        trust_domain: cols.text("trust_domain")?,
        endpoint_url: cols.text("endpoint_url")?,
        profile: cols.name("profile")?,
        endpoint_spiffe_id: cols.opt_text("endpoint_spiffe_id")?,
        ca_file: cols.opt_text("ca_file")?,
        created_at: cols.int("created_at")?,
        updated_at: cols.int("updated_at")?,
        refresh: RefreshState {
            last_attempt_at: cols.opt_int("last_attempt_at")?,
            last_success_at: cols.opt_int("last_success_at")?,
            last_error: cols.opt_text("last_error")?,
            failures: u32::try_from(failures)
                .map_err(|_| cols.corrupt("failures", format!("{failures} is not a count")))?,
        },
    })
}
