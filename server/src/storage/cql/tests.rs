//! The CQL backend against a real node: `TERN_SCYLLA_URI` (a ScyllaDB, `host:port`) or else
//! `TERN_TEST_CQL` (the Cassandra 5 node the test scripts start on loopback). Without either
//! the tests print a loud skip line, except under `CI`, where they fail: nothing is skipped
//! in CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tern_protocol::{DeviceId, MessageBody};

use super::{CqlConfig, CqlStorage, Replication};
use crate::storage::conformance::{self, RecordingSink};
use crate::storage::{MessageRules, NewMessage, NoSink, Storage, UpdateSink};

/// The node to test against, or `None` (after printing why) when there is none outside CI.
fn node() -> Option<String> {
    for var in ["TERN_SCYLLA_URI", "TERN_TEST_CQL"] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            return Some(v.trim().trim_start_matches("cql://").to_owned());
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the CQL backend tests: set TERN_TEST_CQL (a Cassandra node) or TERN_SCYLLA_URI"
    );
    eprintln!(
        "\n======== SKIPPED: no CQL node (set TERN_TEST_CQL=127.0.0.1:9042 or TERN_SCYLLA_URI) ========\n"
    );
    None
}

fn config(host: &str, keyspace: String) -> CqlConfig {
    CqlConfig {
        hosts: vec![host.to_owned()],
        keyspace,
        replication: Replication::Simple(1),
        local_dc: None,
    }
}

fn fresh_keyspace(prefix: &str) -> String {
    format!("{prefix}_{:x}", super::random_id().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cql_passes_the_conformance_suite() {
    let Some(host) = node() else { return };
    let started = Instant::now();
    // One keyspace, emptied before each check: measured on the 2-core dev machine against
    // Cassandra 5, truncating the six tables takes 70-130 ms where creating a fresh keyspace
    // takes ~510 ms and dropping it another 200-370 ms.
    let keyspace = fresh_keyspace("tern_conf");
    let checks = Mutex::new(0usize);
    let open = |sink: Arc<dyn UpdateSink>| -> conformance::OpenFuture<'_> {
        let config = config(&host, keyspace.clone());
        let checks = &checks;
        Box::pin(async move {
            let store = CqlStorage::open(&config, sink, None).await?;
            store.truncate_all().await?;
            *checks.lock().unwrap() += 1;
            Ok(Arc::new(store) as Arc<dyn Storage>)
        })
    };
    conformance::run_all(&open).await;
    eprintln!(
        "CQL conformance: {} checks in {:.1} s",
        checks.lock().unwrap(),
        started.elapsed().as_secs_f64()
    );
    let cleanup = CqlStorage::open(&config(&host, keyspace.clone()), Arc::new(NoSink), None)
        .await
        .unwrap();
    cleanup.drop_keyspace(&keyspace).await.unwrap();
}

/// Two stores (two sessions: two "nodes") append concurrently into one chat: seqs are dense
/// and unique, every client message id is stored once, and a send retried through the other
/// store returns the original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_append_into_one_chat() {
    let Some(host) = node() else { return };
    let keyspace = fresh_keyspace("tern_nodes");
    let cfg = config(&host, keyspace.clone());
    let sink = Arc::new(RecordingSink::default());
    let one = CqlStorage::open(&cfg, sink.clone(), None).await.unwrap();
    let two = CqlStorage::open(&cfg, Arc::new(NoSink), None)
        .await
        .unwrap();
    let a = one.upsert_user("a@example.org", 1).await.unwrap();
    let b = two.upsert_user("b@example.org", 1).await.unwrap();
    let chat = one.open_direct_chat(a, b, 1).await.unwrap().chat_id;
    assert_eq!(two.open_direct_chat(b, a, 1).await.unwrap().chat_id, chat);
    let send = move |task: u64, i: u64| NewMessage {
        chat_id: chat,
        sender: a,
        sender_device: DeviceId(1),
        client_msg_id: task * 1_000 + i,
        body: MessageBody::Text(format!("{task}/{i}")),
        ts_ms: 1,
        rules: MessageRules::default(),
    };
    let (stores, tasks, per_task) = (2u64, 4u64, 50u64);
    let mut handles = Vec::new();
    for t in 0..stores * tasks {
        let store = if t % 2 == 0 { one.clone() } else { two.clone() };
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..per_task {
                let r = store.append_message(send(t, i)).await.unwrap();
                assert!(!r.duplicate);
                seqs.push(r.message.seq);
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for h in handles {
        seqs.extend(h.await.unwrap());
    }
    seqs.sort_unstable();
    let n = stores * tasks * per_task;
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "dense and unique seqs");
    let mut all = Vec::new();
    let mut from = 1;
    loop {
        let page = two.messages(b, chat, from, 100).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        all.extend(page);
    }
    let ids: BTreeSet<u64> = all.iter().map(|m| m.client_msg_id).collect();
    assert_eq!(
        (all.len() as u64, ids.len() as u64),
        (n, n),
        "each send stored once"
    );
    // Every member's log holds every message once.
    for u in [a, b] {
        let log = one.updates(u, 0, 10_000).await.unwrap();
        let logged: Vec<u64> = log
            .iter()
            .filter_map(|x| match &x.kind {
                tern_protocol::UpdateKind::Message(m) => Some(m.seq),
                _ => None,
            })
            .collect();
        let unique: BTreeSet<u64> = logged.iter().copied().collect();
        assert_eq!(
            (logged.len() as u64, unique.len() as u64),
            (n, n),
            "log of {u}"
        );
    }
    // A retry through the other node finds the original.
    let first = one.append_message(send(99, 1)).await.unwrap();
    let again = two.append_message(send(99, 1)).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message, first.message);
    assert_eq!(one.last_seq(chat).await.unwrap(), n + 1);
    one.drop_keyspace(&keyspace).await.unwrap();
}

