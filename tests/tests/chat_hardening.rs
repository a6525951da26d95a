//! Chat and sync hardening (issue 7): a server restored from an older backup, coalesced acks,
//! non-enumerable user ids, live and synced `ChatJoined` being identical, list paging and
//! per-user rate limits. Each test compares what was sent with what was received.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use tern_sdk::ClientEvent;
use tern_sdk::protocol::codec::encode_to_vec;
use tern_sdk::protocol::{
    ChatId, ErrorBody, Event, Frame, Request, Response, SessionInfo, SyncCursor, Update,
    UpdateKind, UserId,
};
use tern_server::RunningServer;
use tern_tests::child::free_udp_port;
use tern_tests::raw::{Outcome, RawConn};
use tern_tests::{TestServer, client_config, collect_messages, init, login, test_config};

const WAIT: Duration = Duration::from_secs(15);

/// A raw connection authenticated with `access_token`, past its `Welcome`.
async fn raw_session(addr: std::net::SocketAddr, fingerprint: &str, token: String) -> RawConn {
    let mut raw = RawConn::connect(addr, fingerprint).await.unwrap();
    raw.send_frame(&RawConn::hello(Some(token))).await.unwrap();
    match raw.next(WAIT).await.unwrap() {
        Outcome::Frame(Frame::Welcome(w)) => assert!(w.session.is_some(), "authenticated"),
        other => panic!("expected Welcome, got {other:?}"),
    }
    raw
}

/// Sends one request on a raw connection and returns its answer; events seen meanwhile are
/// appended to `events`.
async fn raw_call(
    raw: &mut RawConn,
    req_id: u32,
    body: Request,
    events: &mut Vec<Update>,
) -> Result<Response, ErrorBody> {
    raw.send_frame(&Frame::Request { req_id, body })
        .await
        .unwrap();
    loop {
        match raw.next(WAIT).await.unwrap() {
            Outcome::Frame(Frame::Response { req_id: id, result }) if id == req_id => {
                return result;
            }
            Outcome::Frame(Frame::Event(Event::Update(u))) => events.push(u),
            Outcome::Frame(_) => {}
            Outcome::Closed(code) => panic!("closed: {code:?}"),
        }
    }
}

/// Every update of a user's log, read with `Sync` pages from pts 0.
async fn whole_log(raw: &mut RawConn, first_req_id: u32) -> Vec<Update> {
    let mut log = Vec::new();
    let mut after = SyncCursor { pts: 0 };
    let mut ignored = Vec::new();
    for req_id in first_req_id.. {
        let body = Request::Sync { after, limit: 256 };
        let Ok(Response::SyncPage(page)) = raw_call(raw, req_id, body, &mut ignored).await else {
            panic!("sync failed");
        };
        log.extend(page.updates);
        after = page.cursor;
        if !page.has_more {
            break;
        }
    }
    log
}

/// Logs `identifier` in as a new device, then drops the SDK client and returns the device's
/// session and a raw connection authenticated as it (to drive requests one by one).
async fn raw_device(server: &TestServer, identifier: &str) -> (SessionInfo, RawConn) {
    let device = server.login(identifier).await;
    let snapshot = device.client.snapshot().await.unwrap();
    device.client.close().await;
    let token = snapshot.tokens.unwrap().access_token;
    let raw = raw_session(server.addr, &server.fingerprint, token).await;
    (device.session, raw)
}

/// The direct chat between a device and `peer`.
async fn chat_with(client: &tern_sdk::Client, peer: UserId) -> ChatId {
    client.open_direct_chat(peer).await.unwrap().chat_id
}

/// Every update of a user's log, read through an SDK client's raw request path.
async fn sdk_log(client: &tern_sdk::Client) -> Vec<Update> {
    let mut log = Vec::new();
    let mut after = SyncCursor { pts: 0 };
    loop {
        let body = Request::Sync { after, limit: 256 };
        let Ok(Response::SyncPage(page)) = client.request(body).await else {
            panic!("sync failed");
        };
        log.extend(page.updates);
        after = page.cursor;
        if !page.has_more {
            return log;
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            match std::fs::copy(entry.path(), target) {
                // The store may still be deleting obsolete files it no longer needs.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => {
                    other.unwrap();
                }
            }
        }
    }
}

