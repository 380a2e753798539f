//! Changes without an audit record, for tests that set up or probe state (feature
//! `test-util`, enabled only by dev-dependencies): production code changes entries, join
//! tokens and nodes through [`AuditedChange`](crate::AuditedChange) alone.

use crate::connection::Datastore;
use crate::entries::{Entry, NewEntry, insert_entry, remove_entry};
use crate::error::DatastoreError;
use crate::join_tokens::insert_join_token;
use crate::nodes::{remove_node, update_node_banned};

impl Datastore {
    /// [`AuditedChange::create_entry`](crate::AuditedChange::create_entry), unaudited.
    pub async fn create_entry(&self, e: &NewEntry, now: i64) -> Result<Entry, DatastoreError> {
        insert_entry(&self.pool, e, now).await
    }

    /// Deletes a registration entry; `false` if there was none.
    pub async fn delete_entry(&self, id: &str) -> Result<bool, DatastoreError> {
        Ok(remove_entry(&self.pool, id).await?.is_some())
    }

    /// [`AuditedChange::create_join_token`](crate::AuditedChange::create_join_token),
    /// unaudited.
    pub async fn create_join_token(
        &self,
        token: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), DatastoreError> {
        insert_join_token(&self.pool, token, expires_at, now).await
    }

    /// Bans or unbans a node; `false` if there is no such node.
    pub async fn set_node_banned(
        &self,
        spiffe_id: &str,
        banned: bool,
        now: i64,
    ) -> Result<bool, DatastoreError> {
        Ok(update_node_banned(&self.pool, spiffe_id, banned, now)
            .await?
            .is_some())
    }

    /// Deletes (evicts) a node; `false` if there was none.
    pub async fn delete_node(&self, spiffe_id: &str) -> Result<bool, DatastoreError> {
        Ok(remove_node(&self.pool, spiffe_id).await?.is_some())
    }
}
