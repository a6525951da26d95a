//! `group`: G groups of S members; the first `--senders-per-group` members of each send at a
//! fixed total rate, open loop ([`crate::openloop`]), and every member's device receives.
//!
//! Users `g*S .. (g+1)*S` form group `g`; user `g*S` creates it with the others as initial
//! members, so everybody is a member from seq 1 (`ChatJoined`, then the `Created` and
//! `MembersAdded` system messages, which the check ignores: only the loadgen's `Text` messages
//! are checked). Message `k` goes to sender `k mod (G x senders)`, the senders interleaved by
//! group so consecutive messages go to different groups.
//!
//! The server writes each message into every member's update log, the sender's own included,
//! so each acknowledged message reaches S devices: S - 1 *deliveries* to the other members
//! (the fan-out this scenario measures, with latency from the intended send time) and one
//! *own copy* back to the sender's device. The check matches both: every member must receive
//! every acknowledged message of its group exactly once and in seq order.
//!
//! Latencies: `deliver` is each delivery (to every member) from the message's intended send
//! time; `deliver_all` is the last of a message's S - 1 deliveries, i.e. when the whole group
//! has it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tern_sdk::protocol::{
    ChatId, ChatKind, ClientMsgId, Message, MessageBody, Request, Response, Seq, UserId,
};
use tern_sdk::{Client, ClientEvent, Events};
use tokio::task::JoinSet;

use crate::cli::GroupArgs;
use crate::ledger::{Acked, Verdict};
use crate::openloop::{self, Core};
use crate::report::{GroupSummary, MemberCheck, Report};
use crate::run::{self, Target, Ui};
use crate::users::User;

/// Members with a failed check listed in the report (all are counted).
const LISTED_FAILURES: usize = 16;
/// Connections per client UDP socket by default: small, so that a message's burst of
/// datagrams to every member does not overflow a socket's receive buffer.
const PER_ENDPOINT: usize = 16;
/// How long members may take to see their group after it was created.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// One group.
#[derive(Debug)]
struct Group {
    chat: ChatId,
    /// Acknowledged `(seq, client_msg_id)` of every send into the group.
    acked: Mutex<Vec<(Seq, ClientMsgId)>>,
    /// Messages not yet received by every other member: client_msg_id -> members still to go.
    pending: Mutex<HashMap<ClientMsgId, u32>>,
}

impl Group {
    /// Counts one delivery of `cmid`; true when it was the last of the `size - 1`.
    fn fan_out_done(&self, cmid: ClientMsgId, size: usize) -> bool {
        let Ok(mut pending) = self.pending.lock() else {
            return false;
        };
        let left = pending
            .entry(cmid)
            .or_insert(u32::try_from(size.saturating_sub(1)).unwrap_or(u32::MAX));
        *left = left.saturating_sub(1);
        if *left == 0 {
            pending.remove(&cmid);
            return true;
        }
        false
    }
}

/// One member (user, device, connection).
#[derive(Debug)]
struct Member {
    group: usize,
    /// `(seq, client_msg_id)` of the loadgen's messages it received, in arrival order.
    received: Mutex<Vec<(Seq, ClientMsgId)>>,
}

/// State shared by the scheduler, the send tasks and the members.
#[derive(Debug)]
struct Shared {
    core: Arc<Core>,
    /// Members per group.
    size: usize,
    groups: Vec<Group>,
    members: Vec<Member>,
    /// user id -> member index.
    index_of: HashMap<UserId, usize>,
    /// The sending members' clients and indexes, interleaved by group.
    senders: Vec<(Client, usize)>,
    /// Senders' own messages back on their device.
    own_copies: AtomicU64,
    /// System messages received (while joining included).
    system: AtomicU64,
}

impl Shared {
    /// Acknowledged messages not (yet) received, summed over members: for the grace wait.
    fn outstanding(&self) -> usize {
        let acked: Vec<usize> = self
            .groups
            .iter()
            .map(|g| g.acked.lock().map_or(0, |a| a.len()))
            .collect();
        self.members
            .iter()
            .map(|m| {
                let got = m.received.lock().map_or(0, |r| r.len());
                acked.get(m.group).copied().unwrap_or(0).saturating_sub(got)
            })
            .sum()
    }
}

async fn send_one(shared: Arc<Shared>, k: u64, slot: usize, intended: Instant, payload: usize) {
    let Some((client, member)) = shared.senders.get(slot) else {
        return;
    };
    let Some(group) = shared
        .members
        .get(*member)
        .and_then(|m| shared.groups.get(m.group))
    else {
        return;
    };
    if let Ok(ack) = shared
        .core
        .send(client, group.chat, k, intended, payload)
        .await
        && let Ok(mut a) = group.acked.lock()
    {
        a.push(ack);
    }
}

