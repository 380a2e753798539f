//! Join tokens: single-use secrets an agent presents to attest.

use sqlx::{Any, Executor};

use crate::connection::Datastore;
use crate::error::DatastoreError;
use crate::row::{Cols, query_err};

/// A join token, as stored.
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

impl Datastore {
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
}

/// Stores a new join token (see [`Datastore::create_join_token`]) on a pool or in a
/// transaction.
pub(crate) async fn insert_join_token<'c>(
    ex: impl Executor<'c, Database = Any>,
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
    .execute(ex)
    .await
    .map_err(query_err("create join token"))?;
    if result.rows_affected() == 0 {
        return Err(DatastoreError::AlreadyExists {
            what: "a join token with this value".to_owned(),
        });
    }
    Ok(())
}
