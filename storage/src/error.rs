use std::sync::Arc;

/// Errors of the storage layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// RocksDB failed; the message says which operation.
    #[error("hot store: {op}: {source}")]
    Rocks {
        /// What we were doing.
        op: &'static str,
        /// The RocksDB error.
        #[source]
        source: Arc<rocksdb::Error>,
    },
    /// An insert found a live row with the same primary key. `op` is the index of the row op.
    #[error("duplicate primary key (row {op})")]
    DuplicateKey {
        /// Index of the offending op inside its request.
        op: usize,
    },
    /// A conditional write found a different version than expected; the caller may retry.
    #[error("write conflict: the row changed concurrently")]
    Conflict,
    /// Stored bytes could not be decoded.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// What was being decoded.
        what: &'static str,
        /// Details.
        detail: String,
    },
    /// A value cannot be encoded for this column type.
    #[error("unsupported column type {0}")]
    UnsupportedType(String),
    /// Arrow failed while building a batch.
    #[error("arrow: {0}")]
    Arrow(String),
    /// A background thread of the store could not be started.
    #[error("starting the {thread} thread: {detail}")]
    Thread {
        /// Which thread.
        thread: &'static str,
        /// The OS error.
        detail: String,
    },
    /// A folder template does not compile.
    #[error("storage template {template:?}: {detail}")]
    InvalidTemplate {
        /// The template as written.
        template: String,
        /// What is wrong.
        detail: String,
    },
    /// The object store failed; `path` says which object.
    #[error("cold store: {op} {path}: {detail}")]
    Object {
        /// What we were doing.
        op: &'static str,
        /// The object.
        path: String,
        /// The object store's message.
        detail: String,
    },
    /// Parquet failed reading or writing a segment.
    #[error("parquet {path}: {detail}")]
    Parquet {
        /// The segment.
        path: String,
        /// The parquet message.
        detail: String,
    },
    /// The job was cancelled before it committed anything.
    #[error("cancelled")]
    Cancelled,
    /// The store is shut down.
    #[error("the hot store is closed")]
    Closed,
}

impl Error {
    pub(crate) fn rocks(op: &'static str, source: rocksdb::Error) -> Self {
        Self::Rocks {
            op,
            source: Arc::new(source),
        }
    }

    pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>) -> Self {
        Self::Corrupt {
            what,
            detail: detail.into(),
        }
    }
}

impl Error {
    pub(crate) fn object(
        op: &'static str,
        path: impl std::fmt::Display,
        e: impl std::fmt::Display,
    ) -> Self {
        Self::Object {
            op,
            path: path.to_string(),
            detail: e.to_string(),
        }
    }

    pub(crate) fn parquet(path: impl std::fmt::Display, e: impl std::fmt::Display) -> Self {
        Self::Parquet {
            path: path.to_string(),
            detail: e.to_string(),
        }
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Self::Arrow(e.to_string())
    }
}

/// Result with the storage error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
