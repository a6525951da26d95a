//! What storing one group message costs as the group grows: the body is written once and each
//! member's update log gets a small pointer row (`chat ++ seq`) in the same group commit. Measured
//! without the fsync (`fanout/append_buffered`, the CPU of the writer) and with it
//! (`fanout/append_fsync`), for groups of 8, 128 and 1024 members; throughput is counted in
//! member log rows, i.e. deliveries made durable. `fanout/encode` is the per-recipient frame
//! encoding the router does for every online member.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tern_protocol::{DeviceId, Message, MessageBody, MessageId, Update, UpdateKind, UserId, codec};
use tern_server::storage::fjall::{Durability, FjallStorage};
use tern_server::storage::{MessageRules, NewGroup, NewMessage, NoSink, Storage};

const SIZES: [usize; 3] = [8, 128, 1024];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn appends(c: &mut Criterion, group: &str, durability: Durability) {
    let rt = runtime();
    let mut g = c.benchmark_group(group);
    g.sample_size(20);
    for size in SIZES {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store: Arc<dyn Storage> = Arc::new(
            FjallStorage::open_with(dir.path(), Arc::new(NoSink), None, durability)
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let creator = UserId(1);
        let chat = rt
            .block_on(store.create_group(NewGroup {
                creator,
                creator_device: DeviceId(1),
                title: "bench".into(),
                members: (2..=size as u64).map(UserId).collect(),
                now_ms: 0,
            }))
            .unwrap_or_else(|e| panic!("{e}"))
            .chat_id;
        let mut next_id = 0u64;
        g.throughput(Throughput::Elements(size as u64));
        g.bench_function(format!("members_{size}"), |b| {
            b.iter(|| {
                next_id += 1;
                let m = NewMessage {
                    chat_id: chat,
                    sender: creator,
                    sender_device: DeviceId(1),
                    client_msg_id: next_id,
                    body: MessageBody::Text("x".repeat(200)),
                    ts_ms: 0,
                    rules: MessageRules::default(),
                };
                rt.block_on(store.append_message(m)).map(|a| a.message.seq)
            })
        });
        rt.block_on(store.close()).unwrap_or_else(|e| panic!("{e}"));
    }
    g.finish();
}

fn buffered(c: &mut Criterion) {
    appends(c, "fanout/append_buffered", Durability::Buffered);
}

fn fsync(c: &mut Criterion) {
    appends(c, "fanout/append_fsync", Durability::Fsync);
}

/// The router encodes one event frame per online recipient (each has its own pts).
fn encode(c: &mut Criterion) {
    let message = Message {
        chat_id: tern_protocol::ChatId(7),
        seq: 1_000,
        msg_id: MessageId(123_456),
        sender: UserId(1 << 40),
        sender_device: DeviceId(9),
        client_msg_id: 77,
        ts_ms: 1_700_000_000_000,
        body: MessageBody::Text("x".repeat(200)),
    };
    let mut g = c.benchmark_group("fanout/encode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_recipient", |b| {
        let mut pts = 0u64;
        b.iter(|| {
            pts += 1;
            let u = Update {
                pts,
                kind: UpdateKind::Message(message.clone()),
            };
            codec::encode_update_event(&u).map(|v| v.len())
        })
    });
    g.finish();
}

criterion_group!(benches, buffered, fsync, encode);
criterion_main!(benches);
