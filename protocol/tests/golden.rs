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
    ChatId, ChatInfo, ChatKind, ChatsPage, ClientInfo, DeviceId, DeviceInfo, DevicesPage,
    ErrorBody, ErrorCode, Event, Frame, GoAway, GoAwayReason, Hello, LoginGrant, Message,
    MessageBody, MessageId, Receipt, Request, Response, Sent, ServerLimits, SessionInfo,
    SyncCursor, SyncPage, Tokens, Update, UpdateKind, UserId, Welcome,
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
];

/// The golden table: (name, value, framed encoding as lowercase hex).
fn cases() -> Vec<(&'static str, Frame, &'static str)> {
    vec![
        // ---- Hello ----
        (
            "hello/minimal",
            Frame::Hello(Hello {
                protocol_version: 1,
                client: ClientInfo {
                    name: "t".into(),
                    version: "0.1".into(),
                    platform: "linux".into(),
                },
                auth: None,
                resume: None,
            }),
            "100001017403302e31056c696e75780000",
        ),
        (
            "hello/auth_and_resume",
            Frame::Hello(Hello {
                protocol_version: 1,
                client: ClientInfo {
                    name: "t".into(),
                    version: "0.1".into(),
                    platform: "linux".into(),
                },
                auth: Some("tok".into()),
                resume: Some(SyncCursor { pts: 42 }),
            }),
            "150001017403302e31056c696e75780103746f6b012a",
        ),
        // ---- Welcome ----
        (
            "welcome/unauthenticated",
            Frame::Welcome(Welcome {
                protocol_version: 1,
                server: "tern/0.1".into(),
                session: None,
                limits: limits(),
                latest_pts: None,
                server_time_ms: 1_700_000_000_000,
            }),
            "200101087465726e2f302e310080800480800180028002b0ea010080d095ffbc31",
        ),
        (
            "welcome/authenticated",
            Frame::Welcome(Welcome {
                protocol_version: 1,
                server: "tern/0.1".into(),
                session: Some(SessionInfo {
                    user_id: UserId(1),
                    device_id: DeviceId(2),
                }),
                limits: limits(),
                latest_pts: Some(7),
                server_time_ms: 1_700_000_000_000,
            }),
            "230101087465726e2f302e3101010280800480800180028002b0ea01010780d095ffbc31",
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

/// A label per enum variant. The matches are exhaustive on purpose: adding a variant to `Frame`,
/// `Request`, `Response`, `Event`, `UpdateKind` or `GoAwayReason` stops this file compiling until
/// the variant gets a label here, in `ALL_VARIANTS`, and a golden vector in `cases()`.
fn variant(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello(_) => "Frame::Hello",
        Frame::Welcome(_) => "Frame::Welcome",
        Frame::Request { body, .. } => match body {
            Request::RequestOtp { .. } => "Request::RequestOtp",
            Request::VerifyOtp { .. } => "Request::VerifyOtp",
            Request::Refresh { .. } => "Request::Refresh",
            Request::Logout => "Request::Logout",
            Request::ListDevices => "Request::ListDevices",
            Request::RevokeDevice { .. } => "Request::RevokeDevice",
            Request::OpenDirectChat { .. } => "Request::OpenDirectChat",
            Request::ListChats => "Request::ListChats",
            Request::SendMessage { .. } => "Request::SendMessage",
            Request::Ack { .. } => "Request::Ack",
            Request::MarkRead { .. } => "Request::MarkRead",
            Request::Sync { .. } => "Request::Sync",
            Request::GetMessages { .. } => "Request::GetMessages",
            Request::GetReceipts { .. } => "Request::GetReceipts",
            Request::Ping => "Request::Ping",
            Request::ListChatsPage { .. } => "Request::ListChatsPage",
            Request::ListDevicesPage { .. } => "Request::ListDevicesPage",
        },
        Frame::Response { result: Err(_), .. } => "Frame::Response(Err)",
        Frame::Response { result: Ok(r), .. } => match r {
            Response::OtpRequested { .. } => "Response::OtpRequested",
            Response::LoggedIn(_) => "Response::LoggedIn",
            Response::Done => "Response::Done",
            Response::Devices(_) => "Response::Devices",
            Response::Chat(_) => "Response::Chat",
            Response::Chats(_) => "Response::Chats",
            Response::Sent(_) => "Response::Sent",
            Response::SyncPage(_) => "Response::SyncPage",
            Response::Messages(_) => "Response::Messages",
            Response::Receipts(_) => "Response::Receipts",
            Response::Pong => "Response::Pong",
            Response::ChatsPage(_) => "Response::ChatsPage",
            Response::DevicesPage(_) => "Response::DevicesPage",
        },
        Frame::Event(Event::Update(u)) => match u.kind {
            UpdateKind::Message(_) => "UpdateKind::Message",
            UpdateKind::Receipt(_) => "UpdateKind::Receipt",
            UpdateKind::ChatJoined(_) => "UpdateKind::ChatJoined",
        },
        Frame::Error(_) => "Frame::Error",
        Frame::GoAway(g) => match g.reason {
            GoAwayReason::Shutdown => "GoAwayReason::Shutdown",
            GoAwayReason::Overloaded => "GoAwayReason::Overloaded",
        },
    }
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
    "UpdateKind::Message",
    "UpdateKind::Receipt",
    "UpdateKind::ChatJoined",
    "Frame::Error",
    "GoAwayReason::Shutdown",
    "GoAwayReason::Overloaded",
];

#[test]
fn every_variant_has_a_vector() {
    let covered: BTreeSet<&str> = cases().iter().map(|(_, f, _)| variant(f)).collect();
    let missing: Vec<&&str> = ALL_VARIANTS
        .iter()
        .filter(|v| !covered.contains(**v))
        .collect();
    assert!(
        missing.is_empty(),
        "variants without a golden vector: {missing:?}"
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
