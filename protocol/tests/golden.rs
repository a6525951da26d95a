//! Golden byte vectors for the wire format.
//!
//! A CHANGE HERE IS A WIRE CHANGE AND MUST BE DELIBERATE. If one of these vectors stops matching,
//! old peers can no longer talk to new ones: bump `PROTOCOL_VERSION` unless the change only
//! appends enum variants at the end (the compatibility rule in `lib.rs`). Appending a variant
//! means adding a new vector here, never editing an existing one.
//!
//! Each vector is the full framed encoding (varint length prefix + postcard payload) produced by
//! `codec::encode_to_vec`, and is also decoded back with `FrameDecoder`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use tern_protocol::codec::{FrameDecoder, encode_to_vec};
use tern_protocol::{
    Audience, MediaRef, Presence, PresenceState, PrivacySettings, Profile, ProfileEdit,
    SocialFeatures, TypingEvent, UserQuery,
};
use tern_protocol::{
    ChatFeatures, ChatId, ChatInfo, ChatKind, ChatsPage, ClientInfo, DeviceId, DeviceInfo,
    DevicesPage, ErrorBody, ErrorCode, Event, Frame, GoAway, GoAwayReason, GroupChange, GroupInfo,
    GroupMember, GroupSettings, Hello, LoginGrant, MemberReceipt, Message, MessageBody, MessageId,
    MessageReceipts, Receipt, Request, Response, RichText, Sent, ServerLimits, SessionInfo,
    SyncCursor, SyncPage, SystemEvent, Tokens, Update, UpdateKind, UserId, Welcome,
};
use tern_protocol::{
    DownloadRequest, MediaInfo, MediaKind, MediaLimits, MediaMessage, MediaOpen, MediaReply,
    MediaVariant, Thumbnail, UploadHeader,
};

fn limits() -> ServerLimits {
    ServerLimits {
        max_frame_len: 65_536,
        max_text_len: 16_384,
        max_sync_page: 256,
        max_in_flight_requests: 256,
        idle_timeout_ms: 30_000,
    }
}

/// The v2 defaults, spelled out so a change of `ChatFeatures::default()` cannot move the vectors.
fn features() -> ChatFeatures {
    ChatFeatures {
        max_chat_members: 1024,
        edit_window_s: 900,
        delete_window_s: 172_800,
        max_edits: 20,
        max_mentions: 64,
    }
}

/// The v3 social defaults, spelled out like `features()`.
fn social() -> SocialFeatures {
    SocialFeatures {
        max_presence_watch: 256,
        typing_ttl_ms: 6_000,
        lookups_per_day: 100,
        max_contacts: 1024,
        max_blocked: 1024,
    }
}

/// The v4 media defaults (`MediaLimits::default()`), spelled out like `features()`.
fn media() -> MediaLimits {
    const MIB: u64 = 1024 * 1024;
    MediaLimits {
        max_image_bytes: 16 * MIB,
        max_video_bytes: 256 * MIB,
        max_audio_bytes: 64 * MIB,
        max_document_bytes: 256 * MIB,
        daily_upload_bytes: 2048 * MIB,
        uploads_per_minute: 30,
        max_streams: 4,
        thumbnail_px: 320,
        unfinished_upload_ttl_s: 86_400,
    }
}

/// The media id of the media examples: 32 bytes of `0xcd`.
const MEDIA_ID: MediaRef = MediaRef([0xcd; 32]);

/// A plain JPEG photo with the server's thumbnail and a caption.
fn media_photo() -> MediaMessage {
    MediaMessage {
        media: MEDIA_ID,
        kind: MediaKind::Image,
        mime: "image/jpeg".into(),
        size: 300_000,
        dimensions: Some((1280, 960)),
        duration_ms: None,
        thumbnail: Thumbnail::Server,
        caption: Some("hi".into()),
        encrypted: false,
    }
}

/// A client-encrypted video with the client's own (encrypted) preview inline.
fn media_encrypted_video() -> MediaMessage {
    MediaMessage {
        media: MediaRef([0xef; 32]),
        kind: MediaKind::Video,
        mime: "video/mp4".into(),
        size: 5_000_000,
        dimensions: Some((1920, 1080)),
        duration_ms: Some(12_000),
        thumbnail: Thumbnail::Inline(vec![1, 2, 3, 4]),
        caption: None,
        encrypted: true,
    }
}

/// A voice note: no dimensions, a duration, no preview.
fn media_voice() -> MediaMessage {
    MediaMessage {
        media: MEDIA_ID,
        kind: MediaKind::Audio,
        mime: "audio/ogg".into(),
        size: 20_000,
        dimensions: None,
        duration_ms: Some(4_500),
        thumbnail: Thumbnail::None,
        caption: None,
        encrypted: false,
    }
}

/// A PDF with a caption.
fn media_document() -> MediaMessage {
    MediaMessage {
        media: MEDIA_ID,
        kind: MediaKind::Document,
        mime: "application/pdf".into(),
        size: 1_000,
        dimensions: None,
        duration_ms: None,
        thumbnail: Thumbnail::None,
        caption: Some("report".into()),
        encrypted: false,
    }
}

fn profile() -> Profile {
    Profile {
        user_id: UserId(2),
        username: Some("ann".into()),
        display_name: "Ann".into(),
        about: Some("hi".into()),
        avatar: Some(MediaRef([0xab; 32])),
        updated_ms: 1_700_000_000_000,
    }
}

/// A profile as a viewer who may not see the photo and about text gets it.
fn profile_hidden() -> Profile {
    Profile {
        user_id: UserId(3),
        username: None,
        display_name: "Bo".into(),
        about: None,
        avatar: None,
        updated_ms: 0,
    }
}

fn message() -> Message {
    Message {
        chat_id: ChatId(5),
        seq: 3,
        msg_id: MessageId(300),
        sender: UserId(1),
        sender_device: DeviceId(2),
        client_msg_id: 77,
        ts_ms: 1_700_000_000_000,
        body: MessageBody::Text("hi".into()),
    }
}

/// `message()` with another body.
fn message_with(body: MessageBody) -> Message {
    Message { body, ..message() }
}

/// A system message written by user 1.
fn system(change: GroupChange) -> Frame {
    event(
        14,
        UpdateKind::Message(message_with(MessageBody::System(SystemEvent {
            actor: UserId(1),
            change,
        }))),
    )
}

fn send(body: MessageBody) -> Frame {
    req(Request::SendMessage {
        chat_id: ChatId(5),
        client_msg_id: 77,
        body,
    })
}

fn receipt() -> Receipt {
    Receipt {
        chat_id: ChatId(5),
        user_id: UserId(2),
        delivered_seq: 3,
        read_seq: 2,
    }
}

fn chat() -> ChatInfo {
    ChatInfo {
        chat_id: ChatId(5),
        kind: ChatKind::Direct,
        members: vec![UserId(1), UserId(2)],
        last_seq: 3,
    }
}

fn hello(protocol_version: u16, auth: Option<&str>, resume: Option<u64>) -> Frame {
    Frame::Hello(Hello {
        protocol_version,
        client: ClientInfo {
            name: "t".into(),
            version: "0.1".into(),
            platform: "linux".into(),
        },
        auth: auth.map(Into::into),
        resume: resume.map(|pts| SyncCursor { pts }),
    })
}

/// The client of the `Hello` examples in docs/protocol.md.
fn raw_client() -> ClientInfo {
    ClientInfo {
        name: "raw".into(),
        version: "0".into(),
        platform: "test".into(),
    }
}

fn req(body: Request) -> Frame {
    Frame::Request { req_id: 1, body }
}

fn ok(r: Response) -> Frame {
    Frame::Response {
        req_id: 1,
        result: Ok(r),
    }
}

fn event(pts: u64, kind: UpdateKind) -> Frame {
    Frame::Event(Event::Update(Update { pts, kind }))
}

fn error(code: ErrorCode) -> Frame {
    Frame::Error(ErrorBody {
        code,
        message: "e".into(),
    })
}

