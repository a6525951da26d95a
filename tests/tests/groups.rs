//! Groups end to end (issue 9, `groups-spec.md`): the group history checker (and a test that it
//! catches doctored histories), a group with concurrent senders, membership changes, edits,
//! deletes and a forced reconnect, a 1024-member group, and focused tests of admin inheritance,
//! announcement-only, the edit and delete windows, delete-for-me, target validation and group
//! receipts across a `kill -9`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_sdk::protocol::{
    ChatFeatures, ChatId, ChatInfo, ChatKind, DeviceId, ErrorCode, Frame, GroupChange, GroupInfo,
    GroupSettings, Message, MessageBody, MessageId, MessageReceipts, Receipt, Request, Response,
    RichText, Sent, Seq, SystemEvent, UpdateKind, UserId,
};
use tern_sdk::{Client, ClientEvent, Events};
use tern_tests::child::ChildServer;
use tern_tests::group_history::{
    self, DeviceView, Fetched, Final, Interval, Seen, create_group, fetch_all, refused, send_body,
    sent,
};
use tern_tests::raw::{Outcome, RawConn};
use tern_tests::{Device, TestServer, client_config, login};

const WAIT: Duration = Duration::from_secs(20);

fn uid(d: &Device) -> UserId {
    d.session.user_id
}

/// Reads events into `log` until `done(log)` holds or `deadline` passes; whether it held.
async fn until(
    events: &mut Events,
    log: &mut Vec<ClientEvent>,
    deadline: tokio::time::Instant,
    done: impl Fn(&[ClientEvent]) -> bool,
) -> bool {
    while !done(log) {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(ev)) => log.push(ev),
            Ok(None) | Err(_) => return false,
        }
    }
    true
}

/// Reads events into `log` until none arrives for `quiet`.
async fn drain(events: &mut Events, log: &mut Vec<ClientEvent>, quiet: Duration) {
    while let Ok(Some(ev)) = tokio::time::timeout(quiet, events.next()).await {
        log.push(ev);
    }
}

/// Whether `log` holds the message `seq` of `chat`.
fn has_seq(log: &[ClientEvent], chat: ChatId, seq: Seq) -> bool {
    log.iter().any(|e| {
        matches!(e, ClientEvent::Message { message, .. } if message.chat_id == chat && message.seq == seq)
    })
}

fn view(name: String, user: UserId, chat: ChatId, log: &[ClientEvent]) -> DeviceView {
    DeviceView {
        name,
        user,
        seen: log.iter().filter_map(|e| Seen::of(chat, e)).collect(),
    }
}

async fn group_info(c: &Client, chat: ChatId) -> GroupInfo {
    match c.request(Request::GetGroupInfo { chat_id: chat }).await {
        Ok(Response::GroupInfo(g)) => g,
        other => panic!("GetGroupInfo {chat}: {other:?}"),
    }
}

async fn message_receipts(c: &Client, chat: ChatId, seq: Seq) -> MessageReceipts {
    match c
        .request(Request::GetMessageReceipts { chat_id: chat, seq })
        .await
    {
        Ok(Response::MessageReceipts(r)) => r,
        other => panic!("GetMessageReceipts {chat} {seq}: {other:?}"),
    }
}

async fn receipts(c: &Client, chat: ChatId) -> Vec<Receipt> {
    match c.request(Request::GetReceipts { chat_id: chat }).await {
        Ok(Response::Receipts(r)) => r,
        other => panic!("GetReceipts {chat}: {other:?}"),
    }
}

async fn text(c: &Client, chat: ChatId, t: &str) -> Sent {
    let body = MessageBody::Text(t.into());
    sent(t, send_body(c, chat, rand_id(), body).await)
}

fn rand_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 40);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

async fn send(c: &Client, chat: ChatId, body: MessageBody) -> Result<Response, tern_sdk::Error> {
    send_body(c, chat, rand_id(), body).await
}

async fn call(c: &Client, r: Request) -> Result<Response, tern_sdk::Error> {
    c.request(r).await
}

async fn hide(c: &Client, chat: ChatId, seqs: Vec<Seq>) -> Result<Response, tern_sdk::Error> {
    c.request(Request::DeleteForMe {
        chat_id: chat,
        seqs,
    })
    .await
}

fn system(actor: UserId, change: GroupChange) -> MessageBody {
    MessageBody::System(SystemEvent { actor, change })
}

// ---- The checker itself ----

fn msg(seq: Seq, sender: u64, body: MessageBody) -> Message {
    Message {
        chat_id: ChatId(1),
        seq,
        msg_id: MessageId(100 + seq),
        sender: UserId(sender),
        sender_device: DeviceId(sender),
        client_msg_id: seq,
        ts_ms: 1000 + seq,
        body,
    }
}

/// Chat 1: user 1 creates it with user 2, user 2 is removed at 4 and re-added at 6.
fn doctored_chat() -> Vec<Message> {
    vec![
        msg(
            1,
            1,
            system(UserId(1), GroupChange::Created { title: "t".into() }),
        ),
        msg(
            2,
            1,
            system(UserId(1), GroupChange::MembersAdded(vec![UserId(2)])),
        ),
        msg(3, 1, MessageBody::Text("three".into())),
        msg(
            4,
            1,
            system(UserId(1), GroupChange::MemberRemoved(UserId(2))),
        ),
        msg(5, 1, MessageBody::Text("five".into())),
        msg(
            6,
            1,
            system(UserId(1), GroupChange::MembersAdded(vec![UserId(2)])),
        ),
        msg(7, 1, MessageBody::Text("seven".into())),
        msg(
            8,
            1,
            MessageBody::Edit {
                target: 7,
                text: "seven!".into(),
            },
        ),
    ]
}

fn views(user2: Vec<Seen>) -> Vec<DeviceView> {
    let all = doctored_chat();
    vec![
        DeviceView {
            name: "u1".into(),
            user: UserId(1),
            seen: all.into_iter().map(Seen::Message).collect(),
        },
        DeviceView {
            name: "u2".into(),
            user: UserId(2),
            seen: user2,
        },
    ]
}

fn user2_correct() -> Vec<Seen> {
    let all = doctored_chat();
    let m = |s: Seq| Seen::Message(all[s as usize - 1].clone());
    vec![
        m(1),
        m(2),
        m(3),
        m(4),
        Seen::Left(4),
        Seen::Joined,
        m(6),
        m(7),
        m(8),
    ]
}

