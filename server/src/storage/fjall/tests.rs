#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use tern_protocol::{DeviceId, MessageBody};

use super::FjallStorage;
use crate::storage::conformance::{self, RecordingSink};
use crate::storage::{MessageRules, NewMessage, NoSink, Storage, StorageError, UpdateSink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fjall_passes_the_conformance_suite() {
    let dirs = std::sync::Mutex::new(Vec::new());
    let open = |sink: Arc<dyn UpdateSink>| -> conformance::OpenFuture<'_> {
        let dir = tempfile::tempdir().unwrap();
        let opened = FjallStorage::open(dir.path(), sink, None)
            .map(|store| Arc::new(store) as Arc<dyn Storage>);
        dirs.lock().unwrap().push(dir);
        Box::pin(std::future::ready(opened))
    };
    conformance::run_all(&open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let chat;
    let viewer;
    {
        let store = FjallStorage::open(dir.path(), Arc::new(NoSink), None).unwrap();
        let a = store.upsert_user("a@example.org", 1).await.unwrap();
        let b = store.upsert_user("b@example.org", 1).await.unwrap();
        chat = store.open_direct_chat(a, b, 1).await.unwrap().chat_id;
        viewer = a;
        for i in 0..20 {
            store
                .append_message(NewMessage {
                    chat_id: chat,
                    sender: a,
                    sender_device: DeviceId(1),
                    client_msg_id: i,
                    body: MessageBody::Text(format!("{i}")),
                    ts_ms: 0,
                    rules: MessageRules::default(),
                })
                .await
                .unwrap();
        }
        store.close().await.unwrap();
        let after_close = store.ack(chat, b, 1).await.unwrap_err();
        assert!(
            matches!(after_close, StorageError::Closed),
            "got {after_close:?}"
        );
    }
    let sink = Arc::new(RecordingSink::default());
    let store = FjallStorage::open(dir.path(), sink, None).unwrap();
    assert_eq!(store.last_seq(chat).await.unwrap(), 20);
    let msgs = store.messages(viewer, chat, 1, 100).await.unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
}

/// A send whose job fails half-way (here: one member's update-log partition holds a corrupt key,
/// so allocating that member's pts fails after the message row was staged) must leave nothing
/// behind: no message, no idempotency row, no update for the other member. The retry then
/// really appends, so every member gets the update (issue 7, scenario 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_commits_none_of_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, chat);
    {
        let store = FjallStorage::open(dir.path(), Arc::new(NoSink), None).unwrap();
        a = store.upsert_user("a@example.org", 1).await.unwrap();
        b = store.upsert_user("b@example.org", 1).await.unwrap();
        chat = store.open_direct_chat(a, b, 1).await.unwrap().chat_id;
        store.close().await.unwrap();
    }
    // Reopened, so the writer has no cached counters and reads b's pts off its partition.
    let store = FjallStorage::open(dir.path(), Arc::new(NoSink), None).unwrap();
    let pts_a = store.latest_pts(a).await.unwrap();
    let pts_b = store.latest_pts(b).await.unwrap();
    // A key of b's update-log partition that does not parse as `user ++ pts`, sorting last.
    let mut bad = super::tables::key2(b.0, u64::MAX).to_vec();
    bad.push(0);
    store.tables.updates.insert(&bad, b"x").unwrap();
    let send = || NewMessage {
        chat_id: chat,
        sender: a,
        sender_device: DeviceId(1),
        client_msg_id: 7,
        body: MessageBody::Text("hello".into()),
        ts_ms: 0,
        rules: MessageRules::default(),
    };
    let (first, other) = tokio::join!(
        store.append_message(send()),
        // Another job in the same group commit is unaffected.
        store.upsert_user("c@example.org", 1)
    );
    assert!(first.is_err(), "the send must fail: {first:?}");
    other.unwrap();
    assert!(store.messages(a, chat, 1, 10).await.unwrap().is_empty());
    assert_eq!(store.last_seq(chat).await.unwrap(), 0);
    assert_eq!(store.latest_pts(a).await.unwrap(), pts_a, "no update for a");
    store.tables.updates.remove(&bad).unwrap();
    assert_eq!(store.latest_pts(b).await.unwrap(), pts_b);
    let retry = store.append_message(send()).await.unwrap();
    assert!(
        !retry.duplicate,
        "the retry must append, not find a half-written row"
    );
    assert_eq!(retry.message.seq, 1);
    assert_eq!(store.latest_pts(a).await.unwrap(), pts_a + 1);
    assert_eq!(store.latest_pts(b).await.unwrap(), pts_b + 1);
    let updates = store.updates(b, pts_b, 10).await.unwrap();
    assert_eq!(updates.len(), 1, "b gets the message exactly once");
}
