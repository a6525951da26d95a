//! Conformance checks for the social rows: last seen, profiles and the username index,
//! contacts and blocks, privacy settings, the `ProfileChanged` recipients, and withheld direct
//! messages from blocked senders (the blocking contract of issue 11).

use tern_protocol::{
    Audience, ChatId, DeviceId, MediaRef, MessageBody, PrivacySettings, UpdateKind, UserId,
};

use super::{Opener, fresh, new_message};
use crate::storage::{EdgeChange, EdgeKind, NewGroup, ProfileChange, Storage, StorageError};

/// Runs every social check, each on a fresh store.
pub async fn run_all(open: Opener<'_>) {
    last_seen_is_saved_in_batches(open).await;
    usernames_are_unique_and_change_with_the_profile(open).await;
    edges_are_idempotent_bounded_and_ordered(open).await;
    privacy_settings_round_trip(open).await;
    profile_changes_reach_contacts_and_peers_but_not_blocks(open).await;
    direct_messages_from_blocked_senders_are_withheld(open).await;
    edits_by_blocked_senders_are_withheld(open).await;
    receipts_are_hidden_across_a_block(open).await;
}

async fn users(store: &dyn Storage, n: usize) -> Vec<UserId> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("s{i}@example.org");
        out.push(store.upsert_user(&id, 1).await.unwrap());
    }
    out
}

fn edge(kind: EdgeKind, owner: UserId, other: UserId, on: bool) -> EdgeChange {
    EdgeChange {
        kind,
        owner,
        other,
        on,
        max: 3,
    }
}

fn rename(user: UserId, name: Option<&str>) -> ProfileChange {
    ProfileChange {
        user,
        display_name: None,
        about: None,
        avatar: None,
        username: Some(name.map(str::to_owned)),
        now_ms: 7,
    }
}

/// `ProfileChanged` updates in `user`'s log, by whose profile.
async fn profile_updates(store: &dyn Storage, user: UserId) -> Vec<UserId> {
    let log = store.updates(user, 0, 1_000).await.unwrap();
    log.into_iter()
        .filter_map(|u| match u.kind {
            UpdateKind::ProfileChanged { user_id } => Some(user_id),
            _ => None,
        })
        .collect()
}

/// Last-seen values round-trip, the newest write wins, unknown users read as `None`, and a
/// closed store refuses.
pub async fn last_seen_is_saved_in_batches(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let (a, b) = (UserId(11), UserId(12));
    assert_eq!(store.last_seen(a).await.unwrap(), None, "never saved");
    store.save_last_seen(Vec::new()).await.unwrap();
    store
        .save_last_seen(vec![(a, 1_000), (b, 2_000)])
        .await
        .unwrap();
    assert_eq!(store.last_seen(a).await.unwrap(), Some(1_000));
    assert_eq!(store.last_seen(b).await.unwrap(), Some(2_000));
    store.save_last_seen(vec![(a, 5_000)]).await.unwrap();
    assert_eq!(store.last_seen(a).await.unwrap(), Some(5_000), "replaced");
    assert_eq!(store.last_seen(b).await.unwrap(), Some(2_000), "untouched");
    store.close().await.unwrap();
    let refused = store.save_last_seen(vec![(a, 9_000)]).await.unwrap_err();
    assert!(matches!(refused, StorageError::Closed), "got {refused:?}");
}

