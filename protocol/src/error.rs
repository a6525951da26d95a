//! Error codes: a stable list shared by responses, connection-level errors and QUIC close codes.

use serde::{Deserialize, Serialize};

use crate::limits::MAX_ERROR_MESSAGE_LEN;

/// A stable error code. On the wire it is a `u16` (postcard varint); codes never change meaning.
/// Codes this version does not know decode as [`ErrorCode::Other`], so old clients keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "u16", into = "u16")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The bytes did not decode as a frame.
    BadFrame,
    /// A length exceeded a protocol limit (closes the connection), or, as a response, a group
    /// would exceed [`crate::limits::MAX_CHAT_MEMBERS`].
    TooLarge,
    /// The `Hello` named a protocol version the server does not speak.
    UnsupportedVersion,
    /// The first frame was not `Hello`, or a second `Hello` arrived.
    HandshakeRequired,
    /// The request needs an authenticated session.
    Unauthenticated,
    /// The token is malformed, forged, for another audience, or revoked.
    InvalidToken,
    /// The access token has expired; refresh it.
    TokenExpired,
    /// Wrong OTP code.
    OtpInvalid,
    /// The OTP code expired, was replaced by a newer one, or was never issued.
    OtpExpired,
    /// Too many wrong attempts: the code is void.
    OtpTooManyAttempts,
    /// Too many requests; retry later.
    RateLimited,
    /// A rotated refresh token was used again: the whole token family is revoked.
    RefreshReused,
    /// This device has been revoked.
    DeviceRevoked,
    /// No such object, or the caller may not know about it (chats answer this for non-members).
    NotFound,
    /// The caller may not do this.
    Forbidden,
    /// A field has an invalid value.
    InvalidArgument,
    /// The sync cursor is ahead of the server's update log (the server was restored from an
    /// older backup, or the cursor belongs to another server): drop local sync state and sync
    /// again from `pts = 0`. Retrying the same cursor never succeeds.
    CursorAhead,
    /// The server is overloaded; retry later with jitter.
    Overloaded,
    /// The server failed; the request may be retried.
    Internal,
    /// The connection could not keep up with its deliveries; reconnect and sync.
    SlowConsumer,
    /// The server is shutting down; reconnect.
    ShuttingDown,
    /// Too many requests in flight on this connection.
    TooManyRequests,
    /// This device opened more connections than the server allows; its oldest was closed.
    TooManyConnections,
    /// An upload's bytes do not hash to the SHA-256 it declared; nothing was stored.
    HashMismatch,
    /// The bytes are not of the declared type (sniffed from their first bytes).
    MediaTypeMismatch,
    /// The user's media quota is used up for now.
    QuotaExceeded,
    /// An image could not be decoded within the server's bounds (too many pixels, too much
    /// memory: a decompression bomb), or is not an image at all.
    UndecodableMedia,
    /// A code this version does not know.
    Other(u16),
}

impl ErrorCode {
    /// The numeric code sent on the wire and used as the QUIC application close code.
    pub fn as_u16(self) -> u16 {
        match self {
            ErrorCode::BadFrame => 1,
            ErrorCode::TooLarge => 2,
            ErrorCode::UnsupportedVersion => 3,
            ErrorCode::HandshakeRequired => 4,
            ErrorCode::Unauthenticated => 10,
            ErrorCode::InvalidToken => 11,
            ErrorCode::TokenExpired => 12,
            ErrorCode::OtpInvalid => 13,
            ErrorCode::OtpExpired => 14,
            ErrorCode::OtpTooManyAttempts => 15,
            ErrorCode::RateLimited => 16,
            ErrorCode::RefreshReused => 17,
            ErrorCode::DeviceRevoked => 18,
            ErrorCode::NotFound => 20,
            ErrorCode::Forbidden => 21,
            ErrorCode::InvalidArgument => 22,
            ErrorCode::CursorAhead => 23,
            ErrorCode::Overloaded => 30,
            ErrorCode::Internal => 31,
            ErrorCode::SlowConsumer => 32,
            ErrorCode::ShuttingDown => 33,
            ErrorCode::TooManyRequests => 34,
            ErrorCode::TooManyConnections => 35,
            ErrorCode::HashMismatch => 40,
            ErrorCode::MediaTypeMismatch => 41,
            ErrorCode::QuotaExceeded => 42,
            ErrorCode::UndecodableMedia => 43,
            ErrorCode::Other(n) => n,
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::Overloaded
                | ErrorCode::Internal
                | ErrorCode::ShuttingDown
                | ErrorCode::TooManyRequests
        )
    }
}

impl From<u16> for ErrorCode {
    fn from(n: u16) -> Self {
        match n {
            1 => ErrorCode::BadFrame,
            2 => ErrorCode::TooLarge,
            3 => ErrorCode::UnsupportedVersion,
            4 => ErrorCode::HandshakeRequired,
            10 => ErrorCode::Unauthenticated,
            11 => ErrorCode::InvalidToken,
            12 => ErrorCode::TokenExpired,
            13 => ErrorCode::OtpInvalid,
            14 => ErrorCode::OtpExpired,
            15 => ErrorCode::OtpTooManyAttempts,
            16 => ErrorCode::RateLimited,
            17 => ErrorCode::RefreshReused,
            18 => ErrorCode::DeviceRevoked,
            20 => ErrorCode::NotFound,
            21 => ErrorCode::Forbidden,
            22 => ErrorCode::InvalidArgument,
            23 => ErrorCode::CursorAhead,
            30 => ErrorCode::Overloaded,
            31 => ErrorCode::Internal,
            32 => ErrorCode::SlowConsumer,
            33 => ErrorCode::ShuttingDown,
            34 => ErrorCode::TooManyRequests,
            35 => ErrorCode::TooManyConnections,
            40 => ErrorCode::HashMismatch,
            41 => ErrorCode::MediaTypeMismatch,
            42 => ErrorCode::QuotaExceeded,
            43 => ErrorCode::UndecodableMedia,
            n => ErrorCode::Other(n),
        }
    }
}

impl From<ErrorCode> for u16 {
    fn from(code: ErrorCode) -> u16 {
        code.as_u16()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}({})", self.as_u16())
    }
}

/// An error answer: a stable code plus a human-readable message (never parsed by clients).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for code.
    pub code: ErrorCode,
    /// What went wrong, for people. At most [`MAX_ERROR_MESSAGE_LEN`] bytes.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body, truncating the message to the protocol limit on a char boundary.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_ERROR_MESSAGE_LEN {
            let mut end = MAX_ERROR_MESSAGE_LEN;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        ErrorBody { code, message }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}
