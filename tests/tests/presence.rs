//! Presence end to end: a snapshot then changes, the debounce under a reconnect storm of one
//! user (the watcher sees at most a change or two and ends with the truth), the watch bound,
//! foreground and background, privacy (Nobody → Hidden), and a hub left empty once every
//! connection has closed. Watchers are SDK clients; the flapping user is a raw connection, so
//! a "reconnect" is exactly one QUIC connection coming and going.

#![allow(clippy::unwrap_used)]

#[path = "../src/ephemeral.rs"]
mod ephemeral;

use std::time::{Duration, Instant};

use ephemeral::{EphemeralClient, metric_value, token};
use tern_sdk::protocol::{Audience, ErrorCode, Presence, PresenceState, PrivacySettings, UserId};
use tern_sdk::{ClientEvent, Error, Events};
use tern_tests::{Device, TestServer};

/// The server's default debounce.
const DEBOUNCE: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(15);

async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.max_connections_per_device = 64;
        c.presence.max_watch = 8;
    })
    .await
}

/// Lets `a` and `b` see each other's presence (both audiences are Contacts by default and
/// reciprocal, so each adds the other).
async fn contacts(a: &Device, b: &Device) {
    for (x, y) in [(a, b), (b, a)] {
        match x.client.add_contact(y.session.user_id).await {
            Ok(()) => {}
            // Before the social service lands every user sees every other.
            Err(Error::Server(e)) if e.message == "not built yet" => {}
            Err(e) => panic!("add_contact: {e}"),
        }
    }
}

/// A server, a watcher alice and a watched bob who are each other's contacts, and bob's id.
async fn pair(n: u32) -> (TestServer, Device, Device, UserId) {
    let server = server().await;
    let alice = server.login(&format!("+155540{n:04}1")).await;
    let bob = server.login(&format!("+155540{n:04}2")).await;
    contacts(&alice, &bob).await;
    let bob_id = bob.session.user_id;
    (server, alice, bob, bob_id)
}

/// Presence events for `user` until `quiet` passes with no event at all.
async fn presence_of(events: &mut Events, user: UserId, quiet: Duration) -> Vec<PresenceState> {
    let mut out = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(quiet, events.next()).await {
        if let ClientEvent::Presence(Presence { user_id, state }) = ev
            && user_id == user
        {
            out.push(state);
        }
    }
    out
}

/// Waits for the first presence event of `user`.
async fn next_presence(events: &mut Events, user: UserId) -> PresenceState {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(ClientEvent::Presence(p))) if p.user_id == user => return p.state,
            Ok(Some(_)) => {}
            other => panic!("no presence event for {user:?}: {other:?}"),
        }
    }
}

