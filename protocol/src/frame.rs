//! The top-level frame and the handshake messages.

use serde::{Deserialize, Serialize};

use crate::error::ErrorBody;
use crate::event::Event;
use crate::group::ChatFeatures;
use crate::ids::{DeviceId, Pts, SyncCursor, UserId};
use crate::limits::{self, MAX_CLIENT_INFO_LEN, MAX_TOKEN_LEN};
use crate::media::MediaLimits;
use crate::request::{Request, Response};
use crate::social::SocialFeatures;

/// Everything sent on the control stream is one `Frame`, prefixed by its length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Client -> server, first frame of every connection.
    Hello(Hello),
    /// Server -> client, answer to an accepted `Hello`.
    Welcome(Welcome),
    /// Client -> server request; answered by exactly one `Response` with the same `req_id`.
    Request {
        /// Chosen by the client, echoed in the response.
        req_id: u32,
        /// What is asked.
        body: Request,
    },
    /// Server -> client answer to a request.
    Response {
        /// The request's id.
        req_id: u32,
        /// `Ok` with the answer, or `Err` with an error code.
        result: Result<Response, ErrorBody>,
    },
    /// Server -> client push.
    Event(Event),
    /// Connection-level error; the sender closes the connection right after it.
    Error(ErrorBody),
    /// Server -> client: this server is going away; reconnect after the hint.
    GoAway(GoAway),
}

/// Describes the client software, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// Application or SDK name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Operating system or platform.
    pub platform: String,
}

/// The first frame of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal the server's [`crate::PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// Who is calling.
    pub client: ClientInfo,
    /// An access token authenticates the session at once; without one only auth requests work.
    pub auth: Option<String>,
    /// The device's sync cursor, so `Welcome` can tell whether anything was missed.
    pub resume: Option<SyncCursor>,
}

/// Limits and settings the server pushes to the client at connect time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerLimits {
    /// Largest frame accepted.
    pub max_frame_len: u32,
    /// Longest text body.
    pub max_text_len: u32,
    /// Most updates per sync page.
    pub max_sync_page: u32,
    /// Most requests in flight per connection.
    pub max_in_flight_requests: u32,
    /// The server closes connections idle for this long; clients keep alive well within it.
    pub idle_timeout_ms: u32,
}

impl ServerLimits {
    /// The limits of this protocol version.
    pub fn protocol_defaults(idle_timeout_ms: u32) -> Self {
        ServerLimits {
            max_frame_len: limits::MAX_FRAME_LEN,
            max_text_len: limits::MAX_TEXT_LEN as u32,
            max_sync_page: limits::MAX_SYNC_PAGE,
            max_in_flight_requests: limits::MAX_IN_FLIGHT_REQUESTS,
            idle_timeout_ms,
        }
    }
}

/// The authenticated identity of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The user.
    pub user_id: UserId,
    /// The device.
    pub device_id: DeviceId,
}

/// Answer to an accepted `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The server's protocol version.
    pub protocol_version: u16,
    /// Server software name and version.
    pub server: String,
    /// Set when `Hello.auth` authenticated the session.
    pub session: Option<SessionInfo>,
    /// Limits the server enforces.
    pub limits: ServerLimits,
    /// The user's latest update sequence (authenticated sessions only): equal to the device's
    /// cursor means nothing was missed and no sync round trip is needed.
    pub latest_pts: Option<Pts>,
    /// Server time, milliseconds since the Unix epoch.
    pub server_time_ms: u64,
    /// Message-feature windows and limits (edit and delete windows, group size). New in v2.
    pub features: ChatFeatures,
    /// Social limits and timings (presence watch size, typing TTL, lookup budget).
    pub social: SocialFeatures,
    /// Media size limits, quotas and lifetimes. New in v4.
    pub media: MediaLimits,
}

/// Why the server sends `GoAway`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GoAwayReason {
    /// Planned shutdown or restart.
    Shutdown,
    /// Shedding load.
    Overloaded,
}

/// The server is closing this connection on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoAway {
    /// Why.
    pub reason: GoAwayReason,
    /// Wait at least this long (plus jitter) before reconnecting.
    pub reconnect_after_ms: u32,
}

impl Hello {
    pub(crate) fn within_limits(&self) -> bool {
        self.client.name.len() <= MAX_CLIENT_INFO_LEN
            && self.client.version.len() <= MAX_CLIENT_INFO_LEN
            && self.client.platform.len() <= MAX_CLIENT_INFO_LEN
            && self.auth.as_ref().is_none_or(|t| t.len() <= MAX_TOKEN_LEN)
    }
}

impl Frame {
    /// A short stable name of the frame type, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "hello",
            Frame::Welcome(_) => "welcome",
            Frame::Request { .. } => "request",
            Frame::Response { .. } => "response",
            Frame::Event(_) => "event",
            Frame::Error(_) => "error",
            Frame::GoAway(_) => "go_away",
        }
    }

    /// Checks every field against the protocol limits. Decoding already bounds allocation by the
    /// frame size; this enforces the finer per-field limits and is run by [`crate::codec`].
    pub fn within_limits(&self) -> bool {
        match self {
            Frame::Hello(h) => h.within_limits(),
            Frame::Welcome(w) => w.server.len() <= limits::MAX_SERVER_NAME_LEN,
            Frame::Error(e) => e.message.len() <= limits::MAX_ERROR_MESSAGE_LEN,
            Frame::GoAway(_) => true,
            Frame::Request { body, .. } => body.within_limits(),
            Frame::Response { result, .. } => match result {
                Ok(r) => r.within_limits(),
                Err(e) => e.message.len() <= limits::MAX_ERROR_MESSAGE_LEN,
            },
            Frame::Event(Event::Update(u)) => u.kind.within_limits(),
            Frame::Event(Event::Presence(_) | Event::Typing(_)) => true,
        }
    }
}
