//! Property tests for the codec: encode/decode round trips through `FrameDecoder` fed in random
//! chunks (every wire type, groups and message features included), plus the decoder's defences
//! (random bytes, oversized prefixes, field limits, trailing bytes), the boundaries of
//! `MessageBody::within_limits` and the `ErrorCode` <-> `u16` mapping.
#![allow(clippy::unwrap_used)]

use proptest::collection::vec;
use proptest::prelude::*;
use tern_protocol::codec::{
    CodecError, FrameDecoder, decode_payload, encode_to_vec, encode_update_event,
};
use tern_protocol::limits::{
    MAX_CHAT_MEMBERS, MAX_CLIENT_INFO_LEN, MAX_DELETE_FOR_ME, MAX_DEVICE_NAME_LEN, MAX_FRAME_LEN,
    MAX_GROUP_DESCRIPTION_LEN, MAX_GROUP_TITLE_LEN, MAX_IDENTIFIER_LEN, MAX_LIST_LEN, MAX_MENTIONS,
    MAX_MESSAGES_PAGE, MAX_REACTION_LEN, MAX_SYNC_PAGE, MAX_TEXT_LEN, MAX_TOKEN_LEN, OTP_DIGITS,
};
use tern_protocol::{
    Audience, ChatFeatures, ChatId, ChatInfo, ChatKind, ChatsPage, ClientInfo, DeviceId,
    DeviceInfo, DevicesPage, ErrorBody, ErrorCode, Event, Frame, GoAway, GoAwayReason, GroupChange,
    GroupInfo, GroupMember, GroupSettings, Hello, LoginGrant, MediaRef, MemberReceipt, Message,
    MessageBody, MessageId, MessageReceipts, Presence, PresenceState, PrivacySettings, Profile,
    ProfileEdit, Receipt, Request, Response, RichText, Sent, ServerLimits, SessionInfo,
    SocialFeatures, SyncCursor, SyncPage, SystemEvent, Tokens, TypingEvent, Update, UpdateKind,
    UserId, UserQuery, Welcome,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The varint length prefix the codec writes (LEB128, as in `codec::put_varint`), for any
/// value up to 35 bits so oversized prefixes can be built too.
fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

/// Splits an encoded frame into (prefix length, payload).
fn split_frame(bytes: &[u8]) -> (usize, &[u8]) {
    let prefix = bytes.iter().position(|b| b & 0x80 == 0).unwrap() + 1;
    (prefix, &bytes[prefix..])
}

/// Frames `payload` with a correct length prefix.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = varint(payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// Feeds `bytes` to a fresh decoder in chunks whose sizes cycle through `chunks` (all >= 1),
/// draining frames after every chunk as a transport would. Stops at the first error.
fn feed(bytes: &[u8], chunks: &[usize]) -> (Vec<Frame>, Option<CodecError>, FrameDecoder) {
    let mut dec = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut rest = bytes;
    let mut sizes = chunks.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(1).clamp(1, rest.len());
        dec.extend(&rest[..n]);
        rest = &rest[n..];
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e), dec),
            }
        }
    }
    (frames, None, dec)
}

/// Encodes `frame`, then decodes it with a single `FrameDecoder::next_frame` call.
fn decode_one(frame: &Frame) -> Result<Option<Frame>, CodecError> {
    let bytes = encode_to_vec(frame).unwrap();
    let mut dec = FrameDecoder::new();
    dec.extend(&bytes);
    dec.next_frame()
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Any Unicode text up to `max_chars` characters (so at most `4 * max_chars` bytes).
fn text(max_chars: usize) -> BoxedStrategy<String> {
    proptest::string::string_regex(&format!("\\PC{{0,{max_chars}}}"))
        .unwrap()
        .boxed()
}

fn user_id() -> impl Strategy<Value = UserId> {
    any::<u64>().prop_map(UserId)
}

fn device_id() -> impl Strategy<Value = DeviceId> {
    any::<u64>().prop_map(DeviceId)
}

fn chat_id() -> impl Strategy<Value = ChatId> {
    any::<u64>().prop_map(ChatId)
}

fn settings() -> impl Strategy<Value = GroupSettings> {
    any::<[bool; 3]>().prop_map(|b| GroupSettings {
        members_can_add: b[0],
        members_can_edit_info: b[1],
        announcement_only: b[2],
    })
}

/// Titles of up to 32 chars (at most 128 bytes = MAX_GROUP_TITLE_LEN); descriptions of up to
/// 200 chars (at most 800 bytes).
fn title() -> BoxedStrategy<String> {
    text(MAX_GROUP_TITLE_LEN / 4)
}

fn description() -> BoxedStrategy<String> {
    text(200)
}

fn group_change() -> impl Strategy<Value = GroupChange> {
    prop_oneof![
        title().prop_map(|title| GroupChange::Created { title }),
        vec(user_id(), 0..8).prop_map(GroupChange::MembersAdded),
        user_id().prop_map(GroupChange::MemberRemoved),
        Just(GroupChange::Left),
        user_id().prop_map(GroupChange::AdminPromoted),
        user_id().prop_map(GroupChange::AdminDemoted),
        user_id().prop_map(GroupChange::AdminInherited),
        (
            proptest::option::of(title()),
            proptest::option::of(description())
        )
            .prop_map(|(title, description)| GroupChange::InfoChanged { title, description }),
        settings().prop_map(GroupChange::SettingsChanged),
    ]
}

/// Every body kind, within limits. Texts of up to 300 chars: at most 1200 bytes, well inside
/// MAX_TEXT_LEN; reactions of up to 8 chars: at most 32 bytes = MAX_REACTION_LEN.
fn message_body() -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        3 => text(300).prop_map(MessageBody::Text),
        1 => (text(300), proptest::option::of(any::<u64>()), vec(user_id(), 0..8)).prop_map(
            |(text, reply_to, mentions)| MessageBody::Rich(RichText {
                text,
                reply_to,
                mentions
            })
        ),
        1 => (any::<u64>(), proptest::option::of(text(MAX_REACTION_LEN / 4)))
            .prop_map(|(target, emoji)| MessageBody::Reaction { target, emoji }),
        1 => (any::<u64>(), text(300)).prop_map(|(target, text)| MessageBody::Edit { target, text }),
        1 => any::<u64>().prop_map(|target| MessageBody::Delete { target }),
        1 => Just(MessageBody::Deleted),
        1 => (user_id(), group_change())
            .prop_map(|(actor, change)| MessageBody::System(SystemEvent { actor, change })),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        chat_id(),
        any::<u64>(),
        any::<u64>(),
        user_id(),
        device_id(),
        any::<u64>(),
        any::<u64>(),
        message_body(),
    )
        .prop_map(
            |(chat_id, seq, msg_id, sender, sender_device, client_msg_id, ts_ms, body)| Message {
                chat_id,
                seq,
                msg_id: MessageId(msg_id),
                sender,
                sender_device,
                client_msg_id,
                ts_ms,
                body,
            },
        )
}

fn receipt() -> impl Strategy<Value = Receipt> {
    (chat_id(), user_id(), any::<u64>(), any::<u64>()).prop_map(|(chat_id, user_id, a, b)| {
        Receipt {
            chat_id,
            user_id,
            delivered_seq: a.max(b),
            read_seq: a.min(b),
        }
    })
}

fn chat_info() -> impl Strategy<Value = ChatInfo> {
    (chat_id(), vec(user_id(), 0..8), any::<u64>()).prop_map(|(chat_id, members, last_seq)| {
        ChatInfo {
            chat_id,
            kind: if members.len() == 2 {
                ChatKind::Direct
            } else {
                ChatKind::Group
            },
            members,
            last_seq,
        }
    })
}

