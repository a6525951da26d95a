//! Fault injection (issue 10, 2a): a crash loop. `kill -9` the server child at random points
//! (seeded; the seed is printed, rerun with `FAULTS_SEED=<seed>`) while SDK clients keep
//! sending, restart it on the same data directory and ports each time, and check with the
//! history checker that every acknowledged message is delivered exactly once, in order, to
//! every device, and that no retried send was stored twice.

use std::time::Duration;

use tern_tests::load::Scenario;
use tern_tests::relay::Rng;

const KILLS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_kill_9s_under_load_lose_and_duplicate_nothing_acknowledged() {
    let seed = Rng::announced_seed("crash loop");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let (mut server, scenario) = Scenario::on_child(dir.path(), "+1555007", 3).await;
    let load = scenario.start_load(4, Duration::from_millis(5));

    let started = std::time::Instant::now();
    let mut acked_at_kill = Vec::new();
    for k in 0..KILLS {
        // Let sends flow (the first restart's sync and outbox retries included), then kill at a
        // random point of the next 50-800 ms.
        assert!(
            load.wait_more(20, Duration::from_secs(30)).await,
            "no progress before kill {k}"
        );
        tokio::time::sleep(Duration::from_millis(rng.range(50, 800))).await;
        server.kill();
        acked_at_kill.push(load.acked_count());
        // Down for a random while, so clients' reconnects hit a dead port.
        tokio::time::sleep(Duration::from_millis(rng.range(0, 400))).await;
        server.restart().await;
    }
    assert!(load.wait_more(20, Duration::from_secs(30)).await);
    let acked = load.stop(Duration::from_secs(60)).await;
    eprintln!(
        "crash loop: {KILLS} kills in {:?}, {} acknowledged sends (at each kill: {acked_at_kill:?})",
        started.elapsed(),
        acked.len()
    );
    let problems = scenario.verify(&acked, Duration::from_secs(40)).await;
    assert!(
        problems.is_empty(),
        "history violations after {KILLS} kill -9s (seed {seed}): {problems:#?}"
    );
    eprintln!(
        "crash loop: nothing lost or duplicated; reconnects {:?}",
        scenario.reconnects()
    );
}
