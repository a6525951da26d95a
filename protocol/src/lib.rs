//! The Tern wire protocol.
//!
//! This crate is pure: it holds the wire types, the codec, the limits every decoder enforces and the
//! session handshake state machine. It does no IO and never reads a clock; time is passed in as `now`.
//! The server and the SDK are thin IO shells around it, which keeps both testable without a network.
//!
//! * [`codec`] turns [`Frame`]s into length-prefixed bytes and back, checking every length against
//!   [`limits`] before allocating.
//! * [`session`] is the server side of the handshake: `Hello` first, then requests gated by whether
//!   the session is authenticated.
//! * [`ErrorCode`] is the stable list of error codes sent on the wire and used as QUIC close codes.
//!
//! Compatibility rule: enums only ever gain variants at the end; anything else bumps
//! [`PROTOCOL_VERSION`].

pub mod codec;
mod error;
mod event;
mod frame;
mod group;
mod ids;
pub mod limits;
mod media;
mod request;
pub mod session;
mod social;

pub use error::{ErrorBody, ErrorCode};
pub use event::{
    ChatInfo, ChatKind, Event, Message, MessageBody, Receipt, RichText, Update, UpdateKind,
};
pub use frame::{
    ClientInfo, Frame, GoAway, GoAwayReason, Hello, ServerLimits, SessionInfo, Welcome,
};
pub use group::{
    ChatFeatures, GroupChange, GroupInfo, GroupMember, GroupSettings, MemberReceipt,
    MessageReceipts, SystemEvent,
};
pub use ids::{ChatId, ClientMsgId, DeviceId, MessageId, Pts, Seq, SyncCursor, UserId};
pub use media::{
    DownloadRequest, MediaInfo, MediaKind, MediaLimits, MediaMessage, MediaOpen, MediaRef,
    MediaReply, MediaVariant, Thumbnail, UploadHeader,
};
pub use request::{
    ChatsPage, DeviceInfo, DevicesPage, LoginGrant, Request, Response, Sent, SyncPage, Tokens,
};
pub use social::{
    Audience, Datagram, Presence, PresenceState, PrivacySettings, Profile, ProfileEdit,
    SocialFeatures, TypingEvent, UserQuery,
};

/// The protocol version this crate speaks. A `Hello` with any other version is refused with
/// [`ErrorCode::UnsupportedVersion`].
/// Version 2 added `Welcome.features` (groups and message features); version 3 added
/// `Welcome.social` (profiles, contacts, blocking, presence, typing); version 4 added
/// `Welcome.media` (media limits) and media streams. Older clients are refused.
pub const PROTOCOL_VERSION: u16 = 4;

/// ALPN identifier negotiated in the TLS handshake.
pub const ALPN: &[u8] = b"tern/1";
