//! The social layer end to end (issue 11, `social-spec.md`): profiles and usernames, lookup
//! limits and the same answer shape for every miss, contacts, privacy, `ProfileChanged`
//! recipients, and blocking across every operation that exists (direct messages withheld from
//! the blocker by push, sync and `GetMessages`, also after unblock; the blocker's sends
//! refused; groups unaffected; nothing of the blocker's profile leaked).

#![allow(clippy::unwrap_used)]

#[path = "../src/ephemeral.rs"]
mod ephemeral;

use std::time::Duration;

use tern_sdk::protocol::{
    Audience, ChatId, ErrorCode, MediaRef, PrivacySettings, Profile, ProfileEdit, Request,
    Response, Seq, UpdateKind, UserId, UserQuery,
};
use tern_sdk::{Client, ClientEvent, Error, Events};
use tern_tests::group_history::{create_group, fetch_all, whole_log};
use tern_tests::{Device, TestServer};

const QUIET: Duration = Duration::from_millis(700);

fn uid(d: &Device) -> UserId {
    d.session.user_id
}

/// The error code and message of a refused call.
fn refusal<T: std::fmt::Debug>(what: &str, r: Result<T, Error>) -> (ErrorCode, String) {
    match r {
        Err(Error::Server(b)) => (b.code, b.message),
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

fn code<T: std::fmt::Debug>(what: &str, r: Result<T, Error>) -> ErrorCode {
    refusal(what, r).0
}

async fn raw(c: &Client, r: Request) -> Result<Response, Error> {
    c.request(r).await
}

/// Every event that arrives until none has for `quiet`.
async fn drain(events: &mut Events, quiet: Duration) -> Vec<ClientEvent> {
    let mut out = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(quiet, events.next()).await {
        out.push(ev);
    }
    out
}

fn messages_of(log: &[ClientEvent], chat: ChatId) -> Vec<Seq> {
    log.iter()
        .filter_map(|e| match e {
            ClientEvent::Message { message, .. } if message.chat_id == chat => Some(message.seq),
            _ => None,
        })
        .collect()
}

fn profile_changes(log: &[ClientEvent]) -> Vec<UserId> {
    log.iter()
        .filter_map(|e| match e {
            ClientEvent::ProfileChanged { user_id } => Some(*user_id),
            _ => None,
        })
        .collect()
}

fn avatar() -> MediaRef {
    MediaRef([7; 32])
}

/// A full profile: name, about, photo.
async fn dress(c: &Client, name: &str) -> Profile {
    c.set_profile(ProfileEdit {
        display_name: Some(name.into()),
        about: Some(format!("about {name}")),
        avatar: Some(Some(avatar())),
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_and_usernames() {
    let server = TestServer::start_with(|c| {
        c.social.username_burst = 2;
        c.social.username_changes_per_day = 1;
        c.social.profile_burst = 3;
        c.social.profile_changes_per_day = 1;
    })
    .await;
    let a = server.login("+15551100001").await;
    let b = server.login("+15551100002").await;

    let fresh = b.client.profile(uid(&a)).await.unwrap();
    assert_eq!(
        (fresh.display_name.as_str(), fresh.updated_ms),
        ("", 0),
        "a registered user without a profile reads as empty"
    );
    let own = a.client.profile(uid(&a)).await.unwrap();
    assert_eq!(
        (
            own.username,
            own.display_name.as_str(),
            own.about,
            own.avatar,
            own.updated_ms
        ),
        (None, "", None, None, 0)
    );

    let p = dress(&a.client, "Alice").await;
    assert_eq!(p.display_name, "Alice");
    assert_eq!(p.avatar, Some(avatar()));
    assert!(p.updated_ms > 0);

    // Server-side validation (the SDK checks too, so these go raw).
    for (bad, rule) in [
        ("ab", "3 to 32"),
        ("1abc", "starts with a letter"),
        ("a..b", ".."),
        ("abc.", "end with"),
        ("ab-c", "a-z"),
    ] {
        let r = raw(
            &a.client,
            Request::SetUsername {
                username: Some(bad.into()),
            },
        )
        .await;
        let (c, m) = refusal(bad, r);
        assert_eq!(c, ErrorCode::InvalidArgument, "{bad}");
        assert!(
            m.contains(rule),
            "{bad}: {m:?} should name the rule {rule:?}"
        );
    }
    // Trimmed and lowercased; unique case-insensitively.
    let r = raw(
        &a.client,
        Request::SetUsername {
            username: Some("  Alice_1 ".into()),
        },
    )
    .await;
    let Ok(Response::Profile(p)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(p.username.as_deref(), Some("alice_1"));
    let r = raw(
        &b.client,
        Request::SetUsername {
            username: Some("ALICE_1".into()),
        },
    )
    .await;
    let (c, m) = refusal("taken", r);
    assert_eq!(
        (c, m.as_str()),
        (ErrorCode::InvalidArgument, "username is taken")
    );
    // Found case-insensitively (the SDK lowercases; raw does not).
    let r = raw(
        &b.client,
        Request::LookupUser(UserQuery::Username("ALICE_1".into())),
    )
    .await;
    let Ok(Response::Lookup(Some(found))) = r else {
        panic!("{r:?}")
    };
    assert_eq!(found.user_id, uid(&a));

    // Burst 2: the second change passes, the third is limited; the same name again is free.
    a.client.set_username(Some("alice_2")).await.unwrap();
    let limited = a.client.set_username(Some("alice_3")).await;
    assert_eq!(code("third change", limited), ErrorCode::RateLimited);
    let same = a.client.set_username(Some("alice_2")).await.unwrap();
    assert_eq!(same.username.as_deref(), Some("alice_2"));
    assert_eq!(
        b.client.lookup_username("alice_1").await.unwrap(),
        None,
        "released"
    );

    // The profile limiter: burst 3 (one spent by `dress`).
    for i in 0..2 {
        let edit = ProfileEdit {
            display_name: Some(format!("A{i}")),
            ..Default::default()
        };
        a.client.set_profile(edit).await.unwrap();
    }
    let edit = ProfileEdit {
        display_name: Some("A9".into()),
        ..Default::default()
    };
    assert_eq!(
        code("profile limit", a.client.set_profile(edit).await),
        ErrorCode::RateLimited
    );
    // Clearing about with Some("") and an empty edit (free) answer the profile.
    let p = a.client.set_profile(ProfileEdit::default()).await.unwrap();
    assert_eq!(p.display_name, "A1");
    let long = ProfileEdit {
        display_name: Some("x".repeat(65)),
        ..Default::default()
    };
    let r = a.client.set_profile(long).await;
    assert!(r.is_err(), "an over-long name is refused: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_are_bounded_and_every_miss_looks_alike() {
    let server = TestServer::start_with(|c| {
        c.social.lookup_burst = 4;
        c.social.lookups_per_day = 1;
    })
    .await;
    let a = server.login("+15551200001").await;
    let b = server.login("b-lookup@example.org").await;
    let peer = server.login("+15551200003").await;
    b.client.set_username(Some("bob_l")).await.unwrap();
    a.client.open_direct_chat(uid(&peer)).await.unwrap();

    let by_name = a.client.lookup_username("bob_l").await.unwrap().unwrap();
    assert_eq!(by_name.user_id, uid(&b));
    let by_id = a
        .client
        .lookup_identifier("B-Lookup@Example.org")
        .await
        .unwrap();
    assert_eq!(
        by_id.map(|p| p.user_id),
        Some(uid(&b)),
        "identifiers normalise like login"
    );
    let unregistered = a.client.lookup_identifier("+15559999999").await.unwrap();
    let unknown_name = raw(
        &a.client,
        Request::LookupUser(UserQuery::Username("nobody_x".into())),
    );
    let unknown_name = unknown_name.await.unwrap();
    assert_eq!(unregistered, None);
    assert_eq!(
        unknown_name,
        Response::Lookup(None),
        "same shape for every miss"
    );
    // Burst of 4 spent (found and not found alike): the next is refused, even a valid one,
    // and so is an invalid one (it would have cost a token too).
    let r = a.client.lookup_username("bob_l").await;
    assert_eq!(code("exhausted", r), ErrorCode::RateLimited);
    let r = raw(
        &a.client,
        Request::LookupUser(UserQuery::Identifier("not an id".into())),
    )
    .await;
    assert_eq!(code("exhausted, invalid", r), ErrorCode::RateLimited);
    // Profiles of strangers spend the same budget; of related users they do not.
    let r = a.client.profile(uid(&b)).await;
    assert_eq!(code("stranger's profile", r), ErrorCode::RateLimited);
    a.client.profile(uid(&peer)).await.unwrap();
    a.client.profile(uid(&a)).await.unwrap();

    // A fresh user: an unknown id is NotFound and costs a token like a real one.
    let c = server.login("+15551200004").await;
    let r = c.client.profile(UserId(0x1f_ffff_ffff_fff1)).await;
    assert_eq!(
        refusal("ghost", r),
        (ErrorCode::NotFound, "no such user".into())
    );
    for _ in 0..3 {
        c.client.profile(uid(&b)).await.unwrap();
    }
    assert_eq!(
        code("ghost spent one", c.client.profile(uid(&b)).await),
        ErrorCode::RateLimited
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_and_privacy() {
    let server = TestServer::start_with(|c| c.social.max_contacts = 2).await;
    let a = server.login("+15551300001").await;
    let b = server.login("+15551300002").await;
    let c = server.login("+15551300003").await;
    let d = server.login("+15551300004").await;
    dress(&a.client, "A").await;
    dress(&c.client, "C").await;

    let me = a.client.add_contact(uid(&a)).await;
    assert_eq!(code("self", me), ErrorCode::InvalidArgument);
    let ghost = a.client.add_contact(UserId(0x1f_ffff_ffff_fff3)).await;
    assert_eq!(
        refusal("ghost", ghost),
        (ErrorCode::NotFound, "no such user".into())
    );
    a.client.add_contact(uid(&c)).await.unwrap();
    a.client.add_contact(uid(&c)).await.unwrap();
    a.client.add_contact(uid(&b)).await.unwrap();
    assert_eq!(
        code("over max", a.client.add_contact(uid(&d)).await),
        ErrorCode::TooLarge
    );
    let listed: Vec<_> = a
        .client
        .contacts()
        .await
        .unwrap()
        .iter()
        .map(|p| p.user_id)
        .collect();
    let mut want = vec![uid(&b), uid(&c)];
    want.sort_unstable();
    assert_eq!(listed, want, "in id order");
    a.client.remove_contact(uid(&b)).await.unwrap();
    a.client.remove_contact(uid(&b)).await.unwrap();
    assert_eq!(a.client.contacts().await.unwrap().len(), 1);

    assert_eq!(
        a.client.privacy().await.unwrap(),
        PrivacySettings::default()
    );
    // Photo for contacts only; about for contacts except c.
    let p = PrivacySettings {
        photo: Audience::Contacts,
        about: Audience::ContactsExcept(vec![uid(&c), uid(&c)]),
        ..PrivacySettings::default()
    };
    let stored = a.client.set_privacy(p).await.unwrap();
    assert_eq!(
        stored.about,
        Audience::ContactsExcept(vec![uid(&c)]),
        "deduplicated"
    );
    assert_eq!(a.client.privacy().await.unwrap(), stored);
    let seen_by_c = c.client.profile(uid(&a)).await.unwrap();
    assert_eq!((seen_by_c.avatar, seen_by_c.about), (Some(avatar()), None));
    let seen_by_d = d.client.profile(uid(&a)).await.unwrap();
    assert_eq!(
        (seen_by_d.avatar, seen_by_d.about),
        (None, None),
        "d is no contact of a"
    );
    assert_eq!(seen_by_d.display_name, "A", "the name is always visible");
    let nobody = PrivacySettings {
        photo: Audience::Nobody,
        ..PrivacySettings::default()
    };
    a.client.set_privacy(nobody).await.unwrap();
    assert_eq!(
        c.client.profile(uid(&a)).await.unwrap().avatar,
        None,
        "applied at once"
    );
    assert_eq!(
        a.client.profile(uid(&a)).await.unwrap().avatar,
        Some(avatar()),
        "self sees all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_changes_reach_contacts_and_chat_peers_only() {
    let server = TestServer::start().await;
    let mut me = server.login("+15551400001").await;
    let mut me2 = server.login("+15551400001").await;
    let mut fan = server.login("+15551400002").await; // has me as a contact, no chat
    let mut dm = server.login("+15551400003").await; // direct chat
    let mut grp = server.login("+15551400004").await; // group peer
    let mut blocked = server.login("+15551400005").await; // me blocked them; group peer
    let mut blocker = server.login("+15551400006").await; // blocked me; has me as contact
    let mut stranger = server.login("+15551400007").await;
    fan.client.add_contact(uid(&me)).await.unwrap();
    blocker.client.add_contact(uid(&me)).await.unwrap();
    me.client.open_direct_chat(uid(&dm)).await.unwrap();
    create_group(&me.client, "g", &[uid(&grp), uid(&blocked), uid(&blocker)]).await;
    me.client.block(uid(&blocked)).await.unwrap();
    blocker.client.block(uid(&me)).await.unwrap();
    for d in [
        &mut me,
        &mut me2,
        &mut fan,
        &mut dm,
        &mut grp,
        &mut blocked,
        &mut blocker,
        &mut stranger,
    ] {
        drain(&mut d.events, Duration::from_millis(200)).await;
    }
    dress(&me.client, "Me").await;
    let who = uid(&me);
    for (name, d, told) in [
        ("own other device", &mut me2, true),
        ("contact-of", &mut fan, true),
        ("direct peer", &mut dm, true),
        ("group peer", &mut grp, true),
        ("blocked by me", &mut blocked, false),
        ("blocked me", &mut blocker, false),
        ("stranger", &mut stranger, false),
    ] {
        let got = profile_changes(&drain(&mut d.events, QUIET).await);
        let want = if told { vec![who] } else { Vec::new() };
        assert_eq!(got, want, "ProfileChanged pushed to the {name}");
        let synced = whole_log(&d.client)
            .await
            .iter()
            .filter(|u| matches!(u.kind, UpdateKind::ProfileChanged { user_id } if user_id == who))
            .count();
        assert_eq!(synced, want.len(), "and in the {name}'s log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_withholds_direct_messages_and_hides_the_profile() {
    let server = TestServer::start().await;
    let sender = server.login("+15551500001").await;
    let mut sender2 = server.login("+15551500001").await;
    let mut blocker = server.login("+15551500002").await;
    let (s, b) = (uid(&sender), uid(&blocker));
    dress(&blocker.client, "Blocker").await;
    blocker
        .client
        .set_username(Some("the_blocker"))
        .await
        .unwrap();
    let chat = sender.client.open_direct_chat(b).await.unwrap().chat_id;
    let group = create_group(&sender.client, "g", &[b]).await;
    let before = sender
        .client
        .send_text(chat, "before the block")
        .await
        .unwrap()
        .seq;

    assert_eq!(
        code("block self", blocker.client.block(b).await),
        ErrorCode::InvalidArgument
    );
    let ghost = blocker.client.block(UserId(0x1f_ffff_ffff_fff5)).await;
    assert_eq!(code("block ghost", ghost), ErrorCode::NotFound);
    blocker.client.block(s).await.unwrap();
    blocker.client.block(s).await.unwrap();
    assert_eq!(blocker.client.blocked().await.unwrap(), vec![s]);
    drain(&mut blocker.events, Duration::from_millis(300)).await;
    drain(&mut sender2.events, Duration::from_millis(300)).await;

    // The blocked sender: Sent, stored in seq, on its other device; withheld from the blocker.
    let withheld = sender
        .client
        .send_text(chat, "while blocked")
        .await
        .unwrap()
        .seq;
    assert_eq!(withheld, before + 1);
    let reaction = sender
        .client
        .react(chat, before, Some("👍".into()))
        .await
        .unwrap()
        .seq;
    let got = drain(&mut sender2.events, QUIET).await;
    assert_eq!(
        messages_of(&got, chat),
        vec![withheld, reaction],
        "the sender's other device"
    );
    let got = drain(&mut blocker.events, QUIET).await;
    assert!(
        messages_of(&got, chat).is_empty(),
        "no push to the blocker: {got:?}"
    );
    let receipts = sender
        .client
        .message_receipts(chat, withheld)
        .await
        .unwrap();
    assert_eq!(
        (receipts.pending, receipts.delivered.len()),
        (1, 0),
        "pending, never delivered"
    );

    // The blocker's reads are not published across the block.
    blocker.client.mark_read(chat, reaction).await.unwrap();
    let got = drain(&mut sender2.events, QUIET).await;
    assert!(
        !got.iter()
            .any(|e| matches!(e, ClientEvent::Receipt(r) if r.user_id == b)),
        "no receipt of the blocker reaches the blocked sender: {got:?}"
    );
    // The blocker cannot message the blocked user, whatever the body.
    let r = blocker.client.send_text(chat, "hi").await;
    let (c, m) = refusal("blocker sends", r);
    assert_eq!(
        (c, m.as_str()),
        (ErrorCode::Forbidden, "unblock this user to message them")
    );
    // Groups: unaffected both ways.
    sender
        .client
        .send_text(group, "group while blocked")
        .await
        .unwrap();
    blocker
        .client
        .send_text(group, "blocker in the group")
        .await
        .unwrap();
    let got = drain(&mut blocker.events, QUIET).await;
    assert_eq!(
        messages_of(&got, group).len(),
        2,
        "group messages reach the blocker"
    );
    // Opening the direct chat still works from both sides (and leaks nothing).
    assert_eq!(
        blocker.client.open_direct_chat(s).await.unwrap().chat_id,
        chat
    );
    assert_eq!(
        sender.client.open_direct_chat(b).await.unwrap().chat_id,
        chat
    );

    // The blocked user sees no photo or about, by id or lookup, and no profile changes.
    let seen = sender.client.profile(b).await.unwrap();
    assert_eq!(
        (seen.display_name.as_str(), seen.about, seen.avatar),
        ("Blocker", None, None)
    );
    let found = sender
        .client
        .lookup_username("the_blocker")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.user_id, found.about, found.avatar),
        (b, None, None),
        "found, hidden"
    );
    drain(&mut sender2.events, Duration::from_millis(200)).await;
    dress(&blocker.client, "Blocker 2").await;
    let got = drain(&mut sender2.events, QUIET).await;
    assert!(
        profile_changes(&got).is_empty(),
        "no ProfileChanged to the blocked: {got:?}"
    );
    // And the blocker sees none of the blocked user's either.
    let seen = blocker.client.profile(s).await.unwrap();
    assert_eq!(seen.avatar, None);

    // After unblock: withheld stays withheld; new messages flow both ways.
    blocker.client.unblock(s).await.unwrap();
    blocker.client.unblock(s).await.unwrap();
    assert!(blocker.client.blocked().await.unwrap().is_empty());
    let after = sender
        .client
        .send_text(chat, "after unblock")
        .await
        .unwrap()
        .seq;
    let got = drain(&mut blocker.events, QUIET).await;
    assert_eq!(
        messages_of(&got, chat),
        vec![after],
        "only the new one is pushed"
    );
    let reply = blocker
        .client
        .send_text(chat, "hello again")
        .await
        .unwrap()
        .seq;
    let read: Vec<_> = fetch_all(&blocker.client, chat, after)
        .await
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(
        read,
        vec![before, after, reply],
        "GetMessages skips the withheld"
    );
    let synced: Vec<_> = whole_log(&blocker.client)
        .await
        .into_iter()
        .filter_map(|u| match u.kind {
            UpdateKind::Message(m) if m.chat_id == chat => Some(m.seq),
            _ => None,
        })
        .collect();
    assert!(
        !synced.contains(&withheld) && !synced.contains(&reaction),
        "Sync never returns a withheld message: {synced:?}"
    );
    let sender_view = fetch_all(&sender.client, chat, after).await;
    assert!(
        sender_view.iter().any(|m| m.seq == withheld),
        "the sender still reads it"
    );
    blocker.client.mark_read(chat, reply).await.unwrap();
    let receipts = sender
        .client
        .message_receipts(chat, withheld)
        .await
        .unwrap();
    assert_eq!(
        receipts.pending, 1,
        "a withheld seq stays pending after the blocker's ack"
    );
}

/// One `tern_social_events_total` series of the server.
async fn social_metric(server: &TestServer, event: &str) -> f64 {
    let series = format!("tern_social_events_total{{event=\"{event}\"}}");
    ephemeral::metric_value(server.admin_addr(), &series).await
}

/// The text `client` reads of `seq` by `GetMessages` and by `Sync`, which must agree.
async fn text_read(client: &Client, chat: ChatId, seq: Seq) -> String {
    use tern_sdk::protocol::MessageBody;
    let shown = |b: &MessageBody| match b {
        MessageBody::Text(t) => t.clone(),
        MessageBody::Deleted => "<deleted>".into(),
        other => format!("{other:?}"),
    };
    let read = client.messages(chat, seq, 1).await.unwrap();
    let read = shown(&read.first().filter(|m| m.seq == seq).unwrap().body);
    let synced: Vec<String> = whole_log(client)
        .await
        .into_iter()
        .filter_map(|u| match u.kind {
            UpdateKind::Message(m) if m.chat_id == chat && m.seq == seq => Some(shown(&m.body)),
            _ => None,
        })
        .collect();
    assert_eq!(synced, vec![read.clone()], "Sync agrees with GetMessages");
    read
}

/// Across a block, the blocked sender's edits are withheld with what they do to the stored
/// message (the blocker reads the text they saw, also after the unblock, until an edit they
/// see), and neither side reads the other's receipts (`GetReceipts`, `GetMessageReceipts`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_senders_edits_and_both_sides_receipts_stay_hidden() {
    let server = TestServer::start().await;
    let sender = server.login("+15551600001").await;
    let mut blocker = server.login("+15551600002").await;
    let (s, b) = (uid(&sender), uid(&blocker));
    let chat = sender.client.open_direct_chat(b).await.unwrap().chat_id;
    let first = sender
        .client
        .send_text(chat, "the original")
        .await
        .unwrap()
        .seq;
    blocker.client.mark_read(chat, first).await.unwrap();
    let peers = |rows: Vec<tern_sdk::protocol::Receipt>, me: UserId| -> Vec<(UserId, Seq)> {
        rows.into_iter()
            .filter(|r| r.user_id != me)
            .map(|r| (r.user_id, r.read_seq))
            .collect()
    };
    assert_eq!(
        peers(sender.client.receipts(chat).await.unwrap(), s),
        vec![(b, first)],
        "before the block the sender reads the blocker's watermark"
    );

    blocker.client.block(s).await.unwrap();
    drain(&mut blocker.events, Duration::from_millis(300)).await;
    sender.client.edit(chat, first, "the secret").await.unwrap();
    assert_eq!(
        text_read(&sender.client, chat, first).await,
        "the secret",
        "the sender reads its edit"
    );
    assert_eq!(
        text_read(&blocker.client, chat, first).await,
        "the original",
        "the blocker reads what they saw"
    );
    let got = drain(&mut blocker.events, QUIET).await;
    assert!(messages_of(&got, chat).is_empty(), "no push: {got:?}");
    let second = sender.client.send_text(chat, "withheld").await.unwrap().seq;
    blocker.client.mark_read(chat, second).await.unwrap();
    for (viewer, me) in [(&sender.client, s), (&blocker.client, b)] {
        assert!(
            peers(viewer.receipts(chat).await.unwrap(), me).is_empty(),
            "no watermark of the other side across the block"
        );
    }
    let r = sender.client.message_receipts(chat, first).await.unwrap();
    assert_eq!(
        (r.pending, r.read.len()),
        (1, 0),
        "the old message shows pending across the block"
    );
    assert_eq!(
        social_metric(&server, "message_withheld").await,
        2.0,
        "the edit and the text"
    );
    assert_eq!(social_metric(&server, "blocked").await, 1.0);

    blocker.client.unblock(s).await.unwrap();
    assert_eq!(
        text_read(&blocker.client, chat, first).await,
        "the original",
        "an unblock reveals no withheld edit"
    );
    assert_eq!(
        peers(sender.client.receipts(chat).await.unwrap(), s),
        vec![(b, second)],
        "after the unblock the watermark shows again"
    );
    sender.client.edit(chat, first, "for all").await.unwrap();
    assert_eq!(text_read(&blocker.client, chat, first).await, "for all");
}
