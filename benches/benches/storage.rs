//! Storage append latency and group-commit throughput of the embedded (fjall) backend, with a
//! real fsync per commit (`storage/append_fsync`), and the same cases without the sync
//! (`storage/append_buffered`, `Durability::Buffered`: writes reach the OS page cache only) to show
//! what the fsync costs. The server always uses the fsync variant.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tern_protocol::{DeviceId, MessageBody};
use tern_server::storage::fjall::{Durability, FjallStorage};
use tern_server::storage::{MessageRules, NewMessage, NoSink, Storage};

fn storage(c: &mut Criterion) {
    appends(c, "storage/append_fsync", Durability::Fsync);
}

fn storage_buffered(c: &mut Criterion) {
    appends(c, "storage/append_buffered", Durability::Buffered);
}

/// One append at a time, then 16 and 128 concurrent appends (group commit), on a fresh store.
fn appends(c: &mut Criterion, group: &str, durability: Durability) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store: Arc<dyn Storage> = Arc::new(
        FjallStorage::open_with(dir.path(), Arc::new(NoSink), None, durability)
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let (a, chat) = rt.block_on(async {
        let a = store
            .upsert_user("+15550000001", 0)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let b = store
            .upsert_user("+15550000002", 0)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let chat = store
            .open_direct_chat(a, b, 0)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .chat_id;
        (a, chat)
    });
    let mut next_id = 0u64;
    let mut message = move || {
        next_id += 1;
        NewMessage {
            chat_id: chat,
            sender: a,
            sender_device: DeviceId(1),
            client_msg_id: next_id,
            body: MessageBody::Text("x".repeat(200)),
            ts_ms: 0,
            rules: MessageRules::default(),
        }
    };

    let mut g = c.benchmark_group(group);
    g.sample_size(30);
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_at_a_time", |b| {
        b.iter(|| {
            rt.block_on(store.append_message(message()))
                .map(|a| a.message.seq)
        })
    });
    for concurrent in [16usize, 128] {
        g.throughput(Throughput::Elements(concurrent as u64));
        g.bench_function(format!("group_commit_{concurrent}"), |b| {
            b.iter(|| {
                let msgs: Vec<_> = (0..concurrent).map(|_| message()).collect();
                rt.block_on(async {
                    let tasks: Vec<_> = msgs
                        .into_iter()
                        .map(|m| {
                            let s = store.clone();
                            tokio::spawn(
                                async move { s.append_message(m).await.map(|a| a.message.seq) },
                            )
                        })
                        .collect();
                    for t in tasks {
                        let _ = t.await;
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, storage, storage_buffered);
criterion_main!(benches);
