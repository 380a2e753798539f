//! Audited changes: an operator's change and its audit record commit in one transaction, or
//! neither does.

use sqlx::{Any, Transaction};

use crate::audit::{AuditRecord, append};
use crate::connection::Datastore;
use crate::entries::{Entry, NewEntry, insert_entry, remove_entry};
use crate::error::DatastoreError;
use crate::federation::{
    FederationRelationship, RefreshState, insert_federation, remove_federation, set_refresh,
    update_federation,
};
use crate::foreign::{
    BundleReceipt, ForeignBundle, put_bundle_receipt, put_foreign_bundle, remove_foreign_bundle,
};
use crate::join_tokens::insert_join_token;
use crate::nodes::{AttestedNode, remove_node, update_node_banned};
use crate::owner::{CaOwner, write_claim};
use crate::row::query_err;
use crate::runbooks::{Begun, RunbookRecord, insert_runbook, lock_runbook, update_runbook};

/// A change under way. It becomes visible only through [`commit`](Self::commit), which
/// writes its audit record in the same transaction; dropped, it is rolled back.
///
/// Each method writes before it reads (`RETURNING`), so on SQLite the transaction takes the
/// write lock at its first statement and never fails upgrading a read snapshot.
pub struct AuditedChange {
    tx: Transaction<'static, Any>,
    /// Told after the commit (see [`Datastore::audit_appended`]).
    ds: Datastore,
}

impl std::fmt::Debug for AuditedChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditedChange")
    }
}

impl Datastore {
    /// Starts a change that commits together with its audit record.
    pub async fn begin_audited(&self) -> Result<AuditedChange, DatastoreError> {
        let tx = self
            .pool
            .begin()
            .await
            .map_err(query_err("begin audited change"))?;
        Ok(AuditedChange {
            tx,
            ds: self.clone(),
        })
    }
}

impl AuditedChange {
    /// Creates a registration entry with a fresh random id.
    ///
    /// Selectors are stored sorted and de-duplicated; the returned [`Entry`] shows them that
    /// way. An entry with the same SPIFFE ID, parent ID and selector set is rejected with
    /// [`DatastoreError::AlreadyExists`].
    pub async fn create_entry(&mut self, e: &NewEntry, now: i64) -> Result<Entry, DatastoreError> {
        insert_entry(&mut *self.tx, e, now).await
    }

    /// Deletes an entry; what it was (`None`: there was none).
    pub async fn delete_entry(&mut self, id: &str) -> Result<Option<Entry>, DatastoreError> {
        remove_entry(&mut *self.tx, id).await
    }

    /// Stores a new, unused join token. An existing token with the same value is rejected
    /// with [`DatastoreError::AlreadyExists`].
    pub async fn create_join_token(
        &mut self,
        token: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), DatastoreError> {
        insert_join_token(&mut *self.tx, token, expires_at, now).await
    }

    /// Evicts a node; what it was (`None`: there was none).
    pub async fn delete_node(
        &mut self,
        spiffe_id: &str,
    ) -> Result<Option<AttestedNode>, DatastoreError> {
        remove_node(&mut *self.tx, spiffe_id).await
    }

    /// Bans or unbans a node; the node as changed (`None`: there is none).
    pub async fn set_node_banned(
        &mut self,
        spiffe_id: &str,
        banned: bool,
        now: i64,
    ) -> Result<Option<AttestedNode>, DatastoreError> {
        update_node_banned(&mut *self.tx, spiffe_id, banned, now).await
    }

    /// [`Datastore::claim_ca_owner`], inside the change: ownership passes with its record.
    pub async fn claim_ca_owner(
        &mut self,
        new: &CaOwner,
        previous: Option<&str>,
    ) -> Result<(), DatastoreError> {
        write_claim(&mut self.tx, new, previous).await
    }