fn update_kind() -> impl Strategy<Value = UpdateKind> {
    prop_oneof![
        message().prop_map(UpdateKind::Message),
        receipt().prop_map(UpdateKind::Receipt),
        chat_info().prop_map(UpdateKind::ChatJoined),
        (chat_id(), any::<u64>())
            .prop_map(|(chat_id, at_seq)| UpdateKind::ChatLeft { chat_id, at_seq }),
        (chat_id(), vec(any::<u64>(), 0..8))
            .prop_map(|(chat_id, seqs)| UpdateKind::HiddenForMe { chat_id, seqs }),
    ]
}

fn update() -> impl Strategy<Value = Update> {
    (any::<u64>(), update_kind()).prop_map(|(pts, kind)| Update { pts, kind })
}

fn cursor() -> impl Strategy<Value = SyncCursor> {
    any::<u64>().prop_map(|pts| SyncCursor { pts })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        text(60).prop_map(|identifier| Request::RequestOtp { identifier }),
        (text(60), "[0-9]{6}", text(16)).prop_map(|(identifier, code, device_name)| {
            Request::VerifyOtp {
                identifier,
                code,
                device_name,
            }
        }),
        "[A-Za-z0-9._-]{0,300}".prop_map(|refresh_token| Request::Refresh { refresh_token }),
        Just(Request::Logout),
        Just(Request::ListDevices),
        device_id().prop_map(|device_id| Request::RevokeDevice { device_id }),
        user_id().prop_map(|peer| Request::OpenDirectChat { peer }),
        Just(Request::ListChats),
        (chat_id(), any::<u64>(), message_body()).prop_map(|(chat_id, client_msg_id, body)| {
            Request::SendMessage {
                chat_id,
                client_msg_id,
                body,
            }
        }),
        (chat_id(), any::<u64>())
            .prop_map(|(chat_id, upto_seq)| Request::Ack { chat_id, upto_seq }),
        (chat_id(), any::<u64>())
            .prop_map(|(chat_id, upto_seq)| Request::MarkRead { chat_id, upto_seq }),
        (cursor(), any::<u32>()).prop_map(|(after, limit)| Request::Sync { after, limit }),
        (chat_id(), any::<u64>(), any::<u32>()).prop_map(|(chat_id, from_seq, limit)| {
            Request::GetMessages {
                chat_id,
                from_seq,
                limit,
            }
        }),
        chat_id().prop_map(|chat_id| Request::GetReceipts { chat_id }),
        Just(Request::Ping),
        (chat_id(), any::<u32>())
            .prop_map(|(after, limit)| Request::ListChatsPage { after, limit }),
        (device_id(), any::<u32>())
            .prop_map(|(after, limit)| Request::ListDevicesPage { after, limit }),
        (title(), vec(user_id(), 0..8))
            .prop_map(|(title, members)| Request::CreateGroup { title, members }),
        (chat_id(), vec(user_id(), 0..8))
            .prop_map(|(chat_id, members)| Request::AddMembers { chat_id, members }),
        (chat_id(), user_id())
            .prop_map(|(chat_id, user_id)| Request::RemoveMember { chat_id, user_id }),
        chat_id().prop_map(|chat_id| Request::LeaveGroup { chat_id }),
        (chat_id(), user_id(), any::<bool>()).prop_map(|(chat_id, user_id, admin)| {
            Request::SetAdmin {
                chat_id,
                user_id,
                admin,
            }
        }),
        (
            chat_id(),
            proptest::option::of(title()),
            proptest::option::of(description())
        )
            .prop_map(|(chat_id, title, description)| Request::EditGroupInfo {
                chat_id,
                title,
                description,
            }),
        (chat_id(), settings())
            .prop_map(|(chat_id, settings)| Request::SetGroupSettings { chat_id, settings }),
        chat_id().prop_map(|chat_id| Request::GetGroupInfo { chat_id }),
        (chat_id(), any::<u64>())
            .prop_map(|(chat_id, seq)| Request::GetMessageReceipts { chat_id, seq }),
        (chat_id(), vec(any::<u64>(), 0..8))
            .prop_map(|(chat_id, seqs)| Request::DeleteForMe { chat_id, seqs }),
        user_id().prop_map(|user_id| Request::GetProfile { user_id }),
        (
            proptest::option::of(text(20)),
            proptest::option::of(text(40)),
            proptest::option::of(proptest::option::of(media_ref()))
        )
            .prop_map(
                |(display_name, about, avatar)| Request::SetProfile(ProfileEdit {
                    display_name,
                    about,
                    avatar,
                })
            ),
        proptest::option::of("[a-z][a-z0-9_.]{2,31}")
            .prop_map(|username| Request::SetUsername { username }),
        prop_oneof![
            "[a-z0-9_.]{0,32}".prop_map(UserQuery::Username),
            text(60).prop_map(UserQuery::Identifier),
        ]
        .prop_map(Request::LookupUser),
        user_id().prop_map(|user_id| Request::AddContact { user_id }),
        user_id().prop_map(|user_id| Request::RemoveContact { user_id }),
        Just(Request::ListContacts),
        user_id().prop_map(|user_id| Request::Block { user_id }),
        user_id().prop_map(|user_id| Request::Unblock { user_id }),
        Just(Request::ListBlocked),
        Just(Request::GetPrivacy),
        privacy().prop_map(Request::SetPrivacy),
        vec(user_id(), 0..8).prop_map(|users| Request::WatchPresence { users }),
        any::<bool>().prop_map(|foreground| Request::SetForeground { foreground }),
        (chat_id(), any::<bool>())
            .prop_map(|(chat_id, typing)| Request::SetTyping { chat_id, typing }),
    ]
}

fn media_ref() -> impl Strategy<Value = MediaRef> {
    any::<[u8; 32]>().prop_map(MediaRef)
}

fn audience() -> impl Strategy<Value = Audience> {
    prop_oneof![
        Just(Audience::Everyone),
        Just(Audience::Contacts),
        vec(user_id(), 0..4).prop_map(Audience::ContactsExcept),
        Just(Audience::Nobody),
    ]
}

fn privacy() -> impl Strategy<Value = PrivacySettings> {
    (audience(), audience(), audience(), audience()).prop_map(
        |(last_seen, online, photo, about)| PrivacySettings {
            last_seen,
            online,
            photo,
            about,
        },
    )
}

fn profile() -> impl Strategy<Value = Profile> {
    (
        user_id(),
        proptest::option::of("[a-z][a-z0-9_.]{2,31}"),
        text(20),
        proptest::option::of(text(40)),
        proptest::option::of(media_ref()),
        any::<u64>(),
    )
        .prop_map(
            |(user_id, username, display_name, about, avatar, updated_ms)| Profile {
                user_id,
                username,
                display_name,
                about,
                avatar,
                updated_ms,
            },
        )
}

fn presence() -> impl Strategy<Value = Presence> {
    let state = prop_oneof![
        Just(PresenceState::Online),
        any::<u64>().prop_map(|at_ms| PresenceState::LastSeen { at_ms }),
        Just(PresenceState::Hidden),
    ];
    (user_id(), state).prop_map(|(user_id, state)| Presence { user_id, state })
}

fn typing_event() -> impl Strategy<Value = TypingEvent> {
    (chat_id(), user_id(), any::<bool>(), any::<u32>()).prop_map(
        |(chat_id, user_id, typing, ttl_ms)| TypingEvent {
            chat_id,
            user_id,
            typing,
            ttl_ms,
        },
    )
}

