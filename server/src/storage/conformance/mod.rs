//! The storage conformance suite: written once, run against every backend.
//!
//! A backend's test calls [`run_all`] with a function that opens a fresh, empty store wired to the
//! given sink. Every check panics with a message naming the broken property.

#![allow(clippy::unwrap_used)]

pub mod groups;
pub mod social;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tern_protocol::{ChatId, DeviceId, MessageBody, Update, UpdateKind, UserId};

use super::{
    MessageRules, NewMessage, RefreshRecord, Rotation, Storage, StorageError, StorageResult,
    UpdateSink,
};

/// A sink that records what it is given, to compare with the update log.
#[derive(Debug, Default)]
pub struct RecordingSink {
    seen: Mutex<Vec<(UserId, Update)>>,
}

impl RecordingSink {
    /// Everything committed so far, in commit order.
    pub fn seen(&self) -> Vec<(UserId, Update)> {
        self.seen.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

impl UpdateSink for RecordingSink {
    fn committed(&self, updates: &[(UserId, Update)]) {
        if let Ok(mut g) = self.seen.lock() {
            g.extend_from_slice(updates);
        }
    }
}

/// What an [`Opener`] returns: opening is async (a CQL store connects and creates its schema).
pub type OpenFuture<'a> = Pin<Box<dyn Future<Output = StorageResult<Arc<dyn Storage>>> + 'a>>;

/// Opens a fresh, empty store that reports commits to the sink.
pub type Opener<'a> = &'a dyn Fn(Arc<dyn UpdateSink>) -> OpenFuture<'a>;

/// Runs every check, each on a fresh store.
pub async fn run_all(open: Opener<'_>) {
    users_and_devices(open).await;
    refresh_tokens_are_single_use(open).await;
    refresh_and_device_rows_are_bounded(open).await;
    direct_chats_are_unique_per_pair(open).await;
    concurrent_appends_get_dense_seqs(open).await;
    appends_are_idempotent(open).await;
    non_members_cannot_append_or_receipt(open).await;
    receipts_only_move_forward(open).await;
    update_log_matches_sink(open).await;
    user_ids_are_random(open).await;
    lists_page(open).await;
    acks_are_published_coalesced(open).await;
    groups::run_all(open).await;
    social::run_all(open).await;
}

async fn fresh(open: Opener<'_>) -> (Arc<dyn Storage>, Arc<RecordingSink>) {
    let sink = Arc::new(RecordingSink::default());
    let store = open(sink.clone()).await.expect("opening a fresh store");
    (store, sink)
}

fn text(s: &str) -> MessageBody {
    MessageBody::Text(s.to_owned())
}

fn new_message(chat: ChatId, sender: UserId, device: DeviceId, cmid: u64) -> NewMessage {
    NewMessage {
        chat_id: chat,
        sender,
        sender_device: device,
        client_msg_id: cmid,
        body: text(&format!("m{cmid}")),
        ts_ms: 1_000 + cmid,
        rules: MessageRules::default(),
    }
}

async fn two_users_in_a_chat(store: &dyn Storage) -> (UserId, UserId, ChatId) {
    let a = store.upsert_user("+15550000001", 1).await.unwrap();
    let b = store.upsert_user("+15550000002", 1).await.unwrap();
    let chat = store.open_direct_chat(a, b, 1).await.unwrap();
    (a, b, chat.chat_id)
}

/// Appends `n` messages from `sender` (client msg ids `0..n`).
async fn append_n(store: &dyn Storage, chat: ChatId, sender: UserId, n: u64) {
    for i in 0..n {
        store
            .append_message(new_message(chat, sender, DeviceId(1), i))
            .await
            .unwrap();
    }
}

/// Users are found by identifier, devices listed and revoked.
pub async fn users_and_devices(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let a = store.upsert_user("a@example.org", 1).await.unwrap();
    assert_eq!(
        store.upsert_user("a@example.org", 2).await.unwrap(),
        a,
        "upsert must find the user"
    );
    let b = store.upsert_user("b@example.org", 1).await.unwrap();
    assert_ne!(a, b, "different identifiers are different users");
    assert!(store.user_exists(a).await.unwrap());
    assert!(!store.user_exists(UserId(9_999)).await.unwrap());
    let d1 = store.create_device(a, "phone", 5).await.unwrap();
    let d2 = store.create_device(a, "laptop", 6).await.unwrap();
    assert_ne!(d1.device_id, d2.device_id);
    let listed = store.devices(a).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        store.devices(b).await.unwrap().is_empty(),
        "devices are per user"
    );
    assert!(store.revoke_device(a, d1.device_id).await.unwrap());
    assert!(
        store
            .device(a, d1.device_id)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(
        !store
            .device(a, d2.device_id)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(
        !store.revoke_device(b, d2.device_id).await.unwrap(),
        "cannot revoke another user's device"
    );
    assert!(store.device(b, d2.device_id).await.unwrap().is_none());
}

/// Rotation marks the old token used and stores the new one together; a retry with the same pair
/// inside the grace window is a replay, anything else a reuse.
pub async fn refresh_tokens_are_single_use(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let rec = RefreshRecord::new(UserId(1), DeviceId(2), 10_000);
    store.put_refresh_token([7; 32], rec.clone()).await.unwrap();
    let next = RefreshRecord::new(UserId(1), DeviceId(2), 20_000);
    let rotate = |old, new, now| store.rotate_refresh_token(old, new, next.clone(), now, 100);
    assert_eq!(
        rotate([7; 32], [8; 32], 1_000).await.unwrap(),
        Rotation::Rotated(rec.clone())
    );
    let used = store.refresh_token([7; 32]).await.unwrap().unwrap();
    assert!(used.used && used.used_ms == 1_000 && used.successor == Some([8; 32]));
    let stored = store.refresh_token([8; 32]).await.unwrap().unwrap();
    assert_eq!(stored.predecessor, Some([7; 32]), "storage links the chain");
    assert!(!stored.used);
    assert!(matches!(
        rotate([7; 32], [8; 32], 1_050).await.unwrap(),
        Rotation::Replayed(_)
    ));
    assert!(
        matches!(
            rotate([7; 32], [9; 32], 1_050).await.unwrap(),
            Rotation::Reused(_)
        ),
        "another successor is a reuse"
    );
    assert!(
        matches!(
            rotate([7; 32], [8; 32], 1_100).await.unwrap(),
            Rotation::Reused(_)
        ),
        "after the grace window it is a reuse"
    );
    assert!(matches!(
        rotate([8; 32], [10; 32], 1_200).await.unwrap(),
        Rotation::Rotated(_)
    ));
    store
        .put_refresh_token([11; 32], rec.clone())
        .await
        .unwrap();
    assert!(matches!(
        rotate([11; 32], [12; 32], 1_000).await.unwrap(),
        Rotation::Rotated(_)
    ));
    assert!(matches!(
        rotate([12; 32], [13; 32], 1_001).await.unwrap(),
        Rotation::Rotated(_)
    ));
    assert!(matches!(
        rotate([12; 32], [13; 32], 1_002).await.unwrap(),
        Rotation::Replayed(_)
    ));
    assert!(matches!(
        rotate([13; 32], [14; 32], 1_003).await.unwrap(),
        Rotation::Rotated(_)
    ));
    for gone in [11, 12] {
        assert_eq!(
            rotate([gone; 32], [gone + 1; 32], 1_004).await.unwrap(),
            Rotation::Unknown,
            "once its successor is rotated, a used token is deleted"
        );
    }
    assert_eq!(
        rotate([99; 32], [98; 32], 1_000).await.unwrap(),
        Rotation::Unknown
    );
    assert_eq!(
        store
            .user_by_identifier("nobody@example.org")
            .await
            .unwrap(),
        None
    );
    let u = store.upsert_user("somebody@example.org", 0).await.unwrap();
    assert_eq!(
        store
            .user_by_identifier("somebody@example.org")
            .await
            .unwrap(),
        Some(u)
    );
}

/// A device keeps at most its current refresh token and the one before it; a revoked device keeps
/// none; a user keeps a bounded number of revoked devices.
pub async fn refresh_and_device_rows_are_bounded(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let user = store.upsert_user("rows@example.org", 0).await.unwrap();
    let device = store.create_device(user, "d", 0).await.unwrap().device_id;
    let rec = RefreshRecord::new(user, device, 1_000_000);
    let hash = |i: u8| [i; 32];
    store.put_refresh_token(hash(0), rec.clone()).await.unwrap();
    for i in 0..20u8 {
        let r = store
            .rotate_refresh_token(hash(i), hash(i + 1), rec.clone(), 1_000 + u64::from(i), 10)
            .await
            .unwrap();
        assert!(matches!(r, Rotation::Rotated(_)), "rotation {i}: {r:?}");
    }
    let mut live = Vec::new();
    for i in 0..=20u8 {
        if store.refresh_token(hash(i)).await.unwrap().is_some() {
            live.push(i);
        }
    }
    assert_eq!(
        live,
        vec![19, 20],
        "only the current token and its predecessor remain"
    );
    assert!(store.revoke_device(user, device).await.unwrap());
    assert!(store.refresh_token(hash(20)).await.unwrap().is_none());
    assert!(store.refresh_token(hash(19)).await.unwrap().is_none());
    for n in 0..40 {
        let d = store.create_device(user, "again", n).await.unwrap();
        store
            .put_refresh_token(
                [100 + n as u8; 32],
                RefreshRecord::new(user, d.device_id, 9),
            )
            .await
            .unwrap();
        store.revoke_device(user, d.device_id).await.unwrap();
    }
    let kept = store.devices(user).await.unwrap();
    assert!(kept.len() <= 16, "{} revoked devices kept", kept.len());
    let newest = kept.iter().map(|d| d.device_id).max().unwrap();
    assert!(kept.iter().all(|d| d.revoked));
    assert!(
        newest.0 > device.0,
        "the newest revoked devices are the ones kept"
    );
}

/// One direct chat per pair, both members see it joined.
pub async fn direct_chats_are_unique_per_pair(open: Opener<'_>) {
    let (store, sink) = fresh(open).await;
    let (a, b, chat) = two_users_in_a_chat(store.as_ref()).await;
    let again = store.open_direct_chat(b, a, 2).await.unwrap();
    assert_eq!(
        again.chat_id, chat,
        "opening from the other side finds the same chat"
    );
    let mut members = vec![a, b];
    members.sort_unstable();
    assert_eq!(again.members, members, "members are sorted");
    assert_eq!(store.user_chats(a).await.unwrap(), vec![chat]);
    assert_eq!(store.user_chats(b).await.unwrap(), vec![chat]);
    let joined: Vec<_> = sink
        .seen()
        .into_iter()
        .filter(|(_, u)| matches!(u.kind, UpdateKind::ChatJoined(_)))
        .collect();
    assert_eq!(joined.len(), 2, "each member gets one ChatJoined update");
    assert!(store.chat(ChatId(424_242)).await.unwrap().is_none());
}

/// Concurrent appends to one chat get seqs 1..=n with no gap or repeat.
pub async fn concurrent_appends_get_dense_seqs(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let (a, _b, chat) = two_users_in_a_chat(store.as_ref()).await;
    let n = 200u64;
    let mut tasks = Vec::new();
    for i in 0..n {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append_message(new_message(chat, a, DeviceId(1), i))
                .await
                .unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().message.seq);
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "seqs must be dense and unique"
    );
    assert_eq!(store.last_seq(chat).await.unwrap(), n);
    let page = store.messages(a, chat, 1, 50).await.unwrap();
    assert_eq!(page.len(), 50);
    assert!(
        page.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "messages come in seq order"
    );
    let tail = store.messages(a, chat, n - 4, 50).await.unwrap();
    assert_eq!(tail.len(), 5);
}

/// The same `(device, client_msg_id)` never makes a second row.
pub async fn appends_are_idempotent(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let (a, _b, chat) = two_users_in_a_chat(store.as_ref()).await;
    let first = store
        .append_message(new_message(chat, a, DeviceId(1), 42))
        .await
        .unwrap();
    assert!(!first.duplicate);
    let again = store
        .append_message(new_message(chat, a, DeviceId(1), 42))
        .await
        .unwrap();
    assert!(again.duplicate, "a retried send is recognised");
    assert_eq!(
        again.message, first.message,
        "a retry returns the original message"
    );
    let other_device = store
        .append_message(new_message(chat, a, DeviceId(2), 42))
        .await
        .unwrap();
    assert!(!other_device.duplicate, "keys are per device");
    assert_eq!(store.last_seq(chat).await.unwrap(), 2);
}

/// Non-members get `ChatNotFound`, like for a chat that does not exist.
pub async fn non_members_cannot_append_or_receipt(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let (_a, _b, chat) = two_users_in_a_chat(store.as_ref()).await;
    let outsider = store.upsert_user("+15550000003", 1).await.unwrap();
    let err = store
        .append_message(new_message(chat, outsider, DeviceId(9), 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::ChatNotFound), "got {err:?}");
    let missing = store
        .append_message(new_message(ChatId(777), outsider, DeviceId(9), 2))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StorageError::ChatNotFound),
        "got {missing:?}"
    );
    assert!(matches!(
        store.ack(chat, outsider, 0).await,
        Err(StorageError::ChatNotFound)
    ));
    assert_eq!(
        store.last_seq(chat).await.unwrap(),
        0,
        "nothing was written"
    );
}