fn on_message(shared: &Shared, receiver: usize, m: &Message, own: bool) {
    let errors = &shared.core.errors;
    let Some(member) = shared.members.get(receiver) else {
        return;
    };
    if shared.groups.get(member.group).map(|g| g.chat) != Some(m.chat_id) {
        errors.add("message in another chat");
        return;
    }
    let text = match &m.body {
        MessageBody::Text(text) => text,
        MessageBody::System(_) => {
            shared.system.fetch_add(1, Ordering::Relaxed);
            return;
        }
        _ => {
            errors.add("foreign message");
            return;
        }
    };
    let (Some(ns), Some(&sender)) = (openloop::stamp_of(text), shared.index_of.get(&m.sender))
    else {
        errors.add("foreign message");
        return;
    };
    if shared.members.get(sender).map(|s| s.group) != Some(member.group) {
        errors.add("misrouted message");
        return;
    }
    if own != (sender == receiver) {
        errors.add("own flag wrong");
    }
    if own {
        shared.own_copies.fetch_add(1, Ordering::Relaxed);
    } else {
        shared.core.delivered(ns);
        if let Some(group) = shared.groups.get(member.group)
            && group.fan_out_done(m.client_msg_id, shared.size)
        {
            shared.core.record_since(ns, "deliver_all", Instant::now());
        }
    }
    if let Ok(mut r) = member.received.lock() {
        r.push((m.seq, m.client_msg_id));
    }
}

async fn drain(shared: Arc<Shared>, receiver: usize, mut events: Events) {
    while let Some(ev) = events.next().await {
        match ev {
            ClientEvent::Message { message, own, .. } => {
                on_message(&shared, receiver, &message, own);
            }
            ClientEvent::Disconnected { .. } => {
                shared.core.disconnects.fetch_add(1, Ordering::Relaxed);
            }
            ClientEvent::SessionEnded { .. } => shared.core.errors.add("session ended"),
            _ => {}
        }
    }
}

/// Reads a member's events until its group shows up (`ChatJoined`, or a message of the chat);
/// gives the events back with the number of system messages seen on the way.
async fn await_join(chat: ChatId, mut events: Events) -> anyhow::Result<(Events, u64)> {
    let mut system = 0;
    loop {
        match events.next().await {
            Some(ClientEvent::ChatJoined(info)) if info.chat_id == chat => {
                return Ok((events, system));
            }
            Some(ClientEvent::Message { message, .. }) if message.chat_id == chat => {
                if matches!(message.body, MessageBody::System(_)) {
                    system += 1;
                }
                return Ok((events, system));
            }
            Some(ClientEvent::SessionEnded { reason, .. }) => bail!("session ended: {reason}"),
            Some(_) => {}
            None => bail!("the client stopped"),
        }
    }
}

/// Creates group `g` as its first member, with the other members in it.
async fn create(
    creator: Client,
    g: usize,
    members: Vec<UserId>,
) -> anyhow::Result<(usize, ChatId)> {
    let size = members.len() + 1;
    let answer = creator
        .request(Request::CreateGroup {
            title: format!("tern-loadgen group {g}"),
            members,
        })
        .await
        .with_context(|| format!("creating group {g} of {size} members"))?;
    let Response::Chat(info) = answer else {
        bail!("creating group {g}: the server answered {answer:?}");
    };
    if info.kind != ChatKind::Group || info.members.len() != size {
        bail!(
            "creating group {g}: the server made a {:?} chat of {} members, not a group of {size}",
            info.kind,
            info.members.len()
        );
    }
    Ok((g, info.chat_id))
}