fn response() -> impl Strategy<Value = Response> {
    let device = || {
        (device_id(), text(16), any::<u64>(), any::<bool>()).prop_map(
            |(device_id, name, created_ms, revoked)| DeviceInfo {
                device_id,
                name,
                created_ms,
                revoked,
            },
        )
    };
    let grant = (
        user_id(),
        device_id(),
        "[A-Za-z0-9._-]{0,200}",
        any::<u64>(),
        "[A-Za-z0-9._-]{0,200}",
    )
        .prop_map(
            |(user_id, device_id, access_token, access_expires_at_ms, refresh_token)| LoginGrant {
                user_id,
                device_id,
                tokens: Tokens {
                    access_token,
                    access_expires_at_ms,
                    refresh_token,
                },
            },
        );
    let sent = message().prop_map(|m| Sent::of(&m));
    let page =
        (vec(update(), 0..4), cursor(), any::<bool>()).prop_map(|(updates, cursor, has_more)| {
            SyncPage {
                updates,
                cursor,
                has_more,
            }
        });
    prop_oneof![
        any::<u32>().prop_map(|expires_in_s| Response::OtpRequested { expires_in_s }),
        grant.prop_map(Response::LoggedIn),
        Just(Response::Done),
        vec(device(), 0..4).prop_map(Response::Devices),
        chat_info().prop_map(Response::Chat),
        vec(chat_info(), 0..4).prop_map(Response::Chats),
        sent.prop_map(Response::Sent),
        page.prop_map(Response::SyncPage),
        vec(message(), 0..4).prop_map(Response::Messages),
        vec(receipt(), 0..4).prop_map(Response::Receipts),
        Just(Response::Pong),
        (vec(chat_info(), 0..4), proptest::option::of(chat_id()))
            .prop_map(|(chats, next)| Response::ChatsPage(ChatsPage { chats, next })),
        (vec(device(), 0..4), proptest::option::of(device_id()))
            .prop_map(|(devices, next)| Response::DevicesPage(DevicesPage { devices, next })),
        group_info().prop_map(Response::GroupInfo),
        message_receipts().prop_map(Response::MessageReceipts),
        profile().prop_map(Response::Profile),
        proptest::option::of(profile()).prop_map(Response::Lookup),
        vec(profile(), 0..4).prop_map(Response::Profiles),
        vec(user_id(), 0..8).prop_map(Response::Users),
        privacy().prop_map(Response::Privacy),
        vec(presence(), 0..8).prop_map(Response::Presence),
    ]
}

fn group_info() -> impl Strategy<Value = GroupInfo> {
    let member = (user_id(), any::<bool>(), any::<u64>(), any::<u64>()).prop_map(
        |(user_id, admin, since_seq, joined_ms)| GroupMember {
            user_id,
            admin,
            since_seq,
            joined_ms,
        },
    );
    (
        (chat_id(), title(), description(), settings()),
        (user_id(), any::<u64>(), vec(member, 0..8), any::<u64>()),
    )
        .prop_map(
            |(
                (chat_id, title, description, settings),
                (created_by, created_ms, members, last_seq),
            )| GroupInfo {
                chat_id,
                title,
                description,
                settings,
                created_by,
                created_ms,
                members,
                last_seq,
            },
        )
}

fn message_receipts() -> impl Strategy<Value = MessageReceipts> {
    let receipts = || {
        vec(
            (user_id(), any::<u64>()).prop_map(|(user_id, at_ms)| MemberReceipt { user_id, at_ms }),
            0..8,
        )
    };
    (
        chat_id(),
        any::<u64>(),
        receipts(),
        receipts(),
        any::<u32>(),
    )
        .prop_map(|(chat_id, seq, delivered, read, pending)| MessageReceipts {
            chat_id,
            seq,
            delivered,
            read,
            pending,
        })
}

/// Error codes as they come off the wire: every `u16` maps to exactly one code.
fn error_code() -> impl Strategy<Value = ErrorCode> {
    any::<u16>().prop_map(ErrorCode::from)
}

fn error_body() -> impl Strategy<Value = ErrorBody> {
    (error_code(), text(100)).prop_map(|(code, message)| ErrorBody::new(code, message))
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        any::<u16>(),
        text(16),
        text(16),
        text(16),
        proptest::option::of("[A-Za-z0-9._-]{0,300}"),
        proptest::option::of(cursor()),
    )
        .prop_map(
            |(protocol_version, name, version, platform, auth, resume)| Hello {
                protocol_version,
                client: ClientInfo {
                    name,
                    version,
                    platform,
                },
                auth,
                resume,
            },
        )
}

fn welcome() -> impl Strategy<Value = Welcome> {
    let limits = any::<[u32; 5]>().prop_map(|l| ServerLimits {
        max_frame_len: l[0],
        max_text_len: l[1],
        max_sync_page: l[2],
        max_in_flight_requests: l[3],
        idle_timeout_ms: l[4],
    });
    let session = (user_id(), device_id())
        .prop_map(|(user_id, device_id)| SessionInfo { user_id, device_id });
    (
        any::<u16>(),
        text(16),
        proptest::option::of(session),
        limits,
        proptest::option::of(any::<u64>()),
        any::<u64>(),
        features(),
        social_features(),
        media_limits(),
    )
        .prop_map(
            |(
                protocol_version,
                server,
                session,
                limits,
                latest_pts,
                server_time_ms,
                features,
                social,
                media,
            )| {
                Welcome {
                    protocol_version,
                    server,
                    session,
                    limits,
                    latest_pts,
                    server_time_ms,
                    features,
                    social,
                    media,
                }
            },
        )
}

fn media_limits() -> impl Strategy<Value = tern_protocol::MediaLimits> {
    (any::<[u64; 5]>(), any::<[u32; 4]>()).prop_map(|(b, n)| tern_protocol::MediaLimits {
        max_image_bytes: b[0],
        max_video_bytes: b[1],
        max_audio_bytes: b[2],
        max_document_bytes: b[3],
        daily_upload_bytes: b[4],
        uploads_per_minute: n[0],
        max_streams: n[1],
        thumbnail_px: n[2],
        unfinished_upload_ttl_s: n[3],
    })
}

fn social_features() -> impl Strategy<Value = SocialFeatures> {
    any::<[u32; 5]>().prop_map(|f| SocialFeatures {
        max_presence_watch: f[0],
        typing_ttl_ms: f[1],
        lookups_per_day: f[2],
        max_contacts: f[3],
        max_blocked: f[4],
    })
}

fn features() -> impl Strategy<Value = ChatFeatures> {
    any::<[u32; 5]>().prop_map(|f| ChatFeatures {
        max_chat_members: f[0],
        edit_window_s: f[1],
        delete_window_s: f[2],
        max_edits: f[3],
        max_mentions: f[4],
    })
}

fn go_away() -> impl Strategy<Value = GoAway> {
    (
        prop_oneof![Just(GoAwayReason::Shutdown), Just(GoAwayReason::Overloaded)],
        any::<u32>(),
    )
        .prop_map(|(reason, reconnect_after_ms)| GoAway {
            reason,
            reconnect_after_ms,
        })
}

/// Any frame within the protocol limits. Weighted towards the request/response/event traffic.
fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        4 => (any::<u32>(), request()).prop_map(|(req_id, body)| Frame::Request { req_id, body }),
        3 => (any::<u32>(), response()).prop_map(|(req_id, r)| Frame::Response { req_id, result: Ok(r) }),
        1 => (any::<u32>(), error_body()).prop_map(|(req_id, e)| Frame::Response { req_id, result: Err(e) }),
        3 => update().prop_map(|u| Frame::Event(Event::Update(u))),
        1 => presence().prop_map(|p| Frame::Event(Event::Presence(p))),
        1 => typing_event().prop_map(|t| Frame::Event(Event::Typing(t))),
        1 => hello().prop_map(Frame::Hello),
        1 => welcome().prop_map(Frame::Welcome),
        1 => error_body().prop_map(Frame::Error),
        1 => go_away().prop_map(Frame::GoAway),
    ]
}