    /// Begins a runbook execution: stores `rec`, or (storing nothing) returns the execution
    /// that holds its target ([`Begun::Busy`]); the check and the insert are one statement.
    pub async fn begin_runbook(&mut self, rec: &RunbookRecord) -> Result<Begun, DatastoreError> {
        insert_runbook(&mut self.tx, rec).await
    }

    /// The execution `id`, locked until this change commits or is dropped (`None`: none).
    pub async fn lock_runbook(
        &mut self,
        id: &str,
    ) -> Result<Option<RunbookRecord>, DatastoreError> {
        lock_runbook(&mut *self.tx, id).await
    }

    /// Writes an execution locked by [`lock_runbook`](Self::lock_runbook), as changed.
    pub async fn update_runbook(&mut self, rec: &RunbookRecord) -> Result<(), DatastoreError> {
        update_runbook(&mut *self.tx, rec).await
    }

    /// Stores the bundle of a foreign trust domain, if its row is still as the caller read it:
    /// absent (`read` = `None`) or at sequence `read`. Otherwise
    /// [`DatastoreError::Conflict`], and nothing is stored.
    pub async fn put_foreign_bundle(
        &mut self,
        rec: &ForeignBundle,
        read: Option<u64>,
    ) -> Result<(), DatastoreError> {
        put_foreign_bundle(&mut *self.tx, rec, read).await
    }

    /// Deletes the bundle held for a foreign trust domain; what it was (`None`: none).
    pub async fn delete_foreign_bundle(
        &mut self,
        trust_domain: &str,
    ) -> Result<Option<ForeignBundle>, DatastoreError> {
        remove_foreign_bundle(&mut *self.tx, trust_domain).await
    }

    /// Deletes the receipt recorded from a peer; what it was (`None`: none).
    pub async fn delete_bundle_receipt(
        &mut self,
        peer: &str,
    ) -> Result<Option<BundleReceipt>, DatastoreError> {
        crate::foreign::remove_bundle_receipt(&mut *self.tx, peer).await
    }

    /// Records a peer's receipt, if its row is still as the caller read it (see
    /// [`put_foreign_bundle`](Self::put_foreign_bundle)).
    pub async fn put_bundle_receipt(
        &mut self,
        rec: &BundleReceipt,
        read: Option<u64>,
    ) -> Result<(), DatastoreError> {
        put_bundle_receipt(&mut *self.tx, rec, read).await
    }

    /// Creates a federation relationship; [`DatastoreError::AlreadyExists`] when its trust
    /// domain has one.
    pub async fn create_federation(
        &mut self,
        rec: &FederationRelationship,
    ) -> Result<(), DatastoreError> {
        insert_federation(&mut *self.tx, rec).await
    }

    /// Replaces a relationship's settings (not its refresh state); `false`: there is none.
    pub async fn update_federation(
        &mut self,
        rec: &FederationRelationship,
    ) -> Result<bool, DatastoreError> {
        update_federation(&mut *self.tx, rec).await
    }

    /// Deletes a relationship; what it was (`None`: none).
    pub async fn delete_federation(
        &mut self,
        trust_domain: &str,
    ) -> Result<Option<FederationRelationship>, DatastoreError> {
        remove_federation(&mut *self.tx, trust_domain).await
    }

    /// Records how a fetch went, with the change (e.g. the bundle it stored); `false`: there
    /// is no such relationship.
    pub async fn record_federation_refresh(
        &mut self,
        trust_domain: &str,
        state: &RefreshState,
    ) -> Result<bool, DatastoreError> {
        set_refresh(&mut *self.tx, trust_domain, state).await
    }

    /// Appends `record` and commits: the change and its record are stored together, or
    /// (on any error) neither is.
    pub async fn commit(mut self, record: &AuditRecord) -> Result<(), DatastoreError> {
        append(&mut self.tx, record).await?;
        self.tx
            .commit()
            .await
            .map_err(query_err("commit audited change"))?;
        self.ds.note_audit_appended();
        Ok(())
    }
}
