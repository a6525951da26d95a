//! Cluster mode end to end: two (and three) `tern-server` processes sharing Cassandra (`TERN_TEST_CQL`) and
//! Redis (`TERN_TEST_REDIS`), both started by `scripts/services.sh`. Users on different nodes
//! exchange 1:1 and group messages (what arrives is compared with what was acknowledged),
//! typing and revocations cross nodes, a `kill -9` of one node loses nothing its clients were
//! told was sent, and a Redis `FLUSHDB` in the middle of traffic loses nothing either.
//! Presence is aggregated: a watcher on one node sees a user connected to another come and
//! go, also when that node dies.
//!
//! Each test has its own keyspace and its own Redis database, so they run side by side.

use std::collections::BTreeMap;
use std::time::Duration;

use tern_sdk::protocol::{
    Audience, ChatId, ErrorCode, MessageBody, PresenceState, PrivacySettings, Seq, UserId,
};
use tern_sdk::{Client, ClientEvent, Events};
use tern_tests::child::{ChildServer, admin_get, metric};
use tern_tests::{Device, client_config, login};

const WAIT: Duration = Duration::from_secs(30);

/// Redis URL and CQL host, or `None` after a loud skip line (a failure under `CI`).
fn services() -> Option<(String, String)> {
    match (
        std::env::var("TERN_TEST_REDIS"),
        std::env::var("TERN_TEST_CQL"),
    ) {
        (Ok(r), Ok(c)) if !r.is_empty() && !c.is_empty() => Some((r, c)),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "TERN_TEST_REDIS and TERN_TEST_CQL must be set in CI (scripts/services.sh)"
            );
            eprintln!(
                "\n*** SKIPPED: cluster tests need TERN_TEST_REDIS and TERN_TEST_CQL (scripts/services.sh) ***\n"
            );
            None
        }
    }
}

/// The server binary (`cluster` and `cql` are default features): prebuilt by `scripts/test.sh`
/// like every child-process test's, so no test rebuilds it under the others' feet.
fn build_server() {
    tern_tests::child::ensure_binary();
}

