//! The server side of a session as a pure state machine.
//!
//! Call order: create with [`ServerSession::new`] when the control stream opens, feed every
//! decoded frame to [`ServerSession::handle_frame`], and check [`ServerSession::poll_timeout`]:
//! a client that has not said `Hello` by then, or has not authenticated within the auth deadline
//! after `Hello`, is closed ([`ServerSession::handle_timeout`]). An anonymous session costs the
//! server memory and can only log in, so it must not live forever. Authentication itself (token
//! checks) happens outside; the shell reports the outcome with [`ServerSession::authenticate`].

use std::time::{Duration, Instant};

use crate::PROTOCOL_VERSION;
use crate::error::{ErrorBody, ErrorCode};
use crate::frame::{Frame, Hello, SessionInfo};
use crate::request::Request;

/// How long a client has, after opening the control stream, to send `Hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a session has, after `Hello`, to authenticate (token, OTP login or refresh).
/// Long enough to read a code from an SMS and type it; the SDK reconnects by itself if a slow
/// user misses it (the pending code lives in the server, not in the connection).
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(120);

/// What the shell should do with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionInput {
    /// A valid `Hello`: check its token (if any), then answer `Welcome`.
    Hello(Hello),
    /// A request the session may make now.
    Request {
        /// Its id.
        req_id: u32,
        /// The request.
        body: Request,
    },
    /// A request refused by the state machine; answer this error with the request's id.
    Refused {
        /// Its id.
        req_id: u32,
        /// The answer.
        error: ErrorBody,
    },
}

/// Connection-fatal protocol violation: send `Frame::Error` with it, then close with its code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub ErrorBody);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingHello {
        deadline: Instant,
    },
    /// `Hello` seen, not authenticated: closed at `deadline`. `None` when the auth timeout is
    /// too large to add to an `Instant` (the server's config does not bound it): no deadline.
    Anonymous {
        deadline: Option<Instant>,
    },
    Authenticated {
        session: SessionInfo,
    },
}

/// Server-side session state: handshake first, then requests gated by authentication.
#[derive(Debug)]
pub struct ServerSession {
    state: State,
    auth_timeout: Duration,
}

impl ServerSession {
    /// A session whose control stream opened at `now`, with the default auth deadline.
    pub fn new(now: Instant) -> Self {
        Self::with_auth_timeout(now, AUTH_TIMEOUT)
    }

    /// A session that must authenticate within `auth_timeout` of its `Hello`.
    pub fn with_auth_timeout(now: Instant, auth_timeout: Duration) -> Self {
        ServerSession {
            state: State::AwaitingHello {
                deadline: now + HELLO_TIMEOUT,
            },
            auth_timeout,
        }
    }

    /// When the shell must call [`ServerSession::handle_timeout`], if at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::AwaitingHello { deadline } => Some(deadline),
            State::Anonymous { deadline } => deadline,
            State::Authenticated { .. } => None,
        }
    }

    /// Err if the handshake or authentication deadline has passed.
    pub fn handle_timeout(&self, now: Instant) -> Result<(), Violation> {
        match self.state {
            State::AwaitingHello { deadline } if now >= deadline => Err(Violation(ErrorBody::new(
                ErrorCode::HandshakeRequired,
                "no Hello within the handshake timeout",
            ))),
            State::Anonymous {
                deadline: Some(deadline),
            } if now >= deadline => Err(Violation(ErrorBody::new(
                ErrorCode::Unauthenticated,
                "not authenticated within the login deadline; reconnect to continue",
            ))),
            _ => Ok(()),
        }
    }

    /// Classifies an incoming frame received at `now`.
    pub fn handle_frame(&mut self, frame: Frame, now: Instant) -> Result<SessionInput, Violation> {
        match (self.state, frame) {
            (State::AwaitingHello { .. }, Frame::Hello(hello)) => {
                if hello.protocol_version != PROTOCOL_VERSION {
                    return Err(Violation(ErrorBody::new(
                        ErrorCode::UnsupportedVersion,
                        format!(
                            "protocol version {} is not supported; this server speaks {}",
                            hello.protocol_version, PROTOCOL_VERSION
                        ),
                    )));
                }
                self.state = State::Anonymous {
                    deadline: now.checked_add(self.auth_timeout),
                };
                Ok(SessionInput::Hello(hello))
            }
            (State::AwaitingHello { .. }, _) => Err(Violation(ErrorBody::new(
                ErrorCode::HandshakeRequired,
                "the first frame must be Hello",
            ))),
            (State::Anonymous { .. }, Frame::Request { req_id, body }) => {
                if !body.allowed_unauthenticated() {
                    return Ok(SessionInput::Refused {
                        req_id,
                        error: ErrorBody::new(
                            ErrorCode::Unauthenticated,
                            format!("{} needs an authenticated session", body.name()),
                        ),
                    });
                }
                Ok(SessionInput::Request { req_id, body })
            }
            (State::Authenticated { .. }, Frame::Request { req_id, body }) => {
                Ok(SessionInput::Request { req_id, body })
            }
            (State::Anonymous { .. } | State::Authenticated { .. }, Frame::Hello(_)) => {
                Err(Violation(ErrorBody::new(
                    ErrorCode::HandshakeRequired,
                    "Hello was already received",
                )))
            }
            (State::Anonymous { .. } | State::Authenticated { .. }, _) => {
                Err(Violation(ErrorBody::new(
                    ErrorCode::BadFrame,
                    "clients may only send Hello and Request frames",
                )))
            }
        }
    }

    /// Records that the session is now authenticated as `info` (after a token check or login).
    pub fn authenticate(&mut self, info: SessionInfo) {
        self.state = State::Authenticated { session: info };
    }

    /// The authenticated identity, if any.
    pub fn session(&self) -> Option<SessionInfo> {
        match self.state {
            State::Authenticated { session } => Some(session),
            State::AwaitingHello { .. } | State::Anonymous { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests;