fn texts(messages: &[tern_sdk::protocol::Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| match &m.body {
            tern_sdk::protocol::MessageBody::Text(t) => t.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Scenario 10: the server is restored from a backup older than the device's cursor. The device
/// must notice (typed reset), resync from scratch and get every message sent after the restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_ahead_of_a_restored_server_resyncs_and_gets_every_new_message() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.listen = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let otp = dir.path().join("otp.txt");
    let server = RunningServer::start(config.clone()).await.unwrap();
    let cc = client_config(server.quic_addr, &server.cert_fingerprint);
    let a = login(cc.clone(), &otp, "+15550007001").await.unwrap();
    let mut b = login(cc, &otp, "+15550007002").await.unwrap();
    let chat = chat_with(&a.client, b.session.user_id).await;
    for i in 0..3 {
        a.client
            .send_text(chat, format!("before {i}"))
            .await
            .unwrap();
    }
    assert_eq!(collect_messages(&mut b.events, 3, WAIT).await.len(), 3);

    // Back up the stopped server, run on, then restore the backup.
    server.shutdown().await;
    let backup = dir.path().join("backup");
    copy_dir(&config.data_dir, &backup);
    let server = RunningServer::start(config.clone()).await.unwrap();
    for i in 0..5 {
        a.client.send_text(chat, format!("lost {i}")).await.unwrap();
    }
    assert_eq!(collect_messages(&mut b.events, 5, WAIT).await.len(), 5);
    let cursor_before_restore = b.client.snapshot().await.unwrap().sync.cursor.pts;
    server.shutdown().await;
    std::fs::remove_dir_all(&config.data_dir).unwrap();
    copy_dir(&backup, &config.data_dir);
    let server = RunningServer::start(config.clone()).await.unwrap();

    let mut sent = Vec::new();
    for i in 0..3 {
        let text = format!("after restore {i}");
        a.client.send_text(chat, text.clone()).await.unwrap();
        sent.push(text);
    }
    let mut got = Vec::new();
    let mut resets = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < sent.len() {
        match tokio::time::timeout_at(deadline, b.events.next()).await {
            Ok(Some(ClientEvent::Message { message, .. })) => {
                let t = texts(std::slice::from_ref(&message)).remove(0);
                if t.starts_with("after restore") {
                    got.push(t);
                }
            }
            Ok(Some(ClientEvent::SyncReset { .. })) => resets += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert_eq!(
        got, sent,
        "a device whose cursor ({cursor_before_restore}) is ahead of the restored server gets \
         every new message, in order"
    );
    assert!(resets >= 1, "the app is told that the replay is a reset");
    server.shutdown().await;
}

/// Scenario 8: acks stepping through N messages do not write N rows into every member's log,
/// and the final delivered watermark still reaches the sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_are_coalesced_and_the_final_watermark_arrives() {
    let server = TestServer::start().await;
    let mut a = server.login("+15550007011").await;
    // B acknowledges step by step from a raw connection (the SDK would batch its acks).
    let (b, mut raw) = raw_device(&server, "+15550007012").await;
    let chat = chat_with(&a.client, b.user_id).await;
    const N: u64 = 40;
    for i in 0..N {
        a.client.send_text(chat, format!("m{i}")).await.unwrap();
    }
    let mut ignored = Vec::new();
    for seq in 1..=N {
        let ack = Request::Ack {
            chat_id: chat,
            upto_seq: seq,
        };
        let r = raw_call(&mut raw, seq as u32, ack, &mut ignored).await;
        assert_eq!(r, Ok(Response::Done));
    }
    // The final watermark arrives at the sender.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last_seen = 0;
    while last_seen < N {
        match tokio::time::timeout_at(deadline, a.events.next()).await {
            Ok(Some(ClientEvent::Receipt(r))) if r.user_id == b.user_id => {
                assert!(
                    r.delivered_seq >= last_seen,
                    "receipts never move backwards"
                );
                last_seen = r.delivered_seq;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert_eq!(
        last_seen, N,
        "the final delivered watermark reaches the sender"
    );

    let receipts_of = |log: &[Update]| {
        log.iter()
            .filter(|u| matches!(&u.kind, UpdateKind::Receipt(r) if r.user_id == b.user_id))
            .count()
    };
    let b_log = whole_log(&mut raw, 1_000).await;
    let a_log = sdk_log(&a.client).await;
    assert!(
        receipts_of(&a_log) <= (N / 4) as usize,
        "{N} ack steps wrote {} receipt rows into the sender's log",
        receipts_of(&a_log)
    );
    assert_eq!(
        receipts_of(&b_log),
        0,
        "the acker's own log gets no delivered-receipt rows"
    );
}

/// Scenario 8: user ids are random, not a counter, and a never-issued id answers like any other
/// unknown user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_ids_are_not_enumerable() {
    let server = TestServer::start().await;
    let mut ids = Vec::new();
    let mut first = None;
    for i in 0..5 {
        let d = server.login(&format!("+1555000702{i}")).await;
        ids.push(d.session.user_id);
        if first.is_none() {
            first = Some(d);
        }
    }
    let probe = first.unwrap();
    for w in ids.windows(2) {
        assert!(
            w[0].0.abs_diff(w[1].0) > 1_000_000,
            "consecutive registrations got guessable ids: {ids:?}"
        );
    }
    assert!(
        ids.iter().all(|u| u.0 >= 1 && u.0 < 1 << 53),
        "ids stay exact in JSON"
    );
    // Neighbours of a real id, a small id and a huge one: all answer the same.
    let mut answers = Vec::new();
    for peer in [ids[1].0 + 1, ids[1].0 - 1, 2, (1 << 53) - 1, u64::MAX] {
        let err = probe
            .client
            .open_direct_chat(UserId(peer))
            .await
            .unwrap_err();
        answers.push(err);
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "unknown users are indistinguishable: {answers:?}"
    );
}

/// Scenario 12: a live `ChatJoined` is byte-for-byte the update `Sync` later returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_and_synced_chat_joined_are_identical() {
    let server = TestServer::start().await;
    let a = server.login("+15550007031").await;
    let (b, mut raw) = raw_device(&server, "+15550007032").await;
    let chat = chat_with(&a.client, b.user_id).await;
    let live = loop {
        match raw.next(WAIT).await.unwrap() {
            Outcome::Frame(Frame::Event(Event::Update(u)))
                if matches!(u.kind, UpdateKind::ChatJoined(_)) =>
            {
                break u;
            }
            Outcome::Frame(_) => {}
            Outcome::Closed(code) => panic!("closed: {code:?}"),
        }
    };
    // The chat moves on before the device syncs.
    for i in 0..3 {
        a.client.send_text(chat, format!("m{i}")).await.unwrap();
    }
    let log = whole_log(&mut raw, 1).await;
    let synced = log
        .into_iter()
        .find(|u| u.pts == live.pts)
        .expect("the joined update is in the log");
    let bytes = |u: &Update| encode_to_vec(&Frame::Event(Event::Update(u.clone()))).unwrap();
    assert_eq!(
        bytes(&synced),
        bytes(&live),
        "live {live:?} and synced {synced:?} differ"
    );
}

/// Scenario 10: a cursor beyond the log's head gets a typed answer, not an empty page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_with_a_cursor_ahead_of_the_log_answers_cursor_ahead() {
    let server = TestServer::start().await;
    let (_, mut raw) = raw_device(&server, "+15550007041").await;
    let mut ignored = Vec::new();
    let ahead = Request::Sync {
        after: SyncCursor { pts: 1_000 },
        limit: 10,
    };
    let err = raw_call(&mut raw, 1, ahead, &mut ignored)
        .await
        .unwrap_err();
    assert_eq!(err.code, tern_sdk::protocol::ErrorCode::CursorAhead);
    assert!(
        !err.code.is_retryable(),
        "retrying the same cursor never helps"
    );
    let at_head = Request::Sync {
        after: SyncCursor { pts: 0 },
        limit: 10,
    };
    assert!(raw_call(&mut raw, 2, at_head, &mut ignored).await.is_ok());
}

/// Scenario 8: one user's sends share a token bucket (across devices); beyond it the server
/// answers `RateLimited`, and the SDK outbox retries later until every message is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_beyond_the_per_user_rate_are_refused_and_the_outbox_catches_up() {
    let server = TestServer::start_with(|c| {
        c.chat.send_burst = 3;
        c.chat.send_per_minute = 120;
    })
    .await;
    let (a, mut raw) = raw_device(&server, "+15550007051").await;
    let mut b = server.login("+15550007052").await;
    let mut ignored = Vec::new();
    let open = Request::OpenDirectChat {
        peer: b.session.user_id,
    };
    let Ok(Response::Chat(chat)) = raw_call(&mut raw, 1, open, &mut ignored).await else {
        panic!("open failed");
    };
    let mut answers = Vec::new();
    for i in 0..4u32 {
        let send = Request::SendMessage {
            chat_id: chat.chat_id,
            client_msg_id: u64::from(i),
            body: tern_sdk::protocol::MessageBody::Text(format!("raw {i}")),
        };
        answers.push(raw_call(&mut raw, 10 + i, send, &mut ignored).await);
    }
    assert!(
        answers[..3]
            .iter()
            .all(|r| matches!(r, Ok(Response::Sent(_))))
    );
    let refused = answers[3].clone().unwrap_err();
    assert_eq!(refused.code, tern_sdk::protocol::ErrorCode::RateLimited);
    assert!(refused.code.is_retryable());

    // Another device of the same user shares the budget; its outbox waits and retries.
    let a2 = server.login("+15550007051").await;
    assert_eq!(a2.session.user_id, a.user_id);
    let mut sent = Vec::new();
    for i in 0..3 {
        let text = format!("sdk {i}");
        let s = a2
            .client
            .send_text(chat.chat_id, text.clone())
            .await
            .unwrap();
        sent.push((s.seq, text));
    }
    let got = collect_messages(&mut b.events, 6, WAIT).await;
    let sdk: Vec<_> = got
        .iter()
        .filter_map(|m| {
            let t = texts(std::slice::from_ref(m)).remove(0);
            t.starts_with("sdk").then_some((m.seq, t))
        })
        .collect();
    assert_eq!(
        sdk, sent,
        "every rate-limited send is delivered once, in order"
    );
}

/// Scenario 8: opening chats with new people spends a per-user budget (probes for ids that do
/// not exist included); chats that exist stay free to open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_contact_is_limited_per_user() {
    let server = TestServer::start_with(|c| {
        c.chat.new_peer_burst = 2;
        c.chat.new_peers_per_day = 1;
    })
    .await;
    let a = server.login("+15550007061").await;
    let b = server.login("+15550007062").await;
    let c = server.login("+15550007063").await;
    let d = server.login("+15550007064").await;
    let ab = chat_with(&a.client, b.session.user_id).await;
    chat_with(&a.client, c.session.user_id).await;
    let refused = a
        .client
        .open_direct_chat(d.session.user_id)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(tern_sdk::protocol::ErrorCode::RateLimited)
    );
    let probe = a.client.open_direct_chat(UserId(12_345)).await.unwrap_err();
    assert_eq!(
        probe, refused,
        "a probe for an unknown id answers like a real stranger"
    );
    assert_eq!(
        chat_with(&a.client, b.session.user_id).await,
        ab,
        "known peers are free"
    );
    assert_eq!(chat_with(&b.client, a.session.user_id).await, ab);
    chat_with(&d.client, a.session.user_id).await;
}