/// A profile is stored with its username; a taken name is refused and writes nothing (no
/// row, no update); renaming releases the old name; dropping it releases it too.
pub async fn usernames_are_unique_and_change_with_the_profile(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let u = users(store.as_ref(), 2).await;
    let (a, b) = (u[0], u[1]);
    assert_eq!(store.profile(a).await.unwrap(), None, "never set");
    let set = ProfileChange {
        display_name: Some("Alice".into()),
        about: Some(Some("hi".into())),
        avatar: Some(Some(MediaRef([1; 32]))),
        ..rename(a, Some("alice"))
    };
    let p = store.change_profile(set).await.unwrap();
    assert_eq!(p.username.as_deref(), Some("alice"));
    assert_eq!(p.display_name, "Alice");
    assert_eq!(p.about.as_deref(), Some("hi"));
    assert_eq!(p.avatar, Some(MediaRef([1; 32])));
    assert_eq!(p.updated_ms, 7);
    assert_eq!(store.profile(a).await.unwrap(), Some(p.clone()));
    assert_eq!(store.user_by_username("alice").await.unwrap(), Some(a));

    let pts_before = store.latest_pts(b).await.unwrap();
    let taken = store.change_profile(rename(b, Some("alice"))).await;
    assert!(
        matches!(&taken, Err(StorageError::Invalid(m)) if m == "username is taken"),
        "got {taken:?}"
    );
    assert_eq!(
        store.profile(b).await.unwrap(),
        None,
        "a refused change writes nothing"
    );
    assert_eq!(
        store.latest_pts(b).await.unwrap(),
        pts_before,
        "and tells no one"
    );

    store
        .change_profile(rename(a, Some("alice")))
        .await
        .unwrap();
    assert_eq!(
        store.user_by_username("alice").await.unwrap(),
        Some(a),
        "own name again"
    );
    store
        .change_profile(rename(a, Some("alicia")))
        .await
        .unwrap();
    assert_eq!(
        store.user_by_username("alice").await.unwrap(),
        None,
        "released"
    );
    assert_eq!(store.user_by_username("alicia").await.unwrap(), Some(a));
    store
        .change_profile(rename(b, Some("alice")))
        .await
        .unwrap();
    assert_eq!(store.user_by_username("alice").await.unwrap(), Some(b));
    let dropped = store.change_profile(rename(a, None)).await.unwrap();
    assert_eq!(dropped.username, None);
    assert_eq!(dropped.display_name, "Alice", "other fields stay");
    assert_eq!(store.user_by_username("alicia").await.unwrap(), None);
}

/// Contacts and blocks: idempotent, in id order, bounded, unknown users and oneself refused,
/// and the two kinds independent.
pub async fn edges_are_idempotent_bounded_and_ordered(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let mut u = users(store.as_ref(), 6).await;
    let owner = u.remove(0);
    for kind in [EdgeKind::Contact, EdgeKind::Block] {
        for &o in &u[..3] {
            store.set_edge(edge(kind, owner, o, true)).await.unwrap();
            store.set_edge(edge(kind, owner, o, true)).await.unwrap();
        }
        let mut want = u[..3].to_vec();
        want.sort_unstable();
        assert_eq!(store.edges(owner, kind).await.unwrap(), want, "{kind:?}");
        let over = store.set_edge(edge(kind, owner, u[3], true)).await;
        assert!(
            matches!(over, Err(StorageError::TooLarge(_))),
            "{kind:?}: {over:?}"
        );
        let ghost = store
            .set_edge(edge(kind, owner, UserId(1 << 60), true))
            .await;
        assert!(
            matches!(ghost, Err(StorageError::UserNotFound)),
            "{ghost:?}"
        );
        let me = store.set_edge(edge(kind, owner, owner, true)).await;
        assert!(matches!(me, Err(StorageError::UserNotFound)), "{me:?}");
        store
            .set_edge(edge(kind, owner, u[0], false))
            .await
            .unwrap();
        store
            .set_edge(edge(kind, owner, u[0], false))
            .await
            .unwrap();
        store
            .set_edge(edge(kind, owner, UserId(1 << 60), false))
            .await
            .unwrap();
        store.set_edge(edge(kind, owner, u[3], true)).await.unwrap();
        assert_eq!(store.edges(owner, kind).await.unwrap().len(), 3);
    }
    assert!(
        store
            .edges(u[0], EdgeKind::Contact)
            .await
            .unwrap()
            .is_empty(),
        "directed"
    );
}

/// Privacy settings are absent until set, then exactly what was stored.
pub async fn privacy_settings_round_trip(open: Opener<'_>) {
    let (store, _) = fresh(open).await;
    let u = users(store.as_ref(), 2).await;
    assert_eq!(store.privacy(u[0]).await.unwrap(), None);
    let p = PrivacySettings {
        last_seen: Audience::Nobody,
        online: Audience::ContactsExcept(vec![u[1]]),
        photo: Audience::Contacts,
        about: Audience::Everyone,
    };
    store.open_direct_chat(u[0], u[1], 1).await.unwrap();
    let peer_pts = store.latest_pts(u[1]).await.unwrap();
    store.set_privacy(u[0], p.clone()).await.unwrap();
    assert_eq!(store.privacy(u[0]).await.unwrap(), Some(p.clone()));
    assert_eq!(store.privacy(u[1]).await.unwrap(), None, "per user");
    let changed = |log: Vec<tern_protocol::Update>| {
        log.iter()
            .filter(|u| matches!(u.kind, UpdateKind::ProfileChanged { .. }))
            .count()
    };
    let after = store.updates(u[1], peer_pts, 100).await.unwrap();
    assert_eq!(
        changed(after),
        1,
        "the photo audience changed: the peer re-reads"
    );
    let pts = store.latest_pts(u[1]).await.unwrap();
    let presence_only = PrivacySettings {
        last_seen: Audience::Everyone,
        ..p
    };
    store.set_privacy(u[0], presence_only).await.unwrap();
    assert_eq!(
        store.latest_pts(u[1]).await.unwrap(),
        pts,
        "a last-seen change is no profile change"
    );
}

