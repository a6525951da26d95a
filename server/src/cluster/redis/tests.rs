//! Bus tests against a real Redis (`TERN_TEST_REDIS`, started by `scripts/services.sh`): two
//! bus instances ("nodes") in one process, each with its own router, its shard inbox read
//! directly.
//!
//! Each test uses its own key prefix so they run in parallel; the flush test uses its own
//! database so its `FLUSHDB` touches nobody else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_protocol::{ChatId, DeviceId, ErrorCode, Update, UpdateKind, UserId};

use super::{Bus, BusSettings};
use crate::cluster::RedisTarget;
use crate::cluster::envelope::{Body, Envelope};
use crate::metrics::Metrics;
use crate::presence::typing::EncodedTyping;
use crate::router::{Control, DeliveryKind, Router, RouterLimits, ShardInbox};
use crate::storage::UpdateSink;

/// The Redis to test against; `None` (after a loud line) when unset outside CI.
fn redis_url() -> Option<String> {
    match std::env::var("TERN_TEST_REDIS") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "TERN_TEST_REDIS is not set in CI: run scripts/services.sh first"
            );
            eprintln!(
                "\n*** SKIPPED: TERN_TEST_REDIS is not set (scripts/services.sh starts Redis) ***\n"
            );
            None
        }
    }
}

fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("tern-test-{test}-{nanos}")
}

struct Node {
    router: Arc<Router>,
    inbox: ShardInbox,
    bus: Option<Bus>,
    metrics: Metrics,
}

fn settings(url: &str, prefix: &str, name: &str) -> BusSettings {
    let mut s = BusSettings::new(
        name.into(),
        RedisTarget::parse(url).unwrap_or_else(|e| panic!("{e}")),
        format!("{name}:4433"),
    );
    s.prefix = prefix.into();
    s.heartbeat = Duration::from_millis(200);
    s.node_ttl = Duration::from_secs(2);
    s.link_heartbeat = Duration::from_millis(200);
    s.silent_after = Duration::from_millis(1_500);
    s.refresh = Duration::from_secs(1);
    s
}

fn node(url: &str, prefix: &str, name: &str) -> Node {
    let metrics = Metrics::new(1);
    let (router, mut inboxes) = Router::new(1, RouterLimits::default(), metrics.clone());
    let router = Arc::new(router);
    let bus = Bus::start(
        settings(url, prefix, name),
        router.clone(),
        metrics.cluster.clone(),
    )
    .unwrap_or_else(|e| panic!("bus: {e}"));
    let inbox = inboxes.remove(0);
    Node {
        router,
        inbox,
        bus: Some(bus),
        metrics,
    }
}

impl Node {
    fn bus(&self) -> &Bus {
        self.bus.as_ref().unwrap_or_else(|| panic!("bus stopped"))
    }

    /// Waits for the next control message.
    async fn control(&mut self, within: Duration) -> Option<Control> {
        tokio::time::timeout(within, self.inbox.control.recv())
            .await
            .ok()
            .flatten()
    }
}

async fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two nodes that know each other.
async fn pair(url: &str, test: &str) -> (Node, Node) {
    let p = prefix(test);
    let a = node(url, &p, "a");
    let b = node(url, &p, "b");
    eventually("the nodes find each other", Duration::from_secs(5), || {
        a.bus().peers().iter().any(|n| &**n == "b") && b.bus().peers().iter().any(|n| &**n == "a")
    })
    .await;
    (a, b)
}

fn update(pts: u64) -> Update {
    Update {
        pts,
        kind: UpdateKind::ChatLeft {
            chat_id: ChatId(1),
            at_seq: pts,
        },
    }
}

