//! Conformance checks for groups and message features: membership intervals, system messages,
//! permissions checked in the write, edits and deletes that change what is stored, per-user
//! hiding, and the group receipt push rule.

use tern_protocol::{
    ChatId, DeviceId, GroupChange, GroupSettings, Message, MessageBody, RichText, SystemEvent,
    UpdateKind, UserId,
};

use super::{Opener, fresh, text};
use crate::storage::{
    GroupCommand, GroupOp, MessageRules, NewGroup, NewMessage, Storage, StorageError,
};

/// Runs every group check, each on a fresh store.
pub async fn run_all(open: Opener<'_>) {
    groups_record_membership_as_history(open).await;
    intervals_bound_what_members_read(open).await;
    the_longest_standing_member_inherits_admin(open).await;
    group_permissions_are_checked_in_the_write(open).await;
    groups_are_bounded(open).await;
    edits_and_deletes_change_what_is_stored(open).await;
    hidden_messages_are_per_user(open).await;
    group_reads_push_to_the_sender_only(open).await;
}

async fn users(store: &dyn Storage, n: usize) -> Vec<UserId> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(
            store
                .upsert_user(&format!("g{i}@example.org"), 1)
                .await
                .unwrap(),
        );
    }
    out
}

async fn group(store: &dyn Storage, creator: UserId, members: &[UserId]) -> ChatId {
    store
        .create_group(NewGroup {
            creator,
            creator_device: DeviceId(1),
            title: "g".into(),
            members: members.to_vec(),
            now_ms: 1,
        })
        .await
        .unwrap()
        .chat_id
}

async fn change(
    store: &dyn Storage,
    chat: ChatId,
    actor: UserId,
    op: GroupOp,
) -> Result<Message, StorageError> {
    store
        .change_group(GroupCommand {
            chat_id: chat,
            actor,
            actor_device: DeviceId(1),
            op,
            now_ms: 2,
        })
        .await
}

fn say(chat: ChatId, sender: UserId, cmid: u64, body: MessageBody, ts_ms: u64) -> NewMessage {
    NewMessage {
        chat_id: chat,
        sender,
        sender_device: DeviceId(sender.0),
        client_msg_id: cmid,
        body,
        ts_ms,
        rules: MessageRules {
            edit_window_ms: 1_000,
            delete_window_ms: 10_000,
            max_edits: 2,
            max_mentions: 4,
        },
    }
}

async fn post(store: &dyn Storage, chat: ChatId, sender: UserId, cmid: u64) -> Message {
    store
        .append_message(say(chat, sender, cmid, text(&format!("m{cmid}")), 100))
        .await
        .unwrap()
        .message
}

fn system(m: &Message) -> Option<&GroupChange> {
    match &m.body {
        MessageBody::System(SystemEvent { change, .. }) => Some(change),
        _ => None,
    }
}

async fn seqs_seen(store: &dyn Storage, viewer: UserId, chat: ChatId) -> Vec<u64> {
    let page = store.messages(viewer, chat, 1, 256).await.unwrap();
    page.iter().map(|m| m.seq).collect()
}

/// Creation writes `Created` then `MembersAdded`, every member joins, the creator is admin.
pub async fn groups_record_membership_as_history(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let u = users(store.as_ref(), 3).await;
    let chat = group(store.as_ref(), u[0], &[u[1], u[2], u[1]]).await;
    let all = store.messages(u[0], chat, 1, 10).await.unwrap();
    assert_eq!(all.len(), 2, "creation writes two system messages");
    assert!(matches!(system(&all[0]), Some(GroupChange::Created { title }) if title == "g"));
    let mut initial = vec![u[1], u[2]];
    initial.sort_unstable();
    assert_eq!(
        system(&all[1]),
        Some(&GroupChange::MembersAdded(initial)),
        "initial members, deduplicated and sorted, without the creator"
    );
    let record = store.chat(chat).await.unwrap().unwrap();
    assert!(record.is_admin(u[0]) && !record.is_admin(u[1]));
    assert_eq!(record.since_seq(u[2]), Some(1));
    for &user in &u {
        let log = store.updates(user, 0, 10).await.unwrap();
        assert!(
            matches!(log.first().map(|x| &x.kind), Some(UpdateKind::ChatJoined(c)) if c.chat_id == chat),
            "every member's log starts with the join"
        );
        assert_eq!(log.len(), 3, "join + two system messages");
    }
}

