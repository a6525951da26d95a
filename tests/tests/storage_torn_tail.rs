//! A journal whose last write was torn (a full disk, a power cut mid-write) must recover: the
//! server starts, everything acknowledged before is intact, and sending works again.
//!
//! fjall's journal reader truncates a torn tail, but its entry decoder checked one length field
//! of untrusted disk bytes with a `debug_assert!`, so a debug build (what `cargo test` runs)
//! panicked in recovery instead (the ~1-in-5 failure of `faults_disk_full`). The workspace
//! builds fjall without debug assertions in every profile (`[profile.*.package.fjall]` in
//! Cargo.toml) so tests recover the way a release build does; this test fails if that is undone.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tern_sdk::protocol::MessageBody;
use tern_tests::child::ChildServer;
use tern_tests::{client_config, login};

const MESSAGES: u64 = 20;

/// The journal file with the highest number (the active one).
fn active_journal(db: &Path) -> PathBuf {
    let dir = db.to_owned();
    let mut journals: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = name.strip_suffix(".jnl")?.parse().ok()?;
            Some((id, e.path()))
        })
        .collect();
    journals.sort();
    journals.pop().expect("a journal file").1
}

/// A batch start and the first part of an item whose value lengths disagree, cut off inside
/// the value: what a write that ran out of space leaves.
fn torn_batch() -> Vec<u8> {
    let mut b = vec![1u8]; // Start
    b.extend_from_slice(&1u32.to_le_bytes()); // item count
    b.extend_from_slice(&u64::MAX.wrapping_sub(7).to_le_bytes()); // seqno
    b.push(2); // Item
    b.push(0); // value type: value
    b.push(0); // compression: none
    b.extend_from_slice(&0u64.to_le_bytes()); // keyspace id
    b.extend_from_slice(&4u16.to_le_bytes()); // key length
    b.extend_from_slice(&100u32.to_le_bytes()); // value length
    b.extend_from_slice(&7u32.to_le_bytes()); // on-disk value length (disagrees)
    b.extend_from_slice(b"keyX");
    b.extend_from_slice(b"val"); // 3 of 7 bytes
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_journal_tail_is_recovered_with_everything_acknowledged() {
    tern_tests::init();
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(dir.path(), &[]).await;
    let (fingerprint, otp, quic) = (server.fingerprint(), server.otp_file(), server.quic);
    let a = login(client_config(quic, &fingerprint), &otp, "+15550007001")
        .await
        .unwrap();
    let b = login(client_config(quic, &fingerprint), &otp, "+15550007002")
        .await
        .unwrap();
    let chat = a
        .client
        .open_direct_chat(b.session.user_id)
        .await
        .unwrap()
        .chat_id;
    for n in 0..MESSAGES {
        let body = MessageBody::Text(format!("before {n}"));
        a.client.send(chat, body, 7_000 + n).await.unwrap();
    }
    a.client.close().await;
    b.client.close().await;
    server.kill();

    let journal = active_journal(&dir.path().join("data/db"));
    // fjall preallocates the journal with zeros: the log ends after its last non-zero byte (the
    // last batch's trailer), and the torn write goes right there.
    let end = std::fs::read(&journal)
        .unwrap()
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    assert!(end > 0, "the journal holds the acknowledged batches");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap();
    f.seek(SeekFrom::Start(end as u64)).unwrap();
    f.write_all(&torn_batch()).unwrap();
    f.sync_all().unwrap();
    drop(f);

    assert!(
        server.try_restart().await,
        "the server did not start on a data dir whose journal ends in a torn write"
    );
    tern_tests::child::wait_ready(server.admin).await;
    let a = login(client_config(quic, &fingerprint), &otp, "+15550007001")
        .await
        .unwrap();
    let stored = a.client.messages(chat, 1, 256).await.unwrap();
    let texts: Vec<String> = stored
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::Text(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let expected: Vec<String> = (0..MESSAGES).map(|n| format!("before {n}")).collect();
    assert_eq!(texts, expected, "acknowledged messages after recovery");
    let sent = a
        .client
        .send(chat, MessageBody::Text("after".into()), 7_999)
        .await
        .unwrap();
    assert_eq!(sent.seq, MESSAGES + 1, "sending works again, seq dense");
    a.client.close().await;
    server.kill();
}
