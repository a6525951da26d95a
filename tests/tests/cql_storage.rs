//! The server end to end on the CQL backend (`--storage cql://...`): login, a direct chat,
//! live delivery to two devices, and an offline device's sync, checked with the history checker.
//! Runs against `TERN_SCYLLA_URI` or else `TERN_TEST_CQL` (the Cassandra 5 node that
//! `scripts/test.sh` starts); without either it prints a skip line, and fails under `CI`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tern_sdk::protocol::MessageBody;
use tern_server::storage::StorageConfig;
use tern_tests::history::{self, Acked};
use tern_tests::{TestServer, collect_messages, receive_all};

const WAIT: Duration = Duration::from_secs(30);

fn cql_node() -> Option<String> {
    for var in ["TERN_SCYLLA_URI", "TERN_TEST_CQL"] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            return Some(v.trim().trim_start_matches("cql://").to_owned());
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the CQL tests: set TERN_TEST_CQL or TERN_SCYLLA_URI"
    );
    eprintln!("\n======== SKIPPED: no CQL node (set TERN_TEST_CQL=127.0.0.1:9042) ========\n");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_cql_storage_delivers_and_syncs() {
    let Some(host) = cql_node() else { return };
    let keyspace = format!(
        "tern_e2e_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000_000
    );
    let server = TestServer::start_with(|c| {
        c.storage = format!("cql://{host}/{keyspace}").parse().unwrap();
        assert!(matches!(c.storage, StorageConfig::Cql { .. }));
    })
    .await;
    let (a, mut b, chat) = server.pair("+15550000101", "cql-bob@example.org").await;
    let b_phone = server.login("cql-bob@example.org").await;
    let saved = b_phone.client.snapshot().await.unwrap();
    b_phone.client.close().await;

    let mut acked = Vec::new();
    for i in 0..30 {
        let body = MessageBody::Text(format!("over cql {i}"));
        let sent = a.client.send(chat, body.clone(), 50_000 + i).await.unwrap();
        acked.push(Acked { sent, body });
    }
    // A retried send (same client_msg_id) is the original.
    let again = a
        .client
        .send(chat, acked[3].body.clone(), 50_003)
        .await
        .unwrap();
    assert_eq!(again.seq, acked[3].sent.seq, "a retry returns the original");

    let live = receive_all(&mut b.events, 30, WAIT).await;
    let (_client, mut events) = server.resume(&saved);
    let synced = collect_messages(&mut events, 30, WAIT).await;
    let problems = history::check(
        &acked,
        &[
            ("b-live".into(), live.clone()),
            ("b-phone".into(), synced.clone()),
        ],
    );
    assert!(problems.is_empty(), "history violations: {problems:#?}");
    assert_eq!((live.len(), synced.len()), (30, 30));
    drop(server);
    let cleanup = tern_server::storage::cql::CqlStorage::open(
        &tern_server::storage::cql::CqlConfig {
            hosts: vec![host],
            keyspace: keyspace.clone(),
            replication: tern_server::storage::cql::Replication::Simple(1),
            local_dc: None,
        },
        std::sync::Arc::new(tern_server::storage::NoSink),
        None,
    )
    .await
    .unwrap();
    cleanup.drop_keyspace(&keyspace).await.unwrap();
}
