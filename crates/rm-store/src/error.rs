//! The crate's error type.

use std::path::PathBuf;

/// An error of a [`Db`](crate::Db) or [`Keyspace`](crate::Keyspace).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend (RocksDB) failed: I/O, corruption, an invalid option.
    #[error("rocksdb: {0}")]
    Backend(String),
    /// The database has no keyspace of this name (name it when opening the database).
    #[error("keyspace `{0}` does not exist")]
    MissingKeyspace(String),
    /// Another process (or another handle in this one) has the database at this path
    /// open.
    #[error("the database {} is in use by another process", .0.display())]
    Locked(PathBuf),
    /// A [`WriteBatch`](crate::WriteBatch) names a keyspace of another database.
    #[error("the batch writes keyspace `{0}` of another database")]
    ForeignKeyspace(String),
}
