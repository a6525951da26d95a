//! Fault injection (issue 10, 2e): stop the world. `SIGSTOP` the server child for 10 s while SDK
//! clients keep sending, then `SIGCONT`: the clients recover and sync, and the history checker
//! finds nothing lost, duplicated or reordered.

use std::time::{Duration, Instant};

use tern_tests::child::admin_get;
use tern_tests::load::Scenario;

const STOPPED: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_sigstop_under_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (server, scenario) = Scenario::on_child(dir.path(), "+1555010", 3).await;
    let load = scenario.start_load(4, Duration::from_millis(5));
    assert!(load.wait_more(200, Duration::from_secs(20)).await);

    server.signal("STOP");
    let stopped_at = Instant::now();
    // Answers already on the wire may still land; after that nothing moves.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let frozen = load.acked_count();
    let probe =
        tokio::time::timeout(Duration::from_secs(1), admin_get(server.admin, "/healthz")).await;
    assert!(probe.is_err(), "a stopped server answered {probe:?}");
    tokio::time::sleep(STOPPED.saturating_sub(stopped_at.elapsed())).await;
    assert_eq!(
        load.acked_count(),
        frozen,
        "nothing is acknowledged while the server is stopped"
    );
    server.signal("CONT");
    let resumed = Instant::now();
    assert!(
        load.wait_more(200, Duration::from_secs(30)).await,
        "sending resumes after SIGCONT"
    );
    let recovered_in = resumed.elapsed();
    let acked = load.stop(Duration::from_secs(30)).await;
    let problems = scenario.verify(&acked, Duration::from_secs(30)).await;
    assert!(
        problems.is_empty(),
        "history violations after a {STOPPED:?} SIGSTOP: {problems:#?}"
    );
    let reconnects = scenario.reconnects();
    eprintln!(
        "stop the world: stopped {STOPPED:?}, 200 more sends acknowledged {recovered_in:?} after \
         SIGCONT, {} acknowledged in all, nothing lost; reconnects {reconnects:?}",
        acked.len()
    );
    // QUIC's idle timeout (30 s) outlasts the stop, so a connection need not drop; allow one
    // reconnect per device in case a request timed out against the frozen server.
    for (name, log) in &reconnects {
        assert!(
            log.disconnected <= 1,
            "{name} disconnected {} times",
            log.disconnected
        );
    }
    let healthz = admin_get(server.admin, "/healthz").await;
    assert!(healthz.contains("ok"), "{healthz}");
}
