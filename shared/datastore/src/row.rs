//! Reading rows and binding values: every decoding problem becomes a
//! [`DatastoreError`] naming the row and column, never a panic.

use std::fmt;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::DatastoreError;
use crate::names::StoredName;

/// Wraps a failed query as [`DatastoreError::Query`] naming what was being done.
/// A call that got no connection in time is [`DatastoreError::Unavailable`].
pub(crate) fn query_err(op: &'static str) -> impl Fn(sqlx::Error) -> DatastoreError {
    move |cause| match cause {
        sqlx::Error::PoolTimedOut => DatastoreError::Unavailable { op },
        cause => DatastoreError::Query { op, cause },
    }
}

/// Encodes a list of strings as the JSON array stored in a `TEXT` column.
pub(crate) fn to_json(list: &[String], what: &str) -> Result<String, DatastoreError> {
    serde_json::to_string(list).map_err(|e| DatastoreError::InvalidInput {
        what: format!("{what} cannot be encoded as JSON: {e}"),
    })
}

/// Reads columns of one row, turning bad data into [`DatastoreError::Corrupt`].
pub(crate) struct Cols<'r> {
    row: &'r AnyRow,
    /// Names the row in error messages, e.g. `registration entry "ab12"`.
    context: String,
}

impl<'r> Cols<'r> {
    /// `key` names a column whose value identifies the row in messages; leave
    /// it out for secret keys.
    pub(crate) fn new(row: &'r AnyRow, what: &str, key: Option<&str>) -> Cols<'r> {
        let context = match key.and_then(|k| row.try_get::<String, _>(k).ok()) {
            Some(value) => format!("{what} \"{value}\""),
            None => what.to_owned(),
        };
        Cols { row, context }
    }

    pub(crate) fn corrupt(&self, column: &str, problem: impl fmt::Display) -> DatastoreError {
        DatastoreError::Corrupt {
            what: format!("{}: column {column}: {problem}", self.context),
        }
    }

    pub(crate) fn text(&self, column: &str) -> Result<String, DatastoreError> {
        self.row
            .try_get::<String, _>(column)
            .map_err(|e| self.corrupt(column, e))
    }

    pub(crate) fn opt_text(&self, column: &str) -> Result<Option<String>, DatastoreError> {
        self.row
            .try_get::<Option<String>, _>(column)
            .map_err(|e| self.corrupt(column, e))
    }

    pub(crate) fn int(&self, column: &str) -> Result<i64, DatastoreError> {
        self.row
            .try_get::<i64, _>(column)
            .map_err(|e| self.corrupt(column, e))
    }

    pub(crate) fn opt_int(&self, column: &str) -> Result<Option<i64>, DatastoreError> {
        self.row
            .try_get::<Option<i64>, _>(column)
            .map_err(|e| self.corrupt(column, e))
    }

    pub(crate) fn flag(&self, column: &str) -> Result<bool, DatastoreError> {
        match self.int(column)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.corrupt(column, format!("expected 0 or 1, found {other}"))),
        }
    }

    pub(crate) fn list(&self, column: &str) -> Result<Vec<String>, DatastoreError> {
        let text = self.text(column)?;
        serde_json::from_str(&text)
            .map_err(|e| self.corrupt(column, format!("not a JSON array of strings: {e}")))
    }

    /// A column holding one of the stable names of `T`; an unknown name is
    /// [`DatastoreError::UnknownValue`].
    pub(crate) fn name<T: StoredName>(&self, column: &'static str) -> Result<T, DatastoreError> {
        let text = self.text(column)?;
        T::from_name(&text).ok_or_else(|| DatastoreError::UnknownValue {
            record: self.context.clone(),
            column,
            value: text,
        })
    }
}
