//! The shell's errors: the server's (with their gRPC code) and the shell's own.

/// An error shown to the user as one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered an error.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Server(tonic::Status),
    /// The server could not be reached.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL tried.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// A file, terminal or usage problem on the shell's side.
    #[error("{0}")]
    Local(String),
    /// The user pressed Ctrl-C during the statement.
    #[error("cancelled")]
    Cancelled,
}

/// The shell's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Self::Server(s)
    }
}

impl From<arrow_flight::error::FlightError> for Error {
    fn from(e: arrow_flight::error::FlightError) -> Self {
        match e {
            arrow_flight::error::FlightError::Tonic(s) => Self::Server(*s),
            other => Self::Local(other.to_string()),
        }
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Self::Local(format!("reading the result: {e}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::Local(e.to_string())
    }
}

/// The gRPC code as spec/flight.md names it (`INVALID_ARGUMENT`...).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