/// Watermarks max-merge and keep `read <= delivered <= last seq`.
pub async fn receipts_only_move_forward(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let (a, b, chat) = two_users_in_a_chat(store.as_ref()).await;
    append_n(store.as_ref(), chat, a, 5).await;
    let r = store.ack(chat, b, 3).await.unwrap();
    assert!(r.changed);
    assert_eq!((r.receipt.delivered_seq, r.receipt.read_seq), (3, 0));
    let back = store.ack(chat, b, 2).await.unwrap();
    assert!(!back.changed, "an older ack changes nothing");
    assert_eq!(back.receipt.delivered_seq, 3);
    let read = store.mark_read(chat, b, 4).await.unwrap();
    assert_eq!(
        (read.receipt.delivered_seq, read.receipt.read_seq),
        (4, 4),
        "read implies delivered"
    );
    let err = store.mark_read(chat, b, 6).await.unwrap_err();
    assert!(
        matches!(err, StorageError::SeqOutOfRange { seq: 6, last: 5 }),
        "got {err:?}"
    );
    let all = store.receipts(a, chat).await.unwrap();
    let rb = all.iter().find(|r| r.user_id == b).unwrap();
    assert_eq!((rb.delivered_seq, rb.read_seq), (4, 4));
    let ra = all.iter().find(|r| r.user_id == a).unwrap();
    assert_eq!((ra.delivered_seq, ra.read_seq), (0, 0));
}

