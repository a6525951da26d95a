//! Sharding, overload and drain, with `--shards 4` on a 2-core machine: cross-shard delivery,
//! per-shard metrics, slow consumers, full mailboxes, SIGTERM during sends, a reconnect storm
//! and an address change. Correctness is checked with the history checker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_sdk::protocol::{ErrorCode, Frame, MessageBody};
use tern_sdk::{Client, ClientEvent};
use tern_tests::child::{ChildServer, admin_get, metric};
use tern_tests::history::{self, Acked};
use tern_tests::raw::{Outcome, RawConn};
use tern_tests::{
    Device, TestServer, client_config, collect_messages, login, receive_all, send_lanes,
};

const WAIT: Duration = Duration::from_secs(20);

async fn four_shards() -> TestServer {
    TestServer::start_with(|c| c.shards = Some(4)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_on_different_shards_exchange_messages_and_every_shard_reports() {
    let server = four_shards().await;
    // Each client has its own UDP socket, so the kernel spreads them over the shard sockets.
    let mut devices: Vec<Device> = Vec::new();
    for i in 0..12 {
        devices.push(server.login(&format!("+1555001{i:04}")).await);
    }
    let n = devices.len();
    let mut acked = Vec::new();
    for i in 0..n {
        let peer = devices[(i + 1) % n].session.user_id;
        let chat = devices[i]
            .client
            .open_direct_chat(peer)
            .await
            .unwrap()
            .chat_id;
        for k in 0..5 {
            let body = MessageBody::Text(format!("{i}->{k}"));
            let sent = devices[i]
                .client
                .send(chat, body.clone(), 1_000 * i as u64 + k)
                .await
                .unwrap();
            acked.push(Acked { sent, body });
        }
    }
    // Every device is in two chats (as sender and as receiver): 10 messages each.
    for (i, d) in devices.iter_mut().enumerate() {
        let got = receive_all(&mut d.events, 10, WAIT).await;
        let mine: Vec<Acked> = acked
            .iter()
            .filter(|a| got.iter().any(|m| m.chat_id == a.sent.chat_id))
            .cloned()
            .collect();
        assert_eq!(
            mine.len(),
            10,
            "device {i} is in two chats of five messages"
        );
        let problems = history::check(&mine, &[(format!("d{i}"), got)]);
        assert!(problems.is_empty(), "{problems:#?}");
    }
    let text = admin_get(server.admin_addr(), "/metrics").await;
    let mut busy = 0;
    for s in 0..4 {
        let conns = metric(&text, &format!("tern_connections{{shard=\"{s}\"}}"));
        assert!(conns.is_some(), "shard {s} has a connections series");
        if conns.unwrap_or(0.0) > 0.0 {
            busy += 1;
        }
        let requests = metric(
            &text,
            &format!("tern_frames_in_total{{shard=\"{s}\",kind=\"request\"}}"),
        );
        assert!(requests.is_some(), "shard {s} counts request frames");
        if conns.unwrap_or(0.0) > 0.0 {
            assert!(
                requests.unwrap_or(0.0) > 0.0,
                "a busy shard {s} has received requests"
            );
        }
        assert!(metric(&text, &format!("tern_mailbox_depth{{shard=\"{s}\"}}")).is_some());
    }
    assert!(
        busy >= 2,
        "connections landed on {busy} shard(s); expected several:\n{text}"
    );
    assert!(
        text.contains("tern_delivery_seconds_bucket"),
        "delivery latency histogram"
    );
    assert!(
        text.contains("tern_request_seconds_bucket{"),
        "request latency histogram"
    );
    assert!(text.contains("process_resident_memory_bytes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_reading_is_cut_off_and_resyncs_without_loss() {
    let server = four_shards().await;
    let a = server.login("+15550020001").await;
    let b = server.login("+15550020002").await;
    let mut c = server.login("+15550020003").await;
    let chat = a
        .client
        .open_direct_chat(b.session.user_id)
        .await
        .unwrap()
        .chat_id;
    let other = a
        .client
        .open_direct_chat(c.session.user_id)
        .await
        .unwrap()
        .chat_id;
    let saved = b.client.snapshot().await.unwrap();
    b.client.close().await;

    // b's device comes back as a raw connection that never reads.
    let token = saved.tokens.clone().unwrap().access_token;
    let mut stalled = RawConn::connect(server.addr, &server.fingerprint)
        .await
        .unwrap();
    stalled
        .send_frame(&RawConn::hello(Some(token)))
        .await
        .unwrap();

    let big = "y".repeat(4_000);
    let acked = send_lanes(&a.client, chat, 0..2_000, 16, move |k| {
        MessageBody::Text(format!("{k}:{big}"))
    })
    .await;
    // The shard kept serving everyone else meanwhile.
    a.client.send_text(other, "still served").await.unwrap();
    assert_eq!(collect_messages(&mut c.events, 1, WAIT).await.len(), 1);

    // The stalled connection was closed as a slow consumer.
    let mut code = None;
    for _ in 0..10_000 {
        match stalled.next(WAIT).await {
            Ok(Outcome::Closed(c)) => {
                code = c;
                break;
            }
            Ok(Outcome::Frame(Frame::Error(e))) => code = Some(e.code),
            Ok(Outcome::Frame(_)) => {}
            Err(e) => panic!("stalled connection: {e}"),
        }
    }
    assert_eq!(code, Some(ErrorCode::SlowConsumer));

    // The device reconnects with its saved state and gets every message exactly once.
    let (_client, mut events) = server.resume(&saved);
    let got = collect_messages(&mut events, acked.len(), WAIT).await;
    let problems = history::check(&acked, &[("b".into(), got)]);
    assert!(problems.is_empty(), "{problems:#?}");
    let text = admin_get(server.admin_addr(), "/metrics").await;
    let slow: f64 = (0..4)
        .filter_map(|s| {
            metric(
                &text,
                &format!("tern_slow_consumers_total{{shard=\"{s}\"}}"),
            )
        })
        .sum();
    assert!(slow >= 1.0, "a slow consumer was counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_shard_mailbox_drops_to_resync_and_loses_nothing() {
    let server = TestServer::start_with(|c| {
        c.shards = Some(2);
        c.shard_mailbox = 1;
    })
    .await;
    let sender = server.login("+15550030001").await;
    let mut receivers = Vec::new();
    for i in 0..4 {
        receivers.push(server.login(&format!("+1555003100{i}")).await);
    }
    // Open every chat first: a full mailbox cuts connections (the sender's too), which fails
    // requests in flight; sends are safe (the outbox retries them), other requests are not.
    // Opening is idempotent, so an open cut by an overflow (its own `ChatJoined` pushes can
    // overflow a one-slot mailbox) is simply asked again.
    let mut chats = Vec::new();
    for r in &receivers {
        let mut tries = 0;
        let chat = loop {
            match sender.client.open_direct_chat(r.session.user_id).await {
                Ok(c) => break c.chat_id,
                Err(tern_sdk::Error::Disconnected) if tries < 20 => tries += 1,
                Err(e) => panic!("opening a chat failed: {e}"),
            }
        };
        chats.push(chat);
    }
    let mut tasks = Vec::new();
    for &chat in &chats {
        let client = sender.client.clone();
        let ids = chat.0 * 100_000..chat.0 * 100_000 + 200;
        tasks.push(tokio::spawn(async move {
            send_lanes(&client, chat, ids, 8, |k| MessageBody::Text(k.to_string())).await
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    for (i, r) in receivers.iter_mut().enumerate() {
        let got = receive_all(&mut r.events, 200, WAIT).await;
        let chat = got.first().map(|m| m.chat_id);
        let mine: Vec<Acked> = acked
            .iter()
            .filter(|a| Some(a.sent.chat_id) == chat)
            .cloned()
            .collect();
        assert_eq!(mine.len(), 200);
        let problems = history::check(&mine, &[(format!("r{i}"), got)]);
        assert!(problems.is_empty(), "{problems:#?}");
    }
    let text = admin_get(server.admin_addr(), "/metrics").await;
    let overflows: f64 = (0..2)
        .filter_map(|s| {
            metric(
                &text,
                &format!("tern_mailbox_overflows_total{{shard=\"{s}\"}}"),
            )
        })
        .sum();
    assert!(
        overflows >= 1.0,
        "the test must actually overflow a mailbox:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_sends_drains_exits_zero_and_loses_nothing() {
    tern_tests::init();
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(dir.path(), &["--shards", "4"]).await;
    let fp = server.fingerprint();
    let otp = server.otp_file();
    let quic = server.quic;
    let cfg = || client_config(quic, &fp);
    let a = login(cfg(), &otp, "+15550040001").await.unwrap();
    let mut b = login(cfg(), &otp, "+15550040002").await.unwrap();
    let chat = a
        .client
        .open_direct_chat(b.session.user_id)
        .await
        .unwrap()
        .chat_id;
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut tasks = Vec::new();
    for lane in 0..8u64 {
        let client = a.client.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for k in (lane..400).step_by(8) {
                let body = MessageBody::Text(format!("{k}"));
                let sent = client.send(chat, body.clone(), k).await.unwrap();
                acked.lock().unwrap().push(Acked { sent, body });
            }
        }));
    }
    while acked.lock().unwrap().len() < 100 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let t0 = std::time::Instant::now();
    server.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let s = server.child.wait();
        (s, server)
    })
    .await
    .unwrap();
    let (status, mut server) = status;
    assert!(
        status.unwrap().success(),
        "tern-server exits 0 after SIGTERM"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "drain is bounded: took {:?}",
        t0.elapsed()
    );
    server.restart().await;
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .unwrap()
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 400);
    let got = receive_all(&mut b.events, 400, WAIT).await;
    let problems = history::check(&acked, &[("b".into(), got)]);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_change_is_harmless() {
    let server = four_shards().await;
    let (a, mut b, chat) = server.pair("+15550050001", "+15550050002").await;
    let mut acked = Vec::new();
    for k in 0..60u64 {
        if k % 20 == 10 {
            // New source port mid-conversation, on both sides.
            a.client.rebind();
            b.client.rebind();
        }
        let body = MessageBody::Text(format!("{k}"));
        let sent = tokio::time::timeout(WAIT, a.client.send(chat, body.clone(), k))
            .await
            .unwrap()
            .unwrap();
        acked.push(Acked { sent, body });
    }
    let got = receive_all(&mut b.events, 60, WAIT).await;
    let problems = history::check(&acked, &[("b".into(), got)]);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_of_2000_clients_ends_connected_and_synced() {
    const CLIENTS: usize = 2_000;
    const PER_ENDPOINT: usize = 100;
    tern_tests::init();
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(dir.path(), &["--shards", "2"]).await;
    let fp = server.fingerprint();
    let otp = server.otp_file();
    let quic = server.quic;
    let endpoints: Vec<_> = (0..CLIENTS / PER_ENDPOINT)
        .map(|_| tern_sdk::shared_endpoint(quic).unwrap())
        .collect();

    // Log everyone in (bounded concurrency), each through the real OTP flow.
    let mut devices: Vec<Device> = Vec::with_capacity(CLIENTS);
    for batch in (0..CLIENTS).collect::<Vec<_>>().chunks(250) {
        let mut tasks = Vec::new();
        for &i in batch {
            let mut cfg = client_config(quic, &fp);
            cfg.endpoint = Some(endpoints[i / PER_ENDPOINT].clone());
            cfg.reconnect_min = Duration::from_millis(100);
            cfg.reconnect_max = Duration::from_secs(2);
            let otp = otp.clone();
            tasks.push(tokio::spawn(async move {
                login(cfg, &otp, &format!("+1556{i:07}")).await.unwrap()
            }));
        }
        for t in tasks {
            devices.push(t.await.unwrap());
        }
    }
    let broadcaster = login(client_config(quic, &fp), &otp, "+15559999999")
        .await
        .unwrap();
    let peers: Vec<_> = devices.iter().map(|d| d.session.user_id).collect();
    let mut tasks = Vec::new();
    for part in peers.chunks(CLIENTS / 20) {
        let client = broadcaster.client.clone();
        let part = part.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for peer in part {
                out.push(client.open_direct_chat(peer).await.unwrap().chat_id);
            }
            out
        }));
    }
    let mut chats = Vec::with_capacity(CLIENTS);
    for t in tasks {
        chats.extend(t.await.unwrap());
    }
    // Crash and restart: every client reconnects at once (stateless resets tell them).
    server.kill();
    server.restart().await;
    // While the crowd reconnects, one message for each of them.
    let mut tasks = Vec::new();
    for (lane, part) in chats.chunks(CLIENTS / 16).enumerate() {
        let client = broadcaster.client.clone();
        let part = part.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for (k, chat) in part.into_iter().enumerate() {
                let body = MessageBody::Text(format!("for {chat}"));
                let sent = client
                    .send(chat, body.clone(), (lane * 100_000 + k) as u64)
                    .await
                    .unwrap();
                out.push(Acked { sent, body });
            }
            out
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(
            tokio::time::timeout(Duration::from_secs(120), t)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(acked.len(), CLIENTS);

    // Everyone ends up connected, with their message, exactly once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for (i, d) in devices.iter_mut().enumerate() {
        let mut got = Vec::new();
        while got.is_empty() {
            match tokio::time::timeout_at(deadline, d.events.next()).await {
                Ok(Some(ClientEvent::Message { message, .. })) => got.push(message),
                Ok(Some(_)) => {}
                _ => panic!("client {i} never got its message"),
            }
        }
        let chat = chats[i];
        let mine: Vec<Acked> = acked
            .iter()
            .filter(|a| a.sent.chat_id == chat)
            .cloned()
            .collect();
        let problems = history::check(&mine, &[(format!("c{i}"), got)]);
        assert!(problems.is_empty(), "{problems:#?}");
    }
    for (i, d) in devices.iter().enumerate() {
        let snap = d.client.snapshot().await.unwrap();
        assert!(snap.connected, "client {i} is connected");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_per_address_cap_clients_are_told_when_to_come_back() {
    let server = TestServer::start_with(|c| {
        c.max_connections_per_ip = 2;
        c.overloaded_retry_after_ms = 300;
    })
    .await;
    let _a = server.login("+15550060001").await;
    let b = server.login("+15550060002").await;

    // A third connection from the same address is refused in protocol terms.
    let mut raw = RawConn::connect(server.addr, &server.fingerprint)
        .await
        .unwrap();
    raw.send_frame(&RawConn::hello(None)).await.unwrap();
    match raw.next(WAIT).await.unwrap() {
        Outcome::Frame(Frame::GoAway(g)) => {
            assert_eq!(g.reason, tern_sdk::protocol::GoAwayReason::Overloaded);
            assert_eq!(g.reconnect_after_ms, 300);
        }
        other => panic!("expected GoAway(Overloaded), got {other:?}"),
    }
    assert_eq!(
        raw.until_closed(WAIT).await.unwrap(),
        (Some(ErrorCode::Overloaded), Some(ErrorCode::Overloaded))
    );

    // An SDK client keeps honouring the hint and gets in once a place frees up.
    let (c, mut events) = Client::start(server.client_config()).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!c.snapshot().await.unwrap().connected, "no place yet");
    b.client.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(ClientEvent::Connected { .. })) => break,
            Ok(Some(_)) => {}
            _ => panic!("the waiting client never got in"),
        }
    }
    let text = admin_get(server.admin_addr(), "/metrics").await;
    assert!(text.contains("tern_frames_out_total{shard="), "{text}");
}