/// One cluster at a time: two cores running up to three nodes each for four tests at once,
/// beside Cassandra, starve the nodes' bus tasks for seconds.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    _serial: tokio::sync::MutexGuard<'static, ()>,
    nodes: Vec<ChildServer>,
    redis: String,
    cql: String,
    keyspace: String,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    /// Two nodes on keyspace `tern_e2e_{name}_*` and Redis database `db`.
    async fn start(name: &str, db: u32) -> Option<Cluster> {
        Cluster::start_n(name, db, 2).await
    }

    /// `count` nodes on keyspace `tern_e2e_{name}_*` and Redis database `db`.
    async fn start_n(name: &str, db: u32, count: usize) -> Option<Cluster> {
        Cluster::start_with(name, db, count, &[]).await
    }

    /// `count` nodes, each also given the server flags `extra`.
    async fn start_with(name: &str, db: u32, count: usize, extra: &[&str]) -> Option<Cluster> {
        let (redis, cql) = services()?;
        let serial = ONE_AT_A_TIME.lock().await;
        build_server();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let keyspace = format!("tern_e2e_{name}_{nanos}");
        let redis = format!("{}/{db}", redis.trim_end_matches('/'));
        flushdb(&redis).await;
        let shared = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let secret = shared.path().join("cluster.secret");
        let mut nodes = Vec::new();
        let mut dirs = vec![shared];
        for k in 0..count {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let args = [
                format!("--storage=cql://{cql}/{keyspace}"),
                format!("--cluster-redis={redis}"),
                format!("--secret-file={}", secret.display()),
                format!("--node-id={name}-{k}-{nanos}"),
                "--shards=1".to_owned(),
            ];
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            args.extend_from_slice(extra);
            nodes.push(ChildServer::start(dir.path(), &args).await);
            dirs.push(dir);
        }
        // Wait until every node is registered (its `alive` key is in Redis: it has
        // subscribed, registered and read the directory), as a load balancer would wait for
        // it; then let announcements settle.
        for (k, node) in nodes.iter().enumerate() {
            let key = format!("tern:{{{name}-{k}-{nanos}}}:alive");
            // Generous: on a loaded 2-core CI machine (Cassandra, SeaweedFS and the build
            // share it) a node once took over a minute.
            let end = std::time::Instant::now() + Duration::from_secs(150);
            loop {
                let out = std::process::Command::new("redis-cli")
                    .args(["-u", &redis, "EXISTS", &key])
                    .output()
                    .unwrap_or_else(|e| panic!("redis-cli: {e}"));
                if String::from_utf8_lossy(&out.stdout).trim() == "1" {
                    break;
                }
                if std::time::Instant::now() >= end {
                    let metrics = tern_tests::child::admin_get(node.admin, "/metrics").await;
                    let bus: Vec<&str> = metrics
                        .lines()
                        .filter(|l| l.starts_with("tern_cluster"))
                        .collect();
                    panic!(
                        "node {k} did not register in Redis within 150 s ({key}); its bus: {bus:?}"
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some(Cluster {
            _serial: serial,
            nodes,
            redis,
            cql,
            keyspace,
            _dirs: dirs,
        })
    }

    async fn login(&self, node: usize, identifier: &str) -> Device {
        let n = &self.nodes[node];
        login(
            client_config(n.quic, &n.fingerprint()),
            &n.otp_file(),
            identifier,
        )
        .await
        .unwrap_or_else(|e| panic!("login on node {node}: {e}"))
    }

    /// A client for a device saved from another node, now on `node`.
    /// Stops the nodes and drops the test's keyspace.
    async fn finish(mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        use tern_server::storage::cql::{CqlConfig, CqlStorage, Replication};
        let config = CqlConfig {
            hosts: vec![self.cql.clone()],
            keyspace: self.keyspace.clone(),
            replication: Replication::Simple(1),
            local_dc: None,
        };
        let sink = std::sync::Arc::new(tern_server::storage::NoSink);
        if let Ok(store) = CqlStorage::open(&config, sink, None).await {
            let _ = store.drop_keyspace(&self.keyspace).await;
        }
    }

    async fn metric(&self, node: usize, series: &str) -> f64 {
        let text = admin_get(self.nodes[node].admin, "/metrics").await;
        metric(&text, series).unwrap_or(0.0)
    }

    fn resume(&self, node: usize, saved: &tern_sdk::Snapshot) -> (Client, Events) {
        let n = &self.nodes[node];
        let mut config = client_config(n.quic, &n.fingerprint());
        config.tokens = saved.tokens.clone();
        config.sync_state = saved.sync.clone();
        Client::start(config).unwrap_or_else(|e| panic!("{e}"))
    }
}

async fn flushdb(url: &str) {
    let out = std::process::Command::new("redis-cli")
        .args(["-u", url, "FLUSHDB"])
        .output()
        .unwrap_or_else(|e| panic!("redis-cli: {e}"));
    assert!(out.status.success(), "FLUSHDB failed: {out:?}");
}

/// Text messages by (chat, seq) until `n` distinct ones arrived (duplicates are an error).
async fn receive(events: &mut Events, n: usize) -> BTreeMap<(ChatId, Seq), String> {
    let mut got = BTreeMap::new();
    let end = tokio::time::Instant::now() + WAIT;
    while got.len() < n {
        let Ok(Some(ev)) = tokio::time::timeout_at(end, events.next()).await else {
            break;
        };
        if let ClientEvent::Message {
            message,
            own: false,
            ..
        } = ev
            && let MessageBody::Text(t) = message.body
        {
            let dup = got.insert((message.chat_id, message.seq), t);
            assert!(dup.is_none(), "a message arrived twice");
        }
    }
    got
}

/// Sends `n` texts `{tag}{i}` and returns what was acknowledged, by (chat, seq).
async fn send(
    client: &Client,
    chat: ChatId,
    tag: &str,
    n: usize,
    base: u64,
) -> BTreeMap<(ChatId, Seq), String> {
    let mut acked = BTreeMap::new();
    for i in 0..n {
        let text = format!("{tag}{i}");
        let sent = client
            .send(chat, MessageBody::Text(text.clone()), base + i as u64)
            .await
            .unwrap_or_else(|e| panic!("send {text}: {e}"));
        acked.insert((chat, sent.seq), text);
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_typing_and_revocation_cross_nodes() {
    let Some(cluster) = Cluster::start("cross", 10).await else {
        return;
    };
    let mut alice = cluster.login(0, "+15557000001").await;
    let mut bob = cluster.login(1, "+15557000002").await;
    let mut carol = cluster.login(1, "+15557000003").await;
    let chat = alice
        .client
        .open_direct_chat(bob.session.user_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .chat_id;
    // 1:1 both ways.
    let to_bob = send(&alice.client, chat, "a>b ", 20, 1).await;
    assert_eq!(
        receive(&mut bob.events, 20).await,
        to_bob,
        "bob (node 1) got what alice (node 0) sent"
    );
    let to_alice = send(&bob.client, chat, "b>a ", 20, 1).await;
    assert_eq!(receive(&mut alice.events, 20).await, to_alice, "and back");
    for node in 0..2 {
        assert!(
            cluster
                .metric(node, "tern_cluster_envelopes_total{dir=\"received\"}")
                .await
                > 0.0,
            "node {node} received over the bus"
        );
        assert_eq!(cluster.metric(node, "tern_cluster_bus_up").await, 1.0);
        assert_eq!(
            cluster.metric(node, "tern_cluster_resyncs_total").await,
            0.0,
            "no resync on a healthy bus"
        );
    }
    // A group spanning both nodes.
    let group = alice
        .client
        .create_group("cross", vec![bob.session.user_id, carol.session.user_id])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .chat_id;
    let to_group = send(&alice.client, group, "a>g ", 15, 100).await;
    let from_carol = send(&carol.client, group, "c>g ", 15, 100).await;
    let mut bob_expects = to_group.clone();
    bob_expects.extend(from_carol.clone());
    assert_eq!(receive(&mut bob.events, 30).await, bob_expects);
    assert_eq!(receive(&mut alice.events, 15).await, from_carol);
    assert_eq!(receive(&mut carol.events, 15).await, to_group);
    // Typing: bob (node 1) types, alice (node 0) sees it.
    let mut saw_typing = false;
    for _ in 0..5 {
        bob.client
            .set_typing(chat, true)
            .unwrap_or_else(|e| panic!("{e}"));
        let end = tokio::time::Instant::now() + Duration::from_millis(1_500);
        while let Ok(Some(ev)) = tokio::time::timeout_at(end, alice.events.next()).await {
            if matches!(ev, ClientEvent::Typing { .. }) {
                saw_typing = true;
                break;
            }
        }
        if saw_typing {
            break;
        }
    }
    assert!(saw_typing, "typing crossed nodes");
    // Revocation: bob's second device, on node 0, revokes his first, on node 1.
    let bob2 = cluster.login(0, "+15557000002").await;
    bob2.client
        .revoke_device(bob.session.device_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let end = tokio::time::Instant::now() + WAIT;
    let mut ended = None;
    while let Ok(Some(ev)) = tokio::time::timeout_at(end, bob.events.next()).await {
        if let ClientEvent::SessionEnded { code, .. } = ev {
            ended = Some(code);
            break;
        }
    }
    assert_eq!(
        ended,
        Some(Some(ErrorCode::DeviceRevoked)),
        "the revoked device's connection on the other node closed"
    );
    cluster.finish().await;
}

/// Waits until `watcher` sees `user` in a state `want` accepts: from an event, or from a fresh
/// snapshot (asked each second, since a resync reconnects the watcher), within [`WAIT`].
async fn presence_until(
    watcher: &mut Device,
    user: UserId,
    what: &str,
    want: impl Fn(PresenceState) -> bool,
) {
    let end = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    while tokio::time::Instant::now() < end {
        if let Ok(snap) = watcher.client.watch_presence(vec![user]).await
            && let Some(p) = snap.first()
        {
            last = Some(p.state);
            if want(p.state) {
                return;
            }
        }
        let tick = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Some(ev)) = tokio::time::timeout_at(tick, watcher.events.next()).await {
            if let ClientEvent::Presence(p) = ev
                && p.user_id == user
            {
                last = Some(p.state);
                if want(p.state) {
                    return;
                }
            }
        }
    }
    panic!("{what}: last seen state {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_aggregated_across_nodes() {
    let Some(mut cluster) = Cluster::start("presence", 14).await else {
        return;
    };
    let mut alice = cluster.login(0, "+15557000041").await;
    let bob = cluster.login(1, "+15557000042").await;
    let bob_id = bob.session.user_id;
    for (x, y) in [(&alice, &bob), (&bob, &alice)] {
        x.client
            .add_contact(y.session.user_id)
            .await
            .unwrap_or_else(|e| panic!("add_contact: {e}"));
    }
    let online = |s: PresenceState| s == PresenceState::Online;
    let offline = |s: PresenceState| matches!(s, PresenceState::LastSeen { .. });
    presence_until(
        &mut alice,
        bob_id,
        "bob on node 1 shows online on node 0",
        online,
    )
    .await;
    bob.client.close().await;
    presence_until(
        &mut alice,
        bob_id,
        "bob left node 1: offline on node 0",
        offline,
    )
    .await;
    let bob = cluster.login(1, "+15557000042").await;
    presence_until(&mut alice, bob_id, "bob back on node 1", online).await;
    // A privacy change committed on node 1 applies on node 0 at once (its cached facts of
    // bob, read for the views above, are dropped), and so does undoing it.
    let hidden = PrivacySettings {
        last_seen: Audience::Nobody,
        online: Audience::Nobody,
        ..PrivacySettings::default()
    };
    bob.client
        .set_privacy(hidden)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    presence_until(&mut alice, bob_id, "bob hid himself on node 1", |s| {
        s == PresenceState::Hidden
    })
    .await;
    bob.client
        .set_privacy(PrivacySettings::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    presence_until(&mut alice, bob_id, "bob visible again", online).await;
    // A second connection on alice's own node, then that one going to the background: still
    // online through node 1.
    let bob_here = cluster.login(0, "+15557000042").await;
    bob_here
        .client
        .set_foreground(false)
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    presence_until(&mut alice, bob_id, "online through the other node", online).await;
    // Node 1 dies without a word: its users are offline once it is found silent.
    cluster.nodes[1].kill();
    drop(bob);
    presence_until(&mut alice, bob_id, "node 1 died: bob offline", offline).await;
    drop(bob_here);
    cluster.finish().await;
}

/// Sends texts until one is not acknowledged within 3 s (the SDK retries a `RateLimited` send
/// with backoff, so a refused one just waits); answers how many were.
async fn sends_until_refused(client: &Client, chat: ChatId, base: u64, max: usize) -> usize {
    for i in 0..max {
        let body = MessageBody::Text(format!("burst {i}"));
        let sent = client.send(chat, body, base + i as u64);
        match tokio::time::timeout(Duration::from_secs(3), sent).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.code() == Some(ErrorCode::RateLimited) => return i,
            Ok(Err(e)) => panic!("send: {e}"),
            Err(_) => return i,
        }
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_on_two_nodes_has_one_send_budget() {
    let extra = ["--chat-send-burst=6", "--chat-send-per-minute=1"];
    let Some(cluster) = Cluster::start_with("budget", 15, 2, &extra).await else {
        return;
    };
    let alice_a = cluster.login(0, "+15557000051").await;
    let alice_b = cluster.login(1, "+15557000051").await;
    let bob = cluster.login(0, "+15557000052").await;
    let chat = alice_a
        .client
        .open_direct_chat(bob.session.user_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .chat_id;
    // Let each node learn that alice is on the other too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let on_a = sends_until_refused(&alice_a.client, chat, 1, 10).await;
    let on_b = sends_until_refused(&alice_b.client, chat, 100, 10).await;
    assert!(
        (6..=7).contains(&(on_a + on_b)),
        "one budget of 6 for both devices (each node alone would allow 6): {on_a} + {on_b}"
    );
    assert_eq!(
        sends_until_refused(&bob.client, chat, 1_000, 6).await,
        6,
        "a user on one node keeps their whole budget"
    );
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_nothing_its_clients_were_told_was_sent() {
    let Some(mut cluster) = Cluster::start("kill", 11).await else {
        return;
    };
    let mut alice = cluster.login(0, "+15557000011").await;
    let bob = cluster.login(1, "+15557000012").await;
    let chat = alice
        .client
        .open_direct_chat(bob.session.user_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .chat_id;
    let mut to_alice = send(&bob.client, chat, "before ", 10, 1).await;
    let saved = bob
        .client
        .snapshot()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Alice keeps sending while bob's node dies.
    let mut to_bob = send(&alice.client, chat, "a ", 10, 1).await;
    cluster.nodes[1].kill();
    to_bob.extend(send(&alice.client, chat, "b ", 10, 100).await);
    drop(bob);
    // Bob's device comes back on node 0 and syncs.
    let (bob_again, mut bob_events) = cluster.resume(0, &saved);
    let got = receive(&mut bob_events, to_bob.len()).await;
    for (k, text) in &to_bob {
        assert_eq!(got.get(k), Some(text), "bob lost an acknowledged message");
    }
    to_alice.extend(send(&bob_again, chat, "after ", 5, 1_000).await);
    assert_eq!(receive(&mut alice.events, to_alice.len()).await, to_alice);
    // A peer silent for 4 s without a goodbye is a gap (its last commits may be unpublished).
    let mut gaps = 0.0;
    for _ in 0..100 {
        gaps = cluster.metric(0, "tern_cluster_gaps_total").await;
        if gaps >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gaps >= 1.0,
        "node 0 noticed that node 1 died without a goodbye"
    );
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_flush_mid_traffic_loses_nothing_and_delivery_resumes() {
    let Some(cluster) = Cluster::start("flush", 12).await else {
        return;
    };
    let alice = cluster.login(0, "+15557000021").await;
    let mut bob = cluster.login(1, "+15557000022").await;
    let chat = alice
        .client
        .open_direct_chat(bob.session.user_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .chat_id;
    let mut acked = send(&alice.client, chat, "pre ", 20, 1).await;
    flushdb(&cluster.redis).await;
    acked.extend(send(&alice.client, chat, "mid ", 20, 100).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    acked.extend(send(&alice.client, chat, "post ", 20, 200).await);
    assert_eq!(
        receive(&mut bob.events, acked.len()).await,
        acked,
        "every acknowledged message arrived once"
    );
    // Delivery is live again after the bus healed: a fresh message arrives quickly.
    let last = send(&alice.client, chat, "live ", 1, 300).await;
    let start = std::time::Instant::now();
    assert_eq!(receive(&mut bob.events, 1).await, last);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "delivery resumed"
    );
    let resyncs = cluster.metric(0, "tern_cluster_resyncs_total").await
        + cluster.metric(1, "tern_cluster_resyncs_total").await;
    assert!(
        resyncs >= 1.0,
        "the flush was noticed and healed by a resync"
    );
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_a_group_and_two_nodes_sending_into_it_get_dense_seqs() {
    let Some(cluster) = Cluster::start_n("three", 13, 3).await else {
        return;
    };
    let a = cluster.login(0, "+15557000031").await;
    let b = cluster.login(1, "+15557000032").await;
    let mut c = cluster.login(2, "+15557000033").await;
    let group = a
        .client
        .create_group("three", vec![b.session.user_id, c.session.user_id])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .chat_id;
    // a (node 0) and b (node 1) send into the one group at the same time: each node appends
    // into the same chat, so the seqs come from the CQL store's conditional writes.
    let (from_a, from_b) = tokio::join!(
        send(&a.client, group, "a ", 20, 1),
        send(&b.client, group, "b ", 20, 1)
    );
    let mut all = from_a.clone();
    all.extend(from_b.clone());
    assert_eq!(all.len(), 40, "no two acknowledged sends share a seq");
    let seqs: Vec<Seq> = all.keys().map(|&(_, s)| s).collect();
    let (lo, hi) = (seqs[0], seqs[seqs.len() - 1]);
    assert_eq!(
        hi - lo + 1,
        40,
        "the 40 seqs are dense (nothing else was sent in between): {seqs:?}"
    );
    // c, on the third node, receives every one of them exactly once.
    assert_eq!(
        receive(&mut c.events, 40).await,
        all,
        "the third node's member got what both others sent"
    );
    for node in 0..3 {
        assert_eq!(cluster.metric(node, "tern_cluster_bus_up").await, 1.0);
    }
    assert!(
        cluster
            .metric(2, "tern_cluster_envelopes_total{dir=\"received\"}")
            .await
            > 0.0,
        "node 2 was reached over the bus"
    );
    cluster.finish().await;
}
