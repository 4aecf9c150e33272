//! The Flight layer's errors and their one conversion to a gRPC status (spec/flight.md).

use tonic::{Code, Status};

/// What a Flight call can fail with, before the backend is reached or around it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed client input: a command, a ticket, Arrow data, a parameter batch.
    #[error("{0}")]
    InvalidArgument(String),
    /// No or bad credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// An unknown or expired handle, ticket or query.
    #[error("{0}")]
    NotFound(String),
    /// A limit was reached (concurrent queries, open handles).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The query was cancelled.
    #[error("{0}")]
    Cancelled(String),
    /// The query ran past its time limit.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A fault of the server: encoding a result, a broken invariant.
    #[error("{0}")]
    Internal(String),
}

/// Results of the Flight layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::NotFound(_) => Code::NotFound,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Cancelled(_) => Code::Cancelled,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Internal(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_code() {
        let cases = [
            (Error::InvalidArgument("a".into()), Code::InvalidArgument),
            (Error::Unauthenticated("b".into()), Code::Unauthenticated),
            (Error::NotFound("c".into()), Code::NotFound),
            (
                Error::ResourceExhausted("d".into()),
                Code::ResourceExhausted,
            ),
            (Error::Cancelled("e".into()), Code::Cancelled),
            (Error::DeadlineExceeded("f".into()), Code::DeadlineExceeded),
            (Error::Internal("g".into()), Code::Internal),
        ];
        for (e, code) in cases {
            let text = e.to_string();
            let s = Status::from(e);
            assert_eq!(s.code(), code);
            assert_eq!(s.message(), text);
        }
    }
}
