//! Auth end to end: tokens refused when expired, forged or for another audience; OTP tries and
//! expiry; refresh rotation with reuse detection; device revocation closing live connections.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tern_sdk::protocol::{ErrorCode, Frame, Response, SessionInfo};
use tern_sdk::{Client, ClientEvent, Events};
use tern_server::auth::token::{SigningKey, TokenIssuer};
use tern_server::config::OtpSenderConfig;
use tern_server::keys::ServerKeys;
use tern_tests::raw::{Outcome, RawConn};
use tern_tests::{TestServer, request_code};

const WAIT: Duration = Duration::from_secs(10);

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Presents `token` in Hello and returns (error frame code, close code).
async fn hello_with(server: &TestServer, token: String) -> (Option<ErrorCode>, Option<ErrorCode>) {
    let mut raw = RawConn::connect(server.addr, &server.fingerprint)
        .await
        .unwrap();
    raw.send_frame(&RawConn::hello(Some(token))).await.unwrap();
    raw.until_closed(WAIT).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_forged_and_wrong_audience_tokens_are_refused() {
    let server = TestServer::start().await;
    let dev = server.login("+15550001001").await;
    let session = dev.session;
    let keys = ServerKeys::load(&server.data_dir()).unwrap();
    let real = TokenIssuer::new(
        vec![SigningKey {
            kid: "k1".into(),
            secret: keys.jwt.clone(),
        }],
        900,
    )
    .unwrap();

    // A correctly signed, current token works.
    let (good, _) = real.issue(session, now_s()).unwrap();
    let mut raw = RawConn::connect(server.addr, &server.fingerprint)
        .await
        .unwrap();
    raw.send_frame(&RawConn::hello(Some(good))).await.unwrap();
    match raw.next(WAIT).await.unwrap() {
        Outcome::Frame(Frame::Welcome(w)) => assert_eq!(w.session, Some(session)),
        other => panic!("expected Welcome, got {other:?}"),
    }

    let (expired, _) = real.issue(session, now_s() - 3600).unwrap();
    assert_eq!(
        hello_with(&server, expired).await,
        (Some(ErrorCode::TokenExpired), Some(ErrorCode::TokenExpired))
    );

    let forger = TokenIssuer::new(
        vec![SigningKey {
            kid: "k1".into(),
            secret: b"not the server's key at all!!!!".to_vec(),
        }],
        900,
    )
    .unwrap();
    let (forged, _) = forger.issue(session, now_s()).unwrap();
    assert_eq!(
        hello_with(&server, forged).await,
        (Some(ErrorCode::InvalidToken), Some(ErrorCode::InvalidToken))
    );

    let (other_aud, _) = real.issue_with(session, now_s(), "someone-else").unwrap();
    assert_eq!(
        hello_with(&server, other_aud).await,
        (Some(ErrorCode::InvalidToken), Some(ErrorCode::InvalidToken))
    );

    let wrong_device = SessionInfo {
        user_id: session.user_id,
        device_id: tern_sdk::protocol::DeviceId(9_999),
    };
    let (unknown, _) = real.issue(wrong_device, now_s()).unwrap();
    assert_eq!(
        hello_with(&server, unknown).await,
        (Some(ErrorCode::InvalidToken), Some(ErrorCode::InvalidToken))
    );

    assert_eq!(
        hello_with(&server, "garbage".into()).await.0,
        Some(ErrorCode::InvalidToken)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_codes_lock_the_source_out() {
    let server = TestServer::start().await;
    let (client, _events) = Client::start(server.client_config()).unwrap();
    let id = "carol@example.org";
    let code = request_code(&client, &server.otp_file(), id).await.unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for attempt in 1..=5 {
        let err = client.verify_otp(id, wrong).await.unwrap_err();
        let expected = if attempt < 5 {
            ErrorCode::OtpInvalid
        } else {
            ErrorCode::OtpTooManyAttempts
        };
        assert_eq!(err.code(), Some(expected), "attempt {attempt}");
    }
    let err = client.verify_otp(id, &code).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::OtpTooManyAttempts),
        "the right code is void after five misses"
    );
    // A new code does not give fresh tries: this source stays locked out of the identifier.
    let fresh = request_code(&client, &server.otp_file(), id).await.unwrap();
    assert_eq!(
        client.verify_otp(id, &fresh).await.unwrap_err().code(),
        Some(ErrorCode::OtpTooManyAttempts)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_code_is_refused_and_a_new_code_voids_the_old() {
    let server = TestServer::start_with(|c| c.auth.otp_ttl_s = 1).await;
    let (client, _events) = Client::start(server.client_config()).unwrap();
    let id = "+15550001002";
    let code = request_code(&client, &server.otp_file(), id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        client.verify_otp(id, &code).await.unwrap_err().code(),
        Some(ErrorCode::OtpExpired)
    );

    let old = request_code(&client, &server.otp_file(), id).await.unwrap();
    let new = request_code(&client, &server.otp_file(), id).await.unwrap();
    if old != new {
        // The replaced code answers `OtpExpired` (protocol.md §7): the owner learns to use the
        // newer code, and nobody without the old code's digits can get this answer.
        assert_eq!(
            client.verify_otp(id, &old).await.unwrap_err().code(),
            Some(ErrorCode::OtpExpired)
        );
    }
    client.verify_otp(id, &new).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_identifiers_and_unauthenticated_requests_are_refused() {
    let server = TestServer::start().await;
    let (client, _events) = Client::start(server.client_config()).unwrap();
    let err = client.request_otp("not an identifier").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument));
    let err = client.chats().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthenticated));
}