/// The update log is dense per user, and the sink saw exactly the log, in order.
pub async fn update_log_matches_sink(open: Opener<'_>) {
    let (store, sink) = fresh(open).await;
    let (a, b, chat) = two_users_in_a_chat(store.as_ref()).await;
    for i in 0..10 {
        store
            .append_message(new_message(chat, a, DeviceId(1), i))
            .await
            .unwrap();
    }
    store.mark_read(chat, b, 10).await.unwrap();
    for user in [a, b] {
        let mut log = Vec::new();
        let mut after = 0;
        loop {
            let page = store.updates(user, after, 4).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.pts;
            log.extend(page);
        }
        let pts: Vec<_> = log.iter().map(|u| u.pts).collect();
        assert_eq!(
            pts,
            (1..=log.len() as u64).collect::<Vec<_>>(),
            "pts is dense for {user}"
        );
        assert_eq!(store.latest_pts(user).await.unwrap(), log.len() as u64);
        let sunk: Vec<_> = sink
            .seen()
            .into_iter()
            .filter(|(u, _)| *u == user)
            .map(|(_, u)| u)
            .collect();
        // Exactly equal, `ChatJoined` included: its snapshot is stored, not re-read.
        assert_eq!(sunk, log, "the sink saw the log of {user}, in order");
        assert_eq!(log.len(), 1 + 10 + 1, "joined, ten messages, one receipt");
    }
}