/// A member reads from the seq that added them; a removed member gets the removal and
/// `ChatLeft`, nothing after; re-adding opens a new interval and the gap stays closed.
pub async fn intervals_bound_what_members_read(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let u = users(store.as_ref(), 3).await;
    let (admin, m, late) = (u[0], u[1], u[2]);
    let chat = group(store.as_ref(), admin, &[m]).await;
    post(store.as_ref(), chat, admin, 1).await; // 3
    let added = change(store.as_ref(), chat, admin, GroupOp::Add(vec![late]))
        .await
        .unwrap(); // 4
    post(store.as_ref(), chat, m, 2).await; // 5
    assert_eq!(
        seqs_seen(store.as_ref(), late, chat).await,
        vec![added.seq, 5]
    );
    let removed = change(store.as_ref(), chat, admin, GroupOp::Remove(late))
        .await
        .unwrap(); // 6
    post(store.as_ref(), chat, admin, 3).await; // 7
    let log = store.updates(late, 0, 50).await.unwrap();
    let last = log.last().map(|x| x.kind.clone());
    assert_eq!(
        last,
        Some(UpdateKind::ChatLeft {
            chat_id: chat,
            at_seq: removed.seq
        }),
        "the removed member's log ends with ChatLeft"
    );
    assert!(
        !log.iter()
            .any(|x| matches!(&x.kind, UpdateKind::Message(msg) if msg.seq > removed.seq)),
        "nothing after the removal reaches the removed member's log"
    );
    assert!(
        store
            .append_message(say(chat, late, 9, text("x"), 100))
            .await
            .is_err(),
        "a removed member cannot send"
    );
    change(store.as_ref(), chat, admin, GroupOp::Add(vec![late]))
        .await
        .unwrap(); // 8
    post(store.as_ref(), chat, m, 4).await; // 9
    assert_eq!(
        seqs_seen(store.as_ref(), late, chat).await,
        vec![4, 5, 6, 8, 9],
        "two intervals, and the gap between them stays unreadable"
    );
    assert_eq!(
        seqs_seen(store.as_ref(), m, chat).await,
        (1..=9).collect::<Vec<_>>()
    );
}

/// When the last admin leaves, the member with the earliest interval start becomes admin.
pub async fn the_longest_standing_member_inherits_admin(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let u = users(store.as_ref(), 3).await;
    let chat = group(store.as_ref(), u[0], &[u[1]]).await;
    change(store.as_ref(), chat, u[0], GroupOp::Add(vec![u[2]]))
        .await
        .unwrap();
    let left = change(store.as_ref(), chat, u[0], GroupOp::Leave)
        .await
        .unwrap();
    let next = store.messages(u[1], chat, left.seq + 1, 5).await.unwrap();
    assert_eq!(
        next.first().and_then(system),
        Some(&GroupChange::AdminInherited(u[1])),
        "the heir is recorded right after the Left"
    );
    let record = store.chat(chat).await.unwrap().unwrap();
    assert!(record.is_admin(u[1]) && !record.is_admin(u[2]));
    assert!(!record.has_member(u[0]));
}

