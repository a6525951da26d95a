//! The SDK never waits forever for an answer (issue 7, scenario 7): against a server that
//! answers `Hello` and then nothing, the refresh the SDK sends by itself times out and the SDK
//! reconnects, and the app's own requests fail with `Error::Timeout`.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tern_sdk::protocol::codec::{self, FrameDecoder};
use tern_sdk::protocol::{Frame, PROTOCOL_VERSION, ServerLimits, Tokens, Welcome};
use tern_sdk::{Client, ClientEvent, Error};
use tokio::sync::mpsc;

/// A QUIC server that sends `Welcome { session: None }` after each `Hello` and never answers a
/// request. Reports every request frame it receives.
async fn mute_server() -> (SocketAddr, String, mpsc::UnboundedReceiver<Frame>) {
    tern_tests::init();
    let dir = tempfile::tempdir().unwrap();
    let identity = tern_server::transport::tls::dev_identity(dir.path()).unwrap();
    let fingerprint = identity.fingerprint.clone();
    let tls = tern_server::transport::tls::server_config(identity).unwrap();
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _dir = dir;
        while let Some(incoming) = endpoint.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let Ok((mut send, mut recv)) = conn.accept_bi().await else {
                    return;
                };
                let mut decoder = FrameDecoder::new();
                loop {
                    while let Ok(Some(frame)) = decoder.next_frame() {
                        if matches!(frame, Frame::Hello(_)) {
                            let welcome = Frame::Welcome(Welcome {
                                protocol_version: PROTOCOL_VERSION,
                                server: "mute".into(),
                                session: None,
                                limits: ServerLimits::protocol_defaults(30_000),
                                latest_pts: None,
                                server_time_ms: 0,
                                features: Default::default(),
                                social: Default::default(),
                                media: Default::default(),
                            });
                            let bytes = codec::encode_to_vec(&welcome).unwrap();
                            if send.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        let _ = tx.send(frame);
                    }
                    match recv.read_chunk(65_536, true).await {
                        Ok(Some(chunk)) => decoder.extend(&chunk.bytes),
                        _ => return,
                    }
                }
            });
        }
    });
    (addr, fingerprint, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_refresh_times_out_and_the_sdk_reconnects() {
    let (addr, fingerprint, mut frames) = mute_server().await;
    let mut config = tern_tests::client_config(addr, &fingerprint);
    config.request_timeout = Duration::from_millis(300);
    config.tokens = Some(Tokens {
        access_token: "expired".into(),
        access_expires_at_ms: 0,
        refresh_token: "rt1.whatever".into(),
    });
    let (client, mut events) = Client::start(config).unwrap();
    let mut hellos = 0;
    let mut refreshes = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while hellos < 2 || refreshes < 2 {
        match tokio::time::timeout_at(deadline, frames.recv()).await {
            Ok(Some(Frame::Hello(_))) => hellos += 1,
            Ok(Some(Frame::Request { body, .. })) if body.name() == "refresh" => refreshes += 1,
            Ok(Some(_)) => {}
            _ => panic!(
                "the unanswered refresh never timed out: {hellos} hellos, {refreshes} refreshes"
            ),
        }
    }
    let reason = loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(ClientEvent::Disconnected { reason })) => break reason,
            Ok(Some(_)) => {}
            _ => panic!("no Disconnected event"),
        }
    };
    assert!(reason.contains("timed out"), "{reason}");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_login_fails_with_a_typed_timeout() {
    let (addr, fingerprint, _frames) = mute_server().await;
    let mut config = tern_tests::client_config(addr, &fingerprint);
    config.request_timeout = Duration::from_millis(300);
    let (client, _events) = Client::start(config).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), client.request_otp("+15550003001"))
        .await
        .expect("request_otp never returned")
        .unwrap_err();
    assert_eq!(err, Error::Timeout);
    client.close().await;
}
