//! Fault injection (issue 10, 2c): the disk fills up. The server's data directory is a small
//! tmpfs (`mount -t tmpfs -o size=...`, so the test needs root or CAP_SYS_ADMIN; without it the
//! test says so and does nothing). A filler file takes every free byte; then sends get a typed
//! error and are not acknowledged, the server stays up, and once the filler is removed
//! everything acknowledged before is intact (also after a restart) and sending works again.

// The scenario runs in a helper shared by two tests; a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tern_sdk::protocol::{ErrorCode, MessageBody, Request, Response};
use tern_tests::child::admin_get;
use tern_tests::history::Acked;
use tern_tests::load::Scenario;

/// Size of the data directory's filesystem.
const FS_SIZE: &str = "24m";

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros to `path` until the filesystem refuses; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(
                    e.raw_os_error(),
                    Some(28),
                    "the filler stops at ENOSPC, not at {e}"
                );
                break;
            }
        }
    }
    let _ = f.sync_all();
    written
}

/// Sends one message as a plain request (not through the outbox, which retries refusals).
async fn send_once(
    client: &tern_sdk::Client,
    chat: tern_sdk::protocol::ChatId,
    cmid: u64,
) -> Result<Acked, tern_sdk::Error> {
    let body = MessageBody::Text(format!("once-{cmid}"));
    let r = client
        .request(Request::SendMessage {
            chat_id: chat,
            client_msg_id: cmid,
            body: body.clone(),
        })
        .await?;
    match r {
        Response::Sent(sent) => Ok(Acked { sent, body }),
        other => panic!("unexpected answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_sends_with_a_typed_error_and_recovers_intact() {
    full_disk(false).await;
}

/// The same, without the restart: sending must work again as soon as space returns. Fails
/// today (the storage engine stays poisoned after the failed write); run with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "server bug: storage stays poisoned after ENOSPC until a restart"]
async fn a_full_disk_recovers_without_a_restart() {
    full_disk(true).await;
}

async fn full_disk(strict: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _tmpfs = match Tmpfs::mount(&data, FS_SIZE) {
        Ok(m) => m,
        Err(e) => {
            eprintln!(
                "DISK-FULL TEST NOT RUN: cannot mount a {FS_SIZE} tmpfs at {} ({e}); it needs \
                 root or CAP_SYS_ADMIN",
                data.display()
            );
            return;
        }
    };
    // Declared after the mount, so the server is killed before the unmount.
    let (mut server, scenario) = Scenario::on_child(dir.path(), "+1555011", 1).await;
    let sender = &scenario.senders[0].client;
    let chat = scenario.chats[0];

    let mut acked = Vec::new();
    for k in 0..100 {
        acked.push(send_once(sender, chat, k).await.unwrap());
    }

    let filler = data.join("filler");
    let filled = fill(&filler);
    eprintln!("disk full: filler took {filled} bytes of the {FS_SIZE} tmpfs");

    // The journal's last page may still have room for a few small sends, which are genuinely
    // stored (and checked below); once a send is refused, every further one is refused with a
    // typed error and nothing is acknowledged.
    let mut fitted = 0;
    let mut codes = Vec::new();
    for k in 1_000..1_500 {
        match send_once(sender, chat, k).await {
            Ok(a) if codes.is_empty() => {
                acked.push(a);
                fitted += 1;
            }
            Ok(a) => panic!("a send was acknowledged on a full disk after a refusal: {a:?}"),
            Err(e) => {
                codes.push(e.code());
                if codes.len() == 20 {
                    break;
                }
            }
        }
    }
    eprintln!(
        "disk full: {fitted} sends fitted in allocated space, then {} refusals, codes {:?}",
        codes.len(),
        codes.iter().collect::<std::collections::HashSet<_>>()
    );
    assert!(fitted < 400, "the disk never filled");
    assert!(
        !codes.is_empty() && codes.iter().all(|c| *c == Some(ErrorCode::Internal)),
        "sends on a full disk fail with a typed error: {codes:?}"
    );
    // An outbox send keeps retrying (the refusal is retryable) and is not acknowledged yet.
    let outbox = {
        let client = sender.clone();
        tokio::spawn(async move {
            let body = MessageBody::Text("queued while full".into());
            let sent = client.send(chat, body.clone(), 2_000).await.unwrap();
            Acked { sent, body }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!outbox.is_finished(), "acknowledged on a full disk");
    let healthz = admin_get(server.admin, "/healthz").await;
    assert!(healthz.contains("ok"), "the server stays up: {healthz}");
    let readyz = admin_get(server.admin, "/readyz").await;
    eprintln!(
        "disk full: /readyz while full: {:?}",
        readyz.lines().next().unwrap_or("")
    );
    // A failed commit poisons the store until a restart: the server says so, so a load
    // balancer stops sending clients here.
    assert!(
        readyz.starts_with("HTTP/1.1 503"),
        "/readyz must report a server whose storage refuses writes: {readyz}"
    );

    // Space returns.
    std::fs::remove_file(&filler).unwrap();
    let mut in_place = None;
    for k in 5_000..5_010 {
        match send_once(sender, chat, k).await {
            Ok(a) => {
                acked.push(a);
                in_place = Some(k);
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::Internal), "{e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    if strict {
        assert!(
            in_place.is_some(),
            "sending does not work again once space returns, without a restart"
        );
    } else if in_place.is_none() {
        // The storage engine (fjall) treats a failed journal write as fatal and poisons the
        // database: every write fails until the process restarts. Until the server handles
        // that (exit, or reopen), an operator restarts it; the strict variant of this test
        // fails on it.
        eprintln!(
            "disk full: SERVER BUG: writes still fail after space returned (storage poisoned); \
             restarting the server"
        );
        server.kill();
        // The torn tail the failed write left must recover (fjall truncates it; the debug
        // assertion that made this fail in ~1 of 5 runs is off, see Cargo.toml and
        // storage_torn_tail.rs).
        assert!(
            server.try_restart().await,
            "the restarted server cannot recover the data dir after a full disk"
        );
    }
    acked.push(
        tokio::time::timeout(Duration::from_secs(30), outbox)
            .await
            .expect("the outbox send is acknowledged once space returns")
            .unwrap(),
    );
    for k in 3_000..3_050 {
        acked.push(send_once(sender, chat, k).await.unwrap());
    }
    let problems = scenario.verify(&acked, Duration::from_secs(30)).await;
    assert!(
        problems.is_empty(),
        "history violations around a full disk: {problems:#?}"
    );

    // What was acknowledged is on disk: a kill -9 and restart still has exactly it.
    server.kill();
    server.restart().await;
    let mut stored = Vec::new();
    let mut from = 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        match sender.messages(chat, from, 256).await {
            Ok(page) => {
                let Some(last) = page.last() else { break };
                from = last.seq + 1;
                stored.extend(page);
            }
            // The client is still reconnecting to the restarted server.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
    let mut want: Vec<u64> = acked.iter().map(|a| a.sent.seq).collect();
    want.sort_unstable();
    assert_eq!(seqs, want, "storage holds exactly the acknowledged sends");
    eprintln!(
        "disk full: {} acknowledged sends intact after the disk filled and a restart; {} sends \
         refused while full",
        acked.len(),
        codes.len()
    );
}
