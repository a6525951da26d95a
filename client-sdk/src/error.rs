//! The SDK's error type: small, typed, and easy to map across an FFI boundary.

use tern_protocol::{ErrorBody, ErrorCode};

/// What can go wrong in a client call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error.
    #[error("server refused: {0}")]
    Server(ErrorBody),
    /// The connection dropped while the request was in flight; it may or may not have run.
    /// (Sends are retried by the outbox and never fail with this.)
    #[error("disconnected while the request was in flight")]
    Disconnected,
    /// No answer within the request timeout.
    #[error("timed out")]
    Timeout,
    /// The client was closed, or its session ended (device revoked, refresh token reused).
    #[error("client closed: {0}")]
    Closed(String),
    /// Local configuration problem (TLS, addresses).
    #[error("configuration: {0}")]
    Config(String),
    /// The server sent something this client does not understand.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Refused before sending: the server would refuse this with the same code (a message
    /// body of a kind only the server writes, over a protocol limit, an empty edit, seq 0).
    #[error("refused before sending: {0}")]
    Rejected(ErrorBody),
}

impl Error {
    /// The error code, if the server refused (or the client did, on the server's behalf).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server(b) | Error::Rejected(b) => Some(b.code),
            _ => None,
        }
    }
}