/// Every known error code with its wire number. Must list every code `ErrorCode::from` knows
/// (checked by `every_known_error_code_has_a_vector`).
const KNOWN_CODES: &[(ErrorCode, &str)] = &[
    (ErrorCode::BadFrame, "bad_frame"),
    (ErrorCode::TooLarge, "too_large"),
    (ErrorCode::UnsupportedVersion, "unsupported_version"),
    (ErrorCode::HandshakeRequired, "handshake_required"),
    (ErrorCode::Unauthenticated, "unauthenticated"),
    (ErrorCode::InvalidToken, "invalid_token"),
    (ErrorCode::TokenExpired, "token_expired"),
    (ErrorCode::OtpInvalid, "otp_invalid"),
    (ErrorCode::OtpExpired, "otp_expired"),
    (ErrorCode::OtpTooManyAttempts, "otp_too_many_attempts"),
    (ErrorCode::RateLimited, "rate_limited"),
    (ErrorCode::RefreshReused, "refresh_reused"),
    (ErrorCode::DeviceRevoked, "device_revoked"),
    (ErrorCode::NotFound, "not_found"),
    (ErrorCode::Forbidden, "forbidden"),
    (ErrorCode::InvalidArgument, "invalid_argument"),
    (ErrorCode::CursorAhead, "cursor_ahead"),
    (ErrorCode::Overloaded, "overloaded"),
    (ErrorCode::Internal, "internal"),
    (ErrorCode::SlowConsumer, "slow_consumer"),
    (ErrorCode::ShuttingDown, "shutting_down"),
    (ErrorCode::TooManyRequests, "too_many_requests"),
    (ErrorCode::TooManyConnections, "too_many_connections"),
    (ErrorCode::HashMismatch, "hash_mismatch"),
    (ErrorCode::MediaTypeMismatch, "media_type_mismatch"),
    (ErrorCode::QuotaExceeded, "quota_exceeded"),
    (ErrorCode::UndecodableMedia, "undecodable_media"),
];

