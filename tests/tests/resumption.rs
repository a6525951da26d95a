//! TLS session resumption and 0-RTT (docs/protocol.md, "0-RTT and resumption").
//!
//! - a reconnect of the same client resumes its TLS session, with the `Hello` in 0-RTT, and the
//!   server's `tern_tls_handshakes_total{kind}` says so;
//! - without 0-RTT on the client the reconnect still resumes (kind `resumed`);
//! - the server boundary: a raw client writes `Hello`, `Sync` and `SendMessage` as early data,
//!   and a forwarder holds the client's later packets so the server cannot confirm the
//!   handshake. `Hello` and `Sync` are answered; the message is not stored until the packets
//!   flow again, and then exactly once;
//! - with `transport.zero_rtt = false` on the server the client falls back (no early data) and
//!   everything still works.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tern_sdk::protocol::codec::{self, FrameDecoder};
use tern_sdk::protocol::{
    ChatId, ClientInfo, Frame, Hello, MessageBody, PROTOCOL_VERSION, Request, Response, SyncCursor,
};
use tern_sdk::{ClientEvent, SessionCache, Trust, client_config_with};
use tern_tests::child::admin_get;
use tern_tests::{Device, TestServer};
use tokio::net::UdpSocket;

const WAIT: Duration = Duration::from_secs(10);