/// New user ids are random (not enumerable), below 2^53, and neighbours of a real id do not exist.
pub async fn user_ids_are_random(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            store
                .upsert_user(&format!("u{i}@example.org"), 1)
                .await
                .unwrap(),
        );
    }
    for w in ids.windows(2) {
        assert!(
            w[0].0.abs_diff(w[1].0) > 1_000,
            "ids look sequential: {ids:?}"
        );
    }
    for id in &ids {
        assert!(id.0 >= 1 && id.0 < 1 << 53, "id {id} is not exact in JSON");
        assert!(store.user_exists(*id).await.unwrap());
        assert!(!store.user_exists(UserId(id.0 + 1)).await.unwrap());
    }
    assert!(!store.user_exists(UserId(0)).await.unwrap());
}

/// Device and chat lists page in id order and a page after the last is empty.
pub async fn lists_page(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let a = store.upsert_user("a@example.org", 1).await.unwrap();
    let mut devices = Vec::new();
    for i in 0..5 {
        devices.push(
            store
                .create_device(a, &format!("d{i}"), 1)
                .await
                .unwrap()
                .device_id,
        );
    }
    let mut seen = Vec::new();
    let mut after = DeviceId(0);
    loop {
        let page = store.devices_page(a, after, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 2, "a page holds at most `limit`");
        after = last.device_id;
        seen.extend(page.iter().map(|d| d.device_id));
    }
    assert_eq!(seen, devices, "every device once, in id order");
    let mut chats = Vec::new();
    for i in 0..5 {
        let peer = store
            .upsert_user(&format!("p{i}@example.org"), 1)
            .await
            .unwrap();
        assert_eq!(store.direct_chat(a, peer).await.unwrap(), None);
        let chat = store.open_direct_chat(a, peer, 1).await.unwrap().chat_id;
        assert_eq!(store.direct_chat(peer, a).await.unwrap(), Some(chat));
        chats.push(chat);
    }
    chats.sort_unstable();
    let first = store.user_chats_page(a, ChatId(0), 3).await.unwrap();
    let rest = store.user_chats_page(a, first[2], 3).await.unwrap();
    assert_eq!([first, rest].concat(), chats);
    assert!(
        store
            .user_chats_page(a, chats[4], 3)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.user_chats(a).await.unwrap(), chats);
}

