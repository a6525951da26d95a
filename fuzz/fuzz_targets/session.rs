//! The server handshake state machine (`ServerSession`) driven like the connection task drives
//! it: decoded frames, clock steps, timer expiries and authentication outcomes in any order.
//! Checked against a model of the documented contract (protocol/src/session.rs):
//! * nothing but `Hello` is accepted first, and a `Hello` of another version is refused;
//! * no request is admitted before `Hello`; a second `Hello` is a violation;
//! * unauthenticated sessions only get auth requests (`allowed_unauthenticated`) through, every
//!   other request is refused with `Unauthenticated` and the same `req_id`;
//! * admitted requests keep their `req_id` and body; only `Hello` and `Request` frames pass;
//! * `poll_timeout` is the Hello deadline (open + HELLO_TIMEOUT), then the auth deadline (Hello +
//!   auth timeout; none if that is past what an `Instant` holds), then none once authenticated;
//!   `handle_timeout` fails exactly from it on;
//! * `session()` is the identity last authenticated, and none before.
//!
//! Input: `auth_timeout_s: u64le`, then operations (see `tern_fuzz::session_ops`).
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tern_fuzz::session_ops::{ADVANCE, AUTH, FRAME, TIMEOUT};
use tern_protocol::session::{HELLO_TIMEOUT, ServerSession, SessionInput};
use tern_protocol::{DeviceId, ErrorCode, Frame, PROTOCOL_VERSION, SessionInfo, UserId, codec};

#[derive(Debug, Clone, Copy)]
enum Model {
    AwaitingHello {
        deadline: Instant,
    },
    /// No deadline when the auth timeout is too large to add to an `Instant`.
    Anonymous {
        deadline: Option<Instant>,
    },
    Authenticated(SessionInfo),
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if data.len() < n {
        return None;
    }
    let (head, rest) = data.split_at(n);
    *data = rest;
    Some(head)
}

fn u16le(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    // The whole range the server config allows (`auth_timeout_s: u64`).
    let Some(t) = take(&mut data, 8) else { return };
    let auth_timeout = Duration::from_secs(u64::from_le_bytes(t.try_into().expect("8 bytes")));
    let mut now = Instant::now();
    let mut s = ServerSession::with_auth_timeout(now, auth_timeout);
    let mut model = Model::AwaitingHello {
        deadline: now + HELLO_TIMEOUT,
    };
    while let Some(&[tag]) = take(&mut data, 1) {
        // Invariants that hold between any two operations.
        let (want_timeout, want_session) = match model {
            Model::AwaitingHello { deadline } => (Some(deadline), None),
            Model::Anonymous { deadline } => (deadline, None),
            Model::Authenticated(info) => (None, Some(info)),
        };
        assert_eq!(s.poll_timeout(), want_timeout);
        assert_eq!(s.session(), want_session);

        match tag % 4 {
            FRAME => {
                let Some(len) = take(&mut data, 2) else {
                    return;
                };
                let len = usize::from(u16le(len)).min(data.len());
                let payload = take(&mut data, len).unwrap_or_default();
                // Bytes that do not decode never reach the state machine (the codec closes).
                let Ok(frame) = codec::decode_payload(payload) else {
                    continue;
                };
                let result = s.handle_frame(frame.clone(), now);
                match (model, frame) {
                    (Model::AwaitingHello { .. }, Frame::Hello(hello)) => {
                        if hello.protocol_version == PROTOCOL_VERSION {
                            assert_eq!(result, Ok(SessionInput::Hello(hello)));
                            model = Model::Anonymous {
                                deadline: now.checked_add(auth_timeout),
                            };
                        } else {
                            let v = result.expect_err("a Hello of another version passed");
                            assert_eq!(v.0.code, ErrorCode::UnsupportedVersion);
                            return;
                        }
                    }
                    (Model::AwaitingHello { .. }, _) => {
                        let v = result.expect_err("a frame before Hello passed");
                        assert_eq!(v.0.code, ErrorCode::HandshakeRequired);
                        return;
                    }
                    (_, Frame::Hello(_)) => {
                        let v = result.expect_err("a second Hello passed");
                        assert_eq!(v.0.code, ErrorCode::HandshakeRequired);
                        return;
                    }
                    (Model::Anonymous { .. }, Frame::Request { req_id, body }) => {
                        if body.allowed_unauthenticated() {
                            assert_eq!(result, Ok(SessionInput::Request { req_id, body }));
                        } else {
                            match result {
                                Ok(SessionInput::Refused { req_id: r, error }) => {
                                    assert_eq!(r, req_id);
                                    assert_eq!(error.code, ErrorCode::Unauthenticated);
                                }
                                other => panic!("{} before login gave {other:?}", body.name()),
                            }
                        }
                    }
                    (Model::Authenticated(_), Frame::Request { req_id, body }) => {
                        assert_eq!(result, Ok(SessionInput::Request { req_id, body }));
                    }
                    (_, other) => {
                        let v = result.expect_err("a server-only frame passed");
                        assert_eq!(v.0.code, ErrorCode::BadFrame, "{}", other.kind());
                        return;
                    }
                }
            }
            ADVANCE => {
                let Some(ms) = take(&mut data, 2) else { return };
                now += Duration::from_millis(u64::from(u16le(ms)) * 10);
            }
            TIMEOUT => {
                let result = s.handle_timeout(now);
                match model {
                    Model::AwaitingHello { deadline } if now >= deadline => {
                        assert_eq!(
                            result.map_err(|v| v.0.code),
                            Err(ErrorCode::HandshakeRequired)
                        );
                        return;
                    }
                    Model::Anonymous {
                        deadline: Some(deadline),
                    } if now >= deadline => {
                        assert_eq!(
                            result.map_err(|v| v.0.code),
                            Err(ErrorCode::Unauthenticated)
                        );
                        return;
                    }
                    _ => assert_eq!(result, Ok(())),
                }
            }
            _ => {
                debug_assert_eq!(tag % 4, AUTH);
                let Some(b) = take(&mut data, 3) else { return };
                // The shell authenticates only after Hello (a token in it, or a login request).
                if matches!(model, Model::AwaitingHello { .. }) {
                    continue;
                }
                let info = SessionInfo {
                    user_id: UserId(u64::from(u16le(b))),
                    device_id: DeviceId(u64::from(b[2])),
                };
                s.authenticate(info);
                model = Model::Authenticated(info);
            }
        }
    }
});