/// Scenario 11: chat and device lists page instead of stopping at the first 1024.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_device_lists_page() {
    // Five devices of one identifier from one source: lift the per-identifier OTP budgets.
    let server = TestServer::start_with(|c| {
        c.auth.otp_per_identifier.burst = 100;
        c.auth.otp_per_identifier_source.burst = 100;
    })
    .await;
    let a = server.login("+15550007071").await;
    let mut devices = vec![a.session.device_id];
    for _ in 0..4 {
        devices.push(server.login("+15550007071").await.session.device_id);
    }
    let mut chats = Vec::new();
    for i in 0..5 {
        let peer = server.login(&format!("+1555000708{i}")).await;
        chats.push(chat_with(&a.client, peer.session.user_id).await);
    }
    chats.sort_unstable();

    let mut paged = Vec::new();
    let mut after = ChatId(0);
    let mut pages = 0;
    loop {
        let page = a.client.chats_page(after, 2).await.unwrap();
        assert!(page.chats.len() <= 2);
        pages += 1;
        paged.extend(page.chats.iter().map(|c| c.chat_id));
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(paged, chats, "every chat once, in id order");
    assert_eq!(pages, 3);
    let all: Vec<_> = a
        .client
        .chats()
        .await
        .unwrap()
        .iter()
        .map(|c| c.chat_id)
        .collect();
    assert_eq!(all, chats);
    let Ok(Response::Chats(first)) = a.client.request(Request::ListChats).await else {
        panic!("ListChats still answers");
    };
    assert_eq!(first.len(), 5, "ListChats answers the first page");

    let mut paged = Vec::new();
    let mut after = tern_sdk::protocol::DeviceId(0);
    loop {
        let page = a.client.devices_page(after, 2).await.unwrap();
        paged.extend(page.devices.iter().map(|d| d.device_id));
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(paged, devices);
    let all: Vec<_> = a
        .client
        .devices()
        .await
        .unwrap()
        .iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(all, devices);
}

/// Scenario 8: receipts held for coalescing are published at graceful shutdown, not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_receipts_are_published_at_shutdown() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.listen = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    // Only the shutdown flush can publish within this test.
    config.chat.receipt_delay_ms = 600_000;
    let otp = dir.path().join("otp.txt");
    let server = RunningServer::start(config.clone()).await.unwrap();
    let cc = client_config(server.quic_addr, &server.cert_fingerprint);
    let mut a = login(cc.clone(), &otp, "+15550007091").await.unwrap();
    let b = login(cc, &otp, "+15550007092").await.unwrap();
    let chat = chat_with(&a.client, b.session.user_id).await;
    let snapshot = b.client.snapshot().await.unwrap();
    b.client.close().await;
    let token = snapshot.tokens.unwrap().access_token;
    let mut raw = raw_session(server.quic_addr, &server.cert_fingerprint, token).await;
    for i in 0..3 {
        a.client.send_text(chat, format!("m{i}")).await.unwrap();
    }
    let mut ignored = Vec::new();
    for seq in 1..=3u64 {
        let ack = Request::Ack {
            chat_id: chat,
            upto_seq: seq,
        };
        assert_eq!(
            raw_call(&mut raw, seq as u32, ack, &mut ignored).await,
            Ok(Response::Done)
        );
    }
    server.shutdown().await;
    let server = RunningServer::start(config).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut delivered = 0;
    while delivered < 3 {
        match tokio::time::timeout_at(deadline, a.events.next()).await {
            Ok(Some(ClientEvent::Receipt(r))) if r.user_id == b.session.user_id => {
                delivered = r.delivered_seq;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert_eq!(
        delivered, 3,
        "the held receipt was published before storage closed"
    );
    server.shutdown().await;
}
