use super::*;
use crate::frame::ClientInfo;
use crate::ids::{DeviceId, UserId};

fn hello(version: u16) -> Frame {
    Frame::Hello(Hello {
        protocol_version: version,
        client: ClientInfo {
            name: "t".into(),
            version: "0".into(),
            platform: "test".into(),
        },
        auth: None,
        resume: None,
    })
}

#[test]
fn request_before_hello_is_a_violation() {
    let mut s = ServerSession::new(Instant::now());
    let err = s
        .handle_frame(
            Frame::Request {
                req_id: 1,
                body: Request::Ping,
            },
            Instant::now(),
        )
        .unwrap_err();
    assert_eq!(err.0.code, ErrorCode::HandshakeRequired);
}

#[test]
fn wrong_version_is_refused() {
    let mut s = ServerSession::new(Instant::now());
    let err = s
        .handle_frame(hello(PROTOCOL_VERSION + 1), Instant::now())
        .unwrap_err();
    assert_eq!(err.0.code, ErrorCode::UnsupportedVersion);
}

#[test]
fn unauthenticated_sessions_only_reach_auth_requests() {
    let mut s = ServerSession::new(Instant::now());
    assert!(matches!(
        s.handle_frame(hello(PROTOCOL_VERSION), Instant::now()),
        Ok(SessionInput::Hello(_))
    ));
    let got = s
        .handle_frame(
            Frame::Request {
                req_id: 7,
                body: Request::ListChats,
            },
            Instant::now(),
        )
        .unwrap();
    match got {
        SessionInput::Refused { req_id, error } => {
            assert_eq!(req_id, 7);
            assert_eq!(error.code, ErrorCode::Unauthenticated);
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    let ping = s
        .handle_frame(
            Frame::Request {
                req_id: 8,
                body: Request::Ping,
            },
            Instant::now(),
        )
        .unwrap();
    assert!(matches!(ping, SessionInput::Request { req_id: 8, .. }));
    s.authenticate(SessionInfo {
        user_id: UserId(1),
        device_id: DeviceId(2),
    });
    let ok = s
        .handle_frame(
            Frame::Request {
                req_id: 9,
                body: Request::ListChats,
            },
            Instant::now(),
        )
        .unwrap();
    assert!(matches!(ok, SessionInput::Request { req_id: 9, .. }));
}

#[test]
fn second_hello_is_a_violation() {
    let mut s = ServerSession::new(Instant::now());
    s.handle_frame(hello(PROTOCOL_VERSION), Instant::now())
        .unwrap();
    assert_eq!(
        s.handle_frame(hello(PROTOCOL_VERSION), Instant::now())
            .unwrap_err()
            .0
            .code,
        ErrorCode::HandshakeRequired
    );
}

#[test]
fn hello_deadline_is_enforced_with_passed_in_time() {
    let t0 = Instant::now();
    let s = ServerSession::new(t0);
    assert_eq!(s.poll_timeout(), Some(t0 + HELLO_TIMEOUT));
    assert!(s.handle_timeout(t0 + HELLO_TIMEOUT / 2).is_ok());
    assert!(s.handle_timeout(t0 + HELLO_TIMEOUT).is_err());
}

#[test]
fn anonymous_sessions_must_authenticate_in_time() {
    let t0 = Instant::now();
    let auth = Duration::from_secs(60);
    let mut s = ServerSession::with_auth_timeout(t0, auth);
    let t1 = t0 + Duration::from_secs(1);
    s.handle_frame(hello(PROTOCOL_VERSION), t1).unwrap();
    assert_eq!(
        s.poll_timeout(),
        Some(t1 + auth),
        "the deadline runs from Hello"
    );
    assert!(s.handle_timeout(t1 + auth / 2).is_ok());
    // Pings do not extend it.
    s.handle_frame(
        Frame::Request {
            req_id: 1,
            body: Request::Ping,
        },
        t1 + auth / 2,
    )
    .unwrap();
    let v = s.handle_timeout(t1 + auth).unwrap_err();
    assert_eq!(v.0.code, ErrorCode::Unauthenticated);
    s.authenticate(SessionInfo {
        user_id: UserId(1),
        device_id: DeviceId(2),
    });
    assert_eq!(
        s.poll_timeout(),
        None,
        "an authenticated session has no deadline"
    );
    assert!(s.handle_timeout(t1 + auth * 10).is_ok());
}

/// Found by the `session` fuzz target: an auth timeout too large to add to an `Instant` (the
/// server takes it from `auth_timeout_s` in its config, which has no upper bound) panicked with
/// "overflow when adding duration to instant" on the first `Hello` of every connection. Such a
/// timeout now means no auth deadline.
#[test]
fn an_auth_timeout_past_the_end_of_time_is_no_deadline() {
    let start = Instant::now();
    for timeout in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
        let mut s = ServerSession::with_auth_timeout(start, timeout);
        assert!(matches!(
            s.handle_frame(hello(PROTOCOL_VERSION), start),
            Ok(SessionInput::Hello(_))
        ));
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(
            s.handle_timeout(start + Duration::from_secs(1 << 40)),
            Ok(())
        );
        assert_eq!(s.session(), None);
    }
}
