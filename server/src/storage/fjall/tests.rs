#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use tern_protocol::{DeviceId, MessageBody};

use super::FjallStorage;
use crate::storage::conformance::{self, RecordingSink};
use crate::storage::{NewMessage, NoSink, Storage, StorageError, UpdateSink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fjall_passes_the_conformance_suite() {
    let dirs = std::sync::Mutex::new(Vec::new());
    let open = |sink: Arc<dyn UpdateSink>| {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStorage::open(dir.path(), sink, None)?;
        dirs.lock().unwrap().push(dir);
        Ok(Arc::new(store) as Arc<dyn Storage>)
    };
    conformance::run_all(&open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let chat;
    {
        let store = FjallStorage::open(dir.path(), Arc::new(NoSink), None).unwrap();
        let a = store.upsert_user("a@example.org", 1).await.unwrap();
        let b = store.upsert_user("b@example.org", 1).await.unwrap();
        chat = store.open_direct_chat(a, b, 1).await.unwrap().chat_id;
        for i in 0..20 {
            store
                .append_message(NewMessage {
                    chat_id: chat,
                    sender: a,
                    sender_device: DeviceId(1),
                    client_msg_id: i,
                    body: MessageBody::Text(format!("{i}")),
                    ts_ms: 0,
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
    let msgs = store.messages(chat, 1, 100).await.unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
}
