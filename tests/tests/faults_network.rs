//! Fault injection (issue 10, 2b): network faults. Every client talks to the server through the
//! fault-injecting relay (`tern_tests::relay`): 5% loss, delay with jitter, reordering and
//! duplication throughout, two address changes (the server sees every client move to a new port
//! mid-conversation) and a 10 s partition. Chat continues through all of it, the history
//! checker passes, and reconnects stay bounded.

use std::time::{Duration, Instant};

use tern_tests::child::ChildServer;
use tern_tests::client_config;
use tern_tests::load::Scenario;
use tern_tests::relay::{Faults, Relay, Rng};

/// Disconnects one device may see. The partition need not cost one (QUIC's idle timeout is
/// 30 s on both sides, keep-alives every 5 s; with `--shards 1` this test sees none at all),
/// but each of the two address changes can: the shards share the port with `SO_REUSEPORT`, the
/// kernel picks the socket by the packet's source address, so a client that moved lands on
/// another shard about half the time, and that shard answers with a stateless reset ("reset by
/// peer") instead of migrating the connection. Two for that, one for the partition. A reconnect
/// loop (a client that cannot get back in and keeps retrying) would exceed this at once.
const MAX_DISCONNECTS_PER_DEVICE: u32 = 3;
/// Failed connection attempts one device may see: attempts only happen while it is cut off (the
/// partition), and each failed attempt waits for the QUIC handshake to time out or be refused.
/// At the test's 50-500 ms backoff a 10 s partition allows about 25; more means attempts that
/// fail outside the partition.
const MAX_CONNECT_FAILURES_PER_DEVICE: u32 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_survives_loss_jitter_reordering_duplication_a_partition_and_address_changes() {
    tern_tests::init();
    let seed = Rng::announced_seed("network faults");
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(dir.path(), &["--shards", "2"]).await;
    let relay = Relay::start(server.quic, seed).await.unwrap();
    let fp = server.fingerprint();
    let front = relay.addr;
    let cfg = || client_config(front, &fp);
    let scenario = Scenario::new(cfg, &server.otp_file(), "+1555008", 3).await;

    let bad_path = Faults {
        loss: 0.05,
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(15),
        reorder: 0.05,
        reorder_by: Duration::from_millis(25),
        duplicate: 0.03,
        partition: false,
    };
    relay.set_faults(bad_path.clone());
    let started = Instant::now();
    let load = scenario.start_load(2, Duration::from_millis(20));
    assert!(
        load.wait_more(100, Duration::from_secs(20)).await,
        "chat flows over a lossy, jittery, reordering, duplicating path"
    );

    relay.change_address().await.unwrap();
    assert!(
        load.wait_more(100, Duration::from_secs(20)).await,
        "chat flows after the address change"
    );

    relay.set_partition(true);
    // Packets already delayed inside the relay land within its longest delay.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during = load.acked_count();
    tokio::time::sleep(Duration::from_millis(9_800)).await;
    assert_eq!(
        load.acked_count(),
        during,
        "nothing is acknowledged through a partition"
    );
    relay.set_partition(false);
    assert!(
        load.wait_more(100, Duration::from_secs(30)).await,
        "chat flows again after the partition"
    );

    relay.change_address().await.unwrap();
    assert!(
        load.wait_more(100, Duration::from_secs(20)).await,
        "chat flows after the second address change"
    );
    let acked = load.stop(Duration::from_secs(30)).await;
    let problems = scenario.verify(&acked, Duration::from_secs(30)).await;
    let stats = relay.stats();
    eprintln!(
        "network faults: {:?}, {} acknowledged sends; relay {stats:?} ({} dropped)",
        started.elapsed(),
        acked.len(),
        stats.dropped()
    );
    assert!(
        problems.is_empty(),
        "history violations through network faults (seed {seed}): {problems:#?}"
    );
    let reconnects = scenario.reconnects();
    eprintln!("network faults: reconnects {reconnects:?}");
    for (name, log) in &reconnects {
        assert!(
            log.disconnected <= MAX_DISCONNECTS_PER_DEVICE,
            "{name} disconnected {} times",
            log.disconnected
        );
        assert!(
            log.connect_failed <= MAX_CONNECT_FAILURES_PER_DEVICE,
            "{name} failed to connect {} times",
            log.connect_failed
        );
        // Logging in shows two `Connected` (anonymous, then authenticated); every later one
        // follows a disconnect.
        assert!(
            log.connected <= log.disconnected + 2,
            "{name}: more connections than disconnects"
        );
    }
    assert!(stats.dropped_loss > 0 && stats.dropped_partition > 0);
    assert!(stats.duplicated > 0 && stats.reordered > 0);
    assert!(
        stats.address_changes >= 2 * 5,
        "every one of the five clients moved twice"
    );
}
