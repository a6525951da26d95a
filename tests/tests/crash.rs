//! Crash safety: `kill -9` the server while several clients are sending, restart it on the same
//! data directory, and check with the history checker that every message whose `Sent` arrived is
//! stored and delivered exactly once, in order, and that retries created no duplicates.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_sdk::protocol::MessageBody;
use tern_tests::child::ChildServer;
use tern_tests::history::{self, Acked};
use tern_tests::{Device, client_config, login, receive_all};

const SENDERS: usize = 3;
const PER_SENDER: usize = 150;
const IN_FLIGHT: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_sends_loses_nothing_acknowledged() {
    tern_tests::init();
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(dir.path(), &["--shards", "2"]).await;
    let fingerprint = server.fingerprint();
    let otp = server.otp_file();
    let quic = server.quic;
    let cfg = || client_config(quic, &fingerprint);

    let mut r1 = login(cfg(), &otp, "+15550003000").await.unwrap();
    let mut r2 = login(cfg(), &otp, "+15550003000").await.unwrap();
    let mut senders: Vec<Device> = Vec::new();
    for i in 0..SENDERS {
        senders.push(
            login(cfg(), &otp, &format!("+1555000310{i}"))
                .await
                .unwrap(),
        );
    }
    let mut chats = Vec::new();
    for s in &senders {
        chats.push(
            s.client
                .open_direct_chat(r1.session.user_id)
                .await
                .unwrap()
                .chat_id,
        );
    }

    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut tasks = Vec::new();
    for (i, s) in senders.iter().enumerate() {
        for lane in 0..IN_FLIGHT {
            let client = s.client.clone();
            let chat = chats[i];
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                for n in (lane..PER_SENDER).step_by(IN_FLIGHT) {
                    let body = MessageBody::Text(format!("s{i}-{n}"));
                    let cmid = (i * 1_000_000 + n) as u64;
                    let sent = client.send(chat, body.clone(), cmid).await.unwrap();
                    acked.lock().unwrap().push(Acked { sent, body });
                }
            }));
        }
    }

    // Kill the server once sends are well under way.
    while acked.lock().unwrap().len() < SENDERS * PER_SENDER / 3 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill();
    let acked_before_crash = acked.lock().unwrap().len();
    assert!(
        acked_before_crash < SENDERS * PER_SENDER,
        "the crash must interrupt the sends"
    );
    server.restart().await;

    let all_done = tokio::time::timeout(Duration::from_secs(60), async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await;
    assert!(
        all_done.is_ok(),
        "the outboxes did not finish after the restart"
    );
    let acked = acked.lock().unwrap().clone();
    assert_eq!(
        acked.len(),
        SENDERS * PER_SENDER,
        "every send was eventually acknowledged"
    );

    let mut received = Vec::new();
    for (name, dev) in [("r1", &mut r1), ("r2", &mut r2)] {
        received.push((
            name.to_owned(),
            receive_all(&mut dev.events, acked.len(), Duration::from_secs(30)).await,
        ));
    }
    let problems = history::check(&acked, &received);
    assert!(
        problems.is_empty(),
        "history violations after kill -9: {problems:#?}"
    );
    for (name, got) in &received {
        assert_eq!(
            got.len(),
            acked.len(),
            "{name}: exactly the acknowledged messages"
        );
        let keys: HashSet<_> = got
            .iter()
            .map(|m| (m.sender_device, m.client_msg_id))
            .collect();
        assert_eq!(
            keys.len(),
            got.len(),
            "{name}: a retried send was stored twice"
        );
    }
    // Storage holds dense seqs per chat, exactly one row per send.
    for (i, chat) in chats.iter().enumerate() {
        let mut from = 1;
        let mut all = Vec::new();
        loop {
            let page = senders[i].client.messages(*chat, from, 256).await.unwrap();
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            all.extend(page);
        }
        let seqs: Vec<u64> = all.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=PER_SENDER as u64).collect::<Vec<_>>(),
            "chat {chat} is dense with no extra rows"
        );
    }
}