/// A crash between an append's batch and its fan-out (the sender never retries): the next
/// append into the chat logs the lost message to the members first, so their logs keep seq
/// order and miss nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_append_repairs_a_cut_fan_out() {
    use super::chats::row;
    use super::schema::chat;
    use super::{big, encode};
    let Some(host) = node() else { return };
    let keyspace = fresh_keyspace("tern_repair");
    let store = CqlStorage::open(&config(&host, keyspace.clone()), Arc::new(NoSink), None)
        .await
        .unwrap();
    let a = store.upsert_user("a@example.org", 1).await.unwrap();
    let b = store.upsert_user("b@example.org", 1).await.unwrap();
    let c = store.open_direct_chat(a, b, 1).await.unwrap().chat_id;
    let send = |cmid: u64| NewMessage {
        chat_id: c,
        sender: a,
        sender_device: DeviceId(1),
        client_msg_id: cmid,
        body: MessageBody::Text(format!("m{cmid}")),
        ts_ms: 1,
        rules: MessageRules::default(),
    };
    let first = store.append_message(send(1)).await.unwrap().message;
    // Seq 2 committed in the chat, then "the process died": no log rows, watermark at 1.
    let lost = tern_protocol::Message {
        seq: 2,
        client_msg_id: 2,
        body: MessageBody::Text("m2".into()),
        ..first.clone()
    };
    let db = &store.db;
    let stmts = vec![
        (
            &db.st.cr_put_new,
            row(c, chat::MESSAGE, 2, 0, 0, encode(&lost).unwrap()),
        ),
        (
            &db.st.cr_put,
            row(c, chat::IDEMPOTENCY, a.0, 1, 2, 2u64.to_be_bytes().to_vec()),
        ),
        (&db.st.cr_set_seq, vec![big(2), big(c.0)]),
    ];
    assert!(db.batch(stmts).await.unwrap());
    let third = store.append_message(send(3)).await.unwrap().message;
    assert_eq!(third.seq, 3);
    for u in [a, b] {
        let seqs: Vec<u64> = store
            .updates(u, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|x| match x.kind {
                tern_protocol::UpdateKind::Message(m) => Some(m.seq),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, vec![1, 2, 3], "the log of {u} is repaired in order");
    }
    store.drop_keyspace(&keyspace).await.unwrap();
}