/// `ProfileChanged` goes to the changer, direct and group peers and those who have the changer
/// as a contact, once each, in the commit of the change (log and sink alike); not to users
/// the changer blocked, users who blocked the changer, or strangers.
pub async fn profile_changes_reach_contacts_and_peers_but_not_blocks(open: Opener<'_>) {
    let (store, sink) = fresh(open).await;
    let u = users(store.as_ref(), 8).await;
    let (me, dm, fan, grp, blocked, blocker, stranger, both) =
        (u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7]);
    let s = store.as_ref();
    s.open_direct_chat(me, dm, 1).await.unwrap();
    s.open_direct_chat(me, blocked, 1).await.unwrap();
    s.open_direct_chat(me, both, 1).await.unwrap();
    s.create_group(NewGroup {
        creator: me,
        creator_device: DeviceId(1),
        title: "g".into(),
        members: vec![grp, blocked, blocker, both],
        now_ms: 1,
    })
    .await
    .unwrap();
    let add = |kind, owner, other| s.set_edge(edge(kind, owner, other, true));
    add(EdgeKind::Contact, fan, me).await.unwrap();
    add(EdgeKind::Contact, both, me).await.unwrap();
    add(EdgeKind::Contact, blocker, me).await.unwrap();
    add(EdgeKind::Block, me, blocked).await.unwrap();
    add(EdgeKind::Block, blocker, me).await.unwrap();
    add(EdgeKind::Contact, me, stranger).await.unwrap();
    let change = ProfileChange {
        display_name: Some("new".into()),
        ..rename(me, None)
    };
    s.change_profile(change).await.unwrap();
    for (who, told) in [
        (me, true),
        (dm, true),
        (fan, true),
        (grp, true),
        (both, true),
        (blocked, false),
        (blocker, false),
        (stranger, false),
    ] {
        let got = profile_updates(s, who).await;
        let want = if told { vec![me] } else { Vec::new() };
        assert_eq!(
            got, want,
            "ProfileChanged in the log of {who} (told: {told})"
        );
        let sunk = sink
            .seen()
            .into_iter()
            .filter(|(u, up)| *u == who && matches!(up.kind, UpdateKind::ProfileChanged { .. }))
            .count();
        assert_eq!(sunk, want.len(), "the sink matches the log of {who}");
    }
}