/// A plain connection for a test's own commands.
async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap_or_else(|e| panic!("{e}"));
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn publish(url: &str, channel: &str, env: &Envelope) {
    let mut c = redis_conn(url).await;
    let bytes = env.encode().unwrap_or_else(|e| panic!("{e}"));
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(bytes)
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

fn counter(m: &Metrics, line: &str) -> bool {
    m.render().lines().any(|l| l == line)
}

#[tokio::test]
async fn updates_and_typing_cross_nodes_after_an_announcement() {
    let Some(url) = redis_url() else { return };
    let (mut a, b) = pair(&url, "deliver").await;
    let user = UserId(1);
    a.router.attach(user, 0);
    eventually(
        "b learns that a hosts user 1",
        Duration::from_secs(3),
        || b.router.is_connected(user),
    )
    .await;
    assert!(!b.router.is_local(user));
    b.router.committed(&[
        (user, update(1)),
        (UserId(99), update(1)),
        (user, update(2)),
    ]);
    let mut got = Vec::new();
    while got.len() < 2 {
        let d = tokio::time::timeout(Duration::from_secs(3), a.inbox.deliveries.recv())
            .await
            .unwrap_or_else(|_| panic!("delivery {} did not arrive", got.len() + 1))
            .unwrap_or_else(|| panic!("inbox closed"));
        assert_eq!(d.user, user);
        assert!(matches!(d.kind, DeliveryKind::Update));
        got.push(d.frame);
    }
    assert_ne!(got[0], got[1], "in commit order, each its own frame");
    let typing = EncodedTyping::new(tern_protocol::TypingEvent {
        chat_id: ChatId(1),
        user_id: UserId(2),
        typing: true,
        ttl_ms: 6_000,
    })
    .unwrap_or_else(|| panic!("encodes"));
    b.router.post_typing(user, &typing);
    let d = tokio::time::timeout(Duration::from_secs(3), a.inbox.deliveries.recv())
        .await
        .ok()
        .flatten();
    assert!(matches!(
        d.map(|d| d.kind),
        Some(DeliveryKind::Typing { .. })
    ));
    // The last connection goes: b stops sending.
    a.router.detach(user, 0);
    eventually(
        "b learns that user 1 left a",
        Duration::from_secs(3),
        || !b.router.is_connected(user),
    )
    .await;
    assert!(
        counter(&a.metrics, "tern_cluster_gaps_total 0"),
        "{}",
        a.metrics.render()
    );
}

#[tokio::test]
async fn a_skipped_sequence_number_and_a_lost_tail_resync_local_users() {
    let Some(url) = redis_url() else { return };
    let p = prefix("gap");
    let mut a = node(&url, &p, "a");
    let user = UserId(5);
    a.router.attach(user, 0);
    eventually("a is subscribed", Duration::from_secs(3), || {
        counter(&a.metrics, "tern_cluster_bus_up 1")
    })
    .await;
    let channel = format!("{p}:ch:a");
    let env = |seq, body| Envelope {
        from: "x".into(),
        boot: 1,
        seq,
        body,
    };
    publish(&url, &channel, &env(0, Body::Heartbeat)).await;
    publish(&url, &channel, &env(1, Body::Updates(vec![]))).await;
    // Seq 2 never arrives.
    publish(&url, &channel, &env(3, Body::Updates(vec![]))).await;
    assert!(matches!(
        a.control(Duration::from_secs(3)).await,
        Some(Control::Overflow)
    ));
    assert!(a.router.take_overflow(0).contains(&user), "user 5 resyncs");
    assert!(
        counter(&a.metrics, "tern_cluster_gaps_total 1"),
        "{}",
        a.metrics.render()
    );
    // A heartbeat says 4 was sent: the tail was lost.
    publish(&url, &channel, &env(4, Body::Heartbeat)).await;
    assert!(matches!(
        a.control(Duration::from_secs(3)).await,
        Some(Control::Overflow)
    ));
    assert!(a.router.take_overflow(0).contains(&user));
    assert!(counter(&a.metrics, "tern_cluster_gaps_total 2"));
    // In step again: nothing more. Then x goes silent without a Bye: a dead sender.
    publish(&url, &channel, &env(5, Body::Updates(vec![]))).await;
    assert!(
        matches!(
            a.control(Duration::from_secs(4)).await,
            Some(Control::Overflow)
        ),
        "silence is a gap"
    );
    assert!(
        counter(&a.metrics, "tern_cluster_gaps_total 3"),
        "{}",
        a.metrics.render()
    );
}

#[tokio::test]
async fn redis_flushed_empty_is_detected_and_the_node_registers_again() {
    let Some(url) = redis_url() else { return };
    let url = format!("{}/9", url.trim_end_matches('/'));
    let (mut a, b) = pair(&url, "flush").await;
    let user = UserId(7);
    a.router.attach(user, 0);
    eventually("b learns user 7", Duration::from_secs(3), || {
        b.router.is_connected(user)
    })
    .await;
    let mut c = redis_conn(&url).await;
    let _: () = redis::cmd("FLUSHDB")
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // a notices at its next heartbeat, registers again and resyncs its devices.
    assert!(matches!(
        a.control(Duration::from_secs(3)).await,
        Some(Control::Overflow)
    ));
    assert!(a.router.take_overflow(0).contains(&user));
    let key = format!("{}:{{a}}:users", a.bus().shared.settings.prefix);
    let mut back = false;
    for _ in 0..100 {
        let n: i64 = redis::cmd("SISMEMBER")
            .arg(&key)
            .arg(7)
            .query_async(&mut c)
            .await
            .unwrap_or(0);
        if n == 1 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(back, "user 7 is in a's directory again");
    assert!(b.router.is_connected(user), "b still reaches user 7");
    assert!(!counter(&a.metrics, "tern_cluster_resyncs_total 0"));
}

#[tokio::test]
async fn a_revocation_reaches_the_node_holding_the_connection() {
    let Some(url) = redis_url() else { return };
    let (mut a, b) = pair(&url, "revoke").await;
    let user = UserId(3);
    a.router.attach(user, 0);
    eventually("b learns user 3", Duration::from_secs(3), || {
        b.router.is_connected(user)
    })
    .await;
    b.router
        .close_device(user, DeviceId(4), ErrorCode::DeviceRevoked);
    match a.control(Duration::from_secs(3)).await {
        Some(Control::CloseDevice {
            user: u,
            device,
            code,
        }) => {
            assert_eq!(
                (u, device, code),
                (user, DeviceId(4), ErrorCode::DeviceRevoked)
            );
        }
        other => panic!("expected CloseDevice, got {other:?}"),
    }
}

#[tokio::test]
async fn a_clean_shutdown_says_bye_and_a_killed_node_is_a_gap() {
    let Some(url) = redis_url() else { return };
    let p = prefix("bye");
    let mut a = node(&url, &p, "a");
    let mut b = node(&url, &p, "b");
    let c = node(&url, &p, "c");
    eventually("the nodes find each other", Duration::from_secs(5), || {
        a.bus().peers().len() == 2 && b.bus().peers().len() == 2 && c.bus().peers().len() == 2
    })
    .await;
    // Attached after a registered: no resync for that (see the test below).
    a.router.attach(UserId(1), 0);
    if let Some(bus) = c.bus {
        bus.shutdown().await;
    }
    eventually("a forgets c", Duration::from_secs(3), || {
        a.bus().peers().len() == 1
    })
    .await;
    assert!(
        a.control(Duration::from_secs(3)).await.is_none(),
        "a clean goodbye costs no resync"
    );
    if let Some(bus) = b.bus.take() {
        bus.kill();
    }
    assert!(
        matches!(
            a.control(Duration::from_secs(4)).await,
            Some(Control::Overflow)
        ),
        "b died silently"
    );
    assert!(a.router.take_overflow(0).contains(&UserId(1)));
    drop(b.inbox.control.try_recv());
}

#[tokio::test]
async fn with_redis_unreachable_local_delivery_is_unaffected() {
    // No Redis needed: a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(1);
    let mut a = node(&format!("redis://127.0.0.1:{port}"), &prefix("down"), "a");
    let user = UserId(11);
    a.router.attach(user, 0);
    a.router.committed(&[(user, update(1))]);
    let d = tokio::time::timeout(Duration::from_secs(1), a.inbox.deliveries.recv())
        .await
        .ok()
        .flatten();
    assert!(
        matches!(d.map(|d| d.kind), Some(DeliveryKind::Update)),
        "delivered locally at once"
    );
    eventually("the failures are counted", Duration::from_secs(5), || {
        !counter(&a.metrics, "tern_cluster_redis_errors_total 0")
    })
    .await;
    assert!(counter(&a.metrics, "tern_cluster_bus_up 0"));
    if let Some(bus) = a.bus.take() {
        tokio::time::timeout(Duration::from_secs(10), bus.shutdown())
            .await
            .unwrap_or_else(|_| panic!("shutdown is bounded with Redis down"));
    }
}

/// The delivery and revocation paths on Redis Cluster (`TERN_TEST_REDIS_CLUSTER=
/// redis+cluster://H1:P1,…`): commands through the cluster client, classic pub/sub read from the
/// first seed. Skipped (loudly) without one.
#[tokio::test]
async fn on_redis_cluster_updates_and_revocations_cross_nodes() {
    let Ok(url) = std::env::var("TERN_TEST_REDIS_CLUSTER") else {
        eprintln!("\n*** SKIPPED: TERN_TEST_REDIS_CLUSTER is not set (a Redis Cluster) ***\n");
        return;
    };
    let (mut a, b) = pair(&url, "rcluster").await;
    let user = UserId(21);
    a.router.attach(user, 0);
    eventually("b learns user 21", Duration::from_secs(3), || {
        b.router.is_connected(user)
    })
    .await;
    b.router.committed(&[(user, update(1))]);
    let d = tokio::time::timeout(Duration::from_secs(3), a.inbox.deliveries.recv())
        .await
        .ok()
        .flatten();
    assert!(matches!(d.map(|d| d.kind), Some(DeliveryKind::Update)));
    b.router
        .close_device(user, DeviceId(1), ErrorCode::DeviceRevoked);
    assert!(matches!(
        a.control(Duration::from_secs(3)).await,
        Some(Control::CloseDevice { .. })
    ));
}

#[tokio::test]
async fn devices_attached_before_the_first_registration_resync() {
    let Some(url) = redis_url() else { return };
    let p = prefix("early");
    // Attached before the bus tasks ran: the other nodes could not know of this user, so
    // anything they committed for it meanwhile was never sent; the device must sync.
    let mut a = node(&url, &p, "a");
    a.router.attach(UserId(1), 0);
    match a.control(Duration::from_secs(5)).await {
        Some(Control::Overflow) => {}
        other => panic!("expected a resync of the early device, got {other:?}"),
    }
    // A node with nobody attached at registration does not resync.
    let mut b = node(&url, &p, "b");
    eventually("b registers", Duration::from_secs(5), || {
        b.bus().peers().len() == 1
    })
    .await;
    assert!(
        b.control(Duration::from_secs(1)).await.is_none(),
        "nobody to resync"
    );
}

#[tokio::test]
async fn presence_crosses_nodes_heals_from_redis_and_leaves_with_a_dead_node() {
    let Some(url) = redis_url() else { return };
    let (a, b) = pair(&url, "presence").await;
    let (alice, bob) = (UserId(1), UserId(2));
    let seen_on_b = |u: UserId| b.bus().cluster().presence().remote_online(u);
    a.bus().cluster().local_presence(&[(alice, true)]);
    eventually("b hears alice came online", Duration::from_secs(3), || {
        seen_on_b(alice)
    })
    .await;
    assert!(
        !a.bus().cluster().presence().remote_online(alice),
        "a node is never remote to itself"
    );
    a.bus().cluster().local_presence(&[(alice, false)]);
    eventually("b hears alice went offline", Duration::from_secs(3), || {
        !seen_on_b(alice)
    })
    .await;
    // A transition whose envelope was lost: only Redis has it. The refresh brings it.
    let mut c = redis_conn(&url).await;
    let online_key = a.bus().shared.settings.online_key("a");
    let _: i64 = redis::cmd("SADD")
        .arg(&online_key)
        .arg(bob.0)
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually(
        "b's refresh reads bob from Redis",
        Duration::from_secs(4),
        || seen_on_b(bob),
    )
    .await;
    assert!(!seen_on_b(alice));
    a.bus().cluster().local_presence(&[(alice, true)]);
    eventually("alice online again", Duration::from_secs(3), || {
        seen_on_b(alice)
    })
    .await;
    let mut a = a;
    if let Some(bus) = a.bus.take() {
        bus.kill();
    }
    eventually(
        "a dead node shows nobody online",
        Duration::from_secs(8),
        || !seen_on_b(alice) && !seen_on_b(bob),
    )
    .await;
}