/// Creates the groups, at most `concurrency` at once; their chat ids in group order.
async fn create_groups(
    users: &[User],
    groups: usize,
    size: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<ChatId>> {
    let mut chats = vec![None; groups];
    let mut set = JoinSet::new();
    let mut collect = async |set: &mut JoinSet<anyhow::Result<(usize, ChatId)>>| {
        if let Some(done) = set.join_next().await {
            let (g, chat) = done??;
            if let Some(slot) = chats.get_mut(g) {
                *slot = Some(chat);
            }
        }
        anyhow::Ok(())
    };
    for (g, members) in users.chunks(size).enumerate() {
        let Some((creator, rest)) = members.split_first() else {
            continue;
        };
        let ids = rest.iter().map(|u| u.session.user_id).collect();
        set.spawn(create(creator.client.clone(), g, ids));
        while set.len() >= concurrency.max(1) {
            collect(&mut set).await?;
        }
    }
    while !set.is_empty() {
        collect(&mut set).await?;
    }
    chats
        .into_iter()
        .enumerate()
        .map(|(g, c)| c.with_context(|| format!("group {g} was not created")))
        .collect()
}

/// Runs the scenario.
pub async fn run(
    args: &GroupArgs,
    target: &Target,
    ui: Ui,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Report> {
    let c = &args.common;
    openloop::validate(args.rate, args.payload_bytes)?;
    let (groups, size) = (args.groups, args.members);
    let n = groups * size;
    let (fleet, users) = run::login_fleet(c, target, n, PER_ENDPOINT, ui, &stop).await?;

    let t0 = Instant::now();
    let chats = create_groups(&users, groups, size, c.login_concurrency).await?;
    // Every member sees its group before the clock starts.
    let bar = ui.bar(n as u64, "join");
    let mut joins = JoinSet::new();
    let mut clients = Vec::with_capacity(n);
    let mut index_of = HashMap::with_capacity(n);
    for u in users {
        let chat = chats[u.index / size];
        clients.push(u.client);
        index_of.insert(u.session.user_id, u.index);
        let index = u.index;
        joins.spawn(async move { (index, await_join(chat, u.events).await) });
    }
    let mut events: Vec<Option<Events>> = (0..n).map(|_| None).collect();
    let mut system_at_join = 0;
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    while !joins.is_empty() {
        let Ok(done) = tokio::time::timeout_at(deadline, joins.join_next()).await else {
            bail!(
                "{} of {n} members did not see their group within {JOIN_TIMEOUT:?}",
                joins.len()
            );
        };
        let Some(done) = done else { break };
        let (i, joined) = done?;
        let (ev, system) = joined.with_context(|| format!("member {i} waiting for its group"))?;
        system_at_join += system;
        events[i] = Some(ev);
        bar.inc(1);
        if stop.load(Ordering::Relaxed) {
            bail!("stopped while members joined their groups");
        }
    }
    bar.finish_and_clear();
    eprintln!(
        "created {groups} groups of {size} members; all joined in {:.1}s",
        t0.elapsed().as_secs_f64()
    );

    // Senders interleaved by group: k mod (G x senders) walks every group before the next
    // sender of the first.
    let per_group = args.senders_per_group;
    let senders = (0..per_group)
        .flat_map(|j| (0..groups).map(move |g| g * size + j))
        .filter_map(|i| clients.get(i).map(|cl| (cl.clone(), i)))
        .collect::<Vec<_>>();
    let core = Arc::new(Core::new(c, Duration::from_secs(1), args.rate));
    core.recorder.declare("deliver_all");
    let shared = Arc::new(Shared {
        core,
        size,
        groups: chats
            .iter()
            .map(|&chat| Group {
                chat,
                acked: Mutex::new(Vec::new()),
                pending: Mutex::new(HashMap::new()),
            })
            .collect(),
        members: (0..n)
            .map(|i| Member {
                group: i / size,
                received: Mutex::new(Vec::new()),
            })
            .collect(),
        index_of,
        senders,
        own_copies: AtomicU64::new(0),
        system: AtomicU64::new(system_at_join),
    });
    let mut drains = JoinSet::new();
    for (i, ev) in events.into_iter().enumerate() {
        if let Some(ev) = ev {
            drains.spawn(drain(shared.clone(), i, ev));
        }
    }

    let issue = {
        let shared = shared.clone();
        let rt = tokio::runtime::Handle::current();
        let payload = args.payload_bytes;
        move |k: u64, intended| {
            let slot = (k % shared.senders.len().max(1) as u64) as usize;
            rt.spawn(send_one(shared.clone(), k, slot, intended, payload));
        }
    };
    let window = shared
        .core
        .drive(target, ui, "group", stop, issue, || shared.outstanding())
        .await?;
    let own_rss = crate::procstat::rss_bytes(crate::procstat::Pid::SelfProcess).ok();
    run::close_all(clients).await;
    drains.abort_all();

    let (verdict, failed, listed) = check(&shared);
    let mut report = shared.core.report("group", &window, verdict, own_rss);
    report.connections = n as u64;
    report.users = n as u64;
    report.endpoints = fleet.endpoints() as u64;
    report.payload_bytes = Some(args.payload_bytes);
    let own_copies = shared.own_copies.load(Ordering::Relaxed);
    report.group = Some(GroupSummary {
        groups: groups as u64,
        members_per_group: size as u64,
        senders_per_group: per_group as u64,
        expected_deliveries: report.acked * (size as u64 - 1),
        own_copies,
        system_messages: shared.system.load(Ordering::Relaxed),
        members_checked: n as u64,
        members_failed: failed,
        failed_members: listed,
    });
    Ok(report)
}

/// Every member's receptions against its group's acknowledged messages: the totals, how many
/// members failed, and the first few of them.
fn check(shared: &Shared) -> (Verdict, u64, Vec<MemberCheck>) {
    let acked: Vec<Acked> = shared
        .groups
        .iter()
        .map(|g| g.acked.lock().map(|a| Acked::new(&a)).unwrap_or_default())
        .collect();
    let mut total = Verdict::default();
    let mut failed = 0;
    let mut listed = Vec::new();
    for (i, m) in shared.members.iter().enumerate() {
        let (Some(acked), Ok(received)) = (acked.get(m.group), m.received.lock()) else {
            continue;
        };
        let v = acked.check(&received);
        total += v;
        if !v.is_clean() {
            failed += 1;
            if listed.len() < LISTED_FAILURES {
                listed.push(MemberCheck {
                    member: i as u64,
                    group: m.group as u64,
                    lost: v.lost,
                    duplicates: v.duplicates,
                    out_of_order: v.out_of_order,
                });
            }
        }
    }
    (total, failed, listed)
}