/// An ack writes the watermark but no log row; publishing appends the current watermarks to the
/// other members' logs only; a read receipt reaches every member at once.
pub async fn acks_are_published_coalesced(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let (a, b, chat) = two_users_in_a_chat(store.as_ref()).await;
    append_n(store.as_ref(), chat, a, 5).await;
    let (a_before, b_before) = (
        store.latest_pts(a).await.unwrap(),
        store.latest_pts(b).await.unwrap(),
    );
    for seq in 1..=5 {
        assert!(store.ack(chat, b, seq).await.unwrap().changed);
    }
    assert_eq!(
        store.latest_pts(a).await.unwrap(),
        a_before,
        "acks write no log row"
    );
    assert_eq!(store.latest_pts(b).await.unwrap(), b_before);
    let published = store.publish_receipt(chat, b).await.unwrap().unwrap();
    assert_eq!((published.delivered_seq, published.read_seq), (5, 0));
    let a_log = store.updates(a, a_before, 10).await.unwrap();
    assert_eq!(a_log.len(), 1, "one row for five ack steps");
    assert!(matches!(a_log[0].kind, UpdateKind::Receipt(r) if r == published));
    assert_eq!(
        store.latest_pts(b).await.unwrap(),
        b_before,
        "the acker's own log gets no delivered receipt"
    );
    let outsider = store.upsert_user("+15550000009", 1).await.unwrap();
    assert_eq!(store.publish_receipt(chat, outsider).await.unwrap(), None);
    store.mark_read(chat, b, 3).await.unwrap();
    assert_eq!(store.latest_pts(a).await.unwrap(), a_before + 2);
    assert_eq!(
        store.latest_pts(b).await.unwrap(),
        b_before + 1,
        "read reaches the reader"
    );
}
