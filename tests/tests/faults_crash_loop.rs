//! Fault injection (issue 10, 2a): a crash loop. `kill -9` the server child at random points
//! (seeded; the seed is printed, rerun with `FAULTS_SEED=<seed>`) while SDK clients keep
//! sending, restart it on the same data directory and ports each time, and check with the
//! history checker that every acknowledged message is delivered exactly once, in order, to
//! every device, and that no retried send was stored twice.

use std::process::Stdio;
use std::time::Duration;

use tern_tests::child::{ChildServer, ensure_built};
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

/// Kills while `tern-loadgen chat` (as built from `loadgen/`) drives the server.
const LOADGEN_KILLS: usize = 5;

/// The same crash loop under `tern-loadgen chat` against the child's fixed address: its ledger
/// (per sender: every acknowledged seq and idempotency key, matched against what the recipient
/// received) survives the restarts and finds nothing lost, duplicated or reordered (exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_kill_9s_under_tern_loadgen_chat_leave_its_ledger_clean() {
    use tokio::io::AsyncBufReadExt;
    let seed = Rng::announced_seed("loadgen crash loop");
    let mut rng = Rng::new(seed);
    tern_tests::init();
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(dir.path(), &["--shards", "2"]).await;
    let report = dir.path().join("loadgen.json");
    let mut loadgen = tokio::process::Command::new(ensure_built("tern-loadgen", "tern-loadgen"))
        .arg("chat")
        .args(["--server", &server.quic.to_string()])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--otp-file")
        .arg(server.otp_file())
        .args([
            "--users",
            "20",
            "--rate",
            "200",
            "--warmup",
            "1s",
            "--duration",
            "12s",
        ])
        .args(["--grace", "30s", "--no-progress"])
        .arg("--json")
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Kill only once every user is logged in (a login cut by a kill fails the run by design).
    let mut lines = tokio::io::BufReader::new(loadgen.stderr.take().unwrap()).lines();
    let logged_in = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("loadgen: {line}");
            if line.starts_with("logged in") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(logged_in, Ok(true), "tern-loadgen logged its users in");
    let rest = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("loadgen: {line}");
        }
    });
    // Chats are opened next (a request the outbox does not retry): let that and the warm-up pass.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for _ in 0..LOADGEN_KILLS {
        tokio::time::sleep(Duration::from_millis(rng.range(300, 1_300))).await;
        server.kill();
        tokio::time::sleep(Duration::from_millis(rng.range(0, 400))).await;
        server.restart().await;
    }
    let status = tokio::time::timeout(Duration::from_secs(90), loadgen.wait())
        .await
        .expect("tern-loadgen finished")
        .unwrap();
    let _ = rest.await;
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let r: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    eprintln!(
        "loadgen crash loop: {LOADGEN_KILLS} kills; acked {} delivered {} lost {} duplicates {} \
         out of order {} unacked {} disconnects {} errors {}",
        r["acked"],
        r["delivered"],
        r["lost"],
        r["duplicates"],
        r["out_of_order"],
        r["unacked"],
        r["disconnects"],
        r["error_kinds"]
    );
    assert!(
        status.success(),
        "tern-loadgen's ledger found a violation or the run failed ({status}, seed {seed}): {text}"
    );
    assert_eq!(r["lost"], 0);
    assert_eq!(r["duplicates"], 0);
    assert_eq!(r["out_of_order"], 0);
    assert!(r["acked"].as_u64().unwrap_or(0) > 0);
}
