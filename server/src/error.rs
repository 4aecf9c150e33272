//! The server's error type and its one mapping to gRPC status codes (spec/flight.md).

use datafusion::error::DataFusionError;
use tonic::{Code, Status};

/// Errors of the database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL does not parse; the message has line, column and what was expected.
    #[error("SQL parse error: {0}")]
    Parse(String),
    /// A name breaks the naming rules; the message names the rule.
    #[error("invalid name {name:?}: {rule}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// The rule it breaks.
        rule: String,
    },
    /// A value, option or statement that is not acceptable.
    #[error("{0}")]
    InvalidArgument(String),
    /// Something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Something that exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The role may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Bad credentials or token.
    #[error("{0}")]
    Unauthenticated(String),
    /// A configured limit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Conflicts with the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A transaction that could not commit; nothing of it was applied.
    #[error("{0}")]
    Aborted(String),
    /// The query was cancelled.
    #[error("{0}")]
    Cancelled(String),
    /// The query ran past its time limit.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Parsed, but not served by this version.
    #[error("{0} is not supported yet")]
    Unsupported(String),
    /// The hot store failed.
    #[error("storage: {0}")]
    Storage(#[from] quilldb_storage::Error),
    /// DataFusion failed.
    #[error("{0}")]
    DataFusion(Box<DataFusionError>),
    /// A bug or an unexpected failure; the server keeps running.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        Self::DataFusion(Box::new(e))
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for Error {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        Self::Parse(e.to_string())
    }
}

/// The longest error message sent: it travels in a gRPC trailer, and a message that repeats a
/// megabyte of hostile SQL (a name, a literal) would not fit in one.
const MAX_MESSAGE_BYTES: usize = 4096;

/// `message`, its middle cut out when it is longer than [`MAX_MESSAGE_BYTES`].
fn shorten(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let half = MAX_MESSAGE_BYTES / 2;
    let head = message.floor_char_boundary(half);
    let tail = message.ceil_char_boundary(message.len() - half);
    format!(
        "{} [... {} bytes cut ...] {}",
        &message[..head],
        tail - head,
        &message[tail..]
    )
}

/// Result with the server error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn datafusion_code(e: &DataFusionError) -> Code {
    match e {
        DataFusionError::SQL(_, _) => Code::InvalidArgument,
        DataFusionError::Plan(msg) if msg.contains("not found") => Code::NotFound,
        DataFusionError::Plan(_) | DataFusionError::NotImplemented(_) => Code::InvalidArgument,
        DataFusionError::SchemaError(_, _) => Code::NotFound,
        DataFusionError::ResourcesExhausted(_) => Code::ResourceExhausted,
        DataFusionError::ArrowError(inner, _) => match inner.as_ref() {
            // An operator's error carried through an Arrow stream keeps its own code.
            arrow::error::ArrowError::ExternalError(e) => match e.downcast_ref::<DataFusionError>()
            {
                Some(d) => datafusion_code(d),
                None => Code::InvalidArgument,
            },
            _ => Code::InvalidArgument,
        },
        DataFusionError::Shared(inner) => datafusion_code(inner),
        DataFusionError::Execution(msg) if msg.contains("cancel") => Code::Cancelled,
        DataFusionError::Execution(_) => Code::InvalidArgument,
        DataFusionError::Context(_, inner) => datafusion_code(inner),
        DataFusionError::Diagnostic(_, inner) => datafusion_code(inner),
        DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
            Some(e) => e.code(),
            None => match inner.downcast_ref::<DataFusionError>() {
                Some(d) => datafusion_code(d),
                None => Code::Internal,
            },
        },
        _ => Code::Internal,
    }
}

impl Error {
    /// The gRPC code of this error.
    pub fn code(&self) -> Code {
        match self {
            Self::Parse(_) | Self::InvalidName { .. } | Self::InvalidArgument(_) => {
                Code::InvalidArgument
            }
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Aborted(_) => Code::Aborted,
            Self::Cancelled(_) => Code::Cancelled,
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Self::Unsupported(_) => Code::Unimplemented,
            Self::Storage(quilldb_storage::Error::Conflict) => Code::Aborted,
            Self::Storage(quilldb_storage::Error::InvalidTemplate { .. }) => Code::InvalidArgument,
            Self::Storage(quilldb_storage::Error::Cancelled) => Code::Cancelled,
            Self::Storage(_) | Self::Internal(_) => Code::Internal,
            Self::DataFusion(e) => datafusion_code(e),
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let code = e.code();
        if code == Code::Internal {
            tracing::error!(error = %e, "internal error");
        }
        let message = match &e {
            // DataFusion prefixes its messages with its own category; keep just the message.
            Error::DataFusion(inner) => inner.message().to_string(),
            other => other.to_string(),
        };
        Status::new(code, shorten(message))
    }
}
