//! The datastore's one error type.

/// Errors returned by the [`Datastore`](crate::Datastore).
///
/// Messages are written for operators. They never contain database passwords
/// (URLs are shown redacted, see [`redact_url`](crate::redact_url)) nor
/// join-token values.
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

    /// The datastore was opened but cannot be used any more (its file removed or replaced).
    #[error("datastore \"{url}\" is unreachable: {reason}")]
    Unreachable {
        /// The URL, with any password redacted.
        url: String,
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

    /// The database did not answer in time: no connection within the call's bound
    /// (`datastore_timeout`); it is down, unreachable or overloaded. Nothing was written.
    #[error(
        "datastore unavailable: the database did not answer in time (during \"{op}\"); \
         it is down, unreachable or overloaded"
    )]
    Unavailable {
        /// What the datastore was doing.
        op: &'static str,
    },

    /// A query or transaction failed.
    #[error("datastore operation \"{op}\" failed: {cause}")]
    Query {
        /// What the datastore was doing.
        op: &'static str,
        cause: sqlx::Error,
    },

    /// A stored row holds data that cannot be decoded.
    #[error("datastore holds corrupt data: {what}")]
    Corrupt {
        /// Which row and column, and what is wrong with it.
        what: String,
    },

    /// A stored row holds a name this version does not know in a column that
    /// takes one of a fixed set (a CA kind or status): most likely written by
    /// a newer trustdeck.
    #[error("datastore holds an unknown {column} \"{value}\" in {record}")]
    UnknownValue {
        /// The row, e.g. `CA journal record "x509-ab12"`.
        record: String,
        column: &'static str,
        value: String,
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

    /// Another server owns the CA journal: this one must not change CA state.
    #[error("another server owns the CA journal of this datastore; CA state left unchanged")]
    NotCaOwner,

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