/// The blocking contract in a direct chat: a blocked sender's message is stored and in the
/// sender's log, withheld from the blocker (no log row, skipped by reads, pending in message
/// receipts, also after unblock); the blocker's sends are `Forbidden`; groups are unaffected.
pub async fn direct_messages_from_blocked_senders_are_withheld(open: Opener<'_>) {
    let (store, sink) = fresh(open).await;
    let u = users(store.as_ref(), 2).await;
    let (sender, blocker) = (u[0], u[1]);
    let s = store.as_ref();
    let chat = s
        .open_direct_chat(sender, blocker, 1)
        .await
        .unwrap()
        .chat_id;
    let group = s
        .create_group(NewGroup {
            creator: sender,
            creator_device: DeviceId(1),
            title: "g".into(),
            members: vec![blocker],
            now_ms: 1,
        })
        .await
        .unwrap()
        .chat_id;
    s.append_message(new_message(chat, sender, DeviceId(1), 1))
        .await
        .unwrap();
    s.set_edge(edge(EdgeKind::Block, blocker, sender, true))
        .await
        .unwrap();
    let before = s.latest_pts(blocker).await.unwrap();
    // Many withheld in a row: a page still fills past them.
    for i in 2..=12 {
        let m = s
            .append_message(new_message(chat, sender, DeviceId(1), i))
            .await
            .unwrap();
        assert!(!m.duplicate);
        assert_eq!(m.message.seq, i, "stored in seq");
    }
    assert_eq!(
        s.latest_pts(blocker).await.unwrap(),
        before,
        "no row for the blocker"
    );
    assert!(
        !sink.seen().iter().any(|(u, up)| *u == blocker
            && matches!(&up.kind, UpdateKind::Message(m) if m.chat_id == chat && m.seq > 1)),
        "nothing pushed to the blocker"
    );
    let sender_seqs = |log: Vec<tern_protocol::Update>| -> Vec<u64> {
        log.into_iter()
            .filter_map(|u| match u.kind {
                UpdateKind::Message(m) if m.chat_id == chat => Some(m.seq),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        sender_seqs(s.updates(sender, 0, 1_000).await.unwrap()),
        (1..=12).collect::<Vec<_>>(),
        "the sender's devices get every message"
    );
    let refused = s
        .append_message(new_message(chat, blocker, DeviceId(2), 100))
        .await;
    assert!(
        matches!(&refused, Err(StorageError::Forbidden(m)) if m.contains("unblock")),
        "the blocker's send: {refused:?}"
    );
    // Receipts are not published across the block (the watermarks still move).
    let sender_pts = s.latest_pts(sender).await.unwrap();
    let read = s.mark_read(chat, blocker, 12).await.unwrap();
    assert_eq!(read.receipt.read_seq, 12);
    s.publish_receipt(chat, blocker).await.unwrap();
    assert_eq!(
        s.latest_pts(sender).await.unwrap(),
        sender_pts,
        "no receipt reaches the blocked sender"
    );
    // Groups are unaffected both ways.
    s.append_message(new_message(group, sender, DeviceId(1), 200))
        .await
        .unwrap();
    s.append_message(new_message(group, blocker, DeviceId(2), 201))
        .await
        .unwrap();
    let group_msgs = s.messages(blocker, group, 1, 100).await.unwrap();
    assert!(
        group_msgs
            .iter()
            .any(|m| m.sender == sender && m.body.is_content())
    );

    s.set_edge(edge(EdgeKind::Block, blocker, sender, false))
        .await
        .unwrap();
    let after = s
        .append_message(new_message(chat, sender, DeviceId(1), 13))
        .await
        .unwrap();
    assert_eq!(after.message.seq, 13);
    let seen = |limit| s.messages(blocker, chat, 1, limit);
    let seqs: Vec<_> = seen(100).await.unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![1, 13], "withheld stays withheld after unblock");
    let page: Vec<_> = seen(2).await.unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(page, vec![1, 13], "a page fills past withheld seqs");
    assert_eq!(
        sender_seqs(s.updates(blocker, 0, 1_000).await.unwrap()),
        vec![1, 13],
        "the blocker's log has no withheld message"
    );
    let sender_view: Vec<_> = s.messages(sender, chat, 1, 100).await.unwrap();
    assert_eq!(sender_view.len(), 13, "the sender reads them all");
    s.ack(chat, blocker, 13).await.unwrap();
    let r = s.message_receipts(chat, 5).await.unwrap();
    assert_eq!(
        (r.pending, r.delivered.len()),
        (1, 0),
        "withheld: pending forever"
    );
    let r = s.message_receipts(chat, 13).await.unwrap();
    assert_eq!(
        (r.pending, r.delivered.len()),
        (0, 1),
        "after unblock: delivered"
    );
}

/// The text `viewer` reads of `seq`, through `messages` and through the update log (both must
/// agree).
async fn text_seen(s: &dyn Storage, viewer: UserId, chat: ChatId, seq: u64) -> String {
    let body_text = |b: &MessageBody| match b {
        MessageBody::Text(t) => t.clone(),
        MessageBody::Deleted => "<deleted>".into(),
        other => format!("{other:?}"),
    };
    let read = s.messages(viewer, chat, seq, 1).await.unwrap();
    let read = read.first().filter(|m| m.seq == seq).expect("readable");
    let logged: Vec<String> = s
        .updates(viewer, 0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|u| match u.kind {
            UpdateKind::Message(m) if m.chat_id == chat && m.seq == seq => Some(body_text(&m.body)),
            _ => None,
        })
        .collect();
    assert_eq!(
        logged,
        vec![body_text(&read.body)],
        "Sync and GetMessages agree"
    );
    body_text(&read.body)
}

/// An edit is a message: while the blocker blocks its sender it is withheld, and so is what it
/// does to the stored target. The blocker reads the text they saw; the sender reads the edit.
/// An edit after the unblock shows; a delete for everyone removes the content for both.
pub async fn edits_by_blocked_senders_are_withheld(open: Opener<'_>) {
    let (store, _sink) = fresh(open).await;
    let u = users(store.as_ref(), 2).await;
    let (sender, blocker) = (u[0], u[1]);
    let s = store.as_ref();
    let chat = s
        .open_direct_chat(sender, blocker, 1)
        .await
        .unwrap()
        .chat_id;
    for cmid in [1, 2] {
        s.append_message(new_message(chat, sender, DeviceId(1), cmid))
            .await
            .unwrap();
    }
    let edit = |cmid, target, text: &str| {
        let mut m = new_message(chat, sender, DeviceId(1), cmid);
        m.body = MessageBody::Edit {
            target,
            text: text.into(),
        };
        m
    };
    s.set_edge(edge(EdgeKind::Block, blocker, sender, true))
        .await
        .unwrap();
    s.append_message(edit(10, 1, "secret one")).await.unwrap();
    s.append_message(edit(11, 1, "secret two")).await.unwrap();
    s.append_message(edit(12, 2, "secret three")).await.unwrap();
    assert_eq!(
        text_seen(s, blocker, chat, 1).await,
        "m1",
        "the blocker's view"
    );
    assert_eq!(text_seen(s, blocker, chat, 2).await, "m2");
    assert_eq!(
        text_seen(s, sender, chat, 1).await,
        "secret two",
        "the sender's view"
    );
    s.set_edge(edge(EdgeKind::Block, blocker, sender, false))
        .await
        .unwrap();
    assert_eq!(
        text_seen(s, blocker, chat, 1).await,
        "m1",
        "an unblock does not reveal what was withheld"
    );
    s.append_message(edit(13, 1, "public")).await.unwrap();
    assert_eq!(
        text_seen(s, blocker, chat, 1).await,
        "public",
        "a seen edit shows"
    );
    let mut delete = new_message(chat, sender, DeviceId(1), 14);
    delete.body = MessageBody::Delete { target: 2 };
    s.append_message(delete).await.unwrap();
    assert_eq!(
        text_seen(s, blocker, chat, 2).await,
        "<deleted>",
        "delete for everyone removes the kept text too"
    );
}

/// While a block stands either way in a direct chat, neither member reads the other's
/// watermarks (`receipts`) nor sees them in `message_receipts`; after the unblock both do.
pub async fn receipts_are_hidden_across_a_block(open: Opener<'_>) {
    let (store, _sink) = fresh(open).await;
    let u = users(store.as_ref(), 2).await;
    let (a, b) = (u[0], u[1]);
    let s = store.as_ref();
    let chat = s.open_direct_chat(a, b, 1).await.unwrap().chat_id;
    s.append_message(new_message(chat, a, DeviceId(1), 1))
        .await
        .unwrap();
    let others = |all: Vec<tern_protocol::Receipt>, me: UserId| -> Vec<UserId> {
        all.into_iter()
            .map(|r| r.user_id)
            .filter(|&u| u != me)
            .collect()
    };
    assert_eq!(others(s.receipts(a, chat).await.unwrap(), a), vec![b]);
    for (owner, other) in [(b, a), (a, b)] {
        s.set_edge(edge(EdgeKind::Block, owner, other, true))
            .await
            .unwrap();
        s.mark_read(chat, b, 1).await.unwrap();
        for viewer in [a, b] {
            let rows = s.receipts(viewer, chat).await.unwrap();
            assert_eq!(
                others(rows.clone(), viewer),
                Vec::<UserId>::new(),
                "{viewer:?}"
            );
            assert_eq!(rows.len(), 1, "their own row stays");
        }
        let r = s.message_receipts(chat, 1).await.unwrap();
        assert_eq!(
            (r.pending, r.read.len()),
            (1, 0),
            "pending across the block"
        );
        s.set_edge(edge(EdgeKind::Block, owner, other, false))
            .await
            .unwrap();
    }
    let r = s.message_receipts(chat, 1).await.unwrap();
    assert_eq!((r.pending, r.read.len()), (0, 1), "after the unblock: read");
    assert_eq!(others(s.receipts(a, chat).await.unwrap(), a), vec![b]);
}