#[test]
fn the_group_history_checker_catches_doctored_histories() {
    let all = doctored_chat();
    let m = |s: Seq| Seen::Message(all[s as usize - 1].clone());
    let report = group_history::check(&[], &views(user2_correct()), &[]);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(
        report.intervals[&UserId(2)],
        vec![
            Interval {
                from: 1,
                to: Some(4)
            },
            Interval { from: 6, to: None }
        ]
    );
    assert_eq!(report.finals[&7], Final::Text("seven!".into()));

    let expect = |name: &str, seen: Vec<Seen>, needle: &str| {
        let report = group_history::check(&[], &views(seen), &[]);
        assert!(
            report.problems.iter().any(|p| p.contains(needle)),
            "{name}: expected a problem mentioning {needle:?}, got {:#?}",
            report.problems
        );
    };
    // A message outside the intervals (seq 5 was written while user 2 was out).
    let mut outside = user2_correct();
    outside.insert(5, m(5));
    expect("outside", outside, "outside its membership intervals");
    // A duplicate.
    let mut dup = user2_correct();
    dup.insert(3, m(3));
    expect("duplicate", dup, "arrived twice");
    // A missing message.
    let mut missing = user2_correct();
    missing.remove(2);
    expect("missing", missing, "missing seq 3");
    // Out of order.
    let mut reordered = user2_correct();
    reordered.swap(1, 2);
    expect("reordered", reordered, "arrived after");
    // No ChatLeft at the end of an interval.
    let mut no_left = user2_correct();
    no_left.remove(4);
    expect("no ChatLeft", no_left, "no ChatLeft at seq 4");
    // No ChatJoined before a later interval.
    let mut no_joined = user2_correct();
    no_joined.remove(5);
    expect("no ChatJoined", no_joined, "no ChatJoined");
    // An edit that did not converge: user 2 never got the edit although it was a member.
    let mut diverged = user2_correct();
    diverged.pop();
    expect("no edit", diverged, "missing seq 8");
    // A fetch showing content that should be gone, and one outside the intervals.
    let mut edited = all.clone();
    edited[6].body = MessageBody::Text("seven".into());
    let fetched = Fetched {
        name: "fetch u2".into(),
        user: UserId(2),
        messages: vec![edited[4].clone(), edited[5].clone(), edited[6].clone()],
    };
    let report = group_history::check(&[], &views(user2_correct()), &[fetched]);
    let text = report.problems.join("\n");
    assert!(text.contains("outside its intervals"), "{text}");
    assert!(text.contains("should be Text(\"seven!\")"), "{text}");
    // An acknowledged send nobody got.
    let lost = Sent {
        chat_id: ChatId(1),
        seq: 9,
        msg_id: MessageId(109),
        ts_ms: 0,
    };
    let report = group_history::check(&[lost], &views(user2_correct()), &[]);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("acknowledged seq 9")),
        "{:#?}",
        report.problems
    );
}

// ---- One group, concurrent senders, membership changes, edits, deletes, a reconnect ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_history_holds_through_membership_changes_edits_deletes_and_a_reconnect() {
    const PER_LANE: usize = 40;
    let server = TestServer::start().await;
    // Six users; users 0, 1 and 3 have two devices.
    let mut devices: Vec<(usize, Device)> = Vec::new();
    for (u, n) in [(0usize, 2), (1, 2), (2, 1), (3, 2), (4, 1), (5, 1)] {
        for _ in 0..n {
            devices.push((u, server.login(&format!("+155509200{u}")).await));
        }
    }
    let user = |u: usize| {
        devices
            .iter()
            .find(|(x, _)| *x == u)
            .map(|(_, d)| d.session.user_id)
            .unwrap()
    };
    let users: Vec<UserId> = (0..6).map(user).collect();
    let client = |u: usize, k: usize| {
        devices
            .iter()
            .filter(|(x, _)| *x == u)
            .nth(k)
            .map(|(_, d)| d.client.clone())
            .unwrap()
    };
    let admin = client(0, 0);
    let chat = create_group(&admin, "history", &[users[1], users[2], users[3]]).await;
    let acked: Arc<Mutex<Vec<Sent>>> = Arc::default();

    // Background senders: two lanes each on users 0 and 1 (user 1 from its second device),
    // each editing and deleting some of its own messages.
    let mut lanes = Vec::new();
    for (u, k) in [(0usize, 1usize), (1, 1)] {
        for lane in 0..2 {
            let c = client(u, k);
            let acked = acked.clone();
            lanes.push(tokio::spawn(async move {
                let mut own: Vec<Seq> = Vec::new();
                for n in 0..PER_LANE {
                    let s = text(&c, chat, &format!("u{u} lane {lane} #{n}")).await;
                    own.push(s.seq);
                    acked.lock().unwrap().push(s);
                    if n % 7 == 3 && own.len() >= 2 {
                        let body = MessageBody::Edit {
                            target: own[own.len() - 2],
                            text: format!("u{u} lane {lane} #{} edited", n - 1),
                        };
                        let s = sent("edit", send(&c, chat, body).await);
                        acked.lock().unwrap().push(s);
                    }
                    if n % 11 == 5 && own.len() >= 3 {
                        let body = MessageBody::Delete {
                            target: own[own.len() - 3],
                        };
                        let s = sent("delete", send(&c, chat, body).await);
                        acked.lock().unwrap().push(s);
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }));
        }
    }

    // The membership script, interleaved with the traffic.
    let push = |s: Sent| acked.lock().unwrap().push(s);
    let pause = || tokio::time::sleep(Duration::from_millis(40));
    while acked.lock().unwrap().len() < 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for i in 0..3 {
        push(text(&client(2, 0), chat, &format!("u2 first #{i}")).await);
    }
    let add = |who: Vec<UserId>| Request::AddMembers {
        chat_id: chat,
        members: who,
    };
    push(sent("add u4", call(&admin, add(vec![users[4]])).await));
    pause().await;
    let u4_own = text(&client(4, 0), chat, "u4 hello").await;
    push(u4_own);
    let r = send(
        &client(4, 0),
        chat,
        MessageBody::Reaction {
            target: u4_own.seq,
            emoji: Some("🎉".into()),
        },
    )
    .await;
    push(sent("u4 reaction", r));
    let remove = |who: UserId| Request::RemoveMember {
        chat_id: chat,
        user_id: who,
    };
    push(sent("remove u2", call(&admin, remove(users[2])).await));
    // The forced reconnect, while traffic flows.
    client(1, 0).reconnect();
    pause().await;
    for i in 0..2 {
        push(text(&client(3, 0), chat, &format!("u3 #{i}")).await);
    }
    push(sent(
        "add u5, re-add u2",
        call(&admin, add(vec![users[5], users[2]])).await,
    ));
    pause().await;
    push(text(&client(2, 0), chat, "u2 back").await);
    let u5_own = text(&client(5, 0), chat, "u5 hello").await;
    push(u5_own);
    let leave = Request::LeaveGroup { chat_id: chat };
    push(sent("u3 leaves", call(&client(3, 1), leave.clone()).await));
    // An admin deletes someone else's message.
    let victim = text(&client(1, 0), chat, "u1, to be deleted by the admin").await;
    push(victim);
    pause().await;
    let r = send(&admin, chat, MessageBody::Delete { target: victim.seq }).await;
    push(sent("admin deletes u1's", r));
    let r = send(
        &client(5, 0),
        chat,
        MessageBody::Edit {
            target: u5_own.seq,
            text: "u5 hello, edited".into(),
        },
    )
    .await;
    push(sent("u5 edits", r));
    // User 1 hides one of user 0's messages for themself.
    let hidden_seq = acked.lock().unwrap()[0].seq;
    let r = hide(&client(1, 0), chat, vec![hidden_seq]).await;
    assert!(matches!(r, Ok(Response::Done)), "DeleteForMe: {r:?}");
    push(sent("u4 leaves", call(&client(4, 0), leave.clone()).await));
    pause().await;
    push(sent("re-add u3", call(&admin, add(vec![users[3]])).await));
    client(3, 1).reconnect();
    push(text(&client(3, 0), chat, "u3 back").await);
    for l in lanes {
        tokio::time::timeout(Duration::from_secs(60), l)
            .await
            .unwrap()
            .unwrap();
    }
    let last = group_info(&admin, chat).await.last_seq;

    let u4 = client(4, 0);
    let whole_logs: Vec<(usize, Client)> = (0..6).map(|u| (u, client(u, 0))).collect();
    // Collect everything: current members until they have the last seq, then quiet.
    let current = [0usize, 1, 2, 3, 5];
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut views = Vec::new();
    let mut fetched = Vec::new();
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for (u, d) in devices.iter_mut() {
        let k = counts.entry(*u).or_default();
        let name = format!("u{u}/d{k}");
        *k += 1;
        let mut log = Vec::new();
        if current.contains(u) {
            until(&mut d.events, &mut log, deadline, |l| {
                has_seq(l, chat, last)
            })
            .await;
        }
        drain(&mut d.events, &mut log, Duration::from_millis(300)).await;
        views.push(view(name.clone(), d.session.user_id, chat, &log));
        if current.contains(u) {
            fetched.push(Fetched {
                name: format!("{name} GetMessages"),
                user: d.session.user_id,
                messages: fetch_all(&d.client, chat, last).await,
            });
        }
    }
    // The member who left reads nothing any more.
    let r = call(
        &u4,
        Request::GetMessages {
            chat_id: chat,
            from_seq: 1,
            limit: 10,
        },
    )
    .await;
    assert_eq!(
        refused("GetMessages after leaving", r),
        (ErrorCode::NotFound, "no such chat".into())
    );

    // Each user's whole update log, synced afresh from pts 0, holds the same history.
    for (u, c) in whole_logs {
        let log = group_history::whole_log(&c).await;
        let seen = log
            .iter()
            .filter_map(|x| Seen::of_update(chat, x))
            .collect();
        views.push(DeviceView {
            name: format!("u{u} full Sync"),
            user: users[u],
            seen,
        });
    }
    let acked = acked.lock().unwrap().clone();
    let report = group_history::check(&acked, &views, &fetched);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.last_seq, last);
    let iv = |u: usize| report.intervals[&users[u]].clone();
    assert_eq!(iv(0), vec![Interval { from: 1, to: None }]);
    assert_eq!(iv(1), vec![Interval { from: 1, to: None }]);
    assert_eq!(iv(2).len(), 2, "u2 removed and re-added: {:?}", iv(2));
    assert_eq!(iv(3).len(), 2, "u3 left and re-added: {:?}", iv(3));
    assert!(
        iv(4).len() == 1 && iv(4)[0].to.is_some(),
        "u4 left: {:?}",
        iv(4)
    );
    assert_eq!(report.finals[&victim.seq], Final::Deleted);
    assert_eq!(
        report.finals[&u5_own.seq],
        Final::Text("u5 hello, edited".into())
    );
}

