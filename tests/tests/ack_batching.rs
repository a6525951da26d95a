//! Delivery acks batched by the SDK (`ClientConfig::ack_delay`, issue 12): messages arriving in
//! the same chat within the delay share one `Ack`, the watermark still reaches the last of them,
//! and acks batched when the link drops are sent on the next link (the messages they cover do
//! not come again, so nothing else would ever acknowledge them).

#![allow(clippy::unwrap_used)]

#[path = "../src/ephemeral.rs"]
mod ephemeral;

use std::time::Duration;

use tern_sdk::protocol::{ChatId, Seq, UserId};
use tern_sdk::{Client, ClientEvent, Events};
use tern_tests::{Device, TestServer, login};

const WAIT: Duration = Duration::from_secs(15);

/// `ack` requests the server answered so far, on every shard.
async fn acks_answered(server: &TestServer) -> f64 {
    let mut total = 0.0;
    for shard in 0..4 {
        let series =
            format!("tern_requests_total{{shard=\"{shard}\",request=\"ack\",result=\"ok\"}}");
        total += ephemeral::metric_value(server.admin_addr(), &series).await;
    }
    total
}

/// A receiver logged in with its own `ack_delay`.
async fn receiver(server: &TestServer, identifier: &str, delay: Duration) -> Device {
    let mut config = server.client_config();
    config.ack_delay = delay;
    login(config, &server.otp_file(), identifier).await.unwrap()
}

/// Waits until `n` messages of `chat` have arrived.
async fn receive(events: &mut Events, chat: ChatId, n: usize) -> Vec<Seq> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seqs = Vec::new();
    while seqs.len() < n {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(ClientEvent::Message { message, own, .. }))
                if !own && message.chat_id == chat =>
            {
                seqs.push(message.seq)
            }
            Ok(Some(_)) => {}
            other => panic!("{} of {n} messages, then {other:?}", seqs.len()),
        }
    }
    seqs
}

/// The receiver's delivered watermark as the sender reads it, once it reaches `upto`.
async fn delivered_reaches(sender: &Client, chat: ChatId, who: UserId, upto: Seq) -> Seq {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = sender
            .receipts(chat)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.user_id == who)
            .map_or(0, |r| r.delivered_seq);
        if seen >= upto || tokio::time::Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send_spaced(sender: &Client, chat: ChatId, n: usize, gap: Duration) -> Seq {
    let mut last = 0;
    for i in 0..n {
        last = sender.send_text(chat, format!("m{i}")).await.unwrap().seq;
        tokio::time::sleep(gap).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_within_the_delay_share_one_ack() {
    let server = TestServer::start().await;
    let sender = server.login("+15551700001").await;
    let mut rx = receiver(&server, "+15551700002", Duration::from_millis(800)).await;
    let rx_id = rx.session.user_id;
    let chat = sender.client.open_direct_chat(rx_id).await.unwrap().chat_id;
    let before = acks_answered(&server).await;
    let last = send_spaced(&sender.client, chat, 5, Duration::from_millis(30)).await;
    assert_eq!(receive(&mut rx.events, chat, 5).await.len(), 5);
    assert_eq!(
        delivered_reaches(&sender.client, chat, rx_id, last).await,
        last,
        "the batched ack covers the last message"
    );
    let acks = acks_answered(&server).await - before;
    assert!(
        (1.0..=2.0).contains(&acks),
        "5 messages 30 ms apart inside an 800 ms delay: {acks} acks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_delay_each_drain_acks() {
    let server = TestServer::start().await;
    let sender = server.login("+15551700011").await;
    let mut rx = receiver(&server, "+15551700012", Duration::ZERO).await;
    let rx_id = rx.session.user_id;
    let chat = sender.client.open_direct_chat(rx_id).await.unwrap().chat_id;
    let before = acks_answered(&server).await;
    let last = send_spaced(&sender.client, chat, 5, Duration::from_millis(150)).await;
    receive(&mut rx.events, chat, 5).await;
    assert_eq!(
        delivered_reaches(&sender.client, chat, rx_id, last).await,
        last
    );
    let acks = acks_answered(&server).await - before;
    assert!(
        acks >= 4.0,
        "5 messages 150 ms apart, no delay: {acks} acks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_batched_when_the_link_drops_go_on_the_next_link() {
    let server = TestServer::start().await;
    let sender = server.login("+15551700021").await;
    // Longer than the wait below: only the flush on the next link can deliver the ack in time.
    let mut rx = receiver(&server, "+15551700022", Duration::from_secs(60)).await;
    let rx_id = rx.session.user_id;
    let chat = sender.client.open_direct_chat(rx_id).await.unwrap().chat_id;
    let last = send_spaced(&sender.client, chat, 3, Duration::ZERO).await;
    receive(&mut rx.events, chat, 3).await;
    // The acks are batched for 60 s; the link goes now.
    rx.client.reconnect();
    assert_eq!(
        delivered_reaches(&sender.client, chat, rx_id, last).await,
        last,
        "the batch went out on the next link"
    );
}