/// Chunk sizes for feeding the decoder: mostly tiny (splitting prefixes and fields), some large.
fn datagram() -> impl Strategy<Value = tern_protocol::Datagram> {
    prop_oneof![
        (chat_id(), any::<bool>())
            .prop_map(|(chat_id, typing)| tern_protocol::Datagram::Typing { chat_id, typing }),
        typing_event().prop_map(tern_protocol::Datagram::TypingEvent),
    ]
}

proptest! {
    /// Every datagram round-trips, and arbitrary bytes never panic the datagram decoder.
    #[test]
    fn datagrams_roundtrip(d in datagram(), junk in vec(any::<u8>(), 0..600)) {
        let bytes = tern_protocol::codec::encode_datagram(&d).unwrap();
        prop_assert_eq!(tern_protocol::codec::decode_datagram(&bytes).unwrap(), d);
        let _ = tern_protocol::codec::decode_datagram(&junk);
    }
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(prop_oneof![3 => 1usize..8, 1 => 8usize..2048], 1..16)
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A sequence of frames encoded back to back comes out of the decoder identical and in order,
    /// however the stream is chunked, and leaves nothing buffered.
    #[test]
    fn frames_roundtrip_through_chunked_decoder(frames in vec(frame(), 1..8), chunks in chunk_sizes()) {
        let mut bytes = Vec::new();
        for f in &frames {
            prop_assert!(f.within_limits(), "strategy produced an out-of-limits frame: {f:?}");
            bytes.extend(encode_to_vec(f).unwrap());
        }
        let (decoded, err, dec) = feed(&bytes, &chunks);
        prop_assert_eq!(err, None);
        prop_assert_eq!(decoded, frames);
        prop_assert_eq!(dec.buffered(), 0);
    }

    /// `decode_payload` is the exact inverse of `encode_to_vec` minus the length prefix, and the
    /// prefix announces exactly the payload length.
    #[test]
    fn payload_roundtrip(f in frame()) {
        let bytes = encode_to_vec(&f).unwrap();
        let (prefix, payload) = split_frame(&bytes);
        prop_assert_eq!(&bytes[..prefix], &varint(payload.len() as u64)[..]);
        prop_assert_eq!(decode_payload(payload).unwrap(), f);
    }

    /// The server's push shortcut writes exactly the bytes of the full event frame, for every
    /// update kind (v2 kinds and message bodies included).
    #[test]
    fn update_shortcut_matches_full_frame(u in update()) {
        let full = encode_to_vec(&Frame::Event(Event::Update(u.clone()))).unwrap();
        prop_assert_eq!(encode_update_event(&u).unwrap(), full);
    }

    /// Every wire error code survives a trip through a `Response` and a connection `Error`.
    #[test]
    fn error_codes_roundtrip_on_the_wire(n in any::<u16>(), req_id in any::<u32>()) {
        let body = ErrorBody::new(ErrorCode::from(n), "x");
        for f in [Frame::Error(body.clone()), Frame::Response { req_id, result: Err(body.clone()) }] {
            let got = decode_one(&f).unwrap().unwrap();
            prop_assert_eq!(got, f);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Negative properties
// ---------------------------------------------------------------------------------------------

/// Feeds `bytes` (in chunks) and checks the decoder's contract: it never panics, every frame it
/// returns is within limits, and after an error it is abandoned (no resynchronisation).
fn check_decoder_on(bytes: &[u8], chunks: &[usize]) -> Result<(), TestCaseError> {
    let (frames, _err, _dec) = feed(bytes, chunks);
    for f in &frames {
        prop_assert!(
            f.within_limits(),
            "decoder returned an out-of-limits frame: {f:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) Arbitrary bytes never make the decoder panic.
    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..512), chunks in chunk_sizes()) {
        check_decoder_on(&bytes, &chunks)?;
    }

    /// (a) Random payloads behind a plausible length prefix reach the postcard decoder instead of
    /// stopping at the prefix.
    #[test]
    fn random_payloads_never_panic(payload in vec(any::<u8>(), 0..512), chunks in chunk_sizes()) {
        check_decoder_on(&framed(&payload), &chunks)?;
    }

    /// (a) Valid frames with a few corrupted bytes (possibly truncated) never make the decoder
    /// panic; these get deepest into the frame decoder.
    #[test]
    fn mutated_frames_never_panic(
        f in frame(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        truncate in proptest::option::of(any::<prop::sample::Index>()),
        keep_prefix in any::<bool>(),
        chunks in chunk_sizes(),
    ) {
        let bytes = encode_to_vec(&f).unwrap();
        let (prefix, payload) = split_frame(&bytes);
        let mut payload = payload.to_vec();
        if payload.is_empty() {
            return Ok(());
        }
        for (at, byte) in &edits {
            let i = at.index(payload.len());
            payload[i] = *byte;
        }
        if let Some(at) = truncate {
            payload.truncate(at.index(payload.len()));
        }
        let mut stream = if keep_prefix {
            // Original prefix: a truncated payload leaves the decoder waiting for more.
            bytes[..prefix].to_vec()
        } else {
            varint(payload.len() as u64)
        };
        stream.extend_from_slice(&payload);
        check_decoder_on(&stream, &chunks)?;
        // The payload decoder alone must not panic either.
        let _ = decode_payload(&payload);
    }

    /// (b) A length prefix above MAX_FRAME_LEN is refused as soon as the prefix is complete,
    /// without waiting for (or buffering) any payload.
    #[test]
    fn oversized_prefix_is_refused_before_payload(len in (u64::from(MAX_FRAME_LEN) + 1)..(1u64 << 35)) {
        let prefix = varint(len);
        prop_assert!(prefix.len() <= 5);
        let mut dec = FrameDecoder::new();
        for (i, b) in prefix.iter().enumerate() {
            dec.extend(std::slice::from_ref(b));
            let got = dec.next_frame();
            if i + 1 < prefix.len() {
                prop_assert_eq!(got, Ok(None), "incomplete prefix must wait for more bytes");
            } else {
                let err = got.unwrap_err();
                prop_assert_eq!(&err, &CodecError::TooLarge { len, max: MAX_FRAME_LEN });
                prop_assert_eq!(err.code(), ErrorCode::TooLarge);
            }
        }
    }

    /// (d) Bytes after a complete frame inside the announced payload are a malformed frame.
    #[test]
    fn trailing_bytes_in_payload_are_bad_frame(f in frame(), trailing in vec(any::<u8>(), 1..16)) {
        let bytes = encode_to_vec(&f).unwrap();
        let (_, payload) = split_frame(&bytes);
        let mut payload = payload.to_vec();
        payload.extend_from_slice(&trailing);

        let err = decode_payload(&payload).unwrap_err();
        prop_assert!(matches!(err, CodecError::Malformed(_)), "got {err:?}");
        prop_assert_eq!(err.code(), ErrorCode::BadFrame);

        let mut dec = FrameDecoder::new();
        dec.extend(&framed(&payload));
        let err = dec.next_frame().unwrap_err();
        prop_assert_eq!(err.code(), ErrorCode::BadFrame);
    }
}

/// (b) The boundary: exactly MAX_FRAME_LEN is a legal announcement (the decoder waits for the
/// payload); one more is refused.
#[test]
fn prefix_limit_boundary() {
    let mut dec = FrameDecoder::new();
    dec.extend(&varint(u64::from(MAX_FRAME_LEN)));
    assert_eq!(dec.next_frame(), Ok(None));

    let mut dec = FrameDecoder::new();
    dec.extend(&varint(u64::from(MAX_FRAME_LEN) + 1));
    let err = dec.next_frame().unwrap_err();
    assert_eq!(
        err,
        CodecError::TooLarge {
            len: u64::from(MAX_FRAME_LEN) + 1,
            max: MAX_FRAME_LEN
        }
    );
    assert_eq!(err.code(), ErrorCode::TooLarge);
}

/// A prefix of five continuation bytes is not a varint u32.
#[test]
fn overlong_prefix_is_bad_length() {
    let mut dec = FrameDecoder::new();
    dec.extend(&[0x80; 4]);
    assert_eq!(dec.next_frame(), Ok(None));
    dec.extend(&[0x80]);
    let err = dec.next_frame().unwrap_err();
    assert_eq!(err, CodecError::BadLength);
    assert_eq!(err.code(), ErrorCode::BadFrame);
}

/// The encoder refuses a frame whose payload exceeds MAX_FRAME_LEN.
#[test]
fn encoder_refuses_oversized_frame() {
    let f = Frame::Request {
        req_id: 1,
        body: Request::SendMessage {
            chat_id: ChatId(1),
            client_msg_id: 1,
            body: MessageBody::Text("x".repeat(MAX_FRAME_LEN as usize)),
        },
    };
    let err = encode_to_vec(&f).unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::TooLarge {
                max: MAX_FRAME_LEN,
                ..
            }
        ),
        "got {err:?}"
    );
    assert_eq!(err.code(), ErrorCode::TooLarge);
}

fn send_text(text: String) -> Frame {
    Frame::Request {
        req_id: 1,
        body: Request::SendMessage {
            chat_id: ChatId(1),
            client_msg_id: 1,
            body: MessageBody::Text(text),
        },
    }
}

/// (c) A text one byte over MAX_TEXT_LEN fits in a frame, so the encoder (which only checks the
/// total size) accepts it, but the decoder refuses it with TooLarge. Exactly at the limit is fine.
#[test]
fn send_message_text_over_limit_is_too_large() {
    let at_limit = send_text("a".repeat(MAX_TEXT_LEN));
    assert_eq!(decode_one(&at_limit), Ok(Some(at_limit.clone())));

    let over = send_text("a".repeat(MAX_TEXT_LEN + 1));
    assert!(!over.within_limits());
    let err = decode_one(&over).unwrap_err();
    assert_eq!(err, CodecError::FieldTooLarge);
    assert_eq!(err.code(), ErrorCode::TooLarge);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// (c) Any text over MAX_TEXT_LEN bytes is refused, including multi-byte text whose
    /// character count is under the limit: the limit is in bytes.
    #[test]
    fn send_message_text_over_limit_prop(extra in 1usize..4096, ch in prop_oneof![Just('a'), Just('é'), Just('✓'), Just('🦀')]) {
        let n_chars = (MAX_TEXT_LEN + extra).div_ceil(ch.len_utf8());
        let text: String = std::iter::repeat_n(ch, n_chars).collect();
        prop_assert!(text.len() > MAX_TEXT_LEN);
        let err = decode_one(&send_text(text)).unwrap_err();
        prop_assert_eq!(err.code(), ErrorCode::TooLarge);
    }
}

/// Every per-field limit the decoder enforces: one frame just at the limit (accepted) and one just
/// over it (refused with TooLarge), for each limited field.
#[test]
fn field_limits_are_enforced_on_decode() {
    fn hello(name: usize, auth: usize) -> Frame {
        Frame::Hello(Hello {
            protocol_version: 1,
            client: ClientInfo {
                name: "n".repeat(name),
                version: "1".into(),
                platform: "p".into(),
            },
            auth: Some("t".repeat(auth)),
            resume: None,
        })
    }
    fn verify(identifier: usize, code: usize, device_name: usize) -> Frame {
        Frame::Request {
            req_id: 1,
            body: Request::VerifyOtp {
                identifier: "i".repeat(identifier),
                code: "1".repeat(code),
                device_name: "d".repeat(device_name),
            },
        }
    }
    fn chat(members: usize) -> ChatInfo {
        ChatInfo {
            chat_id: ChatId(1),
            kind: ChatKind::Direct,
            members: vec![UserId(1); members],
            last_seq: 0,
        }
    }
    let receipt = Receipt {
        chat_id: ChatId(1),
        user_id: UserId(1),
        delivered_seq: 0,
        read_seq: 0,
    };
    let device = DeviceInfo {
        device_id: DeviceId(1),
        name: String::new(),
        created_ms: 0,
        revoked: false,
    };
    let msg = |len: usize| a_message(MessageBody::Text("m".repeat(len)));
    let updates = |n: usize| {
        (0..n)
            .map(|i| Update {
                pts: i as u64,
                kind: UpdateKind::Receipt(receipt),
            })
            .collect::<Vec<_>>()
    };
    let page = |updates: Vec<Update>| SyncPage {
        updates,
        cursor: SyncCursor { pts: 0 },
        has_more: false,
    };
    let code_max = OTP_DIGITS * 4;

    let cases: Vec<(&str, Frame, Frame)> = vec![
        (
            "hello client name",
            hello(MAX_CLIENT_INFO_LEN, 1),
            hello(MAX_CLIENT_INFO_LEN + 1, 1),
        ),
        (
            "hello auth token",
            hello(1, MAX_TOKEN_LEN),
            hello(1, MAX_TOKEN_LEN + 1),
        ),
        (
            "request_otp identifier",
            Frame::Request {
                req_id: 1,
                body: Request::RequestOtp {
                    identifier: "i".repeat(MAX_IDENTIFIER_LEN),
                },
            },
            Frame::Request {
                req_id: 1,
                body: Request::RequestOtp {
                    identifier: "i".repeat(MAX_IDENTIFIER_LEN + 1),
                },
            },
        ),
        (
            "verify_otp identifier",
            verify(MAX_IDENTIFIER_LEN, 6, 1),
            verify(MAX_IDENTIFIER_LEN + 1, 6, 1),
        ),
        (
            "verify_otp code",
            verify(1, code_max, 1),
            verify(1, code_max + 1, 1),
        ),
        (
            "verify_otp device name",
            verify(1, 6, MAX_DEVICE_NAME_LEN),
            verify(1, 6, MAX_DEVICE_NAME_LEN + 1),
        ),
        (
            "refresh token",
            Frame::Request {
                req_id: 1,
                body: Request::Refresh {
                    refresh_token: "r".repeat(MAX_TOKEN_LEN),
                },
            },
            Frame::Request {
                req_id: 1,
                body: Request::Refresh {
                    refresh_token: "r".repeat(MAX_TOKEN_LEN + 1),
                },
            },
        ),
        (
            "send_message text",
            send_text("a".repeat(MAX_TEXT_LEN)),
            send_text("a".repeat(MAX_TEXT_LEN + 1)),
        ),
        (
            "devices list",
            ok(Response::Devices(vec![device.clone(); MAX_LIST_LEN])),
            ok(Response::Devices(vec![device; MAX_LIST_LEN + 1])),
        ),
        (
            "chat members",
            ok(Response::Chat(chat(MAX_CHAT_MEMBERS))),
            ok(Response::Chat(chat(MAX_CHAT_MEMBERS + 1))),
        ),
        (
            "chats list",
            ok(Response::Chats(vec![chat(0); MAX_LIST_LEN])),
            ok(Response::Chats(vec![chat(0); MAX_LIST_LEN + 1])),
        ),
        (
            "chats member list",
            ok(Response::Chats(vec![chat(MAX_CHAT_MEMBERS)])),
            ok(Response::Chats(vec![chat(MAX_CHAT_MEMBERS + 1)])),
        ),
        (
            "sync page length",
            ok(Response::SyncPage(page(updates(MAX_SYNC_PAGE as usize)))),
            ok(Response::SyncPage(page(updates(
                MAX_SYNC_PAGE as usize + 1,
            )))),
        ),
        (
            "sync page message text",
            ok(Response::SyncPage(page(vec![Update {
                pts: 1,
                kind: UpdateKind::Message(msg(MAX_TEXT_LEN)),
            }]))),
            ok(Response::SyncPage(page(vec![Update {
                pts: 1,
                kind: UpdateKind::Message(msg(MAX_TEXT_LEN + 1)),
            }]))),
        ),
        (
            "messages page length",
            ok(Response::Messages(vec![msg(0); MAX_MESSAGES_PAGE as usize])),
            ok(Response::Messages(vec![
                msg(0);
                MAX_MESSAGES_PAGE as usize + 1
            ])),
        ),
        (
            "messages text",
            ok(Response::Messages(vec![msg(MAX_TEXT_LEN)])),
            ok(Response::Messages(vec![msg(MAX_TEXT_LEN + 1)])),
        ),
        (
            "receipts list",
            ok(Response::Receipts(vec![receipt; MAX_LIST_LEN])),
            ok(Response::Receipts(vec![receipt; MAX_LIST_LEN + 1])),
        ),
        (
            "event message text",
            Frame::Event(Event::Update(Update {
                pts: 1,
                kind: UpdateKind::Message(msg(MAX_TEXT_LEN)),
            })),
            Frame::Event(Event::Update(Update {
                pts: 1,
                kind: UpdateKind::Message(msg(MAX_TEXT_LEN + 1)),
            })),
        ),
        (
            "event chat members",
            Frame::Event(Event::Update(Update {
                pts: 1,
                kind: UpdateKind::ChatJoined(chat(MAX_CHAT_MEMBERS)),
            })),
            Frame::Event(Event::Update(Update {
                pts: 1,
                kind: UpdateKind::ChatJoined(chat(MAX_CHAT_MEMBERS + 1)),
            })),
        ),
    ];

    check_limit_cases(cases);
}

/// Each case: a frame just at a limit must decode to itself, and one just over it must be
/// refused with `FieldTooLarge` (wire code `TooLarge`): the frame itself is small, it is the
/// field that is over.
fn check_limit_cases(cases: Vec<(&str, Frame, Frame)>) {
    let mut failures = Vec::new();
    for (name, at_limit, over) in cases {
        if !at_limit.within_limits() || over.within_limits() {
            failures.push(format!("{name}: within_limits disagrees with the case"));
        }
        match decode_one(&at_limit) {
            Ok(Some(f)) if f == at_limit => {}
            other => failures.push(format!("{name}: at the limit should decode, got {other:?}")),
        }
        match decode_one(&over) {
            Err(CodecError::FieldTooLarge) => {}
            other => failures.push(format!(
                "{name}: over the limit should be FieldTooLarge, got {other:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn req(body: Request) -> Frame {
    Frame::Request { req_id: 1, body }
}

fn send(body: MessageBody) -> Frame {
    req(Request::SendMessage {
        chat_id: ChatId(1),
        client_msg_id: 1,
        body,
    })
}

fn push(kind: UpdateKind) -> Frame {
    Frame::Event(Event::Update(Update { pts: 1, kind }))
}

fn ok(r: Response) -> Frame {
    Frame::Response {
        req_id: 1,
        result: Ok(r),
    }
}

fn a_message(body: MessageBody) -> Message {
    Message {
        chat_id: ChatId(1),
        seq: 1,
        msg_id: MessageId(1),
        sender: UserId(1),
        sender_device: DeviceId(1),
        client_msg_id: 1,
        ts_ms: 0,
        body,
    }
}

fn system(change: GroupChange) -> MessageBody {
    MessageBody::System(SystemEvent {
        actor: UserId(1),
        change,
    })
}

fn rich(text: String, mentions: usize) -> MessageBody {
    MessageBody::Rich(RichText {
        text,
        reply_to: Some(1),
        mentions: vec![UserId(2); mentions],
    })
}

fn reaction(emoji: String) -> MessageBody {
    MessageBody::Reaction {
        target: 1,
        emoji: Some(emoji),
    }
}

fn info_changed(title: Option<String>, description: Option<String>) -> GroupChange {
    GroupChange::InfoChanged { title, description }
}

fn edit_info(title: Option<String>, description: Option<String>) -> Frame {
    req(Request::EditGroupInfo {
        chat_id: ChatId(1),
        title,
        description,
    })
}

fn group_info_of(title: usize, description: usize, members: usize) -> GroupInfo {
    GroupInfo {
        chat_id: ChatId(1),
        title: "t".repeat(title),
        description: "d".repeat(description),
        settings: GroupSettings::default(),
        created_by: UserId(1),
        created_ms: 0,
        members: vec![
            GroupMember {
                user_id: UserId(1),
                admin: true,
                since_seq: 1,
                joined_ms: 0,
            };
            members
        ],
        last_seq: 1,
    }
}

fn message_receipts_of(delivered: usize, read: usize) -> MessageReceipts {
    let r = MemberReceipt {
        user_id: UserId(2),
        at_ms: 0,
    };
    MessageReceipts {
        chat_id: ChatId(1),
        seq: 1,
        delivered: vec![r; delivered],
        read: vec![r; read],
        pending: 0,
    }
}

/// `n` bytes of text.
fn bytes(n: usize) -> String {
    "a".repeat(n)
}

/// The frames whose one string field is `s`, one per string limit of the groups and message
/// features (v2), with that limit.
fn with_long_string(s: &str) -> Vec<(&'static str, usize, Frame)> {
    let s = || s.to_string();
    vec![
        (
            "create_group title",
            MAX_GROUP_TITLE_LEN,
            req(Request::CreateGroup {
                title: s(),
                members: vec![],
            }),
        ),
        (
            "edit_group_info title",
            MAX_GROUP_TITLE_LEN,
            edit_info(Some(s()), None),
        ),
        (
            "edit_group_info description",
            MAX_GROUP_DESCRIPTION_LEN,
            edit_info(None, Some(s())),
        ),
        ("rich text", MAX_TEXT_LEN, send(rich(s(), 0))),
        ("reaction", MAX_REACTION_LEN, send(reaction(s()))),
        (
            "edit text",
            MAX_TEXT_LEN,
            send(MessageBody::Edit {
                target: 1,
                text: s(),
            }),
        ),
        (
            "system created title",
            MAX_GROUP_TITLE_LEN,
            push(UpdateKind::Message(a_message(system(
                GroupChange::Created { title: s() },
            )))),
        ),
        (
            "system info title",
            MAX_GROUP_TITLE_LEN,
            push(UpdateKind::Message(a_message(system(info_changed(
                Some(s()),
                None,
            ))))),
        ),
        (
            "system info description",
            MAX_GROUP_DESCRIPTION_LEN,
            push(UpdateKind::Message(a_message(system(info_changed(
                None,
                Some(s()),
            ))))),
        ),
        (
            "group_info title",
            MAX_GROUP_TITLE_LEN,
            ok(Response::GroupInfo(GroupInfo {
                title: s(),
                ..group_info_of(0, 0, 0)
            })),
        ),
        (
            "group_info description",
            MAX_GROUP_DESCRIPTION_LEN,
            ok(Response::GroupInfo(GroupInfo {
                description: s(),
                ..group_info_of(0, 0, 0)
            })),
        ),
        (
            "set_profile display_name",
            tern_protocol::limits::MAX_DISPLAY_NAME_LEN,
            req(Request::SetProfile(ProfileEdit {
                display_name: Some(s()),
                ..ProfileEdit::default()
            })),
        ),
        (
            "set_profile about",
            tern_protocol::limits::MAX_ABOUT_LEN,
            req(Request::SetProfile(ProfileEdit {
                about: Some(s()),
                ..ProfileEdit::default()
            })),
        ),
        (
            "set_username",
            tern_protocol::limits::MAX_USERNAME_LEN,
            req(Request::SetUsername {
                username: Some(s()),
            }),
        ),
        (
            "lookup username",
            tern_protocol::limits::MAX_USERNAME_LEN,
            req(Request::LookupUser(UserQuery::Username(s()))),
        ),
        (
            "lookup identifier",
            MAX_IDENTIFIER_LEN,
            req(Request::LookupUser(UserQuery::Identifier(s()))),
        ),
        (
            "profile display_name",
            tern_protocol::limits::MAX_DISPLAY_NAME_LEN,
            ok(Response::Profile(profile_of(&s(), None, None))),
        ),
        (
            "profile about",
            tern_protocol::limits::MAX_ABOUT_LEN,
            ok(Response::Profile(profile_of("", Some(s()), None))),
        ),
        (
            "profile username",
            tern_protocol::limits::MAX_USERNAME_LEN,
            ok(Response::Lookup(Some(profile_of("", None, Some(s()))))),
        ),
    ]
}

fn profile_of(display_name: &str, about: Option<String>, username: Option<String>) -> Profile {
    Profile {
        user_id: UserId(2),
        username,
        display_name: display_name.into(),
        about,
        avatar: None,
        updated_ms: 0,
    }
}

/// The frames whose one list has `n` entries, one per list limit of the groups and message
/// features (v2), with that limit.
fn with_long_list(n: usize) -> Vec<(&'static str, usize, Frame)> {
    let users = vec![UserId(2); n];
    let seqs = vec![1u64; n];
    vec![
        (
            "create_group members",
            MAX_CHAT_MEMBERS,
            req(Request::CreateGroup {
                title: "g".into(),
                members: users.clone(),
            }),
        ),
        (
            "add_members members",
            MAX_CHAT_MEMBERS,
            req(Request::AddMembers {
                chat_id: ChatId(1),
                members: users.clone(),
            }),
        ),
        (
            "delete_for_me seqs",
            MAX_DELETE_FOR_ME,
            req(Request::DeleteForMe {
                chat_id: ChatId(1),
                seqs: seqs.clone(),
            }),
        ),
        ("send rich mentions", MAX_MENTIONS, send(rich(bytes(1), n))),
        (
            "event rich mentions",
            MAX_MENTIONS,
            push(UpdateKind::Message(a_message(rich(bytes(1), n)))),
        ),
        (
            "messages rich mentions",
            MAX_MENTIONS,
            ok(Response::Messages(vec![a_message(rich(bytes(1), n))])),
        ),
        (
            "system members added",
            MAX_CHAT_MEMBERS,
            push(UpdateKind::Message(a_message(system(
                GroupChange::MembersAdded(users.clone()),
            )))),
        ),
        (
            "hidden_for_me seqs",
            MAX_DELETE_FOR_ME,
            push(UpdateKind::HiddenForMe {
                chat_id: ChatId(1),
                seqs: seqs.clone(),
            }),
        ),
        (
            "sync page hidden_for_me seqs",
            MAX_DELETE_FOR_ME,
            ok(Response::SyncPage(SyncPage {
                updates: vec![Update {
                    pts: 1,
                    kind: UpdateKind::HiddenForMe {
                        chat_id: ChatId(1),
                        seqs,
                    },
                }],
                cursor: SyncCursor { pts: 1 },
                has_more: false,
            })),
        ),
        (
            "group_info members",
            MAX_CHAT_MEMBERS,
            ok(Response::GroupInfo(group_info_of(1, 1, n))),
        ),
        (
            "message_receipts delivered",
            MAX_CHAT_MEMBERS,
            ok(Response::MessageReceipts(message_receipts_of(n, 0))),
        ),
        (
            "message_receipts read",
            MAX_CHAT_MEMBERS,
            ok(Response::MessageReceipts(message_receipts_of(0, n))),
        ),
        (
            "chat_joined group members",
            MAX_CHAT_MEMBERS,
            push(UpdateKind::ChatJoined(ChatInfo {
                chat_id: ChatId(1),
                kind: ChatKind::Group,
                members: users,
                last_seq: 1,
            })),
        ),
        (
            "watch_presence users",
            tern_protocol::limits::MAX_PRESENCE_WATCH,
            req(Request::WatchPresence {
                users: vec![UserId(2); n],
            }),
        ),
        (
            "presence snapshot",
            tern_protocol::limits::MAX_PRESENCE_WATCH,
            ok(Response::Presence(vec![
                Presence {
                    user_id: UserId(2),
                    state: PresenceState::Hidden,
                };
                n
            ])),
        ),
        (
            "set_privacy exceptions",
            tern_protocol::limits::MAX_PRIVACY_EXCEPTIONS,
            req(Request::SetPrivacy(PrivacySettings {
                about: Audience::ContactsExcept(vec![UserId(2); n]),
                ..PrivacySettings::default()
            })),
        ),
        (
            "blocked list",
            MAX_LIST_LEN,
            ok(Response::Users(vec![UserId(2); n])),
        ),
        (
            "contacts list",
            MAX_LIST_LEN,
            ok(Response::Profiles(vec![profile_of("", None, None); n])),
        ),
    ]
}

/// Every string and list limit of the groups and message features: exactly at the limit
/// decodes, one over is `FieldTooLarge`.
#[test]
fn group_and_message_feature_limits_are_enforced_on_decode() {
    /// (name, at the limit, one over) for each frame `build` makes.
    fn at_and_over(
        build: impl Fn(usize) -> Vec<(&'static str, usize, Frame)>,
    ) -> Vec<(&'static str, Frame, Frame)> {
        build(0)
            .into_iter()
            .enumerate()
            .map(|(i, (name, limit, _))| {
                (
                    name,
                    build(limit).swap_remove(i).2,
                    build(limit + 1).swap_remove(i).2,
                )
            })
            .collect()
    }
    let mut cases = at_and_over(|n| with_long_string(&bytes(n)));
    cases.extend(at_and_over(with_long_list));
    check_limit_cases(cases);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any string over its limit is refused, also multi-byte text whose character count is
    /// under the limit (limits are in bytes), and anything up to it is accepted.
    #[test]
    fn group_string_limits_prop(
        field in any::<prop::sample::Index>(),
        delta in -64isize..64,
        ch in prop_oneof![Just('a'), Just('é'), Just('✓'), Just('🦀')],
    ) {
        let fields = with_long_string("");
        let (name, limit, _) = fields[field.index(fields.len())];
        let target = limit.saturating_add_signed(delta);
        let text: String = std::iter::repeat_n(ch, target / ch.len_utf8()).collect();
        let frame = with_long_string(&text).swap_remove(field.index(fields.len())).2;
        let got = decode_one(&frame);
        if text.len() <= limit {
            prop_assert_eq!(got, Ok(Some(frame)), "{} at {} bytes", name, text.len());
        } else {
            prop_assert_eq!(got, Err(CodecError::FieldTooLarge), "{} at {} bytes", name, text.len());
        }
    }

    /// Any list over its limit is refused and anything up to it is accepted.
    #[test]
    fn group_list_limits_prop(field in any::<prop::sample::Index>(), delta in -8isize..8) {
        let fields = with_long_list(0);
        let i = field.index(fields.len());
        let (name, limit, _) = fields[i];
        let n = limit.saturating_add_signed(delta);
        let frame = with_long_list(n).swap_remove(i).2;
        let got = decode_one(&frame);
        if n <= limit {
            prop_assert_eq!(got, Ok(Some(frame)), "{} with {}", name, n);
        } else {
            prop_assert_eq!(got, Err(CodecError::FieldTooLarge), "{} with {}", name, n);
        }
    }
}

/// Every boundary of `MessageBody::within_limits`, variant by variant: at the limit is within,
/// one byte or entry over is not, limits count bytes, and the variants without a limited field
/// are always within.
#[test]
fn message_body_within_limits_boundaries() {
    let crab = |n: usize| "🦀".repeat(n);
    let within: Vec<(&str, MessageBody)> = vec![
        ("text at limit", MessageBody::Text(bytes(MAX_TEXT_LEN))),
        ("empty text", MessageBody::Text(String::new())),
        ("rich text at limit", rich(bytes(MAX_TEXT_LEN), 0)),
        ("rich mentions at limit", rich(bytes(1), MAX_MENTIONS)),
        (
            "rich text and mentions at limit",
            rich(bytes(MAX_TEXT_LEN), MAX_MENTIONS),
        ),
        ("reaction at limit", reaction(bytes(MAX_REACTION_LEN))),
        ("reaction of 8 crabs (32 bytes)", reaction(crab(8))),
        (
            "reaction removed",
            MessageBody::Reaction {
                target: u64::MAX,
                emoji: None,
            },
        ),
        (
            "edit at limit",
            MessageBody::Edit {
                target: 1,
                text: bytes(MAX_TEXT_LEN),
            },
        ),
        (
            "erased edit",
            MessageBody::Edit {
                target: 1,
                text: String::new(),
            },
        ),
        ("delete", MessageBody::Delete { target: u64::MAX }),
        ("deleted", MessageBody::Deleted),
        (
            "created title at limit",
            system(GroupChange::Created {
                title: bytes(MAX_GROUP_TITLE_LEN),
            }),
        ),
        (
            "members added at limit",
            system(GroupChange::MembersAdded(vec![UserId(1); MAX_CHAT_MEMBERS])),
        ),
        (
            "info title at limit",
            system(info_changed(Some(bytes(MAX_GROUP_TITLE_LEN)), None)),
        ),
        (
            "info description at limit",
            system(info_changed(None, Some(bytes(MAX_GROUP_DESCRIPTION_LEN)))),
        ),
        (
            "info both at limit",
            system(info_changed(
                Some(bytes(MAX_GROUP_TITLE_LEN)),
                Some(bytes(MAX_GROUP_DESCRIPTION_LEN)),
            )),
        ),
        ("info unchanged", system(info_changed(None, None))),
        ("removed", system(GroupChange::MemberRemoved(UserId(1)))),
        ("left", system(GroupChange::Left)),
        ("promoted", system(GroupChange::AdminPromoted(UserId(1)))),
        ("demoted", system(GroupChange::AdminDemoted(UserId(1)))),
        ("inherited", system(GroupChange::AdminInherited(UserId(1)))),
        (
            "settings",
            system(GroupChange::SettingsChanged(GroupSettings::default())),
        ),
    ];
    let over: Vec<(&str, MessageBody)> = vec![
        ("text over", MessageBody::Text(bytes(MAX_TEXT_LEN + 1))),
        ("rich text over", rich(bytes(MAX_TEXT_LEN + 1), 0)),
        ("rich mentions over", rich(bytes(1), MAX_MENTIONS + 1)),
        ("reaction over", reaction(bytes(MAX_REACTION_LEN + 1))),
        ("reaction of 9 crabs (36 bytes)", reaction(crab(9))),
        (
            "edit over",
            MessageBody::Edit {
                target: 1,
                text: bytes(MAX_TEXT_LEN + 1),
            },
        ),
        (
            "created title over",
            system(GroupChange::Created {
                title: bytes(MAX_GROUP_TITLE_LEN + 1),
            }),
        ),
        (
            "created title of 33 crabs (132 bytes)",
            system(GroupChange::Created { title: crab(33) }),
        ),
        (
            "members added over",
            system(GroupChange::MembersAdded(vec![
                UserId(1);
                MAX_CHAT_MEMBERS + 1
            ])),
        ),
        (
            "info title over",
            system(info_changed(Some(bytes(MAX_GROUP_TITLE_LEN + 1)), None)),
        ),
        (
            "info description over",
            system(info_changed(
                None,
                Some(bytes(MAX_GROUP_DESCRIPTION_LEN + 1)),
            )),
        ),
    ];
    let mut failures = Vec::new();
    for (name, body) in &within {
        if !body.within_limits() {
            failures.push(format!("{name}: should be within limits"));
        }
    }
    for (name, body) in &over {
        if body.within_limits() {
            failures.push(format!("{name}: should be over the limits"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// ErrorCode <-> u16
// ---------------------------------------------------------------------------------------------

const KNOWN_CODES: &[(ErrorCode, u16)] = &[
    (ErrorCode::BadFrame, 1),
    (ErrorCode::TooLarge, 2),
    (ErrorCode::UnsupportedVersion, 3),
    (ErrorCode::HandshakeRequired, 4),
    (ErrorCode::Unauthenticated, 10),
    (ErrorCode::InvalidToken, 11),
    (ErrorCode::TokenExpired, 12),
    (ErrorCode::OtpInvalid, 13),
    (ErrorCode::OtpExpired, 14),
    (ErrorCode::OtpTooManyAttempts, 15),
    (ErrorCode::RateLimited, 16),
    (ErrorCode::RefreshReused, 17),
    (ErrorCode::DeviceRevoked, 18),
    (ErrorCode::NotFound, 20),
    (ErrorCode::Forbidden, 21),
    (ErrorCode::InvalidArgument, 22),
    (ErrorCode::CursorAhead, 23),
    (ErrorCode::Overloaded, 30),
    (ErrorCode::Internal, 31),
    (ErrorCode::SlowConsumer, 32),
    (ErrorCode::ShuttingDown, 33),
    (ErrorCode::TooManyRequests, 34),
    (ErrorCode::TooManyConnections, 35),
    (ErrorCode::HashMismatch, 40),
    (ErrorCode::MediaTypeMismatch, 41),
    (ErrorCode::QuotaExceeded, 42),
    (ErrorCode::UndecodableMedia, 43),
];

/// (e) Every known code has its fixed number and maps back to itself.
#[test]
fn known_error_codes_roundtrip_through_u16() {
    for &(code, n) in KNOWN_CODES {
        assert_eq!(code.as_u16(), n, "{code:?}");
        assert_eq!(u16::from(code), n, "{code:?}");
        assert_eq!(ErrorCode::from(n), code, "{n}");
    }
}

/// (e) Every number decodes to exactly one code and back to itself; numbers that are not known
/// codes become `Other(n)`.
#[test]
fn every_u16_maps_to_a_code_and_back() {
    for n in 0..=u16::MAX {
        let code = ErrorCode::from(n);
        assert_eq!(code.as_u16(), n);
        match KNOWN_CODES.iter().find(|(_, k)| *k == n) {
            Some((known, _)) => assert_eq!(code, *known),
            None => assert_eq!(code, ErrorCode::Other(n)),
        }
    }
}

/// `Other(n)` with a number that belongs to a known code is not a value the wire can carry: it
/// is sent as `n` and comes back as the known code. This pins that normalisation.
#[test]
fn other_with_a_known_number_normalises_on_the_wire() {
    let f = Frame::Error(ErrorBody {
        code: ErrorCode::Other(2),
        message: String::new(),
    });
    let got = decode_one(&f).unwrap().unwrap();
    assert_eq!(
        got,
        Frame::Error(ErrorBody {
            code: ErrorCode::TooLarge,
            message: String::new()
        })
    );
    assert_ne!(got, f);
}

/// Codec errors map to the wire codes the server answers with.
#[test]
fn codec_error_codes() {
    assert_eq!(
        CodecError::TooLarge { len: 1, max: 0 }.code(),
        ErrorCode::TooLarge
    );
    assert_eq!(CodecError::FieldTooLarge.code(), ErrorCode::TooLarge);
    assert_eq!(CodecError::BadLength.code(), ErrorCode::BadFrame);
    assert_eq!(
        CodecError::Malformed(String::new()).code(),
        ErrorCode::BadFrame
    );
}
