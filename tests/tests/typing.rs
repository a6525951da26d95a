//! Typing indicators end to end, on a server with 2 shards: a typing indicator travels as a QUIC
//! datagram (checked on the raw connection, not through the SDK), across shards, falls back to
//! the control stream for a client that disabled datagrams, is dropped for non-members and over
//! the rate limit, never reaches the sender's own connections, and hostile datagrams cost
//! nothing but a counter.

#![allow(clippy::unwrap_used)]

#[path = "../src/ephemeral.rs"]
mod ephemeral;

use std::time::Duration;

use ephemeral::{EphemeralClient, Via, connections_per_shard, metric_value, token};
use tern_sdk::protocol::{ChatId, Request, Response, UserId};
use tern_tests::TestServer;

const QUIET: Duration = Duration::from_millis(600);
const SHARDS: usize = 2;

async fn two_shards() -> TestServer {
    TestServer::start_with(|c| {
        c.shards = Some(SHARDS);
        c.max_connections_per_device = 64;
    })
    .await
}

/// Users with access tokens and a direct chat between the first two; the SDK clients used to
/// log in are closed, so the raw connections are the only ones.
struct Setup {
    server: TestServer,
    tokens: Vec<String>,
    users: Vec<UserId>,
    chat: ChatId,
}

async fn setup(n: usize) -> Setup {
    let server = two_shards().await;
    let mut devices = Vec::new();
    for i in 0..n {
        devices.push(server.login(&format!("+1555300{i:04}")).await);
    }
    let chat = devices[0]
        .client
        .open_direct_chat(devices[1].session.user_id)
        .await
        .unwrap()
        .chat_id;
    let mut tokens = Vec::new();
    for d in &devices {
        tokens.push(token(d).await);
    }
    let users = devices.iter().map(|d| d.session.user_id).collect();
    for d in devices {
        d.client.close().await;
    }
    for _ in 0..200 {
        let open: f64 = connections_per_shard(server.admin_addr(), SHARDS)
            .await
            .iter()
            .sum();
        if open == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Setup {
        server,
        tokens,
        users,
        chat,
    }
}

impl Setup {
    /// Connects as user `i`; returns the connection and the shard it landed on.
    async fn connect(&self, i: usize, datagrams: bool) -> (EphemeralClient, usize) {
        let admin = self.server.admin_addr();
        let before = connections_per_shard(admin, SHARDS).await;
        let c = EphemeralClient::connect(
            self.server.addr,
            &self.server.fingerprint,
            &self.tokens[i],
            datagrams,
        )
        .await
        .unwrap();
        let after = connections_per_shard(admin, SHARDS).await;
        let shard = (0..SHARDS).find(|s| after[*s] > before[*s]).unwrap_or(0);
        (c, shard)
    }

    /// Connections of user `i` until one lands on a shard other than `not`; all are returned
    /// (the last one is on the other shard).
    async fn connect_elsewhere(&self, i: usize, not: usize) -> Vec<EphemeralClient> {
        let mut out = Vec::new();
        for _ in 0..16 {
            let (c, shard) = self.connect(i, true).await;
            out.push(c);
            if shard != not {
                return out;
            }
        }
        panic!("16 connections all landed on shard {not}");
    }

    async fn typing_metric(&self, result: &str) -> f64 {
        let series = format!("tern_typing_total{{result=\"{result}\"}}");
        metric_value(self.server.admin_addr(), &series).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typing_indicator_travels_as_a_datagram_across_shards_and_not_to_the_sender() {
    let s = setup(2).await;
    let (alice, alice_shard) = s.connect(0, true).await;
    let (mut alice2, _) = s.connect(0, true).await;
    let mut bobs = s.connect_elsewhere(1, alice_shard).await;
    assert!(
        alice.max_datagram_size().is_some(),
        "the server takes datagrams"
    );
    alice.typing_datagram(s.chat, true).unwrap();
    for (i, bob) in bobs.iter_mut().enumerate() {
        let got = bob.typing_events(QUIET).await;
        assert_eq!(got.len(), 1, "bob's connection {i}: {got:?}");
        let (event, via) = got[0];
        assert_eq!(via, Via::Datagram, "a typing indicator is a QUIC datagram");
        assert_eq!(event.chat_id, s.chat);
        assert_eq!(event.user_id, s.users[0]);
        assert!(event.typing);
        assert_eq!(event.ttl_ms, 6_000, "the configured ttl");
    }
    assert!(
        alice2.typing_events(QUIET).await.is_empty(),
        "typing never reaches the sender's own connections"
    );
    let text = tern_tests::child::admin_get(s.server.admin_addr(), "/metrics").await;
    let sum = |dir: &str| -> f64 {
        (0..SHARDS)
            .filter_map(|sh| {
                tern_tests::child::metric(
                    &text,
                    &format!("tern_datagrams_total{{shard=\"{sh}\",dir=\"{dir}\",result=\"ok\"}}"),
                )
            })
            .sum()
    };
    assert_eq!(sum("in"), 1.0, "{text}");
    assert_eq!(sum("out"), bobs.len() as f64);
    assert_eq!(s.typing_metric("delivered").await, bobs.len() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_datagrams_typing_falls_back_to_the_control_stream() {
    let s = setup(2).await;
    let (mut alice, _) = s.connect(0, true).await;
    let (mut bob, _) = s.connect(1, false).await;
    // Once as a datagram, once as `SetTyping` on alice's control stream.
    alice.typing_datagram(s.chat, true).unwrap();
    let got = bob.typing_events(QUIET).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, Via::Stream, "no datagrams: the control stream");
    let r = alice
        .request(Request::SetTyping {
            chat_id: s.chat,
            typing: false,
        })
        .await
        .unwrap();
    assert_eq!(r, Ok(Response::Done));
    let got = bob.typing_events(QUIET).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(!got[0].0.typing);
    assert_eq!(got[0].1, Via::Stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_and_typing_over_the_rate_are_dropped() {
    let s = setup(3).await;
    let (alice, _) = s.connect(0, true).await;
    let (mut bob, _) = s.connect(1, true).await;
    let (carol, _) = s.connect(2, true).await;
    carol.typing_datagram(s.chat, true).unwrap();
    assert!(
        bob.typing_events(QUIET).await.is_empty(),
        "carol is no member"
    );
    assert_eq!(s.typing_metric("dropped_not_member").await, 1.0);
    // Five starts and five stops at once: one of each gets through (1 per second each).
    for _ in 0..5 {
        alice.typing_datagram(s.chat, true).unwrap();
        alice.typing_datagram(s.chat, false).unwrap();
    }
    let got = bob.typing_events(QUIET).await;
    let starts = got.iter().filter(|(e, _)| e.typing).count();
    let stops = got.iter().filter(|(e, _)| !e.typing).count();
    assert_eq!((starts, stops), (1, 1), "{got:?}");
    assert_eq!(s.typing_metric("dropped_rate").await, 8.0);
    // After the interval, the next one goes out again.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    alice.typing_datagram(s.chat, true).unwrap();
    assert_eq!(bob.typing_events(QUIET).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_datagrams_are_dropped_and_counted_without_closing() {
    let s = setup(2).await;
    let (mut alice, shard) = s.connect(0, true).await;
    // Garbage, a server-to-client kind, and a flood over the per-connection rate.
    alice.raw_datagram(vec![0xff; 40]).unwrap();
    let event = tern_sdk::protocol::codec::encode_datagram(
        &tern_sdk::protocol::Datagram::TypingEvent(tern_sdk::protocol::TypingEvent {
            chat_id: s.chat,
            user_id: s.users[1],
            typing: true,
            ttl_ms: 1,
        }),
    )
    .unwrap();
    alice.raw_datagram(event).unwrap();
    for _ in 0..40 {
        alice.typing_datagram(ChatId(u64::MAX), true).unwrap();
    }
    tokio::time::sleep(QUIET).await;
    // The connection still answers.
    let r = alice.request(Request::Ping).await.unwrap();
    assert_eq!(r, Ok(Response::Pong));
    let admin = s.server.admin_addr();
    let series = |result: &str| {
        format!("tern_datagrams_total{{shard=\"{shard}\",dir=\"in\",result=\"{result}\"}}")
    };
    assert_eq!(metric_value(admin, &series("malformed")).await, 1.0);
    assert_eq!(metric_value(admin, &series("wrong_kind")).await, 1.0);
    assert!(metric_value(admin, &series("rate_limited")).await >= 1.0);
    // Before authentication a datagram is dropped too.
    let mut anon = tern_tests::raw::RawConn::connect(s.server.addr, &s.server.fingerprint)
        .await
        .unwrap();
    anon.send_frame(&tern_tests::raw::RawConn::hello(None))
        .await
        .unwrap();
    let _welcome = anon.next(Duration::from_secs(5)).await.unwrap();
    let bytes = tern_sdk::protocol::codec::encode_datagram(&tern_sdk::protocol::Datagram::Typing {
        chat_id: s.chat,
        typing: true,
    })
    .unwrap();
    anon.conn.send_datagram(bytes.into()).unwrap();
    let mut dropped = 0.0;
    for _ in 0..50 {
        let text = tern_tests::child::admin_get(admin, "/metrics").await;
        dropped = (0..SHARDS)
            .filter_map(|sh| {
                tern_tests::child::metric(
                    &text,
                    &format!(
                        "tern_datagrams_total{{shard=\"{sh}\",dir=\"in\",result=\"unauthenticated\"}}"
                    ),
                )
            })
            .sum();
        if dropped > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dropped, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_stops_typing_both_ways() {
    let s = setup(2).await;
    let (mut alice, _) = s.connect(0, true).await;
    let (mut bob, _) = s.connect(1, true).await;
    let r = bob
        .request(Request::Block {
            user_id: s.users[0],
        })
        .await
        .unwrap();
    assert_eq!(r, Ok(Response::Done));
    alice.typing_datagram(s.chat, true).unwrap();
    bob.typing_datagram(s.chat, true).unwrap();
    assert!(
        bob.typing_events(QUIET).await.is_empty(),
        "the blocker sees none"
    );
    assert!(
        alice.typing_events(QUIET).await.is_empty(),
        "the blocked sees none"
    );
    assert_eq!(s.typing_metric("dropped_policy").await, 2.0);
    assert_eq!(s.typing_metric("delivered").await, 0.0);
}