// ---- 1024 members ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1024_member_group_end_to_end() {
    const N: usize = 1024;
    const PER_ENDPOINT: usize = 64;
    let t0 = Instant::now();
    let server = TestServer::start().await;
    let endpoints: Vec<_> = (0..=N / PER_ENDPOINT)
        .map(|_| tern_sdk::shared_endpoint(server.addr).unwrap())
        .collect();
    // N members plus one more user to overflow the group with.
    let mut devs: Vec<Device> = Vec::with_capacity(N + 1);
    for batch in (0..=N).collect::<Vec<_>>().chunks(128) {
        let mut tasks = Vec::new();
        for &i in batch {
            let mut cfg = server.client_config();
            cfg.endpoint = Some(endpoints[i / PER_ENDPOINT].clone());
            let otp = server.otp_file();
            tasks.push(tokio::spawn(async move {
                login(cfg, &otp, &format!("+1557{i:07}")).await.unwrap()
            }));
        }
        for t in tasks {
            devs.push(t.await.unwrap());
        }
    }
    eprintln!("{} users logged in after {:?}", devs.len(), t0.elapsed());
    let ids: Vec<UserId> = devs.iter().map(uid).collect();
    let creator = devs[0].client.clone();

    // 1025 members including the creator: too many, and the message names the limit.
    let r = call(
        &creator,
        Request::CreateGroup {
            title: "too big".into(),
            members: ids[1..].to_vec(),
        },
    )
    .await;
    let (code, message) = refused("CreateGroup of 1025", r);
    assert_eq!(code, ErrorCode::TooLarge, "{message}");
    assert!(message.contains("1024"), "{message}");

    let chat = create_group(&creator, "everyone", &ids[1..N]).await;
    let info = group_info(&creator, chat).await;
    assert_eq!(info.members.len(), N);
    assert!(info.members.iter().all(|m| m.since_seq == 1));
    assert_eq!(
        info.members
            .iter()
            .filter(|m| m.admin)
            .map(|m| m.user_id)
            .collect::<Vec<_>>(),
        vec![ids[0]]
    );
    let mut texts = Vec::new();
    for i in 0..3 {
        texts.push(text(&creator, chat, &format!("hello all #{i}")).await);
    }
    let second = devs[1].client.clone();
    texts.push(text(&second, chat, "hello from member 1").await);
    let last_text = texts[3].seq;

    // Everyone gets every message.
    let mut logs: Vec<Vec<ClientEvent>> = vec![Vec::new(); N + 1];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for i in 0..N {
        let ok = until(&mut devs[i].events, &mut logs[i], deadline, |l| {
            has_seq(l, chat, last_text)
        })
        .await;
        assert!(ok, "member {i} never got seq {last_text}");
    }
    eprintln!("delivered to {N} after {:?}", t0.elapsed());

    // A read receipt: member 10 reads up to the creator's last message.
    let reader = 10;
    let target = texts[2];
    let before_ms = target.ts_ms;
    let r = call(
        &devs[reader].client,
        Request::MarkRead {
            chat_id: chat,
            upto_seq: target.seq,
        },
    )
    .await;
    assert!(matches!(r, Ok(Response::Done)), "{r:?}");
    let after_read = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Delivered receipts arrive from every member (their SDK acks).
    let mut mr = message_receipts(&creator, chat, target.seq).await;
    let poll_until = Instant::now() + Duration::from_secs(30);
    while (mr.pending > 0 || mr.delivered.len() < N - 1) && Instant::now() < poll_until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        mr = message_receipts(&creator, chat, target.seq).await;
    }
    assert_eq!(mr.pending, 0, "{mr:?}");
    assert_eq!(mr.delivered.len(), N - 1, "everyone but the sender");
    assert!(mr.delivered.iter().all(|d| d.user_id != ids[0]));
    assert!(
        mr.delivered.iter().all(|d| d.at_ms >= target.ts_ms),
        "delivered before it was sent: {mr:?}"
    );
    assert!(mr.delivered.windows(2).all(|w| w[0].user_id < w[1].user_id));
    assert_eq!(mr.read.len(), 1, "{:?}", mr.read);
    assert_eq!(mr.read[0].user_id, ids[reader]);
    assert!(
        mr.read[0].at_ms >= before_ms && mr.read[0].at_ms <= after_read + 1000,
        "read at {} outside [{before_ms}, {after_read}]",
        mr.read[0].at_ms
    );
    // Only the sender may ask.
    let r = call(
        &second,
        Request::GetMessageReceipts {
            chat_id: chat,
            seq: target.seq,
        },
    )
    .await;
    assert_eq!(
        refused("someone else's receipts", r).0,
        ErrorCode::Forbidden
    );
    // A read covering both senders' messages reaches both of them.
    let reader2 = 11;
    let r = call(
        &devs[reader2].client,
        Request::MarkRead {
            chat_id: chat,
            upto_seq: last_text,
        },
    )
    .await;
    assert!(matches!(r, Ok(Response::Done)), "{r:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for s in [0, 1] {
        let ok = until(&mut devs[s].events, &mut logs[s], deadline, |l| {
            l.iter().any(|e| matches!(e, ClientEvent::Receipt(r) if r.user_id == ids[reader2] && r.read_seq >= last_text))
        })
        .await;
        assert!(ok, "sender {s} got no read receipt of member {reader2}");
    }
    // The sender heard of the read; uninvolved members heard of nobody's receipts.
    let ok = until(&mut devs[0].events, &mut logs[0], deadline, |l| {
        l.iter().any(|e| matches!(e, ClientEvent::Receipt(r) if r.user_id == ids[reader] && r.read_seq >= target.seq))
    })
    .await;
    assert!(ok, "the sender got no read receipt");
    for i in 2..N {
        drain(&mut devs[i].events, &mut logs[i], Duration::from_millis(1)).await;
        let foreign: Vec<&Receipt> = logs[i]
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Receipt(r) if r.user_id != ids[i] => Some(r),
                _ => None,
            })
            .collect();
        assert!(
            foreign.is_empty(),
            "member {i} sent nothing but got receipts of others: {foreign:?}"
        );
    }

    // Remove one: they get ChatLeft and nothing after.
    let gone = 20;
    let removed = sent(
        "remove",
        call(
            &creator,
            Request::RemoveMember {
                chat_id: chat,
                user_id: ids[gone],
            },
        )
        .await,
    );
    let after = text(&creator, chat, "after the removal").await;
    // An edit and a delete: the content is gone.
    let edit = sent(
        "edit",
        send(
            &creator,
            chat,
            MessageBody::Edit {
                target: texts[0].seq,
                text: "edited".into(),
            },
        )
        .await,
    );
    let delete = sent(
        "delete",
        send(
            &creator,
            chat,
            MessageBody::Delete {
                target: texts[0].seq,
            },
        )
        .await,
    );
    // Fill the place again, then overflow.
    let joined = sent(
        "add the 1025th user",
        call(
            &creator,
            Request::AddMembers {
                chat_id: chat,
                members: vec![ids[N]],
            },
        )
        .await,
    );
    let info = group_info(&creator, chat).await;
    assert_eq!(info.members.len(), N);
    let r = call(
        &creator,
        Request::AddMembers {
            chat_id: chat,
            members: vec![ids[gone]],
        },
    )
    .await;
    let (code, message) = refused("AddMembers beyond 1024", r);
    assert_eq!(code, ErrorCode::TooLarge, "{message}");
    assert!(message.contains("1024"), "{message}");
    let info2 = group_info(&creator, chat).await;
    assert_eq!(info2.members.len(), N, "nothing added");
    assert_eq!(info2.last_seq, info.last_seq, "no message written");
    assert!(info2.members.iter().all(|m| m.user_id != ids[gone]));
    let last = joined.seq;
    // Receipts count current members whose interval covers the message: not the removed
    // one, not the one added after it.
    let mr = message_receipts(&creator, chat, target.seq).await;
    assert_eq!(mr.pending, 0, "{mr:?}");
    assert_eq!(
        mr.delivered.len(),
        N - 2,
        "current members but the sender and the newcomer"
    );
    assert!(
        mr.delivered
            .iter()
            .all(|d| d.user_id != ids[gone] && d.user_id != ids[N]),
        "{mr:?}"
    );
    let mut readers = vec![ids[reader], ids[reader2]];
    readers.sort();
    assert_eq!(
        mr.read.iter().map(|r| r.user_id).collect::<Vec<_>>(),
        readers
    );

    let page = fetch_all(&devs[2].client, chat, last).await;
    let at = |s: Seq| page.iter().find(|m| m.seq == s).map(|m| m.body.clone());
    assert_eq!(at(texts[0].seq), Some(MessageBody::Deleted));
    assert_eq!(
        at(edit.seq),
        Some(MessageBody::Edit {
            target: texts[0].seq,
            text: String::new()
        })
    );
    assert_eq!(
        at(delete.seq),
        Some(MessageBody::Delete {
            target: texts[0].seq
        })
    );

    // Every device's history, checked.
    let mut views = Vec::new();
    for i in 0..=N {
        if i != gone {
            until(&mut devs[i].events, &mut logs[i], deadline, |l| {
                has_seq(l, chat, last)
            })
            .await;
        }
        drain(&mut devs[i].events, &mut logs[i], Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..=N {
        drain(&mut devs[i].events, &mut logs[i], Duration::from_millis(1)).await;
        views.push(view(format!("member {i}"), ids[i], chat, &logs[i]));
    }
    let left: Vec<&ClientEvent> = logs[gone]
        .iter()
        .filter(|e| matches!(e, ClientEvent::ChatLeft { .. }))
        .collect();
    assert_eq!(
        left,
        vec![&ClientEvent::ChatLeft {
            chat_id: chat,
            at_seq: removed.seq
        }]
    );
    assert!(!has_seq(&logs[gone], chat, after.seq));
    let fetched = vec![
        Fetched {
            name: "member 2 GetMessages".into(),
            user: ids[2],
            messages: page,
        },
        Fetched {
            name: "the 1025th GetMessages".into(),
            user: ids[N],
            messages: fetch_all(&devs[N].client, chat, last).await,
        },
    ];
    let mut acked = texts.clone();
    acked.extend([removed, after, edit, delete, joined]);
    let report = group_history::check(&acked, &views, &fetched);
    assert!(
        report.problems.is_empty(),
        "{} problems, first: {:#?}",
        report.problems.len(),
        &report.problems[..report.problems.len().min(20)]
    );
    assert_eq!(
        report.intervals[&ids[gone]],
        vec![Interval {
            from: 1,
            to: Some(removed.seq)
        }]
    );
    assert_eq!(
        report.intervals[&ids[N]],
        vec![Interval {
            from: joined.seq,
            to: None
        }]
    );
    // Per member: every text of its interval, once.
    for (i, log) in logs.iter().enumerate() {
        let n = log
            .iter()
            .filter(|e| matches!(e, ClientEvent::Message { message, .. } if message.chat_id == chat && group_history::text_of(&message.body).is_some()))
            .count();
        let want = if i == gone {
            4
        } else if i == N {
            0
        } else {
            5
        };
        assert_eq!(n, want, "member {i} texts");
    }
    eprintln!("done after {:?}", t0.elapsed());
}

// ---- Focused tests ----

/// The `Welcome.features` a raw connection authenticated as `device` gets.
async fn welcome_features(server: &TestServer, device: &Device) -> ChatFeatures {
    let snapshot = device.client.snapshot().await.unwrap();
    let token = snapshot.tokens.unwrap().access_token;
    let mut raw = RawConn::connect(server.addr, &server.fingerprint)
        .await
        .unwrap();
    raw.send_frame(&RawConn::hello(Some(token))).await.unwrap();
    match raw.next(WAIT).await.unwrap() {
        Outcome::Frame(Frame::Welcome(w)) => {
            assert_eq!(w.protocol_version, tern_sdk::protocol::PROTOCOL_VERSION);
            w.features
        }
        other => panic!("expected Welcome, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_standing_member_inherits_admin_when_the_last_admin_leaves() {
    let server = TestServer::start().await;
    let a = server.login("+15550930001").await;
    let mut b = server.login("+15550930002").await;
    let mut c = server.login("+15550930003").await;
    let d = server.login("+15550930004").await;
    if uid(&b) > uid(&c) {
        std::mem::swap(&mut b, &mut c);
    }
    // b has the smaller id, c the larger.
    let chat = create_group(&a.client, "heirs", &[uid(&b), uid(&c)]).await;
    let r = call(
        &a.client,
        Request::SetAdmin {
            chat_id: chat,
            user_id: uid(&a),
            admin: false,
        },
    )
    .await;
    let (code, message) = refused("demote the only admin", r);
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(message.contains("a group needs an admin"), "{message}");
    // b's standing restarts: removed and re-added, so c is now the longest-standing.
    let remove = Request::RemoveMember {
        chat_id: chat,
        user_id: uid(&b),
    };
    sent("remove b", call(&a.client, remove).await);
    let add = |who: UserId| Request::AddMembers {
        chat_id: chat,
        members: vec![who],
    };
    sent("re-add b", call(&a.client, add(uid(&b))).await);
    sent("add d", call(&a.client, add(uid(&d))).await);
    let left = sent(
        "admin leaves",
        call(&a.client, Request::LeaveGroup { chat_id: chat }).await,
    );
    let page = fetch_all(&c.client, chat, left.seq + 1).await;
    let body = |s: Seq| page.iter().find(|m| m.seq == s).map(|m| m.body.clone());
    assert_eq!(body(left.seq), Some(system(uid(&a), GroupChange::Left)));
    assert_eq!(
        body(left.seq + 1),
        Some(system(uid(&a), GroupChange::AdminInherited(uid(&c)))),
        "the AdminInherited message follows the Left"
    );
    let info = group_info(&c.client, chat).await;
    assert_eq!(info.last_seq, left.seq + 1);
    let admins: Vec<UserId> = info
        .members
        .iter()
        .filter(|m| m.admin)
        .map(|m| m.user_id)
        .collect();
    assert_eq!(admins, vec![uid(&c)], "{info:?}");
    assert!(info.members.iter().all(|m| m.user_id != uid(&a)));

    // Ties on since_seq go to the smallest user id.
    let chat2 = create_group(&a.client, "tie", &[uid(&c), uid(&b)]).await;
    let left = sent(
        "admin leaves group 2",
        call(&a.client, Request::LeaveGroup { chat_id: chat2 }).await,
    );
    let page = fetch_all(&b.client, chat2, left.seq + 1).await;
    assert_eq!(
        page.last().map(|m| m.body.clone()),
        Some(system(uid(&a), GroupChange::AdminInherited(uid(&b))))
    );
    // Everyone leaves; the last one out leaves a group without members, which nobody finds.
    let leave = Request::LeaveGroup { chat_id: chat2 };
    let s = sent("b leaves group 2", call(&b.client, leave.clone()).await);
    let page = fetch_all(&c.client, chat2, s.seq + 1).await;
    assert_eq!(
        page.last().map(|m| m.body.clone()),
        Some(system(uid(&b), GroupChange::AdminInherited(uid(&c))))
    );
    sent("the last member leaves", call(&c.client, leave).await);
    let r = call(&c.client, Request::GetGroupInfo { chat_id: chat2 }).await;
    assert_eq!(
        refused("an empty group", r),
        (ErrorCode::NotFound, "no such chat".into())
    );
    // With a second admin the first may step down: no inheritance then.
    let chat3 = create_group(&a.client, "two admins", &[uid(&b), uid(&c)]).await;
    let promote = Request::SetAdmin {
        chat_id: chat3,
        user_id: uid(&c),
        admin: true,
    };
    sent("promote c", call(&a.client, promote.clone()).await);
    assert_eq!(
        refused("promote an admin", call(&a.client, promote).await).0,
        ErrorCode::InvalidArgument
    );
    let demote_self = Request::SetAdmin {
        chat_id: chat3,
        user_id: uid(&a),
        admin: false,
    };
    let s = sent("demote self", call(&a.client, demote_self.clone()).await);
    let page = fetch_all(&b.client, chat3, s.seq).await;
    assert_eq!(
        page.last().map(|m| m.body.clone()),
        Some(system(uid(&a), GroupChange::AdminDemoted(uid(&a))))
    );
    assert_eq!(
        refused("no longer an admin", call(&a.client, demote_self).await).0,
        ErrorCode::Forbidden
    );
    // Removing a member who is not one, and removing yourself, are argument errors.
    let not_member = Request::RemoveMember {
        chat_id: chat3,
        user_id: uid(&d),
    };
    let (code, message) = refused("remove a non-member", call(&c.client, not_member).await);
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(message.contains("not a member"), "{message}");
    let remove_self = Request::RemoveMember {
        chat_id: chat3,
        user_id: uid(&c),
    };
    assert_eq!(
        refused("remove yourself", call(&c.client, remove_self).await).0,
        ErrorCode::InvalidArgument
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcement_only_groups_let_only_admins_send() {
    let server = TestServer::start().await;
    let a = server.login("+15550940001").await;
    let b = server.login("+15550940002").await;
    assert_eq!(
        welcome_features(&server, &a).await,
        ChatFeatures {
            max_chat_members: 1024,
            edit_window_s: 900,
            delete_window_s: 172_800,
            max_edits: 20,
            max_mentions: 64
        },
        "the default features"
    );
    // A group created alone has only its Created message.
    let alone = create_group(&a.client, "alone", &[]).await;
    let info = group_info(&a.client, alone).await;
    assert_eq!(info.last_seq, 1, "{info:?}");
    let chat = create_group(&a.client, "news", &[uid(&b)]).await;
    let before = text(&b.client, chat, "before").await;
    let settings = GroupSettings {
        announcement_only: true,
        ..GroupSettings::default()
    };
    let s = sent(
        "settings",
        call(
            &a.client,
            Request::SetGroupSettings {
                chat_id: chat,
                settings,
            },
        )
        .await,
    );
    let page = fetch_all(&b.client, chat, s.seq).await;
    assert_eq!(
        page.last().map(|m| m.body.clone()),
        Some(system(uid(&a), GroupChange::SettingsChanged(settings)))
    );
    assert_eq!(group_info(&b.client, chat).await.settings, settings);
    let r = send(&b.client, chat, MessageBody::Text("may I?".into())).await;
    assert_eq!(refused("member text", r).0, ErrorCode::Forbidden);
    let reaction = MessageBody::Reaction {
        target: before.seq,
        emoji: Some("👍".into()),
    };
    let r = send(&b.client, chat, reaction.clone()).await;
    assert_eq!(refused("member reaction", r).0, ErrorCode::Forbidden);
    text(&a.client, chat, "news").await;
    sent(
        "admin reacts",
        send(&a.client, chat, reaction.clone()).await,
    );
    let promote = Request::SetAdmin {
        chat_id: chat,
        user_id: uid(&b),
        admin: true,
    };
    sent("promote b", call(&a.client, promote).await);
    text(&b.client, chat, "now I may").await;
    sent("b reacts", send(&b.client, chat, reaction).await);
    // Info changes are system messages too, and GetGroupInfo shows them.
    let s = sent(
        "edit info",
        call(
            &b.client,
            Request::EditGroupInfo {
                chat_id: chat,
                title: Some("news, renamed".into()),
                description: None,
            },
        )
        .await,
    );
    let page = fetch_all(&a.client, chat, s.seq).await;
    assert_eq!(
        page.last().map(|m| m.body.clone()),
        Some(system(
            uid(&b),
            GroupChange::InfoChanged {
                title: Some("news, renamed".into()),
                description: None
            }
        ))
    );
    let info = group_info(&a.client, chat).await;
    assert_eq!(
        (info.title.as_str(), info.last_seq),
        ("news, renamed", s.seq)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_deletes_respect_their_windows_and_limits() {
    let server = TestServer::start_with(|c| {
        c.chat.edit_window_s = 1;
        c.chat.delete_window_s = 1;
        c.chat.max_edits = 2;
        c.chat.max_mentions = 2;
    })
    .await;
    let a = server.login("+15550950001").await;
    let b = server.login("+15550950002").await;
    let c = server.login("+15550950003").await;
    let d = server.login("+15550950004").await;

    // Welcome announces the configured features.
    let f = welcome_features(&server, &b).await;
    assert_eq!(
        (
            f.max_chat_members,
            f.edit_window_s,
            f.delete_window_s,
            f.max_edits,
            f.max_mentions
        ),
        (1024, 1, 1, 2, 2)
    );

    let chat = create_group(&a.client, "windows", &[uid(&b), uid(&c)]).await;
    let b1 = text(&b.client, chat, "v0").await;
    let a1 = text(&a.client, chat, "by admin").await;
    let rich = RichText {
        text: "rich".into(),
        reply_to: Some(a1.seq),
        mentions: vec![uid(&a)],
    };
    let b2 = sent(
        "rich",
        send(&b.client, chat, MessageBody::Rich(rich.clone())).await,
    );
    let edit = |target: Seq, t: &str| MessageBody::Edit {
        target,
        text: t.into(),
    };
    let first = sent(
        "edit 1",
        send_body(&b.client, chat, 4242, edit(b1.seq, "v1")).await,
    );
    // Repeating a send with its idempotency key answers the first Sent, and is no new edit.
    let again = sent(
        "edit 1 again",
        send_body(&b.client, chat, 4242, edit(b1.seq, "v1")).await,
    );
    assert_eq!(again, first);
    sent("edit 2", send(&b.client, chat, edit(b1.seq, "v2")).await);
    let r = send(&b.client, chat, edit(b1.seq, "v3")).await;
    assert_eq!(refused("edit beyond max_edits", r).0, ErrorCode::Forbidden);
    sent(
        "edit rich",
        send(&b.client, chat, edit(b2.seq, "rich, edited")).await,
    );
    let page = fetch_all(&c.client, chat, b2.seq).await;
    let body = |page: &[Message], s: Seq| page.iter().find(|m| m.seq == s).map(|m| m.body.clone());
    assert_eq!(body(&page, b1.seq), Some(MessageBody::Text("v2".into())));
    assert_eq!(
        body(&page, b2.seq),
        Some(MessageBody::Rich(RichText {
            text: "rich, edited".into(),
            ..rich
        })),
        "an edited Rich message keeps reply_to and mentions"
    );
    // Mentions: at most max_mentions, current members only.
    let mentions = |who: Vec<UserId>| {
        MessageBody::Rich(RichText {
            text: "hey".into(),
            reply_to: None,
            mentions: who,
        })
    };
    let r = send(&b.client, chat, mentions(vec![uid(&a), uid(&c), uid(&b)])).await;
    assert_eq!(refused("3 mentions", r).0, ErrorCode::InvalidArgument);
    let r = send(&b.client, chat, mentions(vec![uid(&d)])).await;
    assert_eq!(
        refused("mention a non-member", r).0,
        ErrorCode::InvalidArgument
    );
    sent(
        "2 mentions",
        send(&b.client, chat, mentions(vec![uid(&a), uid(&c)])).await,
    );

    let dm = b.client.open_direct_chat(uid(&d)).await.unwrap().chat_id;
    let b_dm = text(&b.client, dm, "dm").await;
    let b3 = text(&b.client, chat, "b late").await;
    let a3 = text(&a.client, chat, "a late").await;
    let b4 = text(&b.client, chat, "b late 2").await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let r = send(&b.client, chat, edit(b3.seq, "too late")).await;
    assert_eq!(
        refused("member edit after window", r).0,
        ErrorCode::Forbidden
    );
    let r = send(&a.client, chat, edit(a3.seq, "too late")).await;
    assert_eq!(
        refused("admin edit after window", r).0,
        ErrorCode::Forbidden
    );
    let r = send(&b.client, chat, MessageBody::Delete { target: b3.seq }).await;
    assert_eq!(
        refused("member delete after window", r).0,
        ErrorCode::Forbidden
    );
    let r = send(&b.client, dm, MessageBody::Delete { target: b_dm.seq }).await;
    assert_eq!(
        refused("direct delete after window", r).0,
        ErrorCode::Forbidden
    );
    sent(
        "admin deletes own after window",
        send(&a.client, chat, MessageBody::Delete { target: a3.seq }).await,
    );
    sent(
        "admin deletes a member's after window",
        send(&a.client, chat, MessageBody::Delete { target: b4.seq }).await,
    );
    let r = send(&a.client, chat, MessageBody::Delete { target: b4.seq }).await;
    assert_eq!(
        refused("delete a deleted one", r).0,
        ErrorCode::InvalidArgument
    );
    let page = fetch_all(&c.client, chat, b4.seq).await;
    assert_eq!(body(&page, a3.seq), Some(MessageBody::Deleted));
    assert_eq!(body(&page, b4.seq), Some(MessageBody::Deleted));
    assert_eq!(
        body(&page, b3.seq),
        Some(MessageBody::Text("b late".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_for_me_hides_for_that_user_only_on_all_their_devices() {
    let server = TestServer::start().await;
    let mut a = server.login("+15550960001").await;
    let mut b1 = server.login("+15550960002").await;
    let mut b2 = server.login("+15550960002").await;
    let chat = create_group(&a.client, "hide", &[uid(&b1)]).await;
    let s = text(&a.client, chat, "hide me").await;
    let keep = text(&a.client, chat, "keep me").await;
    let r = hide(&b1.client, chat, vec![s.seq]).await;
    assert!(matches!(r, Ok(Response::Done)), "{r:?}");
    let hidden = ClientEvent::HiddenForMe {
        chat_id: chat,
        seqs: vec![s.seq],
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    for (name, d) in [("b1", &mut b1), ("b2", &mut b2)] {
        let mut log = Vec::new();
        let ok = until(&mut d.events, &mut log, deadline, |l| l.contains(&hidden)).await;
        assert!(ok, "{name} got no HiddenForMe: {log:?}");
    }
    let mut log = Vec::new();
    drain(&mut a.events, &mut log, Duration::from_millis(300)).await;
    assert!(
        !log.iter()
            .any(|e| matches!(e, ClientEvent::HiddenForMe { .. })),
        "the other member got a HiddenForMe: {log:?}"
    );
    let body = |page: &[Message], s: Seq| page.iter().find(|m| m.seq == s).map(|m| m.body.clone());
    let theirs = fetch_all(&a.client, chat, keep.seq).await;
    assert_eq!(
        body(&theirs, s.seq),
        Some(MessageBody::Text("hide me".into()))
    );
    let mine = fetch_all(&b2.client, chat, keep.seq).await;
    assert_eq!(body(&mine, s.seq), Some(MessageBody::Deleted));
    assert_eq!(
        body(&mine, keep.seq),
        Some(MessageBody::Text("keep me".into()))
    );
    // A fresh sync of b's log shows it deleted too; of a's, not.
    for (who, client, want) in [
        ("b", &b2.client, MessageBody::Deleted),
        ("a", &a.client, MessageBody::Text("hide me".into())),
    ] {
        let found = group_history::whole_log(client)
            .await
            .into_iter()
            .find_map(|u| match u.kind {
                UpdateKind::Message(m) if m.chat_id == chat && m.seq == s.seq => Some(m.body),
                _ => None,
            });
        assert_eq!(found, Some(want), "{who}'s synced copy");
    }
    // No seqs, or a seq outside the caller's intervals, are argument errors.
    let r = hide(&b1.client, chat, vec![]).await;
    assert_eq!(refused("no seqs", r).0, ErrorCode::InvalidArgument);
    let r = hide(&b1.client, chat, vec![keep.seq + 100]).await;
    assert_eq!(
        refused("beyond the last seq", r).0,
        ErrorCode::InvalidArgument
    );
    // Direct chats too.
    let dm = a.client.open_direct_chat(uid(&b1)).await.unwrap().chat_id;
    let m = text(&a.client, dm, "dm").await;
    let r = hide(&b1.client, dm, vec![m.seq]).await;
    assert!(matches!(r, Ok(Response::Done)), "{r:?}");
    let mine = fetch_all(&b1.client, dm, m.seq).await;
    assert_eq!(body(&mine, m.seq), Some(MessageBody::Deleted));
    let theirs = fetch_all(&a.client, dm, m.seq).await;
    assert_eq!(body(&theirs, m.seq), Some(MessageBody::Text("dm".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_to_and_other_targets_are_validated() {
    let server = TestServer::start().await;
    let a = server.login("+15550970001").await;
    let b = server.login("+15550970002").await;
    let mut c = server.login("+15550970003").await;
    let chat = create_group(&a.client, "replies", &[uid(&b)]).await;
    let s3 = text(&a.client, chat, "three").await;
    let reaction = sent(
        "reaction",
        send(
            &b.client,
            chat,
            MessageBody::Reaction {
                target: s3.seq,
                emoji: Some("👍".into()),
            },
        )
        .await,
    );
    sent(
        "add c",
        call(
            &a.client,
            Request::AddMembers {
                chat_id: chat,
                members: vec![uid(&c)],
            },
        )
        .await,
    );
    // The newcomer hears of the group before its MembersAdded message.
    let mut log = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let joined = until(&mut c.events, &mut log, deadline, |l| {
        l.iter()
            .any(|e| matches!(e, ClientEvent::Message { message, .. } if message.chat_id == chat))
    })
    .await;
    assert!(joined, "{log:?}");
    let first = log
        .iter()
        .position(|e| matches!(e, ClientEvent::ChatJoined(i) if i.chat_id == chat));
    let added = log
        .iter()
        .position(|e| matches!(e, ClientEvent::Message { .. }));
    assert!(
        first.is_some() && first < added,
        "ChatJoined first: {log:?}"
    );
    if let Some(ClientEvent::ChatJoined(ChatInfo { kind, members, .. })) = first.map(|i| &log[i]) {
        assert_eq!(*kind, ChatKind::Group);
        assert_eq!(members.len(), 3, "{members:?}");
        assert!(members.contains(&uid(&c)));
    }
    let s6 = text(&a.client, chat, "six").await;
    let reply = |to: Seq| {
        MessageBody::Rich(RichText {
            text: "re".into(),
            reply_to: Some(to),
            mentions: vec![],
        })
    };
    let mut bad = Refusals::default();
    let invalid = ErrorCode::InvalidArgument;
    bad.expect(
        "reply to 0",
        send(&b.client, chat, reply(0)).await,
        invalid,
        "no such message",
    );
    bad.expect(
        "reply beyond the last",
        send(&b.client, chat, reply(s6.seq + 50)).await,
        invalid,
        "no such message",
    );
    bad.expect(
        "reply to a system message",
        send(&b.client, chat, reply(1)).await,
        invalid,
        "no such message",
    );
    bad.expect(
        "reply to a reaction",
        send(&b.client, chat, reply(reaction.seq)).await,
        invalid,
        "no such message",
    );
    bad.expect(
        "reply from before the caller's interval",
        send(&c.client, chat, reply(s3.seq)).await,
        invalid,
        "no such message",
    );
    bad.expect(
        "react to a reaction",
        send(
            &b.client,
            chat,
            MessageBody::Reaction {
                target: reaction.seq,
                emoji: None,
            },
        )
        .await,
        invalid,
        "no such message",
    );
    bad.expect(
        "edit a system message",
        send(
            &a.client,
            chat,
            MessageBody::Edit {
                target: 1,
                text: "x".into(),
            },
        )
        .await,
        invalid,
        "no such message",
    );
    bad.expect(
        "delete seq 0",
        send(&a.client, chat, MessageBody::Delete { target: 0 }).await,
        invalid,
        "no such message",
    );
    let r = send(
        &c.client,
        chat,
        MessageBody::Reaction {
            target: s3.seq,
            emoji: Some("👍".into()),
        },
    )
    .await;
    bad.expect(
        "react from before the caller's interval",
        r,
        invalid,
        "no such message",
    );
    let r = hide(&c.client, chat, vec![s3.seq]).await;
    bad.expect("hide from before the caller's interval", r, invalid, "");
    // A member removed and re-added cannot reach into the gap.
    let remove_b = Request::RemoveMember {
        chat_id: chat,
        user_id: uid(&b),
    };
    sent("remove b", call(&a.client, remove_b).await);
    let gap = text(&a.client, chat, "in b's gap").await;
    let add_b = Request::AddMembers {
        chat_id: chat,
        members: vec![uid(&b)],
    };
    sent("re-add b", call(&a.client, add_b).await);
    let r = send(&b.client, chat, reply(gap.seq)).await;
    bad.expect("reply into the gap", r, invalid, "no such message");
    let r = call(
        &b.client,
        Request::GetMessages {
            chat_id: chat,
            from_seq: gap.seq,
            limit: 1,
        },
    )
    .await;
    match r {
        Ok(Response::Messages(m)) if m.iter().all(|m| m.seq != gap.seq) => {}
        other => bad.0.push(format!("GetMessages of the gap: {other:?}")),
    }
    let ok = sent("a valid reply", send(&c.client, chat, reply(s6.seq)).await);
    let page = fetch_all(&b.client, chat, ok.seq).await;
    assert_eq!(
        page.last().map(|m| m.body.clone()),
        Some(reply(s6.seq)),
        "the reply is stored with its reply_to"
    );
    // Server-only bodies are refused.
    let r = send(
        &b.client,
        chat,
        system(uid(&b), GroupChange::AdminPromoted(uid(&b))),
    )
    .await;
    bad.expect("a client's System body", r, ErrorCode::InvalidArgument, "");
    let r = send(&b.client, chat, MessageBody::Deleted).await;
    bad.expect("a client's Deleted body", r, ErrorCode::InvalidArgument, "");
    // Edit and delete of a deleted message.
    sent(
        "delete six",
        send(&a.client, chat, MessageBody::Delete { target: s6.seq }).await,
    );
    let r = send(
        &a.client,
        chat,
        MessageBody::Edit {
            target: s6.seq,
            text: "resurrect".into(),
        },
    )
    .await;
    bad.expect("edit a deleted one", r, ErrorCode::InvalidArgument, "");
    let r = send(&a.client, chat, MessageBody::Delete { target: s6.seq }).await;
    bad.expect("delete a deleted one", r, ErrorCode::InvalidArgument, "");
    // Argument errors of group requests.
    let r = call(
        &a.client,
        Request::CreateGroup {
            title: String::new(),
            members: vec![],
        },
    )
    .await;
    bad.expect("empty title", r, ErrorCode::InvalidArgument, "");
    let r = call(
        &a.client,
        Request::CreateGroup {
            title: "ghosts".into(),
            members: vec![UserId(0x7fff_ffff_0000_0001)],
        },
    )
    .await;
    bad.expect("unknown member", r, ErrorCode::NotFound, "no such user");
    // Duplicates and the creator in `members` are ignored.
    let r = call(
        &a.client,
        Request::CreateGroup {
            title: "dups".into(),
            members: vec![uid(&b), uid(&b), uid(&a)],
        },
    )
    .await;
    let Ok(Response::Chat(info)) = r else {
        panic!("CreateGroup with duplicates: {r:?}");
    };
    let g = group_info(&a.client, info.chat_id).await;
    assert_eq!(g.members.len(), 2, "{g:?}");
    let r = call(
        &a.client,
        Request::AddMembers {
            chat_id: info.chat_id,
            members: vec![uid(&b)],
        },
    )
    .await;
    bad.expect("all already members", r, ErrorCode::InvalidArgument, "");
    // Members already in are ignored; the system message names only the new ones.
    let s = sent(
        "add one old, one new",
        call(
            &a.client,
            Request::AddMembers {
                chat_id: info.chat_id,
                members: vec![uid(&b), uid(&c)],
            },
        )
        .await,
    );
    let page = fetch_all(&a.client, info.chat_id, s.seq).await;
    assert_eq!(
        page.last().map(|m| m.body.clone()),
        Some(system(uid(&a), GroupChange::MembersAdded(vec![uid(&c)])))
    );
    let r = call(
        &a.client,
        Request::AddMembers {
            chat_id: info.chat_id,
            members: vec![UserId(0x7fff_ffff_0000_0001)],
        },
    )
    .await;
    bad.expect(
        "add an unknown user",
        r,
        ErrorCode::NotFound,
        "no such user",
    );
    for (what, title, description) in [
        ("nothing to change", None, None),
        ("empty title", Some(String::new()), None),
    ] {
        let r = call(
            &a.client,
            Request::EditGroupInfo {
                chat_id: info.chat_id,
                title,
                description,
            },
        )
        .await;
        bad.expect(what, r, ErrorCode::InvalidArgument, "");
    }
    assert!(
        bad.0.is_empty(),
        "answers that are not the spec's: {:#?}",
        bad.0
    );
}

/// Collects answers that are not the refusal the spec wants, so one run reports them all.
#[derive(Debug, Default)]
struct Refusals(Vec<String>);

impl Refusals {
    fn expect(
        &mut self,
        what: &str,
        r: Result<Response, tern_sdk::Error>,
        code: ErrorCode,
        needle: &str,
    ) {
        match r {
            Err(tern_sdk::Error::Server(b)) if b.code == code && b.message.contains(needle) => {}
            other => self
                .0
                .push(format!("{what}: want {code:?} {needle:?}, got {other:?}")),
        }
    }
}

/// Asks until the answer is not a dropped connection or a retryable refusal (the server is
/// coming back), for up to `WAIT`.
async fn answered(c: &Client, r: Request) -> Result<Response, tern_sdk::Error> {
    let until = Instant::now() + WAIT;
    loop {
        let got = c.request(r.clone()).await;
        let again = match &got {
            Err(tern_sdk::Error::Disconnected | tern_sdk::Error::Timeout) => true,
            Err(e) => e.code().is_some_and(|c| c.is_retryable()),
            Ok(_) => false,
        };
        if !again || Instant::now() > until {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Receipt watermarks (delivered, read) per observer and member, in the order observed.
type Marks = BTreeMap<(String, UserId), Vec<(Seq, Seq)>>;

fn note_receipts(marks: &mut Marks, observer: &str, log: &[ClientEvent], chat: ChatId) {
    for e in log {
        if let ClientEvent::Receipt(r) = e
            && r.chat_id == chat
        {
            marks
                .entry((observer.to_owned(), r.user_id))
                .or_default()
                .push((r.delivered_seq, r.read_seq));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_receipts_never_go_backwards_across_a_kill_9() {
    tern_tests::init();
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(dir.path(), &["--receipt-delay-ms", "50"]).await;
    let fp = server.fingerprint();
    let otp = server.otp_file();
    let quic = server.quic;
    let cfg = || client_config(quic, &fp);
    let mut a = login(cfg(), &otp, "+15550980001").await.unwrap();
    let mut b = login(cfg(), &otp, "+15550980002").await.unwrap();
    let mut c = login(cfg(), &otp, "+15550980003").await.unwrap();
    let chat = create_group(&a.client, "i4", &[uid(&b), uid(&c)]).await;
    let mut sends = Vec::new();
    for i in 0..20 {
        sends.push(text(&a.client, chat, &format!("m{i}")).await);
    }
    let last = sends[19].seq;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut logs: HashMap<&str, Vec<ClientEvent>> = HashMap::new();
    for (name, d) in [("b", &mut b), ("c", &mut c)] {
        let log = logs.entry(name).or_default();
        assert!(until(&mut d.events, log, deadline, |l| has_seq(l, chat, last)).await);
    }
    let mark = |upto: Seq| Request::MarkRead {
        chat_id: chat,
        upto_seq: upto,
    };
    assert!(matches!(
        call(&b.client, mark(sends[11].seq)).await,
        Ok(Response::Done)
    ));
    assert!(matches!(
        call(&c.client, mark(sends[7].seq)).await,
        Ok(Response::Done)
    ));
    // Wait until the sender sees both readers and every delivery.
    let probe = sends[5].seq;
    let mut before = message_receipts(&a.client, chat, probe).await;
    let until_t = Instant::now() + WAIT;
    while (before.read.len() < 2 || before.pending > 0) && Instant::now() < until_t {
        tokio::time::sleep(Duration::from_millis(50)).await;
        before = message_receipts(&a.client, chat, probe).await;
    }
    assert_eq!(before.read.len(), 2, "{before:?}");
    assert_eq!(before.delivered.len(), 2, "{before:?}");
    let watermarks_before = receipts(&a.client, chat).await;

    server.kill();
    server.restart().await;

    // The clients reconnect by themselves; ask until the server answers.
    let Ok(Response::Receipts(watermarks_after)) =
        answered(&a.client, Request::GetReceipts { chat_id: chat }).await
    else {
        panic!("GetReceipts after the restart");
    };
    for d in [&b, &c] {
        answered(&d.client, Request::Ping).await.unwrap();
    }
    let find = |rs: &[Receipt], u: UserId| rs.iter().find(|r| r.user_id == u).copied();
    for r in &watermarks_before {
        let now = find(&watermarks_after, r.user_id).unwrap();
        assert!(
            now.delivered_seq >= r.delivered_seq && now.read_seq >= r.read_seq,
            "watermarks went backwards over the crash: {r:?} -> {now:?}"
        );
    }
    let again = message_receipts(&a.client, chat, probe).await;
    assert_eq!(
        again.read, before.read,
        "who read it, and when, survive the crash"
    );
    assert_eq!(again.delivered, before.delivered);
    // Lower acks and reads change nothing.
    let r = call(&b.client, mark(sends[1].seq)).await;
    assert!(matches!(r, Ok(Response::Done)), "a lower MarkRead: {r:?}");
    let ack = Request::Ack {
        chat_id: chat,
        upto_seq: 1,
    };
    let r = call(&c.client, ack).await;
    assert!(matches!(r, Ok(Response::Done)), "a lower Ack: {r:?}");
    let lowered = receipts(&a.client, chat).await;
    for r in &watermarks_before {
        let now = find(&lowered, r.user_id).unwrap();
        assert!(
            now.delivered_seq >= r.delivered_seq && now.read_seq >= r.read_seq,
            "a lower Ack/MarkRead moved a watermark back: {r:?} -> {now:?}"
        );
    }
    // More traffic after the restart, read to the end.
    let mut more = Vec::new();
    for i in 0..5 {
        more.push(text(&a.client, chat, &format!("after {i}")).await);
    }
    let end = more[4].seq;
    for (name, d) in [("b", &mut b), ("c", &mut c)] {
        let log = logs.entry(name).or_default();
        assert!(until(&mut d.events, log, deadline, |l| has_seq(l, chat, end)).await);
        assert!(matches!(
            call(&d.client, mark(end)).await,
            Ok(Response::Done)
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut marks = Marks::new();
    for (name, d) in [("a", &mut a), ("b", &mut b), ("c", &mut c)] {
        let log = logs.entry(name).or_default();
        drain(&mut d.events, log, Duration::from_millis(200)).await;
        note_receipts(&mut marks, name, log, chat);
    }
    for ((observer, user), seen) in &marks {
        assert!(
            seen.windows(2)
                .all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1),
            "{observer} saw {user}'s watermarks go backwards: {seen:?}"
        );
        assert!(
            seen.iter().all(|(d, r)| r <= d),
            "read beyond delivered: {seen:?}"
        );
    }
    let final_marks = receipts(&a.client, chat).await;
    for u in [uid(&b), uid(&c)] {
        let r = find(&final_marks, u).unwrap();
        assert_eq!((r.delivered_seq, r.read_seq), (end, end), "{r:?}");
    }
}