/// `tern_tls_handshakes_total{kind}` summed over shards.
async fn handshakes(admin: SocketAddr, kind: &str) -> f64 {
    let text = admin_get(admin, "/metrics").await;
    let suffix = format!("kind=\"{kind}\"");
    text.lines()
        .filter(|l| l.starts_with("tern_tls_handshakes_total{") && l.contains(&suffix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Kinds {
    full: f64,
    resumed: f64,
    zero_rtt: f64,
}

async fn kinds(admin: SocketAddr) -> Kinds {
    Kinds {
        full: handshakes(admin, "full").await,
        resumed: handshakes(admin, "resumed").await,
        zero_rtt: handshakes(admin, "zero_rtt").await,
    }
}

/// Waits until `dev` reports an authenticated connection.
async fn connected(dev: &mut Device) {
    tokio::time::timeout(WAIT, async {
        loop {
            match dev.events.next().await {
                Some(ClientEvent::Connected { session: Some(_) }) => return,
                Some(ClientEvent::SessionEnded { reason, .. }) => panic!("session ended: {reason}"),
                Some(_) => {}
                None => panic!("client stopped"),
            }
        }
    })
    .await
    .expect("no authenticated reconnect in time");
}

/// Reconnects `dev` and waits for its session to be back.
async fn reconnect(dev: &mut Device) {
    // Forget what the earlier connection reported, then see this one go down and come back.
    while dev.events.try_next().is_some() {}
    dev.client.reconnect();
    tokio::time::timeout(WAIT, async {
        loop {
            match dev.events.next().await {
                Some(ClientEvent::Disconnected { .. }) => return,
                Some(_) => {}
                None => panic!("client stopped"),
            }
        }
    })
    .await
    .expect("the reconnect did not drop the link");
    connected(dev).await;
}

/// The handshake counts once `n` more handshakes than in `before` were counted. The server
/// answers a 0-RTT `Hello` before the handshake completes, so the count may trail `Welcome`.
async fn kinds_after(admin: SocketAddr, before: Kinds, n: f64) -> Kinds {
    let total = |k: Kinds| k.full + k.resumed + k.zero_rtt;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = kinds(admin).await;
        if total(now) >= total(before) + n || tokio::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn text_messages(dev: &Device, chat: ChatId, text: &str) -> usize {
    dev.client
        .messages(chat, 1, 256)
        .await
        .unwrap()
        .iter()
        .filter(|m| matches!(&m.body, MessageBody::Text(t) if t == text))
        .count()
}

#[tokio::test]
async fn a_reconnect_resumes_and_sends_hello_in_0rtt() {
    let server = TestServer::start().await;
    let admin = server.admin_addr();
    let (mut a, b, chat) = server.pair("+15550300001", "+15550300002").await;
    let before = kinds(admin).await;
    assert!(
        before.full >= 2.0,
        "the logins were full handshakes: {before:?}"
    );

    reconnect(&mut a).await;
    let after = kinds_after(admin, before, 1.0).await;
    assert_eq!(
        after.zero_rtt,
        before.zero_rtt + 1.0,
        "{before:?} -> {after:?}"
    );
    assert_eq!(
        after.full, before.full,
        "a reconnect must not be a full handshake"
    );
    let snap = a.client.snapshot().await.unwrap();
    assert_eq!(
        snap.zero_rtt,
        (1, 0),
        "the SDK saw its Hello accepted as early data"
    );

    // The session that came up from 0-RTT is a working one: a send lands once.
    a.client.send_text(chat, "after 0-rtt").await.unwrap();
    assert_eq!(text_messages(&b, chat, "after 0-rtt").await, 1);

    // And again: each connection gets a fresh single-use ticket.
    reconnect(&mut a).await;
    assert_eq!(
        kinds_after(admin, after, 1.0).await.zero_rtt,
        before.zero_rtt + 2.0
    );
}

#[tokio::test]
async fn without_0rtt_on_the_client_a_reconnect_still_resumes() {
    let server = TestServer::start().await;
    let admin = server.admin_addr();
    let mut cfg = server.client_config();
    cfg.zero_rtt = false;
    let mut a = tern_tests::login(cfg, &server.otp_file(), "+15550300011")
        .await
        .unwrap();
    let before = kinds(admin).await;
    reconnect(&mut a).await;
    let after = kinds_after(admin, before, 1.0).await;
    assert_eq!(
        after.resumed,
        before.resumed + 1.0,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.zero_rtt, before.zero_rtt);
    assert_eq!(after.full, before.full);
    assert_eq!(a.client.snapshot().await.unwrap().zero_rtt, (0, 0));
}

#[tokio::test]
async fn a_new_client_from_a_clone_of_the_config_resumes_too() {
    let server = TestServer::start().await;
    let admin = server.admin_addr();
    let cfg = server.client_config();
    let a = tern_tests::login(cfg.clone(), &server.otp_file(), "+15550300021")
        .await
        .unwrap();
    let snap = a.client.snapshot().await.unwrap();
    a.client.close().await;
    let before = kinds(admin).await;
    let mut again = cfg.clone();
    again.tokens = snap.tokens.clone();
    again.sync_state = snap.sync.clone();
    let (client, events) = tern_sdk::Client::start(again).unwrap();
    let mut dev = Device {
        client,
        events,
        session: a.session,
    };
    connected(&mut dev).await;
    let after = kinds_after(admin, before, 1.0).await;
    assert_eq!(
        after.zero_rtt,
        before.zero_rtt + 1.0,
        "{before:?} -> {after:?}"
    );
    // A config with a cache of its own has nothing to resume.
    let mut fresh = cfg.clone();
    fresh.sessions = SessionCache::default();
    fresh.tokens = dev.client.snapshot().await.unwrap().tokens;
    let (client, events) = tern_sdk::Client::start(fresh).unwrap();
    let mut other = Device {
        client,
        events,
        session: a.session,
    };
    connected(&mut other).await;
    assert_eq!(kinds_after(admin, after, 1.0).await.full, after.full + 1.0);
}

#[tokio::test]
async fn zero_rtt_off_on_the_server_falls_back_and_works() {
    let server = TestServer::start_with(|c| c.transport.zero_rtt = false).await;
    let admin = server.admin_addr();
    let (mut a, b, chat) = server.pair("+15550300031", "+15550300032").await;
    let before = kinds(admin).await;
    reconnect(&mut a).await;
    let after = kinds_after(admin, before, 1.0).await;
    assert_eq!(after.zero_rtt, 0.0, "the server offers no early data");
    assert_eq!(
        after.resumed,
        before.resumed + 1.0,
        "{before:?} -> {after:?}"
    );
    // The ticket allowed no early data, so the SDK did not even try.
    assert_eq!(a.client.snapshot().await.unwrap().zero_rtt, (0, 0));
    a.client.send_text(chat, "no early data").await.unwrap();
    assert_eq!(text_messages(&b, chat, "no early data").await, 1);
}

#[tokio::test]
async fn a_server_that_lost_its_sessions_refuses_early_data_and_the_client_recovers() {
    // A session cache of one entry: a second client's ticket pushes out the first's, as a
    // restart or a full cache would, so the first client's 0-RTT is refused.
    let server = TestServer::start_with(|c| c.transport.session_cache = 1).await;
    let admin = server.admin_addr();
    let (mut a, mut b, chat) = server.pair("+15550300041", "+15550300042").await;
    // `b` logged in last: its ticket is the only one the server remembers.
    let before = kinds(admin).await;
    reconnect(&mut a).await;
    let after = kinds_after(admin, before, 1.0).await;
    assert_eq!(after.full, before.full + 1.0, "{before:?} -> {after:?}");
    assert_eq!(after.zero_rtt, before.zero_rtt);
    assert_eq!(a.client.snapshot().await.unwrap().zero_rtt, (0, 1));
    // The fallback is a working session.
    a.client.send_text(chat, "after refusal").await.unwrap();
    assert_eq!(text_messages(&b, chat, "after refusal").await, 1);
    reconnect(&mut b).await;
}

/// A UDP forwarder between one client and the server that can hold the client's packets.
///
/// Everything the client sends before the server has answered at all (its first flight: the
/// Initial with the ClientHello and the 0-RTT packets) passes; after that the client's packets
/// are dropped while `hold` is set (QUIC retransmits them once it is cleared). The server's
/// packets always pass, so the client completes its side of the handshake and reads what the
/// server answered from early data, but the server never sees the client's `Finished`.
struct Forwarder {
    addr: SocketAddr,
    hold: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start(server: SocketAddr) -> Forwarder {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        back.connect(server).await.unwrap();
        let addr = front.local_addr().unwrap();
        let hold = Arc::new(AtomicBool::new(true));
        let answered = Arc::new(AtomicBool::new(false));
        let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        let task = tokio::spawn({
            let hold = hold.clone();
            async move {
                let up = {
                    let (front, back, client, answered) = (
                        front.clone(),
                        back.clone(),
                        client.clone(),
                        answered.clone(),
                    );
                    async move {
                        let mut buf = vec![0u8; 65_536];
                        while let Ok((n, from)) = front.recv_from(&mut buf).await {
                            *client.lock().unwrap() = Some(from);
                            if answered.load(Ordering::SeqCst) && hold.load(Ordering::SeqCst) {
                                continue;
                            }
                            let _ = back.send(&buf[..n]).await;
                        }
                    }
                };
                let down = async move {
                    let mut buf = vec![0u8; 65_536];
                    while let Ok(n) = back.recv(&mut buf).await {
                        answered.store(true, Ordering::SeqCst);
                        let to = *client.lock().unwrap();
                        if let Some(to) = to {
                            let _ = front.send_to(&buf[..n], to).await;
                        }
                    }
                };
                tokio::join!(up, down);
            }
        });
        Forwarder { addr, hold, task }
    }

    fn release(&self) {
        self.hold.store(false, Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn hello(token: &str) -> Frame {
    Frame::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client: ClientInfo {
            name: "early".into(),
            version: "0".into(),
            platform: "test".into(),
        },
        auth: Some(token.into()),
        resume: None,
    })
}

/// Reads the next frame within `timeout` (`None` on timeout).
async fn next_frame(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
    timeout: Duration,
) -> Option<Frame> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(f) = decoder.next_frame().unwrap() {
            return Some(f);
        }
        match tokio::time::timeout_at(deadline, recv.read_chunk(65_536, true)).await {
            Err(_) => return None,
            Ok(Ok(Some(chunk))) => decoder.extend(&chunk.bytes),
            Ok(other) => panic!("control stream ended: {other:?}"),
        }
    }
}

/// What an early-data run leaves for the test to finish.
struct Early {
    server: TestServer,
    b: Device,
    chat: ChatId,
    forwarder: Forwarder,
    conn: quinn::Connection,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    before: Kinds,
    _a: Device,
    _send: quinn::SendStream,
}

/// Gets a ticket, then connects through a [`Forwarder`] that holds the client's packets after
/// its first flight, writing `Hello`, `Sync` (req 1) and `SendMessage` (req 2) as early data;
/// checks that `Hello` and `Sync` are answered and the send is neither answered nor stored.
async fn early_send_held() -> Early {
    let server = TestServer::start().await;
    let admin = server.admin_addr();
    let (a, b, chat) = server.pair("+15550300051", "+15550300052").await;
    let token = a
        .client
        .snapshot()
        .await
        .unwrap()
        .tokens
        .unwrap()
        .access_token;

    let sessions = SessionCache::default();
    let trust = Trust::pinned_hex(&server.fingerprint).unwrap();
    let cfg = client_config_with(&trust, &sessions, true).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(cfg);

    // A first connection, straight to the server, leaves a ticket in `sessions`.
    {
        let conn = endpoint
            .connect(server.addr, "localhost")
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&codec::encode_to_vec(&hello(&token)).unwrap())
            .await
            .unwrap();
        let mut decoder = FrameDecoder::new();
        let welcome = next_frame(&mut recv, &mut decoder, WAIT).await;
        assert!(matches!(welcome, Some(Frame::Welcome(_))), "{welcome:?}");
        // The ticket follows the handshake; give it a moment to land.
        tokio::time::sleep(Duration::from_millis(200)).await;
        conn.close(0u32.into(), b"done");
    }

    let forwarder = Forwarder::start(server.addr).await;
    let before = kinds(admin).await;
    let connecting = endpoint.connect(forwarder.addr, "localhost").unwrap();
    let (conn, accepted) = connecting
        .into_0rtt()
        .unwrap_or_else(|_| panic!("no resumable session: 0-RTT impossible"));
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut early = codec::encode_to_vec(&hello(&token)).unwrap();
    let sync = Frame::Request {
        req_id: 1,
        body: Request::Sync {
            after: SyncCursor { pts: 0 },
            limit: 16,
        },
    };
    let message = Frame::Request {
        req_id: 2,
        body: Request::SendMessage {
            chat_id: chat,
            client_msg_id: 0xea21,
            body: MessageBody::Text("sent in 0-rtt".into()),
        },
    };
    early.extend(codec::encode_to_vec(&sync).unwrap());
    early.extend(codec::encode_to_vec(&message).unwrap());
    // No await has yielded since `connect`: all of this goes out in the first flight.
    send.write_all(&early).await.unwrap();
    assert!(
        tokio::time::timeout(WAIT, accepted).await.unwrap(),
        "the server accepted the early data"
    );

    // The server answers Hello and the replay-safe Sync from early data...
    let mut decoder = FrameDecoder::new();
    let welcome = next_frame(&mut recv, &mut decoder, WAIT).await;
    match welcome {
        Some(Frame::Welcome(w)) => assert!(w.session.is_some(), "authenticated from 0-RTT"),
        other => panic!("expected Welcome, got {other:?}"),
    }
    let answer = next_frame(&mut recv, &mut decoder, WAIT).await;
    assert!(
        matches!(
            answer,
            Some(Frame::Response {
                req_id: 1,
                result: Ok(Response::SyncPage(_))
            })
        ),
        "Sync is answered before the handshake is confirmed: {answer:?}"
    );
    // ...but not the send: while the client's Finished is held, nothing is stored.
    let nothing = next_frame(&mut recv, &mut decoder, Duration::from_millis(700)).await;
    assert!(
        nothing.is_none(),
        "a state-changing request ran from 0-RTT: {nothing:?}"
    );
    assert_eq!(text_messages(&b, chat, "sent in 0-rtt").await, 0);
    assert_eq!(
        kinds(admin).await,
        before,
        "no handshake completed while the Finished is held"
    );
    Early {
        server,
        b,
        chat,
        forwarder,
        conn,
        recv,
        decoder,
        before,
        _a: a,
        _send: send,
    }
}

#[tokio::test]
async fn a_send_in_early_data_waits_for_the_confirmed_handshake() {
    let Early {
        server,
        b,
        chat,
        forwarder,
        conn,
        mut recv,
        mut decoder,
        before,
        ..
    } = early_send_held().await;
    let admin = server.admin_addr();
    // Once the handshake completes, the held send runs, exactly once.
    forwarder.release();
    let sent = loop {
        match next_frame(&mut recv, &mut decoder, WAIT).await {
            Some(Frame::Response { req_id: 2, result }) => break result,
            Some(Frame::Event(_)) => {}
            other => panic!("expected the send's answer, got {other:?}"),
        }
    };
    let sent = match sent {
        Ok(Response::Sent(s)) => s,
        other => panic!("the send failed: {other:?}"),
    };
    assert_eq!(sent.chat_id, chat);
    assert_eq!(text_messages(&b, chat, "sent in 0-rtt").await, 1);
    let after = kinds(admin).await;
    assert_eq!(
        after.zero_rtt,
        before.zero_rtt + 1.0,
        "{before:?} -> {after:?}"
    );
    conn.close(0u32.into(), b"done");
}

#[tokio::test]
async fn a_send_in_early_data_never_runs_if_the_handshake_never_completes() {
    let e = early_send_held().await;
    let admin = e.server.admin_addr();
    // The client's packets stay held: the server gives up on the handshake and closes with
    // `HandshakeRequired`, and the held send is dropped unexecuted. (The client may never hear
    // the close: before the client's address is validated the server may send only three
    // times what it received, and its retransmissions can use that up.)
    let closes = || async {
        let text = admin_get(admin, "/metrics").await;
        text.lines()
            .filter(|l| {
                l.starts_with("tern_connection_closes_total{")
                    && l.contains("code=\"HandshakeRequired\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    while closes().await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not give up on the unconfirmed handshake"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    e.forwarder.release();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(text_messages(&e.b, e.chat, "sent in 0-rtt").await, 0);
    assert_eq!(
        kinds(e.server.admin_addr()).await.zero_rtt,
        e.before.zero_rtt,
        "the handshake never completed"
    );
}