/// The golden table: (name, value, framed encoding as lowercase hex).
fn cases() -> Vec<(&'static str, Frame, &'static str)> {
    vec![
        // ---- Hello ----
        (
            "hello/minimal",
            hello(1, None, None),
            "100001017403302e31056c696e75780000",
        ),
        (
            "hello/auth_and_resume",
            hello(1, Some("tok"), Some(42)),
            "150001017403302e31056c696e75780103746f6b012a",
        ),
        (
            // The Hello layout is the same in every version: a v1 client's Hello still decodes,
            // so the server can answer it UnsupportedVersion.
            "hello/v2",
            hello(2, None, None),
            "100002017403302e31056c696e75780000",
        ),
        (
            "hello/v3",
            hello(3, None, None),
            "100003017403302e31056c696e75780000",
        ),
        (
            "hello/v4",
            hello(4, None, None),
            "100004017403302e31056c696e75780000",
        ),
        // ---- Welcome ----
        (
            "welcome/unauthenticated",
            Frame::Welcome(Welcome {
                protocol_version: 4,
                server: "tern/0.1".into(),
                session: None,
                limits: limits(),
                latest_pts: None,
                server_time_ms: 1_700_000_000_000,
                features: features(),
                social: social(),
                media: media(),
            }),
            // ... `00` latest_pts None, `80 d0 95 ff bc 31` server_time_ms, then features:
            // `80 08` 1024, `84 07` 900, `80 c6 0a` 172800, `14` 20, `40` 64, then (v3) social:
            // `80 02` 256, `f0 2e` 6000, `64` 100, `80 08` 1024, `80 08` 1024, then (v4) media:
            // `80 80 80 08` 16 MiB, `80 80 80 80 01` 256 MiB, `80 80 80 20` 64 MiB,
            // `80 80 80 80 01` 256 MiB, `80 80 80 80 08` 2048 MiB, `1e` 30, `04` 4, `c0 02` 320,
            // `80 a3 05` 86400.
            "500104087465726e2f302e310080800480800180028002b0ea010080d095ffbc318008840780c60a14408002f02e648008800880808008808080800180808020808080800180808080081e04c00280a305",
        ),
        (
            "welcome/authenticated",
            Frame::Welcome(Welcome {
                protocol_version: 4,
                server: "tern/0.1".into(),
                session: Some(SessionInfo {
                    user_id: UserId(1),
                    device_id: DeviceId(2),
                }),
                limits: limits(),
                latest_pts: Some(7),
                server_time_ms: 1_700_000_000_000,
                features: features(),
                social: social(),
                media: media(),
            }),
            "530104087465726e2f302e3101010280800480800180028002b0ea01010780d095ffbc318008840780c60a14408002f02e648008800880808008808080800180808020808080800180808080081e04c00280a305",
        ),
        (
            // Distinct small values pin the order of the ChatFeatures fields.
            "welcome/features_order",
            Frame::Welcome(Welcome {
                protocol_version: 4,
                server: "s".into(),
                session: None,
                limits: limits(),
                latest_pts: None,
                server_time_ms: 0,
                features: ChatFeatures {
                    max_chat_members: 1,
                    edit_window_s: 2,
                    delete_window_s: 3,
                    max_edits: 4,
                    max_mentions: 5,
                },
                social: SocialFeatures {
                    max_presence_watch: 6,
                    typing_ttl_ms: 7,
                    lookups_per_day: 8,
                    max_contacts: 9,
                    max_blocked: 10,
                },
                media: MediaLimits {
                    max_image_bytes: 11,
                    max_video_bytes: 12,
                    max_audio_bytes: 13,
                    max_document_bytes: 14,
                    daily_upload_bytes: 15,
                    uploads_per_minute: 16,
                    max_streams: 17,
                    thumbnail_px: 18,
                    unfinished_upload_ttl_s: 19,
                },
            }),
            "27010401730080800480800180028002b0ea0100000102030405060708090a0b0c0d0e0f10111213",
        ),
        // ---- Social (v3): requests ----
        (
            "request/get_profile",
            req(Request::GetProfile { user_id: UserId(2) }),
            "0402011b02",
        ),
        (
            "request/set_profile",
            req(Request::SetProfile(ProfileEdit {
                display_name: Some("Ann".into()),
                about: None,
                avatar: Some(Some(MediaRef([0xab; 32]))),
            })),
            "2b02011c0103416e6e000101abababababababababababababababababababababababababababababababab",
        ),
        (
            "request/set_profile_remove_photo",
            req(Request::SetProfile(ProfileEdit {
                display_name: None,
                about: Some(String::new()),
                avatar: Some(None),
            })),
            "0802011c0001000100",
        ),
        (
            "request/set_username",
            req(Request::SetUsername {
                username: Some("ann".into()),
            }),
            "0802011d0103616e6e",
        ),
        (
            "request/set_username_none",
            req(Request::SetUsername { username: None }),
            "0402011d00",
        ),
        (
            "request/lookup_username",
            req(Request::LookupUser(UserQuery::Username("ann".into()))),
            "0802011e0003616e6e",
        ),
        (
            "request/lookup_identifier",
            req(Request::LookupUser(UserQuery::Identifier(
                "+15551234567".into(),
            ))),
            "1102011e010c2b3135353531323334353637",
        ),
        (
            "request/add_contact",
            req(Request::AddContact { user_id: UserId(2) }),
            "0402011f02",
        ),
        (
            "request/remove_contact",
            req(Request::RemoveContact { user_id: UserId(2) }),
            "0402012002",
        ),
        (
            "request/list_contacts",
            req(Request::ListContacts),
            "03020121",
        ),
        (
            "request/block",
            req(Request::Block { user_id: UserId(2) }),
            "0402012202",
        ),
        (
            "request/unblock",
            req(Request::Unblock { user_id: UserId(2) }),
            "0402012302",
        ),
        (
            "request/list_blocked",
            req(Request::ListBlocked),
            "03020124",
        ),
        ("request/get_privacy", req(Request::GetPrivacy), "03020125"),
        (
            // One of each audience, in field order last_seen, online, photo, about.
            "request/set_privacy",
            req(Request::SetPrivacy(PrivacySettings {
                last_seen: Audience::ContactsExcept(vec![UserId(3)]),
                online: Audience::Nobody,
                photo: Audience::Everyone,
                about: Audience::Contacts,
            })),
            "09020126020103030001",
        ),
        (
            "request/watch_presence",
            req(Request::WatchPresence {
                users: vec![UserId(2), UserId(300)],
            }),
            "070201270202ac02",
        ),
        (
            "request/set_foreground",
            req(Request::SetForeground { foreground: false }),
            "0402012800",
        ),
        (
            "request/set_typing",
            req(Request::SetTyping {
                chat_id: ChatId(5),
                typing: true,
            }),
            "050201290501",
        ),
        // ---- Social (v3): responses and events ----
        (
            "response/profile",
            ok(Response::Profile(profile())),
            "390301000f020103616e6e03416e6e0102686901abababababababababababababababababababababababababababababababab80d095ffbc31",
        ),
        (
            "response/lookup_none",
            ok(Response::Lookup(None)),
            "050301001000",
        ),
        (
            "response/lookup_hidden",
            ok(Response::Lookup(Some(profile_hidden()))),
            "0d0301001001030002426f000000",
        ),
        (
            "response/profiles",
            ok(Response::Profiles(vec![profile(), profile_hidden()])),
            "420301001102020103616e6e03416e6e0102686901abababababababababababababababababababababababababababababababab80d095ffbc31030002426f000000",
        ),
        (
            "response/users",
            ok(Response::Users(vec![UserId(2), UserId(3)])),
            "0703010012020203",
        ),
        (
            "response/privacy_default",
            ok(Response::Privacy(PrivacySettings::default())),
            "080301001301010000",
        ),
        (
            "response/presence",
            ok(Response::Presence(vec![
                Presence {
                    user_id: UserId(2),
                    state: PresenceState::Online,
                },
                Presence {
                    user_id: UserId(3),
                    state: PresenceState::LastSeen {
                        at_ms: 1_700_000_000_000,
                    },
                },
                Presence {
                    user_id: UserId(4),
                    state: PresenceState::Hidden,
                },
            ])),
            "1103010014030200030180d095ffbc310402",
        ),
        (
            "event/presence",
            Frame::Event(Event::Presence(Presence {
                user_id: UserId(2),
                state: PresenceState::Online,
            })),
            "0404010200",
        ),
        (
            "event/typing",
            Frame::Event(Event::Typing(TypingEvent {
                chat_id: ChatId(5),
                user_id: UserId(2),
                typing: true,
                ttl_ms: 6000,
            })),
            "070402050201f02e",
        ),
        (
            "event/profile_changed",
            event(15, UpdateKind::ProfileChanged { user_id: UserId(2) }),
            "0504000f0502",
        ),
        // ---- Request: every variant ----
        (
            "request/request_otp",
            req(Request::RequestOtp {
                identifier: "+4915112345678".into(),
            }),
            "120201000e2b34393135313132333435363738",
        ),
        (
            "request/verify_otp",
            req(Request::VerifyOtp {
                identifier: "a@b.c".into(),
                code: "123456".into(),
                device_name: "phone".into(),
            }),
            "16020101056140622e63063132333435360570686f6e65",
        ),
        (
            "request/refresh",
            req(Request::Refresh {
                refresh_token: "rt".into(),
            }),
            "06020102027274",
        ),
        ("request/logout", req(Request::Logout), "03020103"),
        (
            "request/list_devices",
            req(Request::ListDevices),
            "03020104",
        ),
        (
            "request/revoke_device",
            req(Request::RevokeDevice {
                device_id: DeviceId(2),
            }),
            "0402010502",
        ),
        (
            "request/open_direct_chat",
            req(Request::OpenDirectChat { peer: UserId(9) }),
            "0402010609",
        ),
        ("request/list_chats", req(Request::ListChats), "03020107"),
        (
            "request/send_message",
            req(Request::SendMessage {
                chat_id: ChatId(5),
                client_msg_id: 77,
                body: MessageBody::Text("hello".into()),
            }),
            "0c020108054d000568656c6c6f",
        ),
        (
            "request/send_message_utf8",
            req(Request::SendMessage {
                chat_id: ChatId(5),
                client_msg_id: 78,
                body: MessageBody::Text("héllo ✓".into()),
            }),
            "11020108054e000a68c3a96c6c6f20e29c93",
        ),
        (
            // 130-byte text: the payload exceeds 127 bytes, so the length prefix takes two bytes.
            "request/send_message_two_byte_prefix",
            Frame::Request {
                req_id: 300,
                body: Request::SendMessage {
                    chat_id: ChatId(5),
                    client_msg_id: 79,
                    body: MessageBody::Text("x".repeat(130)),
                },
            },
            "8b0102ac0208054f00820178787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878",
        ),
        (
            "request/ack",
            req(Request::Ack {
                chat_id: ChatId(5),
                upto_seq: 3,
            }),
            "050201090503",
        ),
        (
            "request/mark_read",
            req(Request::MarkRead {
                chat_id: ChatId(5),
                upto_seq: 2,
            }),
            "0502010a0502",
        ),
        (
            "request/sync",
            req(Request::Sync {
                after: SyncCursor { pts: 10 },
                limit: 100,
            }),
            "0502010b0a64",
        ),
        (
            "request/get_messages",
            req(Request::GetMessages {
                chat_id: ChatId(5),
                from_seq: 1,
                limit: 50,
            }),
            "0602010c050132",
        ),
        (
            "request/get_receipts",
            req(Request::GetReceipts { chat_id: ChatId(5) }),
            "0402010d05",
        ),
        ("request/ping", req(Request::Ping), "0302010e"),
        (
            "request/list_chats_page",
            req(Request::ListChatsPage {
                after: ChatId(7),
                limit: 50,
            }),
            "0502010f0732",
        ),
        (
            "request/list_devices_page",
            req(Request::ListDevicesPage {
                after: DeviceId(2),
                limit: 50,
            }),
            "050201100232",
        ),
        // ---- Request: groups and message features (v2) ----
        (
            "request/create_group",
            // `02` Request, `01` req_id, `11` variant 17, `01 67` "g", `02 02 03` [2, 3].
            req(Request::CreateGroup {
                title: "g".into(),
                members: vec![UserId(2), UserId(3)],
            }),
            "080201110167020203",
        ),
        (
            "request/create_group_alone",
            req(Request::CreateGroup {
                title: "g".into(),
                members: vec![],
            }),
            "06020111016700",
        ),
        (
            "request/add_members",
            req(Request::AddMembers {
                chat_id: ChatId(5),
                members: vec![UserId(4)],
            }),
            "06020112050104",
        ),
        (
            "request/remove_member",
            req(Request::RemoveMember {
                chat_id: ChatId(5),
                user_id: UserId(4),
            }),
            "050201130504",
        ),
        (
            "request/leave_group",
            req(Request::LeaveGroup { chat_id: ChatId(5) }),
            "0402011405",
        ),
        (
            "request/set_admin",
            req(Request::SetAdmin {
                chat_id: ChatId(5),
                user_id: UserId(2),
                admin: true,
            }),
            "06020115050201",
        ),
        (
            "request/set_admin_demote",
            req(Request::SetAdmin {
                chat_id: ChatId(5),
                user_id: UserId(2),
                admin: false,
            }),
            "06020115050200",
        ),
        (
            "request/edit_group_info_title",
            req(Request::EditGroupInfo {
                chat_id: ChatId(5),
                title: Some("t".into()),
                description: None,
            }),
            "080201160501017400",
        ),
        (
            "request/edit_group_info_description",
            req(Request::EditGroupInfo {
                chat_id: ChatId(5),
                title: None,
                description: Some("d".into()),
            }),
            "080201160500010164",
        ),
        (
            "request/set_group_settings",
            req(Request::SetGroupSettings {
                chat_id: ChatId(5),
                settings: GroupSettings {
                    members_can_add: true,
                    members_can_edit_info: false,
                    announcement_only: true,
                },
            }),
            "0702011705010001",
        ),
        (
            "request/get_group_info",
            req(Request::GetGroupInfo { chat_id: ChatId(5) }),
            "0402011805",
        ),
        (
            "request/get_message_receipts",
            req(Request::GetMessageReceipts {
                chat_id: ChatId(5),
                seq: 3,
            }),
            "050201190503",
        ),
        (
            "request/delete_for_me",
            req(Request::DeleteForMe {
                chat_id: ChatId(5),
                seqs: vec![1, 3],
            }),
            "0702011a05020103",
        ),
        // ---- MessageBody: every variant a client sends (inside SendMessage) ----
        (
            "request/send_message_rich",
            send(MessageBody::Rich(RichText {
                text: "hi".into(),
                reply_to: Some(2),
                mentions: vec![UserId(2)],
            })),
            "0d020108054d0102686901020102",
        ),
        (
            "request/send_message_rich_plain",
            send(MessageBody::Rich(RichText {
                text: "hi".into(),
                reply_to: None,
                mentions: vec![],
            })),
            "0b020108054d010268690000",
        ),
        (
            "request/send_message_reaction",
            // `02` Reaction, `03` target, `01` Some, `04 f0 9f 91 8d` "👍" (U+1F44D).
            send(MessageBody::Reaction {
                target: 3,
                emoji: Some("👍".into()),
            }),
            "0d020108054d02030104f09f918d",
        ),
        (
            "request/send_message_reaction_removed",
            send(MessageBody::Reaction {
                target: 3,
                emoji: None,
            }),
            "08020108054d020300",
        ),
        (
            "request/send_message_edit",
            send(MessageBody::Edit {
                target: 3,
                text: "ho".into(),
            }),
            "0a020108054d030302686f",
        ),
        (
            "request/send_message_delete",
            send(MessageBody::Delete { target: 3 }),
            "07020108054d0403",
        ),
        // ---- MessageBody::Media (v4) ----
        (
            "request/send_message_media_photo",
            // `07` Media, 32 bytes media id, `00` Image, `0a` + 10 bytes image/jpeg, `e0 a7 12` 300000,
            // `01 80 0a c0 07` Some((1280, 960)), `00` no duration, `01` Thumbnail::Server,
            // `01 02 68 69` Some("hi"), `00` not encrypted.
            send(MessageBody::Media(media_photo())),
            "41020108054d07cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd000a696d6167652f6a706567e0a71201800ac00700010102686900",
        ),
        (
            "request/send_message_media_encrypted",
            // `01` Video, `c0 96 b1 02` 5000000, `01 80 0f b8 08` Some((1920, 1080)),
            // `01 e0 5d` Some(12000) ms, `02 04 01 02 03 04` Thumbnail::Inline, `00` no caption,
            // `01` encrypted.
            send(MessageBody::Media(media_encrypted_video())),
            "45020108054d07efefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefef0109766964656f2f6d7034c096b10201800fb80801e05d0204010203040001",
        ),
        // ---- Response Ok: every variant ----
        (
            "response/otp_requested",
            ok(Response::OtpRequested { expires_in_s: 300 }),
            "0603010000ac02",
        ),
        (
            "response/logged_in",
            ok(Response::LoggedIn(LoginGrant {
                user_id: UserId(1),
                device_id: DeviceId(2),
                tokens: Tokens {
                    access_token: "at".into(),
                    access_expires_at_ms: 1_700_000_000_000,
                    refresh_token: "rt".into(),
                },
            })),
            "1203010001010202617480d095ffbc31027274",
        ),
        ("response/done", ok(Response::Done), "0403010002"),
        (
            "response/devices",
            ok(Response::Devices(vec![
                DeviceInfo {
                    device_id: DeviceId(2),
                    name: "phone".into(),
                    created_ms: 1000,
                    revoked: false,
                },
                DeviceInfo {
                    device_id: DeviceId(3),
                    name: "pc".into(),
                    created_ms: 2000,
                    revoked: true,
                },
            ])),
            "160301000302020570686f6e65e8070003027063d00f01",
        ),
        (
            "response/chat",
            ok(Response::Chat(chat())),
            "0a03010004050002010203",
        ),
        (
            "response/chats",
            ok(Response::Chats(vec![chat()])),
            "0b0301000501050002010203",
        ),
        (
            "response/chats_empty",
            ok(Response::Chats(vec![])),
            "050301000500",
        ),
        (
            "response/sent",
            ok(Response::Sent(Sent {
                chat_id: ChatId(5),
                seq: 3,
                msg_id: MessageId(300),
                ts_ms: 1_700_000_000_000,
            })),
            "0e030100060503ac0280d095ffbc31",
        ),
        (
            "response/sync_page",
            ok(Response::SyncPage(SyncPage {
                updates: vec![
                    Update {
                        pts: 11,
                        kind: UpdateKind::Message(message()),
                    },
                    Update {
                        pts: 12,
                        kind: UpdateKind::Receipt(receipt()),
                    },
                ],
                cursor: SyncCursor { pts: 12 },
                has_more: true,
            })),
            "2003010007020b000503ac0201024d80d095ffbc31000268690c01050203020c01",
        ),
        (
            "response/sync_page_empty",
            ok(Response::SyncPage(SyncPage {
                updates: vec![],
                cursor: SyncCursor { pts: 10 },
                has_more: false,
            })),
            "0703010007000a00",
        ),
        (
            "response/messages",
            ok(Response::Messages(vec![message()])),
            "1603010008010503ac0201024d80d095ffbc3100026869",
        ),
        (
            "response/receipts",
            ok(Response::Receipts(vec![receipt()])),
            "09030100090105020302",
        ),
        ("response/pong", ok(Response::Pong), "040301000a"),
        (
            "response/chats_page",
            ok(Response::ChatsPage(ChatsPage {
                chats: vec![chat()],
                next: Some(ChatId(5)),
            })),
            "0d0301000b010500020102030105",
        ),
        (
            "response/chats_page_last",
            ok(Response::ChatsPage(ChatsPage {
                chats: vec![],
                next: None,
            })),
            "060301000b0000",
        ),
        (
            "response/devices_page",
            ok(Response::DevicesPage(DevicesPage {
                devices: vec![DeviceInfo {
                    device_id: DeviceId(2),
                    name: "phone".into(),
                    created_ms: 1000,
                    revoked: false,
                }],
                next: Some(DeviceId(2)),
            })),
            "110301000c01020570686f6e65e807000102",
        ),
        (
            "response/group_info",
            // `0d` variant 13, `05` chat, `01 67` "g", `01 64` "d", `00 01 00` settings,
            // `01` created_by, `e8 07` 1000, `02` members: `01 01 01 e8 07`, `02 00 03 d0 0f`;
            // `03` last_seq.
            ok(Response::GroupInfo(GroupInfo {
                chat_id: ChatId(5),
                title: "g".into(),
                description: "d".into(),
                settings: GroupSettings::default(),
                created_by: UserId(1),
                created_ms: 1000,
                members: vec![
                    GroupMember {
                        user_id: UserId(1),
                        admin: true,
                        since_seq: 1,
                        joined_ms: 1000,
                    },
                    GroupMember {
                        user_id: UserId(2),
                        admin: false,
                        since_seq: 3,
                        joined_ms: 2000,
                    },
                ],
                last_seq: 3,
            })),
            "1b0301000d050167016400010001e80702010101e807020003d00f03",
        ),
        (
            "response/message_receipts",
            ok(Response::MessageReceipts(MessageReceipts {
                chat_id: ChatId(5),
                seq: 3,
                delivered: vec![
                    MemberReceipt {
                        user_id: UserId(2),
                        at_ms: 1000,
                    },
                    MemberReceipt {
                        user_id: UserId(3),
                        at_ms: 1500,
                    },
                ],
                read: vec![MemberReceipt {
                    user_id: UserId(2),
                    at_ms: 2000,
                }],
                pending: 1,
            })),
            "120301000e05030202e80703dc0b0102d00f01",
        ),
        (
            "response/chat_group",
            ok(Response::Chat(ChatInfo {
                kind: ChatKind::Group,
                ..chat()
            })),
            "0a03010004050102010203",
        ),
        // ---- Response Err ----
        (
            "response/err",
            Frame::Response {
                req_id: 1,
                result: Err(ErrorBody {
                    code: ErrorCode::NotFound,
                    message: "no such chat".into(),
                }),
            },
            "11030101140c6e6f20737563682063686174",
        ),
        // ---- Event: every UpdateKind ----
        (
            "event/message",
            event(11, UpdateKind::Message(message())),
            "1504000b000503ac0201024d80d095ffbc3100026869",
        ),
        (
            "event/receipt",
            event(12, UpdateKind::Receipt(receipt())),
            "0804000c0105020302",
        ),
        (
            "event/chat_joined",
            event(13, UpdateKind::ChatJoined(chat())),
            "0a04000d02050002010203",
        ),
        (
            "event/chat_left",
            event(
                15,
                UpdateKind::ChatLeft {
                    chat_id: ChatId(5),
                    at_seq: 9,
                },
            ),
            "0604000f030509",
        ),
        (
            "event/hidden_for_me",
            event(
                16,
                UpdateKind::HiddenForMe {
                    chat_id: ChatId(5),
                    seqs: vec![1, 3],
                },
            ),
            "080400100405020103",
        ),
        (
            "event/chat_joined_group",
            event(
                13,
                UpdateKind::ChatJoined(ChatInfo {
                    kind: ChatKind::Group,
                    members: vec![UserId(1), UserId(2), UserId(3)],
                    ..chat()
                }),
            ),
            "0b04000d0205010301020303",
        ),
        // ---- MessageBody: the server-written variants, in a pushed message ----
        (
            "event/message_deleted",
            event(11, UpdateKind::Message(message_with(MessageBody::Deleted))),
            "1204000b000503ac0201024d80d095ffbc3105",
        ),
        (
            "event/message_edit_erased",
            event(
                11,
                UpdateKind::Message(message_with(MessageBody::Edit {
                    target: 2,
                    text: String::new(),
                })),
            ),
            "1404000b000503ac0201024d80d095ffbc31030200",
        ),
        (
            "event/message_media_voice",
            event(
                11,
                UpdateKind::Message(message_with(MessageBody::Media(media_voice()))),
            ),
            "4704000b000503ac0201024d80d095ffbc3107cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd0209617564696f2f6f6767a09c0100019423000000",
        ),
        (
            "response/messages_media_document",
            ok(Response::Messages(vec![message_with(MessageBody::Media(
                media_document(),
            ))])),
            "5203010008010503ac0201024d80d095ffbc3107cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd030f6170706c69636174696f6e2f706466e80700000001067265706f727400",
        ),
        // ---- GroupChange: every variant, in a System message ----
        (
            "event/system_created",
            system(GroupChange::Created { title: "g".into() }),
            "1604000e000503ac0201024d80d095ffbc310601000167",
        ),
        (
            "event/system_members_added",
            system(GroupChange::MembersAdded(vec![UserId(2), UserId(3)])),
            "1704000e000503ac0201024d80d095ffbc31060101020203",
        ),
        (
            "event/system_member_removed",
            system(GroupChange::MemberRemoved(UserId(3))),
            "1504000e000503ac0201024d80d095ffbc3106010203",
        ),
        (
            "event/system_left",
            system(GroupChange::Left),
            "1404000e000503ac0201024d80d095ffbc31060103",
        ),
        (
            "event/system_admin_promoted",
            system(GroupChange::AdminPromoted(UserId(2))),
            "1504000e000503ac0201024d80d095ffbc3106010402",
        ),
        (
            "event/system_admin_demoted",
            system(GroupChange::AdminDemoted(UserId(2))),
            "1504000e000503ac0201024d80d095ffbc3106010502",
        ),
        (
            "event/system_admin_inherited",
            system(GroupChange::AdminInherited(UserId(2))),
            "1504000e000503ac0201024d80d095ffbc3106010602",
        ),
        (
            "event/system_info_changed",
            system(GroupChange::InfoChanged {
                title: Some("t".into()),
                description: Some("d".into()),
            }),
            "1a04000e000503ac0201024d80d095ffbc31060107010174010164",
        ),
        (
            "event/system_info_changed_description_only",
            system(GroupChange::InfoChanged {
                title: None,
                description: Some("d".into()),
            }),
            "1804000e000503ac0201024d80d095ffbc3106010700010164",
        ),
        (
            "event/system_settings_changed",
            system(GroupChange::SettingsChanged(GroupSettings {
                members_can_add: true,
                members_can_edit_info: false,
                announcement_only: true,
            })),
            "1704000e000503ac0201024d80d095ffbc31060108010001",
        ),
        // ---- docs/protocol.md §17: the worked examples, byte for byte ----
        (
            "doc/hello",
            Frame::Hello(Hello {
                protocol_version: 4,
                client: raw_client(),
                auth: None,
                resume: None,
            }),
            "0f000403726177013004746573740000",
        ),
        (
            "doc/hello_auth_resume",
            Frame::Hello(Hello {
                protocol_version: 4,
                client: raw_client(),
                auth: Some("eyJ".into()),
                resume: Some(SyncCursor { pts: 300 }),
            }),
            "1500040372617701300474657374010365794a01ac02",
        ),
        (
            "doc/welcome",
            Frame::Welcome(Welcome {
                protocol_version: 4,
                server: "tern-server/0.1.0".into(),
                session: Some(SessionInfo {
                    user_id: UserId(1),
                    device_id: DeviceId(2),
                }),
                limits: limits(),
                latest_pts: Some(5),
                server_time_ms: 1_700_000_000_000,
                features: features(),
                social: social(),
                media: media(),
            }),
            "5c0104117465726e2d7365727665722f302e312e3001010280800480800180028002b0ea01010580d095ffbc318008840780c60a14408002f02e648008800880808008808080800180808020808080800180808080081e04c00280a305",
        ),
        (
            "doc/create_group",
            Frame::Request {
                req_id: 3,
                body: Request::CreateGroup {
                    title: "Team".into(),
                    members: vec![UserId(7), UserId(300)],
                },
            },
            "0c020311045465616d0207ac02",
        ),
        (
            "doc/send_rich",
            Frame::Request {
                req_id: 4,
                body: Request::SendMessage {
                    chat_id: ChatId(9),
                    client_msg_id: 1001,
                    body: MessageBody::Rich(RichText {
                        text: "ok @7".into(),
                        reply_to: Some(3),
                        mentions: vec![UserId(7)],
                    }),
                },
            },
            "1102040809e90701056f6b20403701030107",
        ),
        (
            "doc/send_reaction",
            Frame::Request {
                req_id: 5,
                body: Request::SendMessage {
                    chat_id: ChatId(9),
                    client_msg_id: 1002,
                    body: MessageBody::Reaction {
                        target: 4,
                        emoji: Some("👍".into()),
                    },
                },
            },
            "0e02050809ea0702040104f09f918d",
        ),
        (
            "doc/system_members_added",
            Frame::Event(Event::Update(Update {
                pts: 20,
                kind: UpdateKind::Message(Message {
                    chat_id: ChatId(9),
                    seq: 2,
                    msg_id: MessageId(43),
                    client_msg_id: 0,
                    ts_ms: 1_700_000_000_123,
                    body: MessageBody::System(SystemEvent {
                        actor: UserId(1),
                        change: GroupChange::MembersAdded(vec![UserId(7), UserId(300)]),
                    }),
                    ..message()
                }),
            })),
            "170400140009022b010200fbd095ffbc310601010207ac02",
        ),
        (
            "doc/chat_left",
            event(
                21,
                UpdateKind::ChatLeft {
                    chat_id: ChatId(9),
                    at_seq: 6,
                },
            ),
            "06040015030906",
        ),
        (
            "doc/message_receipts",
            Frame::Response {
                req_id: 6,
                result: Ok(Response::MessageReceipts(MessageReceipts {
                    chat_id: ChatId(9),
                    seq: 4,
                    delivered: vec![MemberReceipt {
                        user_id: UserId(7),
                        at_ms: 1_700_000_000_500,
                    }],
                    read: vec![],
                    pending: 1,
                })),
            },
            "100306000e09040107f4d395ffbc310001",
        ),
        // ---- Error: every known ErrorCode, plus unknown codes ----
        ("error/bad_frame", error(ErrorCode::BadFrame), "0405010165"),
        ("error/too_large", error(ErrorCode::TooLarge), "0405020165"),
        (
            "error/unsupported_version",
            error(ErrorCode::UnsupportedVersion),
            "0405030165",
        ),
        (
            "error/handshake_required",
            error(ErrorCode::HandshakeRequired),
            "0405040165",
        ),
        (
            "error/unauthenticated",
            error(ErrorCode::Unauthenticated),
            "04050a0165",
        ),
        (
            "error/invalid_token",
            error(ErrorCode::InvalidToken),
            "04050b0165",
        ),
        (
            "error/token_expired",
            error(ErrorCode::TokenExpired),
            "04050c0165",
        ),
        (
            "error/otp_invalid",
            error(ErrorCode::OtpInvalid),
            "04050d0165",
        ),
        (
            "error/otp_expired",
            error(ErrorCode::OtpExpired),
            "04050e0165",
        ),
        (
            "error/otp_too_many_attempts",
            error(ErrorCode::OtpTooManyAttempts),
            "04050f0165",
        ),
        (
            "error/rate_limited",
            error(ErrorCode::RateLimited),
            "0405100165",
        ),
        (
            "error/refresh_reused",
            error(ErrorCode::RefreshReused),
            "0405110165",
        ),
        (
            "error/device_revoked",
            error(ErrorCode::DeviceRevoked),
            "0405120165",
        ),
        ("error/not_found", error(ErrorCode::NotFound), "0405140165"),
        ("error/forbidden", error(ErrorCode::Forbidden), "0405150165"),
        (
            "error/invalid_argument",
            error(ErrorCode::InvalidArgument),
            "0405160165",
        ),
        (
            "error/cursor_ahead",
            error(ErrorCode::CursorAhead),
            "0405170165",
        ),
        (
            "error/overloaded",
            error(ErrorCode::Overloaded),
            "04051e0165",
        ),
        ("error/internal", error(ErrorCode::Internal), "04051f0165"),
        (
            "error/slow_consumer",
            error(ErrorCode::SlowConsumer),
            "0405200165",
        ),
        (
            "error/shutting_down",
            error(ErrorCode::ShuttingDown),
            "0405210165",
        ),
        (
            "error/too_many_requests",
            error(ErrorCode::TooManyRequests),
            "0405220165",
        ),
        (
            "error/too_many_connections",
            error(ErrorCode::TooManyConnections),
            "0405230165",
        ),
        // The media codes (v4), 40 to 43.
        (
            "error/hash_mismatch",
            error(ErrorCode::HashMismatch),
            "0405280165",
        ),
        (
            "error/media_type_mismatch",
            error(ErrorCode::MediaTypeMismatch),
            "0405290165",
        ),
        (
            "error/quota_exceeded",
            error(ErrorCode::QuotaExceeded),
            "04052a0165",
        ),
        (
            "error/undecodable_media",
            error(ErrorCode::UndecodableMedia),
            "04052b0165",
        ),
        ("error/other_0", error(ErrorCode::Other(0)), "0405000165"),
        (
            "error/other_1000",
            error(ErrorCode::Other(1000)),
            "0505e8070165",
        ),
        (
            "error/other_max",
            error(ErrorCode::Other(u16::MAX)),
            "0605ffff030165",
        ),
        // ---- GoAway: every reason ----
        (
            "go_away/shutdown",
            Frame::GoAway(GoAway {
                reason: GoAwayReason::Shutdown,
                reconnect_after_ms: 5000,
            }),
            "0406008827",
        ),
        (
            "go_away/overloaded",
            Frame::GoAway(GoAway {
                reason: GoAwayReason::Overloaded,
                reconnect_after_ms: 5000,
            }),
            "0406018827",
        ),
    ]
}

