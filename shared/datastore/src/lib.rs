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
//! * closed vocabularies ([`CaKind`], [`CaStatus`]) are stored as their
//!   stable names;
//! * query parameters are written `$1`, `$2`, … (PostgreSQL's native style,
//!   which sqlx's SQLite driver also understands).
//!
//! Rows holding data that cannot be decoded are reported as
//! [`DatastoreError::Corrupt`], and names this version does not know as
//! [`DatastoreError::UnknownValue`]; nothing read back from the database is
//! unwrapped.
//!
//! The crate is cut by table, each module holding its records and the
//! [`Datastore`] methods that read and write them:
//!
//! * `connection`: opening, the pool and migrations; `url`: backends and
//!   password redaction;
//! * `entries`: registration entries;
//! * `nodes`: attested nodes;
//! * `join_tokens`: join tokens;
//! * `ca`: the bundle and the CA journal; `owner`: who may change them;
//! * `audit`: the audit log; `chain`: its hash chain (pure); `audited`: a change that commits together with its
//!   audit record; `checkpoints`: signed checkpoints of the chain;
//! * `runbooks`: the runbook execution journal (at most one running or stopped execution
//!   per target, kept by a partial unique index);
//! * `foreign`: bundles of foreign trust domains (imported or federated) and the receipts
//!   peers sent back for ours (compare-and-set on the sequence);
//! * `federation`: federation relationships and how their last refreshes went;
//! * `row` and `names`: decoding rows and stored names, shared by all; `id`: random ids;
//! * `unaudited` (feature `test-util`, for tests only): the same changes without an audit
//!   record.

mod audit;
mod audited;
mod ca;
pub mod chain;
mod checkpoints;
mod connection;
mod entries;
mod error;
mod federation;
mod foreign;
mod id;
mod inspect;
mod join_tokens;
mod names;
mod nodes;
mod owner;
mod row;
mod runbooks;
#[cfg(feature = "test-util")]
mod unaudited;
mod url;

pub use audit::{AuditRecord, ListedAudit};
pub use audited::AuditedChange;
pub use ca::{BundleRecord, CaJournalRecord, CaKind, CaStatus};
pub use connection::Datastore;
pub use entries::{Entry, NewEntry};
pub use error::DatastoreError;
pub use federation::{FederationProfile, FederationRelationship, RefreshState};
pub use foreign::{BundleReceipt, ForeignBundle, ForeignSource};
pub use id::random_id;
pub use inspect::Contents;
pub use join_tokens::JoinToken;
pub use names::UnknownName;
pub use nodes::{AttestedNode, NodeCert};
pub use owner::CaOwner;
pub use runbooks::{Begun, MAX_FINISHED_LISTED, RunbookPhase, RunbookRecord, RunbookState};
pub use url::{Backend, redact_url};
