//! Hostile connections against a real server (issue 7, scenarios 1, 2, 6 and 12): stream credit,
//! the login deadline, readers that never read, connections per device, shutdown of anonymous
//! connections, and revocation racing a login.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tern_sdk::protocol::{ErrorCode, Response};
use tern_sdk::protocol::{Frame, GoAwayReason, Request, SyncCursor, limits};
use tern_tests::raw::{Outcome, RawConn};
use tern_tests::{TestServer, collect_messages};

const WAIT: Duration = Duration::from_secs(10);

/// A welcome, possibly after other frames.
async fn welcome(raw: &mut RawConn) -> tern_sdk::protocol::Welcome {
    loop {
        match raw.next(WAIT).await.unwrap() {
            Outcome::Frame(Frame::Welcome(w)) => return w,
            Outcome::Frame(_) => {}
            other => panic!("expected Welcome, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_control_stream_gets_credit() {
    let server = TestServer::start().await;
    let mut raw = RawConn::connect(server.addr, &server.fingerprint)
        .await
        .unwrap();
    raw.send_frame(&RawConn::hello(None)).await.unwrap();
    welcome(&mut raw).await;
    // quinn's open calls wait for credit the server never grants.
    let second_bi = tokio::time::timeout(Duration::from_secs(1), raw.conn.open_bi()).await;
    assert!(
        second_bi.is_err(),
        "a second bidirectional stream was granted"
    );
    let uni = tokio::time::timeout(Duration::from_secs(1), raw.conn.open_uni()).await;
    assert!(uni.is_err(), "a unidirectional stream was granted");
    // The control stream still works.
    raw.send_frame(&Frame::Request {
        req_id: 1,
        body: Request::Ping,
    })
    .await
    .unwrap();
    assert!(matches!(
        raw.next(WAIT).await.unwrap(),
        Outcome::Frame(Frame::Response {
            req_id: 1,
            result: Ok(Response::Pong)
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_connection_is_closed_at_its_login_deadline() {
    let server = TestServer::start_with(|c| c.auth_timeout_s = 1).await;
    let mut raw = RawConn::connect(server.addr, &server.fingerprint)
        .await
        .unwrap();
    raw.send_frame(&RawConn::hello(None)).await.unwrap();
    welcome(&mut raw).await;
    // Pings keep QUIC alive but do not extend the login deadline.
    let pinger = async {
        for i in 0..40 {
            let ping = Frame::Request {
                req_id: i,
                body: Request::Ping,
            };
            if raw.send_frame(&ping).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1500), pinger).await;
    assert_eq!(
        raw.until_closed(WAIT).await.unwrap(),
        (
            Some(ErrorCode::Unauthenticated),
            Some(ErrorCode::Unauthenticated)
        )
    );
    // A logged-in client is not subject to it.
    let a = server.login("+15550007001").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.client.chats().await.unwrap();
}

/// Scenario 2: an authenticated client with a tiny receive window floods `Sync { after: 0 }`
/// (each answer a ~60 KiB page) and never reads. The server must shed it with `SlowConsumer`
/// instead of queueing pages without bound, while other clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_is_shed_not_buffered() {
    let server = TestServer::start().await;
    let (a, mut b, chat) = server.pair("+15550007101", "+15550007102").await;
    // Fill a's log with big messages so every sync page is near the frame limit.
    let text = "x".repeat(limits::MAX_TEXT_LEN);
    for _ in 0..40 {
        a.client.send_text(chat, text.clone()).await.unwrap();
    }
    collect_messages(&mut b.events, 40, WAIT).await;
    let tokens = a.client.snapshot().await.unwrap().tokens.unwrap();

    let mut tiny = quinn::TransportConfig::default();
    tiny.stream_receive_window(quinn::VarInt::from_u32(4096))
        .receive_window(quinn::VarInt::from_u32(4096));
    let mut raw = RawConn::connect_with(server.addr, &server.fingerprint, Some(tiny))
        .await
        .unwrap();
    raw.send_frame(&RawConn::hello(Some(tokens.access_token)))
        .await
        .unwrap();
    let sync = |req_id| Frame::Request {
        req_id,
        body: Request::Sync {
            after: SyncCursor { pts: 0 },
            limit: limits::MAX_SYNC_PAGE,
        },
    };
    // 200 pages of ~60 KiB: 12 MB of answers if nothing sheds.
    let flood = async {
        for req_id in 0..200 {
            if raw.send_frame(&sync(req_id)).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(WAIT, flood).await;
    assert_eq!(
        raw.closed_code(WAIT).await.unwrap(),
        Some(ErrorCode::SlowConsumer),
        "the server must shed a reader that never reads"
    );
    // Honest clients are unaffected.
    let sent = b.client.send_text(chat, "still here").await.unwrap();
    assert!(sent.seq > 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_over_its_connection_cap_loses_its_oldest_connection() {
    let server = TestServer::start_with(|c| c.max_connections_per_device = 2).await;
    let a = server.login("+15550007201").await;
    let token = a
        .client
        .snapshot()
        .await
        .unwrap()
        .tokens
        .unwrap()
        .access_token;
    a.client.close().await;
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut raw = RawConn::connect(server.addr, &server.fingerprint)
            .await
            .unwrap();
        raw.send_frame(&RawConn::hello(Some(token.clone())))
            .await
            .unwrap();
        assert!(welcome(&mut raw).await.session.is_some());
        conns.push(raw);
    }
    assert_eq!(
        conns[0].until_closed(WAIT).await.unwrap(),
        (
            Some(ErrorCode::TooManyConnections),
            Some(ErrorCode::TooManyConnections)
        )
    );
    for raw in &mut conns[1..] {
        raw.send_frame(&Frame::Request {
            req_id: 9,
            body: Request::Ping,
        })
        .await
        .unwrap();
        assert!(matches!(
            raw.next(WAIT).await.unwrap(),
            Outcome::Frame(Frame::Response { req_id: 9, .. })
        ));
    }
}

/// Scenario 12: a connection that never logged in is told to go at shutdown, not left to find
/// out at its idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_anonymous_connections_to_go() {
    let mut server = TestServer::start().await;
    let mut raw = RawConn::connect(server.addr, &server.fingerprint)
        .await
        .unwrap();
    raw.send_frame(&RawConn::hello(None)).await.unwrap();
    welcome(&mut raw).await;
    let running = server.server.take().unwrap();
    let stop = tokio::spawn(running.shutdown());
    let mut go_away = None;
    let code = loop {
        match raw.next(WAIT).await.unwrap() {
            Outcome::Frame(Frame::GoAway(g)) => go_away = Some(g.reason),
            Outcome::Frame(_) => {}
            Outcome::Closed(code) => break code,
        }
    };
    assert_eq!(go_away, Some(GoAwayReason::Shutdown));
    assert_eq!(code, Some(ErrorCode::ShuttingDown));
    stop.await.unwrap();
}

/// Scenario 6: a revocation racing a login (by access token in `Hello`, or by `Refresh`) must
/// never leave the revoked device connected. Each round logs a fresh device in, then revokes it
/// from another device while it reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_racing_a_login_never_leaves_the_device_connected() {
    let server = TestServer::start_with(|c| {
        c.auth.otp_per_identifier.burst = 10_000;
        c.auth.otp_per_identifier.per_minute = 10_000;
        c.auth.otp_per_identifier_source.burst = 10_000;
        c.auth.otp_per_identifier_source.per_day = 10_000;
        c.shards = Some(2);
    })
    .await;
    let admin = server.login("+15550007301").await;
    for round in 0..40u32 {
        let victim = server.login("+15550007301").await;
        let snapshot = victim.client.snapshot().await.unwrap();
        let tokens = snapshot.tokens.unwrap();
        victim.client.close().await;
        let mut raw = RawConn::connect(server.addr, &server.fingerprint)
            .await
            .unwrap();
        let by_refresh = round % 2 == 1;
        let login = async {
            if by_refresh {
                raw.send_frame(&RawConn::hello(None)).await.unwrap();
                raw.send_frame(&Frame::Request {
                    req_id: 1,
                    body: Request::Refresh {
                        refresh_token: tokens.refresh_token.clone(),
                    },
                })
                .await
                .unwrap();
            } else {
                raw.send_frame(&RawConn::hello(Some(tokens.access_token.clone())))
                    .await
                    .unwrap();
            }
        };
        let revoke = async {
            // Spread the revocation over the login's life.
            tokio::time::sleep(Duration::from_micros(u64::from(round % 8) * 150)).await;
            admin
                .client
                .revoke_device(victim.session.device_id)
                .await
                .unwrap();
        };
        tokio::join!(login, revoke);
        // Whatever the interleaving, the device must end up not logged in: its refresh is
        // refused, or its connection is closed.
        loop {
            let outcome = raw.next(WAIT).await.unwrap_or_else(|e| {
                panic!("round {round}: the revoked device is still connected ({e})")
            });
            match outcome {
                Outcome::Frame(Frame::Response {
                    req_id: 1,
                    result: Err(e),
                }) => {
                    assert!(
                        matches!(e.code, ErrorCode::DeviceRevoked | ErrorCode::InvalidToken),
                        "round {round}: refresh refused with {e:?}"
                    );
                    break;
                }
                Outcome::Closed(code) => {
                    assert!(
                        matches!(
                            code,
                            Some(ErrorCode::DeviceRevoked | ErrorCode::InvalidToken)
                        ),
                        "round {round}: closed with {code:?}"
                    );
                    break;
                }
                Outcome::Frame(_) => {}
            }
        }
    }
    // The revoking device itself is still served and signed in (revoked rows are pruned).
    let devices = admin.client.devices().await.unwrap();
    assert!(
        devices
            .iter()
            .any(|d| d.device_id == admin.session.device_id && !d.revoked)
    );
}