#[test]
fn golden_vectors() {
    let mut failures = Vec::new();
    for (name, frame, golden) in cases() {
        // Encoding must produce exactly the golden bytes.
        match encode_to_vec(&frame) {
            Ok(bytes) => {
                let got = hex::encode(&bytes);
                if got != golden {
                    failures.push(format!(
                        "{name}: encoding changed\n    expected {golden}\n    got      {got}"
                    ));
                }
            }
            Err(e) => failures.push(format!("{name}: encode failed: {e}")),
        }
        // The golden bytes must decode to exactly the value, consuming all of them.
        let bytes = match hex::decode(golden) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{name}: golden hex is invalid: {e}"));
                continue;
            }
        };
        let mut dec = FrameDecoder::new();
        dec.extend(&bytes);
        match dec.next_frame() {
            Ok(Some(decoded)) if decoded == frame => {}
            Ok(Some(decoded)) => {
                failures.push(format!("{name}: decoded to a different value: {decoded:?}"))
            }
            Ok(None) => failures.push(format!("{name}: decoder wants more bytes")),
            Err(e) => failures.push(format!("{name}: decode failed: {e}")),
        }
        if dec.buffered() != 0 {
            failures.push(format!(
                "{name}: {} bytes left in the decoder",
                dec.buffered()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden vector mismatch(es):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn golden_names_are_unique() {
    let mut seen = BTreeSet::new();
    for (name, _, _) in cases() {
        assert!(seen.insert(name), "duplicate golden vector name {name}");
    }
}

/// The labels of every enum variant a frame carries, nested ones included (a `SendMessage` of a
/// `Rich` body is both `Request::SendMessage` and `MessageBody::Rich`). The matches are
/// exhaustive on purpose: adding a variant to `Frame`, `Request`, `Response`, `Event`,
/// `UpdateKind`, `MessageBody`, `GroupChange`, `MediaKind`, `Thumbnail`, `ChatKind` or
/// `GoAwayReason` stops this file
/// compiling until the variant gets a label here, in `ALL_VARIANTS`, and a golden vector in
/// `cases()`.
fn variants(frame: &Frame) -> Vec<&'static str> {
    let mut out = Vec::new();
    match frame {
        Frame::Hello(_) => out.push("Frame::Hello"),
        Frame::Welcome(_) => out.push("Frame::Welcome"),
        Frame::Request { body, .. } => request_labels(body, &mut out),
        Frame::Response { result: Err(_), .. } => out.push("Frame::Response(Err)"),
        Frame::Response { result: Ok(r), .. } => response_labels(r, &mut out),
        Frame::Event(Event::Update(u)) => update_labels(&u.kind, &mut out),
        Frame::Event(Event::Presence(p)) => {
            presence_label(p.state, &mut out);
            out.push("Event::Presence");
        }
        Frame::Event(Event::Typing(_)) => out.push("Event::Typing"),
        Frame::Error(_) => out.push("Frame::Error"),
        Frame::GoAway(g) => out.push(match g.reason {
            GoAwayReason::Shutdown => "GoAwayReason::Shutdown",
            GoAwayReason::Overloaded => "GoAwayReason::Overloaded",
        }),
    }
    out
}

fn request_labels(body: &Request, out: &mut Vec<&'static str>) {
    let label = match body {
        Request::RequestOtp { .. } => "Request::RequestOtp",
        Request::VerifyOtp { .. } => "Request::VerifyOtp",
        Request::Refresh { .. } => "Request::Refresh",
        Request::Logout => "Request::Logout",
        Request::ListDevices => "Request::ListDevices",
        Request::RevokeDevice { .. } => "Request::RevokeDevice",
        Request::OpenDirectChat { .. } => "Request::OpenDirectChat",
        Request::ListChats => "Request::ListChats",
        Request::SendMessage { body, .. } => {
            body_labels(body, out);
            "Request::SendMessage"
        }
        Request::Ack { .. } => "Request::Ack",
        Request::MarkRead { .. } => "Request::MarkRead",
        Request::Sync { .. } => "Request::Sync",
        Request::GetMessages { .. } => "Request::GetMessages",
        Request::GetReceipts { .. } => "Request::GetReceipts",
        Request::Ping => "Request::Ping",
        Request::ListChatsPage { .. } => "Request::ListChatsPage",
        Request::ListDevicesPage { .. } => "Request::ListDevicesPage",
        Request::CreateGroup { .. } => "Request::CreateGroup",
        Request::AddMembers { .. } => "Request::AddMembers",
        Request::RemoveMember { .. } => "Request::RemoveMember",
        Request::LeaveGroup { .. } => "Request::LeaveGroup",
        Request::SetAdmin { .. } => "Request::SetAdmin",
        Request::EditGroupInfo { .. } => "Request::EditGroupInfo",
        Request::SetGroupSettings { .. } => "Request::SetGroupSettings",
        Request::GetGroupInfo { .. } => "Request::GetGroupInfo",
        Request::GetMessageReceipts { .. } => "Request::GetMessageReceipts",
        Request::DeleteForMe { .. } => "Request::DeleteForMe",
        Request::GetProfile { .. } => "Request::GetProfile",
        Request::SetProfile(_) => "Request::SetProfile",
        Request::SetUsername { .. } => "Request::SetUsername",
        Request::LookupUser(q) => {
            out.push(match q {
                UserQuery::Username(_) => "UserQuery::Username",
                UserQuery::Identifier(_) => "UserQuery::Identifier",
            });
            "Request::LookupUser"
        }
        Request::AddContact { .. } => "Request::AddContact",
        Request::RemoveContact { .. } => "Request::RemoveContact",
        Request::ListContacts => "Request::ListContacts",
        Request::Block { .. } => "Request::Block",
        Request::Unblock { .. } => "Request::Unblock",
        Request::ListBlocked => "Request::ListBlocked",
        Request::GetPrivacy => "Request::GetPrivacy",
        Request::SetPrivacy(p) => {
            privacy_labels(p, out);
            "Request::SetPrivacy"
        }
        Request::WatchPresence { .. } => "Request::WatchPresence",
        Request::SetForeground { .. } => "Request::SetForeground",
        Request::SetTyping { .. } => "Request::SetTyping",
    };
    out.push(label);
}

fn response_labels(r: &Response, out: &mut Vec<&'static str>) {
    let label = match r {
        Response::OtpRequested { .. } => "Response::OtpRequested",
        Response::LoggedIn(_) => "Response::LoggedIn",
        Response::Done => "Response::Done",
        Response::Devices(_) => "Response::Devices",
        Response::Chat(c) => {
            chat_labels(c, out);
            "Response::Chat"
        }
        Response::Chats(cs) => {
            cs.iter().for_each(|c| chat_labels(c, out));
            "Response::Chats"
        }
        Response::Sent(_) => "Response::Sent",
        Response::SyncPage(p) => {
            p.updates.iter().for_each(|u| update_labels(&u.kind, out));
            "Response::SyncPage"
        }
        Response::Messages(ms) => {
            ms.iter().for_each(|m| body_labels(&m.body, out));
            "Response::Messages"
        }
        Response::Receipts(_) => "Response::Receipts",
        Response::Pong => "Response::Pong",
        Response::ChatsPage(p) => {
            p.chats.iter().for_each(|c| chat_labels(c, out));
            "Response::ChatsPage"
        }
        Response::DevicesPage(_) => "Response::DevicesPage",
        Response::GroupInfo(_) => "Response::GroupInfo",
        Response::MessageReceipts(_) => "Response::MessageReceipts",
        Response::Profile(_) => "Response::Profile",
        Response::Lookup(_) => "Response::Lookup",
        Response::Profiles(_) => "Response::Profiles",
        Response::Users(_) => "Response::Users",
        Response::Privacy(p) => {
            privacy_labels(p, out);
            "Response::Privacy"
        }
        Response::Presence(ps) => {
            ps.iter().for_each(|p| presence_label(p.state, out));
            "Response::Presence"
        }
    };
    out.push(label);
}

fn update_labels(kind: &UpdateKind, out: &mut Vec<&'static str>) {
    let label = match kind {
        UpdateKind::Message(m) => {
            body_labels(&m.body, out);
            "UpdateKind::Message"
        }
        UpdateKind::Receipt(_) => "UpdateKind::Receipt",
        UpdateKind::ChatJoined(c) => {
            chat_labels(c, out);
            "UpdateKind::ChatJoined"
        }
        UpdateKind::ChatLeft { .. } => "UpdateKind::ChatLeft",
        UpdateKind::HiddenForMe { .. } => "UpdateKind::HiddenForMe",
        UpdateKind::ProfileChanged { .. } => "UpdateKind::ProfileChanged",
    };
    out.push(label);
}

fn privacy_labels(p: &PrivacySettings, out: &mut Vec<&'static str>) {
    for a in [&p.last_seen, &p.online, &p.photo, &p.about] {
        out.push(match a {
            Audience::Everyone => "Audience::Everyone",
            Audience::Contacts => "Audience::Contacts",
            Audience::ContactsExcept(_) => "Audience::ContactsExcept",
            Audience::Nobody => "Audience::Nobody",
        });
    }
}

fn presence_label(state: PresenceState, out: &mut Vec<&'static str>) {
    out.push(match state {
        PresenceState::Online => "PresenceState::Online",
        PresenceState::LastSeen { .. } => "PresenceState::LastSeen",
        PresenceState::Hidden => "PresenceState::Hidden",
    });
}

fn chat_labels(chat: &ChatInfo, out: &mut Vec<&'static str>) {
    let label = match chat.kind {
        ChatKind::Direct => "ChatKind::Direct",
        ChatKind::Group => "ChatKind::Group",
    };
    out.push(label);
}

fn body_labels(body: &MessageBody, out: &mut Vec<&'static str>) {
    let label = match body {
        MessageBody::Text(_) => "MessageBody::Text",
        MessageBody::Rich(_) => "MessageBody::Rich",
        MessageBody::Reaction { emoji: Some(_), .. } => "MessageBody::Reaction(Some)",
        MessageBody::Reaction { emoji: None, .. } => "MessageBody::Reaction(None)",
        MessageBody::Edit { .. } => "MessageBody::Edit",
        MessageBody::Delete { .. } => "MessageBody::Delete",
        MessageBody::Deleted => "MessageBody::Deleted",
        MessageBody::System(e) => {
            let change = match e.change {
                GroupChange::Created { .. } => "GroupChange::Created",
                GroupChange::MembersAdded(_) => "GroupChange::MembersAdded",
                GroupChange::MemberRemoved(_) => "GroupChange::MemberRemoved",
                GroupChange::Left => "GroupChange::Left",
                GroupChange::AdminPromoted(_) => "GroupChange::AdminPromoted",
                GroupChange::AdminDemoted(_) => "GroupChange::AdminDemoted",
                GroupChange::AdminInherited(_) => "GroupChange::AdminInherited",
                GroupChange::InfoChanged { .. } => "GroupChange::InfoChanged",
                GroupChange::SettingsChanged(_) => "GroupChange::SettingsChanged",
            };
            out.push(change);
            "MessageBody::System"
        }
        MessageBody::Media(m) => {
            out.push(match m.kind {
                MediaKind::Image => "MediaKind::Image",
                MediaKind::Video => "MediaKind::Video",
                MediaKind::Audio => "MediaKind::Audio",
                MediaKind::Document => "MediaKind::Document",
            });
            out.push(match m.thumbnail {
                Thumbnail::None => "Thumbnail::None",
                Thumbnail::Server => "Thumbnail::Server",
                Thumbnail::Inline(_) => "Thumbnail::Inline",
            });
            "MessageBody::Media"
        }
    };
    out.push(label);
}

const ALL_VARIANTS: &[&str] = &[
    "Frame::Hello",
    "Frame::Welcome",
    "Request::RequestOtp",
    "Request::VerifyOtp",
    "Request::Refresh",
    "Request::Logout",
    "Request::ListDevices",
    "Request::RevokeDevice",
    "Request::OpenDirectChat",
    "Request::ListChats",
    "Request::SendMessage",
    "Request::Ack",
    "Request::MarkRead",
    "Request::Sync",
    "Request::GetMessages",
    "Request::GetReceipts",
    "Request::Ping",
    "Request::ListChatsPage",
    "Request::ListDevicesPage",
    "Request::CreateGroup",
    "Request::AddMembers",
    "Request::RemoveMember",
    "Request::LeaveGroup",
    "Request::SetAdmin",
    "Request::EditGroupInfo",
    "Request::SetGroupSettings",
    "Request::GetGroupInfo",
    "Request::GetMessageReceipts",
    "Request::DeleteForMe",
    "Request::GetProfile",
    "Request::SetProfile",
    "Request::SetUsername",
    "Request::LookupUser",
    "UserQuery::Username",
    "UserQuery::Identifier",
    "Request::AddContact",
    "Request::RemoveContact",
    "Request::ListContacts",
    "Request::Block",
    "Request::Unblock",
    "Request::ListBlocked",
    "Request::GetPrivacy",
    "Request::SetPrivacy",
    "Audience::Everyone",
    "Audience::Contacts",
    "Audience::ContactsExcept",
    "Audience::Nobody",
    "Request::WatchPresence",
    "Request::SetForeground",
    "Request::SetTyping",
    "Frame::Response(Err)",
    "Response::OtpRequested",
    "Response::LoggedIn",
    "Response::Done",
    "Response::Devices",
    "Response::Chat",
    "Response::Chats",
    "Response::Sent",
    "Response::SyncPage",
    "Response::Messages",
    "Response::Receipts",
    "Response::Pong",
    "Response::ChatsPage",
    "Response::DevicesPage",
    "Response::GroupInfo",
    "Response::MessageReceipts",
    "Response::Profile",
    "Response::Lookup",
    "Response::Profiles",
    "Response::Users",
    "Response::Privacy",
    "Response::Presence",
    "PresenceState::Online",
    "PresenceState::LastSeen",
    "PresenceState::Hidden",
    "Event::Presence",
    "Event::Typing",
    "UpdateKind::Message",
    "UpdateKind::Receipt",
    "UpdateKind::ChatJoined",
    "UpdateKind::ChatLeft",
    "UpdateKind::HiddenForMe",
    "UpdateKind::ProfileChanged",
    "ChatKind::Direct",
    "ChatKind::Group",
    "MessageBody::Text",
    "MessageBody::Rich",
    "MessageBody::Reaction(Some)",
    "MessageBody::Reaction(None)",
    "MessageBody::Edit",
    "MessageBody::Delete",
    "MessageBody::Deleted",
    "MessageBody::System",
    "GroupChange::Created",
    "GroupChange::MembersAdded",
    "GroupChange::MemberRemoved",
    "GroupChange::Left",
    "GroupChange::AdminPromoted",
    "GroupChange::AdminDemoted",
    "GroupChange::AdminInherited",
    "GroupChange::InfoChanged",
    "GroupChange::SettingsChanged",
    "MessageBody::Media",
    "MediaKind::Image",
    "MediaKind::Video",
    "MediaKind::Audio",
    "MediaKind::Document",
    "Thumbnail::None",
    "Thumbnail::Server",
    "Thumbnail::Inline",
    "Frame::Error",
    "GoAwayReason::Shutdown",
    "GoAwayReason::Overloaded",
];

#[test]
fn every_variant_has_a_vector() {
    let covered: BTreeSet<&str> = cases().iter().flat_map(|(_, f, _)| variants(f)).collect();
    let missing: Vec<&&str> = ALL_VARIANTS
        .iter()
        .filter(|v| !covered.contains(**v))
        .collect();
    assert!(
        missing.is_empty(),
        "variants without a golden vector: {missing:?}"
    );
}

/// `ALL_VARIANTS` lists exactly the labels the label functions can produce: a variant that got
/// its label (the exhaustive matches force that) but no entry in `ALL_VARIANTS`, and so escaped
/// `every_variant_has_a_vector`, fails here. Read from this file's own source.
#[test]
fn all_variants_lists_every_label() {
    let src = include_str!("golden.rs");
    let start = src.find("fn variants(").unwrap();
    let end = src.find("const ALL_VARIANTS").unwrap();
    let labels: BTreeSet<&str> = src[start..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.contains("::"))
        .collect();
    let listed: BTreeSet<&str> = ALL_VARIANTS.iter().copied().collect();
    assert_eq!(
        ALL_VARIANTS.len(),
        listed.len(),
        "ALL_VARIANTS has duplicates"
    );
    assert_eq!(
        labels, listed,
        "ALL_VARIANTS is out of date with the label functions"
    );
}

#[test]
fn every_known_error_code_has_a_vector() {
    // `ErrorCode` is `#[non_exhaustive]`, so no exhaustive match is possible from here; instead
    // ask the decoder which numbers it knows and require each one in the table.
    let known: Vec<ErrorCode> = (0..=u16::MAX)
        .map(ErrorCode::from)
        .filter(|c| !matches!(c, ErrorCode::Other(_)))
        .collect();
    let listed: Vec<ErrorCode> = KNOWN_CODES.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        known, listed,
        "KNOWN_CODES is out of date with ErrorCode::from"
    );

    let table = cases();
    for (code, label) in KNOWN_CODES {
        let name = format!("error/{label}");
        let entry = table.iter().find(|(n, _, _)| *n == name);
        match entry {
            Some((_, Frame::Error(body), _)) => {
                assert_eq!(body.code, *code, "{name} carries the wrong code")
            }
            _ => panic!("no golden vector {name} for {code:?}"),
        }
    }
}

/// QUIC datagram payloads (no length prefix: a datagram is its own frame). Same rule as the
/// frame table: append, never edit.
#[test]
fn datagram_vectors() {
    use tern_protocol::Datagram;
    use tern_protocol::codec::{decode_datagram, encode_datagram};
    let cases = [
        (
            "datagram/typing",
            // `00` Datagram::Typing, `05` chat 5, `01` true.
            Datagram::Typing {
                chat_id: ChatId(5),
                typing: true,
            },
            "000501",
        ),
        (
            "datagram/typing_stopped",
            Datagram::Typing {
                chat_id: ChatId(300),
                typing: false,
            },
            "00ac0200",
        ),
        (
            "datagram/typing_event",
            // `01` Datagram::TypingEvent, chat 5, user 2, true, ttl `f0 2e` 6000.
            Datagram::TypingEvent(TypingEvent {
                chat_id: ChatId(5),
                user_id: UserId(2),
                typing: true,
                ttl_ms: 6000,
            }),
            "01050201f02e",
        ),
    ];
    for (name, value, golden) in cases {
        let bytes = encode_datagram(&value).unwrap();
        assert_eq!(hex::encode(&bytes), golden, "{name}: encoding changed");
        assert_eq!(decode_datagram(&bytes).unwrap(), value, "{name}");
    }
    // Trailing bytes, an unknown variant and an oversized payload are refused, never panic.
    assert!(decode_datagram(&hex::decode("00050100").unwrap()).is_err());
    assert!(decode_datagram(&[9]).is_err());
    assert!(decode_datagram(&vec![0u8; tern_protocol::limits::MAX_DATAGRAM_LEN + 1]).is_err());
}

/// Media stream headers (v4): one length-prefixed postcard header each way at the start of a
/// media stream, then raw bytes. `encode_media_open` / `encode_media_reply` give the framed
/// bytes; the decoders answer the value and how many bytes the header took. Same rule as the
/// frame table: append, never edit.
#[test]
fn media_stream_vectors() {
    use tern_protocol::codec::{
        CodecError, decode_media_open, decode_media_reply, encode_media_open, encode_media_reply,
    };
    use tern_protocol::limits::MAX_MEDIA_HEADER_LEN;

    let photo_info = MediaInfo {
        media: MEDIA_ID,
        kind: MediaKind::Image,
        mime: "image/jpeg".into(),
        size: 300_000,
        dimensions: Some((1280, 960)),
        thumbnail: true,
        encrypted: false,
    };
    let opens = [
        (
            "media/open_upload",
            // `31` 49 bytes, `00` Upload, 32 bytes media id, `e0 a7 12` size 300000, `00` Image,
            // `0a` "image/jpeg", `00` not encrypted.
            MediaOpen::Upload(UploadHeader {
                media: MEDIA_ID,
                size: 300_000,
                kind: MediaKind::Image,
                mime: "image/jpeg".into(),
                encrypted: false,
            }),
            "3100cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcde0a712000a696d6167652f6a70656700",
        ),
        (
            "media/open_download_thumbnail",
            // `23` 35 bytes, `01` Download, 32 bytes media id, `01` Thumbnail, `00` offset 0.
            MediaOpen::Download(DownloadRequest {
                media: MEDIA_ID,
                variant: MediaVariant::Thumbnail,
                offset: 0,
            }),
            "2301cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd0100",
        ),
        (
            "media/open_download_resumed",
            MediaOpen::Download(DownloadRequest {
                media: MEDIA_ID,
                variant: MediaVariant::Original,
                offset: 65_536,
            }),
            "2501cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd00808004",
        ),
    ];
    let replies = [
        (
            "media/reply_resume",
            // `04` 4 bytes, `00` Resume, `80 80 04` offset 65536.
            MediaReply::Resume { offset: 65_536 },
            "0400808004",
        ),
        (
            "media/reply_stored",
            // `01` Stored, media id, `00` Image, "image/jpeg", size 300000,
            // `01 80 0a c0 07` Some((1280, 960)), `01` has a thumbnail, `00` not encrypted.
            MediaReply::Stored(photo_info.clone()),
            "3701cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd000a696d6167652f6a706567e0a71201800ac0070100",
        ),
        (
            "media/reply_sending",
            // `02` Sending, the thumbnail's info (a 320x240 JPEG of 12000 bytes), offset 0.
            MediaReply::Sending {
                info: MediaInfo {
                    size: 12_000,
                    dimensions: Some((320, 240)),
                    ..photo_info.clone()
                },
                offset: 0,
            },
            "3702cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd000a696d6167652f6a706567e05d01c002f001010000",
        ),
        (
            "media/reply_error",
            // `04` 4 bytes, `03` Error, `28` HashMismatch (40), `01 65` "e".
            MediaReply::Error(ErrorBody {
                code: ErrorCode::HashMismatch,
                message: "e".into(),
            }),
            "0403280165",
        ),
    ];
    // Media bytes follow the header on the stream: the decoder must stop at the header.
    let tail = [0xffu8, 0xd8, 0xff];
    for (name, value, golden) in opens {
        let bytes = encode_media_open(&value).unwrap();
        assert_eq!(hex::encode(&bytes), golden, "{name}: encoding changed");
        assert_eq!(
            decode_media_open(&bytes).unwrap(),
            Some((value.clone(), bytes.len())),
            "{name}"
        );
        let mut more = bytes.clone();
        more.extend_from_slice(&tail);
        assert_eq!(
            decode_media_open(&more).unwrap(),
            Some((value, bytes.len())),
            "{name}: followed by media bytes"
        );
        // Every strict prefix is a header still arriving.
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_media_open(&bytes[..cut]),
                Ok(None),
                "{name} cut at {cut}"
            );
        }
    }
    for (name, value, golden) in replies {
        let bytes = encode_media_reply(&value).unwrap();
        assert_eq!(hex::encode(&bytes), golden, "{name}: encoding changed");
        assert_eq!(
            decode_media_reply(&bytes).unwrap(),
            Some((value.clone(), bytes.len())),
            "{name}"
        );
        let mut more = bytes.clone();
        more.extend_from_slice(&tail);
        assert_eq!(
            decode_media_reply(&more).unwrap(),
            Some((value, bytes.len())),
            "{name}: followed by media bytes"
        );
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_media_reply(&bytes[..cut]),
                Ok(None),
                "{name} cut at {cut}"
            );
        }
    }

    // A header announcing more than MAX_MEDIA_HEADER_LEN is refused from its length prefix
    // alone, before any byte of it arrives: `81 08` is 1025.
    let too_long = [0x81, 0x08];
    let refused = CodecError::TooLarge {
        len: u64::from(MAX_MEDIA_HEADER_LEN) + 1,
        max: MAX_MEDIA_HEADER_LEN,
    };
    assert_eq!(decode_media_open(&too_long), Err(refused.clone()));
    assert_eq!(decode_media_reply(&too_long), Err(refused));
    // Exactly the limit is waited for.
    assert_eq!(decode_media_open(&[0x80, 0x08]), Ok(None));
    assert_eq!(decode_media_reply(&[0x80, 0x08, 0]), Ok(None));
    // A prefix longer than a u32 varint is malformed, not waited for.
    assert_eq!(decode_media_open(&[0xff; 5]), Err(CodecError::BadLength));
    // Trailing bytes inside the header, an unknown variant and an over-long MIME type are
    // refused, never waited for and never a panic.
    assert!(matches!(
        decode_media_reply(&hex::decode("0500808004ff").unwrap()),
        Err(CodecError::Malformed(_))
    ));
    assert!(matches!(
        decode_media_open(&[0x01, 0x09]),
        Err(CodecError::Malformed(_))
    ));
    let long_mime = MediaOpen::Upload(UploadHeader {
        media: MEDIA_ID,
        size: 1,
        kind: MediaKind::Document,
        mime: "a".repeat(tern_protocol::limits::MAX_MIME_LEN + 1),
        encrypted: false,
    });
    let bytes = encode_media_open(&long_mime).unwrap();
    assert_eq!(decode_media_open(&bytes), Err(CodecError::FieldTooLarge));
    // The encoder refuses a header over the limit rather than writing one the peer refuses.
    let huge = MediaReply::Stored(MediaInfo {
        mime: "a".repeat(MAX_MEDIA_HEADER_LEN as usize),
        ..photo_info
    });
    assert!(matches!(
        encode_media_reply(&huge),
        Err(CodecError::TooLarge { .. })
    ));
}