async fn wait_session_end(events: &mut Events) -> Option<ErrorCode> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(ClientEvent::SessionEnded { code, .. })) => return code,
            Ok(Some(_)) => {}
            _ => panic!("the session did not end"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_used_twice_revokes_the_family() {
    // No grace window: any second use is a reuse.
    let server = TestServer::start_with(|c| c.auth.refresh_grace_s = 0).await;
    let mut dev = server.login("+15550001003").await;
    let first = dev.client.snapshot().await.unwrap().tokens.unwrap();

    let rotated = match server.refresh_once(&first.refresh_token).await.unwrap() {
        Response::LoggedIn(g) => g.tokens,
        other => panic!("expected LoggedIn, got {other:?}"),
    };
    assert_ne!(
        rotated.refresh_token, first.refresh_token,
        "refresh tokens rotate"
    );

    let reuse = server.refresh_once(&first.refresh_token).await.unwrap_err();
    assert_eq!(reuse.code(), Some(ErrorCode::RefreshReused));
    // The live connection of that device is closed and the SDK stops.
    assert_eq!(
        wait_session_end(&mut dev.events).await,
        Some(ErrorCode::DeviceRevoked)
    );
    // The newer token of the same family is dead too: a revoked device's tokens are deleted.
    let after = server
        .refresh_once(&rotated.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(after.code(), Some(ErrorCode::InvalidToken));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_device_closes_its_connection_and_lists_it_revoked() {
    let server = TestServer::start().await;
    let phone = server.login("dave@example.org").await;
    let mut laptop = server.login("dave@example.org").await;
    let devices = phone.client.devices().await.unwrap();
    assert_eq!(devices.len(), 2);
    phone
        .client
        .revoke_device(laptop.session.device_id)
        .await
        .unwrap();
    assert_eq!(
        wait_session_end(&mut laptop.events).await,
        Some(ErrorCode::DeviceRevoked)
    );
    let devices = phone.client.devices().await.unwrap();
    let l = devices
        .iter()
        .find(|d| d.device_id == laptop.session.device_id)
        .unwrap();
    assert!(l.revoked);
    let err = laptop.client.chats().await.unwrap_err();
    assert!(
        matches!(err, tern_sdk::Error::Closed(_)),
        "a revoked client refuses calls: {err:?}"
    );
}

/// A one-request-at-a-time HTTP endpoint on loopback that records POST bodies.
async fn gateway(
    status: u16,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let Ok(n) = s.read(&mut chunk).await else {
                    break String::new();
                };
                if n == 0 {
                    break String::new();
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break body.to_owned();
                    }
                }
            };
            let _ = tx.send(body);
            let reply =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = s.write_all(reply.as_bytes()).await;
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_sender_posts_codes_to_the_gateway() {
    let (addr, mut bodies) = gateway(200).await;
    let url = format!("http://{addr}/otp");
    let server = TestServer::start_with(|c| c.otp_sender = OtpSenderConfig::Webhook { url }).await;
    let (client, _events) = Client::start(server.client_config()).unwrap();
    client.request_otp("+15550001010").await.unwrap();
    let body = tokio::time::timeout(WAIT, bodies.recv())
        .await
        .unwrap()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["identifier"], "+15550001010");
    let code = json["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 6);
    client.verify_otp("+15550001010", &code).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_gateway_is_reported_not_hidden() {
    let (addr, _bodies) = gateway(500).await;
    let url = format!("http://{addr}/otp");
    let server = TestServer::start_with(|c| c.otp_sender = OtpSenderConfig::Webhook { url }).await;
    let (client, _events) = Client::start(server.client_config()).unwrap();
    let err = client.request_otp("+15550001011").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Internal));
}