/// Non-admins are refused admin operations; non-members get `ChatNotFound`.
pub async fn group_permissions_are_checked_in_the_write(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let u = users(store.as_ref(), 4).await;
    let (admin, m, outsider) = (u[0], u[1], u[3]);
    let chat = group(store.as_ref(), admin, &[m, u[2]]).await;
    let forbidden = |r: Result<Message, StorageError>| matches!(r, Err(StorageError::Forbidden(_)));
    assert!(forbidden(
        change(store.as_ref(), chat, m, GroupOp::Remove(u[2])).await
    ));
    assert!(forbidden(
        change(store.as_ref(), chat, m, GroupOp::Add(vec![outsider])).await
    ));
    assert!(forbidden(
        change(
            store.as_ref(),
            chat,
            m,
            GroupOp::SetAdmin {
                user: m,
                admin: true
            }
        )
        .await
    ));
    assert!(forbidden(
        change(
            store.as_ref(),
            chat,
            m,
            GroupOp::Settings(GroupSettings::default())
        )
        .await
    ));
    assert!(matches!(
        change(store.as_ref(), chat, outsider, GroupOp::Leave).await,
        Err(StorageError::ChatNotFound)
    ));
    assert!(
        matches!(
            change(
                store.as_ref(),
                chat,
                admin,
                GroupOp::SetAdmin {
                    user: admin,
                    admin: false
                }
            )
            .await,
            Err(StorageError::Invalid(_))
        ),
        "the only admin cannot step down"
    );
    let settings = GroupSettings {
        announcement_only: true,
        ..GroupSettings::default()
    };
    change(store.as_ref(), chat, admin, GroupOp::Settings(settings))
        .await
        .unwrap();
    assert!(
        matches!(
            store.append_message(say(chat, m, 1, text("x"), 100)).await,
            Err(StorageError::Forbidden(_))
        ),
        "announcement-only: members may not send"
    );
    post(store.as_ref(), chat, admin, 2).await;
}

/// A group holds at most `MAX_CHAT_MEMBERS`; beyond it `TooLarge` and nothing is written.
pub async fn groups_are_bounded(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let max = tern_protocol::limits::MAX_CHAT_MEMBERS as u64;
    let creator = UserId(1);
    let too_many: Vec<UserId> = (2..=max + 1).map(UserId).collect();
    let refused = store
        .create_group(NewGroup {
            creator,
            creator_device: DeviceId(1),
            title: "big".into(),
            members: too_many.clone(),
            now_ms: 1,
        })
        .await;
    assert!(
        matches!(&refused, Err(StorageError::TooLarge(m)) if m.contains(&max.to_string())),
        "got {refused:?}"
    );
    let chat = group(store.as_ref(), creator, &too_many[..too_many.len() - 1]).await;
    assert_eq!(
        store.chat(chat).await.unwrap().unwrap().members.len() as u64,
        max
    );
    let extra = change(
        store.as_ref(),
        chat,
        creator,
        GroupOp::Add(vec![UserId(max + 5)]),
    )
    .await;
    assert!(
        matches!(extra, Err(StorageError::TooLarge(_))),
        "got {extra:?}"
    );
}

/// An edit rewrites its target; a delete replaces the target and its edits' text in storage;
/// windows, authorship and targets are checked.
pub async fn edits_and_deletes_change_what_is_stored(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let u = users(store.as_ref(), 3).await;
    let (admin, a, b) = (u[0], u[1], u[2]);
    let chat = group(store.as_ref(), admin, &[a, b]).await;
    let target = post(store.as_ref(), chat, a, 1).await;
    let append = |m| {
        let store = store.clone();
        async move { store.append_message(m).await }
    };
    let edit = |cmid, sender, text: &str, ts| {
        say(
            chat,
            sender,
            cmid,
            MessageBody::Edit {
                target: target.seq,
                text: text.into(),
            },
            ts,
        )
    };
    assert!(matches!(
        append(edit(2, b, "no", 200)).await,
        Err(StorageError::Forbidden(_))
    ));
    assert!(matches!(
        append(edit(3, a, "late", 5_000)).await,
        Err(StorageError::Forbidden(_))
    ));
    let e1 = append(edit(4, a, "secret v2", 200)).await.unwrap().message;
    let stored = store.message(chat, target.seq).await.unwrap().unwrap();
    assert_eq!(stored.body, text("secret v2"), "the target shows the edit");
    let reply = RichText {
        text: "re".into(),
        reply_to: Some(999),
        mentions: vec![],
    };
    assert!(
        matches!(
            append(say(chat, b, 5, MessageBody::Rich(reply), 200)).await,
            Err(StorageError::Invalid(_))
        ),
        "a reply to a seq that does not exist"
    );
    let react = MessageBody::Reaction {
        target: target.seq,
        emoji: Some("👍".into()),
    };
    append(say(chat, b, 6, react, 200)).await.unwrap();
    let by_b = say(chat, b, 7, MessageBody::Delete { target: target.seq }, 200);
    assert!(matches!(
        append(by_b).await,
        Err(StorageError::Forbidden(_))
    ));
    // The admin may delete anyone's message, any time.
    let by_admin = say(
        chat,
        admin,
        8,
        MessageBody::Delete { target: target.seq },
        99_999,
    );
    append(by_admin).await.unwrap();
    let gone = store.message(chat, target.seq).await.unwrap().unwrap();
    assert_eq!(gone.body, MessageBody::Deleted);
    let e1_now = store.message(chat, e1.seq).await.unwrap().unwrap();
    assert_eq!(
        e1_now.body,
        MessageBody::Edit {
            target: target.seq,
            text: String::new()
        },
        "an edit of a deleted message keeps no text"
    );
    assert!(matches!(
        append(edit(9, a, "again", 200)).await,
        Err(StorageError::Invalid(_))
    ));
    let fake = say(chat, a, 10, MessageBody::Deleted, 200);
    assert!(matches!(append(fake).await, Err(StorageError::Invalid(_))));
}