async fn raw(server: &TestServer, token: &str) -> EphemeralClient {
    EphemeralClient::connect(server.addr, &server.fingerprint, token, true)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_answers_a_snapshot_then_each_change() {
    let (server, mut alice, bob, bob_id) = pair(0).await;
    let stranger = UserId(123_456_789);
    let snap = alice
        .client
        .watch_presence(vec![bob_id, stranger, bob_id])
        .await
        .unwrap();
    assert_eq!(
        snap,
        vec![
            Presence {
                user_id: bob_id,
                state: PresenceState::Online
            },
            Presence {
                user_id: stranger,
                state: PresenceState::Hidden
            },
        ],
        "duplicates collapse; a user never seen is Hidden"
    );
    let closed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let went = Instant::now();
    bob.client.close().await;
    let state = next_presence(&mut alice.events, bob_id).await;
    let PresenceState::LastSeen { at_ms } = state else {
        panic!("expected LastSeen, got {state:?}");
    };
    assert!(
        at_ms + 1_000 >= closed_at && at_ms <= closed_at + 2_000,
        "{at_ms} vs {closed_at}"
    );
    assert!(
        went.elapsed() >= DEBOUNCE - Duration::from_millis(200),
        "going offline is published only after the debounce"
    );
    // Back online: published at once (the last change is older than the debounce by now).
    tokio::time::sleep(DEBOUNCE).await;
    let bob_again = server.login("+15554000002").await;
    let came = Instant::now();
    assert_eq!(
        next_presence(&mut alice.events, bob_id).await,
        PresenceState::Online
    );
    assert!(
        came.elapsed() < DEBOUNCE,
        "coming online is published at once"
    );
    assert!(
        presence_of(&mut alice.events, bob_id, Duration::from_millis(500))
            .await
            .is_empty(),
        "one event per change"
    );
    drop(bob_again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_shows_at_most_one_change_and_ends_with_the_truth() {
    let (server, mut alice, bob, bob_id) = pair(1).await;
    let bob_token = token(&bob).await;
    // Bob's one connection is a raw one from now on.
    let first = raw(&server, &bob_token).await;
    bob.client.close().await;
    let snap = alice.client.watch_presence(vec![bob_id]).await.unwrap();
    assert_eq!(snap[0].state, PresenceState::Online);
    // Let the last publish age past the debounce, so the storm starts from a settled state.
    tokio::time::sleep(DEBOUNCE + Duration::from_millis(500)).await;
    assert!(
        presence_of(&mut alice.events, bob_id, Duration::from_millis(100))
            .await
            .is_empty()
    );

    // 20 disconnect/reconnect cycles within about 2 s, ending connected: where bob began.
    let started = Instant::now();
    let mut conn = first;
    let mut old = Vec::new();
    for _ in 0..20 {
        conn.close();
        old.push(conn);
        tokio::time::sleep(Duration::from_millis(30)).await;
        conn = raw(&server, &bob_token).await;
    }
    let storm = started.elapsed();
    let seen = presence_of(&mut alice.events, bob_id, DEBOUNCE + Duration::from_secs(1)).await;
    assert!(
        seen.len() <= 1,
        "a storm of {storm:?} that ends online shows at most one change: {seen:?}"
    );
    assert_eq!(
        seen.last().copied().unwrap_or(PresenceState::Online),
        PresenceState::Online,
        "the watcher's view is the truth: online"
    );

    // A second storm that ends disconnected: one change, LastSeen, after the debounce.
    for _ in 0..10 {
        conn.close();
        old.push(conn);
        tokio::time::sleep(Duration::from_millis(30)).await;
        conn = raw(&server, &bob_token).await;
    }
    conn.close();
    old.push(conn);
    let seen = presence_of(&mut alice.events, bob_id, DEBOUNCE + Duration::from_secs(1)).await;
    assert!(seen.len() <= 2, "{seen:?}");
    let last = *seen.last().unwrap();
    assert!(matches!(last, PresenceState::LastSeen { .. }), "{seen:?}");
    // The truth, asked afresh, is what the watcher ended with.
    let fresh = alice.client.watch_presence(vec![bob_id]).await.unwrap();
    assert_eq!(fresh[0].state, last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_more_than_the_bound_is_too_large() {
    let server = server().await;
    let alice = server.login("+15554000021").await;
    let many: Vec<UserId> = (1..=9).map(UserId).collect();
    match alice.client.watch_presence(many).await {
        Err(Error::Server(e)) => assert_eq!(e.code, ErrorCode::TooLarge, "{e:?}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Eight distinct users (with repeats) are within the bound.
    let mut eight: Vec<UserId> = (1..=8).map(UserId).collect();
    eight.extend((1..=8).map(UserId));
    assert_eq!(alice.client.watch_presence(eight).await.unwrap().len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_is_offline_and_the_foreground_online() {
    let (server, mut alice, bob, bob_id) = pair(3).await;
    alice.client.watch_presence(vec![bob_id]).await.unwrap();
    bob.client.set_foreground(false).unwrap();
    let state = next_presence(&mut alice.events, bob_id).await;
    assert!(matches!(state, PresenceState::LastSeen { .. }), "{state:?}");
    tokio::time::sleep(DEBOUNCE).await;
    bob.client.set_foreground(true).unwrap();
    assert_eq!(
        next_presence(&mut alice.events, bob_id).await,
        PresenceState::Online
    );
    // A second foreground device keeps bob online while the first goes to the background.
    let bob2 = server.login("+15554000032").await;
    bob.client.set_foreground(false).unwrap();
    assert!(
        presence_of(
            &mut alice.events,
            bob_id,
            DEBOUNCE + Duration::from_millis(800)
        )
        .await
        .is_empty(),
        "bob is still online on his other device"
    );
    drop(bob2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_hides_presence_end_to_end() {
    let (_server, mut alice, bob, bob_id) = pair(4).await;
    let snap = alice.client.watch_presence(vec![bob_id]).await.unwrap();
    assert_eq!(snap[0].state, PresenceState::Online);
    bob.client
        .set_privacy(PrivacySettings {
            last_seen: Audience::Nobody,
            online: Audience::Nobody,
            ..PrivacySettings::default()
        })
        .await
        .unwrap();
    assert_eq!(
        next_presence(&mut alice.events, bob_id).await,
        PresenceState::Hidden,
        "the running watch hears the new setting"
    );
    let snap = alice.client.watch_presence(vec![bob_id]).await.unwrap();
    assert_eq!(
        snap[0].state,
        PresenceState::Hidden,
        "online and last seen: nobody"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_hides_presence_both_ways() {
    let (_server, mut alice, bob, bob_id) = pair(5).await;
    let alice_id = alice.session.user_id;
    let snap = alice.client.watch_presence(vec![bob_id]).await.unwrap();
    assert_eq!(snap[0].state, PresenceState::Online);
    bob.client.block(alice_id).await.unwrap();
    assert_eq!(
        next_presence(&mut alice.events, bob_id).await,
        PresenceState::Hidden,
        "a running watch hides the blocker at once, not at their next change"
    );
    let snap = alice.client.watch_presence(vec![bob_id]).await.unwrap();
    assert_eq!(
        snap[0].state,
        PresenceState::Hidden,
        "the blocked sees nothing"
    );
    let snap = bob.client.watch_presence(vec![alice_id]).await.unwrap();
    assert_eq!(snap[0].state, PresenceState::Hidden, "nor does the blocker");
    // Bob goes away: alice's view stays Hidden, so she is told nothing at all.
    bob.client.close().await;
    let seen = presence_of(&mut alice.events, bob_id, DEBOUNCE + Duration::from_secs(1)).await;
    assert!(seen.is_empty(), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_seen_survives_a_restart() {
    let (mut server, mut alice, bob, bob_id) = pair(6).await;
    alice.client.watch_presence(vec![bob_id]).await.unwrap();
    bob.client.close().await;
    let PresenceState::LastSeen { at_ms } = next_presence(&mut alice.events, bob_id).await else {
        panic!("expected LastSeen");
    };
    alice.client.close().await;
    // A graceful restart on the same data directory: last seen was flushed at shutdown and
    // is read back lazily by the new process.
    server.server.take().unwrap().shutdown().await;
    let mut config = tern_tests::test_config(server.dir.path());
    config.max_connections_per_device = 64;
    let restarted = tern_server::RunningServer::start(config).await.unwrap();
    let cfg = tern_tests::client_config(restarted.quic_addr, &restarted.cert_fingerprint);
    let alice = tern_tests::login(cfg, &server.otp_file(), "+15554000061")
        .await
        .unwrap();
    let snap = alice.client.watch_presence(vec![bob_id]).await.unwrap();
    assert_eq!(snap[0].state, PresenceState::LastSeen { at_ms });
    alice.client.close().await;
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_end_with_their_connections() {
    let server = server().await;
    let admin = server.admin_addr();
    let mut watchers = Vec::new();
    for i in 0..4 {
        let w = server.login(&format!("+155540001{i:02}")).await;
        let targets = (0..6).map(|k| UserId(1_000 + i * 10 + k)).collect();
        w.client.watch_presence(targets).await.unwrap();
        watchers.push(w);
    }
    let gauge = "tern_presence_watched_users";
    assert_eq!(metric_value(admin, gauge).await, 24.0);
    for w in watchers {
        w.client.close().await;
    }
    let mut left = -1.0;
    for _ in 0..100 {
        left = metric_value(admin, gauge).await;
        if left == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0.0, "no watch outlives its connection");
}
