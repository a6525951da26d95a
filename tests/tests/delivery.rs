//! The delivery contract end to end: several devices per user, offline sync, retries, receipts.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tern_sdk::ClientEvent;
use tern_sdk::protocol::{MessageBody, Receipt};
use tern_tests::history::{self, Acked};
use tern_tests::{TestServer, collect_messages, drain_messages, receive_all};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_with_two_devices_each_see_every_message_once_in_order() {
    let server = TestServer::start().await;
    let mut a1 = server.login("+15550000001").await;
    let mut a2 = server.login("+15550000001").await;
    let mut b1 = server.login("bob@example.org").await;
    let mut b2 = server.login("bob@example.org").await;
    assert_eq!(
        a1.session.user_id, a2.session.user_id,
        "same identifier, same user"
    );
    assert_ne!(
        a1.session.device_id, a2.session.device_id,
        "each login is a new device"
    );

    let chat = a1
        .client
        .open_direct_chat(b1.session.user_id)
        .await
        .unwrap();
    let same = b2
        .client
        .open_direct_chat(a2.session.user_id)
        .await
        .unwrap();
    assert_eq!(chat.chat_id, same.chat_id, "one direct chat per pair");

    // Every device sends concurrently.
    let mut tasks = Vec::new();
    for (name, dev) in [("a1", &a1), ("a2", &a2), ("b1", &b1), ("b2", &b2)] {
        let client = dev.client.clone();
        let chat_id = chat.chat_id;
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..25 {
                let body = MessageBody::Text(format!("{name}-{i}"));
                let sent = client.send(chat_id, body.clone(), rand_id()).await.unwrap();
                acked.push(Acked { sent, body });
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_eq!(acked.len(), 100);

    let mut received = Vec::new();
    for (name, dev) in [
        ("a1", &mut a1),
        ("a2", &mut a2),
        ("b1", &mut b1),
        ("b2", &mut b2),
    ] {
        received.push((
            name.to_owned(),
            receive_all(&mut dev.events, 100, WAIT).await,
        ));
    }
    let problems = history::check(&acked, &received);
    assert!(problems.is_empty(), "history violations: {problems:#?}");
    for (name, got) in &received {
        assert_eq!(got.len(), 100, "{name} saw every message exactly once");
    }
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed) ^ 0x5eed_0000_0000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_gets_everything_on_reconnect() {
    let server = TestServer::start().await;
    let a = server.login("+15550000011").await;
    let b_phone = server.login("+15550000012").await;
    let chat = a
        .client
        .open_direct_chat(b_phone.session.user_id)
        .await
        .unwrap()
        .chat_id;

    // The phone goes offline after saving where it was.
    let saved = b_phone.client.snapshot().await.unwrap();
    b_phone.client.close().await;

    let mut acked = Vec::new();
    for i in 0..600 {
        let body = MessageBody::Text(format!("while offline {i}"));
        let sent = a.client.send(chat, body.clone(), 10_000 + i).await.unwrap();
        acked.push(Acked { sent, body });
    }

    // It comes back with its tokens and cursor: sync fills in all 600 (several pages).
    let (client, mut events) = server.resume(&saved);
    let got = collect_messages(&mut events, 600, WAIT).await;
    let problems = history::check(&acked, &[("b-phone".into(), got.clone())]);
    assert!(problems.is_empty(), "history violations: {problems:#?}");
    assert_eq!(got.len(), 600);
    let snap = client.snapshot().await.unwrap();
    assert_eq!(
        snap.session,
        Some(b_phone.session),
        "resumed as the same device"
    );
    assert!(snap.sync.cursor.pts > saved.sync.cursor.pts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_send_does_not_duplicate() {
    let server = TestServer::start().await;
    let (a, mut b, chat) = server.pair("+15550000021", "+15550000022").await;
    let body = MessageBody::Text("only once".into());
    let first = a.client.send(chat, body.clone(), 777).await.unwrap();
    // The same idempotency key again, also across a reconnect.
    let second = a.client.send(chat, body.clone(), 777).await.unwrap();
    a.client.reconnect();
    let third = a.client.send(chat, body.clone(), 777).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(first, third);
    let next = a
        .client
        .send(chat, MessageBody::Text("next".into()), 778)
        .await
        .unwrap();
    assert_eq!(next.seq, first.seq + 1, "no row was created by the retries");
    let got = collect_messages(&mut b.events, 2, WAIT).await;
    let got_more = drain_messages(&mut b.events, Duration::from_millis(300)).await;
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![first.seq, next.seq]
    );
    assert!(
        got_more.is_empty(),
        "no duplicate arrived later: {got_more:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_reach_the_sender_and_only_move_forward() {
    let server = TestServer::start().await;
    let (mut a, mut b, chat) = server.pair("+15550000031", "+15550000032").await;
    let mut last = 0;
    for i in 0..5 {
        last = a
            .client
            .send(chat, MessageBody::Text(format!("{i}")), 50 + i)
            .await
            .unwrap()
            .seq;
    }
    // b's SDK acknowledges what it stored: a sees delivered reach the last seq.
    let got = collect_messages(&mut b.events, 5, WAIT).await;
    assert_eq!(got.len(), 5);
    b.client.mark_read(chat, 3).await.unwrap();
    // Going backwards is accepted but changes nothing.
    b.client.mark_read(chat, 1).await.unwrap();
    let beyond = b.client.mark_read(chat, last + 10).await.unwrap_err();
    assert_eq!(
        beyond.code(),
        Some(tern_sdk::protocol::ErrorCode::InvalidArgument)
    );

    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen: Vec<Receipt> = Vec::new();
    loop {
        let ev = tokio::time::timeout_at(deadline, a.events.next()).await;
        match ev {
            Ok(Some(ClientEvent::Receipt(r))) if r.user_id == b.session.user_id => {
                seen.push(r);
                if r.delivered_seq == last && r.read_seq == 3 {
                    break;
                }
            }
            Ok(Some(_)) => {}
            _ => panic!("sender never saw delivered={last} read=3; saw {seen:?}"),
        }
    }
    for w in seen.windows(2) {
        assert!(
            w[1].delivered_seq >= w[0].delivered_seq,
            "delivered went backwards: {seen:?}"
        );
        assert!(
            w[1].read_seq >= w[0].read_seq,
            "read went backwards: {seen:?}"
        );
    }
    for r in &seen {
        assert!(
            r.read_seq <= r.delivered_seq && r.delivered_seq <= last,
            "bad watermark {r:?}"
        );
    }
    let now = a.client.receipts(chat).await.unwrap();
    let rb = now.iter().find(|r| r.user_id == b.session.user_id).unwrap();
    assert_eq!((rb.delivered_seq, rb.read_seq), (last, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_large_messages_stay_within_the_frame_limit() {
    let server = TestServer::start().await;
    let (a, b, chat) = server.pair("+15550000041", "+15550000042").await;
    let saved = b.client.snapshot().await.unwrap();
    b.client.close().await;
    let big = "x".repeat(tern_sdk::protocol::limits::MAX_TEXT_LEN);
    let mut acked = Vec::new();
    for i in 0..12u64 {
        let body = MessageBody::Text(format!("{i}{}", &big[i.to_string().len()..]));
        let sent = a.client.send(chat, body.clone(), 900 + i).await.unwrap();
        acked.push(Acked { sent, body });
    }
    // A history page is cut to fit one frame instead of failing.
    let page = a.client.messages(chat, 1, 256).await.unwrap();
    assert!(
        !page.is_empty() && page.len() < 12,
        "page of {} large messages",
        page.len()
    );
    // Sync of the offline device walks size-bounded pages and gets all of them.
    let (_client, mut events) = server.resume(&saved);
    let got = collect_messages(&mut events, 12, WAIT).await;
    let problems = history::check(&acked, &[("b".into(), got)]);
    assert!(problems.is_empty(), "{problems:#?}");
}