/// Delete-for-me hides messages for that user only, in reads and in the update log.
pub async fn hidden_messages_are_per_user(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let u = users(store.as_ref(), 2).await;
    let chat = store.open_direct_chat(u[0], u[1], 1).await.unwrap().chat_id;
    let m = post(store.as_ref(), chat, u[1], 1).await;
    store.hide_messages(u[0], chat, vec![m.seq]).await.unwrap();
    let mine = store.messages(u[0], chat, 1, 10).await.unwrap();
    assert_eq!(mine[0].body, MessageBody::Deleted);
    let theirs = store.messages(u[1], chat, 1, 10).await.unwrap();
    assert_eq!(theirs[0].body, text("m1"));
    let log = store.updates(u[0], 0, 10).await.unwrap();
    assert!(log.iter().any(|x| x.kind
        == UpdateKind::HiddenForMe {
            chat_id: chat,
            seqs: vec![m.seq]
        }));
    assert!(log.iter().any(
        |x| matches!(&x.kind, UpdateKind::Message(msg) if msg.seq == m.seq && msg.body == MessageBody::Deleted)
    ));
    assert!(matches!(
        store.hide_messages(u[0], chat, vec![99]).await,
        Err(StorageError::Invalid(_))
    ));
}

/// A read in a group is pushed to the reader and the senders it covers, not to every member;
/// `message_receipts` says who stored and read a message.
pub async fn group_reads_push_to_the_sender_only(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let u = users(store.as_ref(), 5).await;
    let chat = group(store.as_ref(), u[0], &u[1..]).await;
    let m = post(store.as_ref(), chat, u[1], 1).await;
    let before: Vec<u64> = {
        let mut v = Vec::new();
        for &x in &u {
            v.push(store.latest_pts(x).await.unwrap());
        }
        v
    };
    store.mark_read(chat, u[2], m.seq).await.unwrap();
    for (i, &x) in u.iter().enumerate() {
        let grew = store.latest_pts(x).await.unwrap() - before[i];
        let expected = u64::from(x == u[1] || x == u[2]);
        assert_eq!(
            grew, expected,
            "user {i}: a read reaches only the reader and the sender"
        );
    }
    store.ack(chat, u[3], m.seq).await.unwrap();
    let info = store.message_receipts(chat, m.seq).await.unwrap();
    let ids = |v: &[tern_protocol::MemberReceipt]| v.iter().map(|r| r.user_id).collect::<Vec<_>>();
    let mut delivered = vec![u[2], u[3]];
    delivered.sort_unstable();
    assert_eq!(ids(&info.delivered), delivered);
    assert_eq!(ids(&info.read), vec![u[2]]);
    assert_eq!(
        info.pending, 2,
        "the creator and one member have not stored it"
    );
    assert!(info.read.iter().all(|r| r.at_ms > 0), "times are recorded");
}
