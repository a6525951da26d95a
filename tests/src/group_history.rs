//! The group history checker: membership intervals from the system messages, and what every
//! member device must have seen of a group.
//!
//! Every device receives the system messages of its own intervals, so the union of what the
//! devices saw is the chat (the tests keep one member in the group throughout). From its system
//! messages in seq order the checker computes each user's membership intervals, then checks per
//! device: every message of its intervals arrived exactly once, in seq order, nothing outside
//! them, a `ChatJoined` before each later interval and a `ChatLeft` at each end; and that edits
//! and deletes converge: applied in seq order every device reads the same final text per seq
//! (deleted ones `Deleted`, hidden-for-me ones `Deleted` for that user only), and a fresh
//! `GetMessages` shows the same, clipped to the caller's intervals, with no content left in the
//! edits of a deleted message.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tern_sdk::ClientEvent;
use tern_sdk::protocol::{
    ChatId, GroupChange, Message, MessageBody, Request, Response, Sent, Seq, SyncCursor, Update,
    UpdateKind, UserId,
};
use tern_sdk::{Client, Error};

/// One thing a device saw of a chat, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A message (live or synced).
    Message(Message),
    /// `ChatJoined` for the chat.
    Joined,
    /// `ChatLeft{at_seq}` for the chat.
    Left(Seq),
    /// `HiddenForMe` for the chat.
    Hidden(Vec<Seq>),
}

impl Seen {
    /// What `event` says about `chat`, if anything.
    pub fn of(chat: ChatId, event: &ClientEvent) -> Option<Seen> {
        match event {
            ClientEvent::Message { message, .. } if message.chat_id == chat => {
                Some(Seen::Message(message.clone()))
            }
            ClientEvent::ChatJoined(c) if c.chat_id == chat => Some(Seen::Joined),
            ClientEvent::ChatLeft { chat_id, at_seq } if *chat_id == chat => {
                Some(Seen::Left(*at_seq))
            }
            ClientEvent::HiddenForMe { chat_id, seqs } if *chat_id == chat => {
                Some(Seen::Hidden(seqs.clone()))
            }
            _ => None,
        }
    }

    /// What an entry of the user's update log (a `Sync` page) says about `chat`, if anything.
    pub fn of_update(chat: ChatId, update: &Update) -> Option<Seen> {
        match &update.kind {
            UpdateKind::Message(m) if m.chat_id == chat => Some(Seen::Message(m.clone())),
            UpdateKind::ChatJoined(c) if c.chat_id == chat => Some(Seen::Joined),
            UpdateKind::ChatLeft { chat_id, at_seq } if *chat_id == chat => {
                Some(Seen::Left(*at_seq))
            }
            UpdateKind::HiddenForMe { chat_id, seqs } if *chat_id == chat => {
                Some(Seen::Hidden(seqs.clone()))
            }
            _ => None,
        }
    }
}

/// What one device saw of the chat.
#[derive(Debug, Clone)]
pub struct DeviceView {
    /// Name for the report.
    pub name: String,
    /// Its user.
    pub user: UserId,
    /// In arrival order.
    pub seen: Vec<Seen>,
}

/// A fresh `GetMessages` of the whole chat by a current member.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Name for the report.
    pub name: String,
    /// Who asked.
    pub user: UserId,
    /// The answer, pages joined.
    pub messages: Vec<Message>,
}

/// A membership interval: seqs `from..=to` (`to: None`: still a member).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// First seq (the `MembersAdded`, or 1 for members at creation).
    pub from: Seq,
    /// Last seq (the `MemberRemoved` / `Left`), if the interval ended.
    pub to: Option<Seq>,
}

impl Interval {
    fn covers(&self, seq: Seq) -> bool {
        seq >= self.from && self.to.is_none_or(|t| seq <= t)
    }
}

/// What a content message finally reads as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    /// Its (last edited) text.
    Text(String),
    /// Deleted for everyone (or hidden for this user).
    Deleted,
}

/// The checker's findings.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Violations as readable lines (empty when the history is correct).
    pub problems: Vec<String>,
    /// Each user's intervals, from the system messages.
    pub intervals: BTreeMap<UserId, Vec<Interval>>,
    /// Highest seq any device saw.
    pub last_seq: Seq,
    /// Final state of every content message.
    pub finals: BTreeMap<Seq, Final>,
}

fn kind(b: &MessageBody) -> &'static str {
    match b {
        MessageBody::Text(_) | MessageBody::Rich(_) | MessageBody::Media(_) => "content",
        MessageBody::Deleted => "deleted",
        MessageBody::Edit { .. } => "edit",
        MessageBody::Reaction { .. } => "reaction",
        MessageBody::Delete { .. } => "delete",
        MessageBody::System(_) => "system",
    }
}

/// The text of a content body.
pub fn text_of(b: &MessageBody) -> Option<&str> {
    match b {
        MessageBody::Text(t) => Some(t),
        MessageBody::Rich(r) => Some(&r.text),
        MessageBody::Media(m) => Some(m.caption.as_deref().unwrap_or_default()),
        _ => None,
    }
}

/// Membership intervals from the system messages of `chat` (in seq order); problems for
/// system messages that contradict each other.
pub fn intervals(chat: &BTreeMap<Seq, Message>) -> (BTreeMap<UserId, Vec<Interval>>, Vec<String>) {
    let mut problems = Vec::new();
    let mut open: BTreeMap<UserId, Seq> = BTreeMap::new();
    let mut closed: BTreeMap<UserId, Vec<Interval>> = BTreeMap::new();
    let created_at_1 = chat.get(&1).is_some_and(|m| {
        matches!(&m.body, MessageBody::System(e) if matches!(e.change, GroupChange::Created { .. }))
    });
    let mut close =
        |open: &mut BTreeMap<UserId, Seq>, u: UserId, seq: Seq, problems: &mut Vec<String>| {
            match open.remove(&u) {
                Some(from) => closed.entry(u).or_default().push(Interval {
                    from,
                    to: Some(seq),
                }),
                None => problems.push(format!("seq {seq}: user {u} leaves but is not a member")),
            }
        };
    for (seq, m) in chat {
        let MessageBody::System(e) = &m.body else {
            continue;
        };
        match &e.change {
            GroupChange::Created { .. } => {
                if *seq != 1 {
                    problems.push(format!("seq {seq}: Created is not seq 1"));
                }
                open.insert(e.actor, *seq);
            }
            GroupChange::MembersAdded(users) => {
                let from = if *seq == 2 && created_at_1 { 1 } else { *seq };
                for u in users {
                    if open.insert(*u, from).is_some() {
                        problems.push(format!("seq {seq}: user {u} added while a member"));
                    }
                }
            }
            GroupChange::MemberRemoved(u) => close(&mut open, *u, *seq, &mut problems),
            GroupChange::Left => close(&mut open, e.actor, *seq, &mut problems),
            _ => {}
        }
    }
    let mut all = closed;
    for (u, from) in open {
        all.entry(u).or_default().push(Interval { from, to: None });
    }
    for ivs in all.values_mut() {
        ivs.sort_by_key(|i| i.from);
    }
    (all, problems)
}

fn covered(ivs: &[Interval], seq: Seq) -> bool {
    ivs.iter().any(|i| i.covers(seq))
}

/// Checks what `devices` saw of one group and what `fetched` read from it afterwards against
/// each other and against what senders were told (`acked`).
pub fn check(acked: &[Sent], devices: &[DeviceView], fetched: &[Fetched]) -> Report {
    let mut problems = Vec::new();
    // Every version of every seq, from every device and fetch.
    let mut versions: BTreeMap<Seq, Vec<(&str, &Message)>> = BTreeMap::new();
    for d in devices {
        for s in &d.seen {
            if let Seen::Message(m) = s {
                versions.entry(m.seq).or_default().push((&d.name, m));
            }
        }
    }
    for f in fetched {
        for m in &f.messages {
            versions.entry(m.seq).or_default().push((&f.name, m));
        }
    }
    let last_seq = versions.keys().next_back().copied().unwrap_or(0);
    for seq in 1..=last_seq {
        if !versions.contains_key(&seq) {
            problems.push(format!("seq {seq} reached no device"));
        }
    }
    // One canonical message per seq; the versions must agree on everything but the content
    // of content messages (edits and deletes change it) and the text of edits (emptied when
    // their target is deleted).
    let mut chat: BTreeMap<Seq, Message> = BTreeMap::new();
    for (seq, vs) in &versions {
        let (first_name, first) = vs[0];
        for (name, m) in &vs[1..] {
            let same_meta = m.msg_id == first.msg_id
                && m.sender == first.sender
                && m.sender_device == first.sender_device
                && m.client_msg_id == first.client_msg_id
                && m.ts_ms == first.ts_ms
                && m.chat_id == first.chat_id;
            let compatible = match (&first.body, &m.body) {
                (a, b) if kind(a) == "content" || kind(a) == "deleted" => {
                    kind(b) == "content" || kind(b) == "deleted"
                }
                (
                    MessageBody::Edit {
                        target: t1,
                        text: x1,
                    },
                    MessageBody::Edit {
                        target: t2,
                        text: x2,
                    },
                ) => t1 == t2 && (x1 == x2 || x1.is_empty() || x2.is_empty()),
                (a, b) => a == b,
            };
            if !same_meta || !compatible {
                problems.push(format!(
                    "seq {seq}: {name} has {m:?} but {first_name} has {first:?}"
                ));
            }
        }
        // Prefer a version with content (hidden-for-me and deleted versions read Deleted).
        let best = vs
            .iter()
            .find(|(_, m)| kind(&m.body) == "content")
            .or_else(|| {
                vs.iter().find(
                    |(_, m)| matches!(&m.body, MessageBody::Edit { text, .. } if !text.is_empty()),
                )
            })
            .unwrap_or(&vs[0]);
        chat.insert(*seq, best.1.clone());
    }
    for s in acked {
        match chat.get(&s.seq) {
            None => problems.push(format!("acknowledged seq {} reached no device", s.seq)),
            Some(m) if m.msg_id != s.msg_id || m.chat_id != s.chat_id => problems.push(format!(
                "acknowledged seq {} was msg {} but devices have msg {}",
                s.seq, s.msg_id, m.msg_id
            )),
            Some(_) => {}
        }
    }
    let (ivs, p) = intervals(&chat);
    problems.extend(p);

    // Final state of every content message: deleted if any Delete targets it, else the last
    // edit's text, else its own text.
    let mut deletes: HashMap<Seq, Vec<Seq>> = HashMap::new();
    let mut edits: HashMap<Seq, Vec<(Seq, String)>> = HashMap::new();
    for (seq, m) in &chat {
        match &m.body {
            MessageBody::Delete { target } => deletes.entry(*target).or_default().push(*seq),
            MessageBody::Edit { target, text } => {
                edits.entry(*target).or_default().push((*seq, text.clone()))
            }
            _ => {}
        }
    }
    let mut finals: BTreeMap<Seq, Final> = BTreeMap::new();
    for (seq, m) in &chat {
        if kind(&m.body) != "content" && kind(&m.body) != "deleted" {
            continue;
        }
        let f = if deletes.contains_key(seq) {
            Final::Deleted
        } else if let Some((_, t)) = edits.get(seq).and_then(|e| {
            e.iter()
                .filter(|(_, t)| !t.is_empty())
                .max_by_key(|(s, _)| *s)
        }) {
            Final::Text(t.clone())
        } else {
            match text_of(&m.body) {
                Some(t) => {
                    let texts: BTreeSet<&str> = versions[seq]
                        .iter()
                        .filter_map(|(_, v)| text_of(&v.body))
                        .collect();
                    if texts.len() > 1 {
                        problems.push(format!(
                            "seq {seq} was never edited but reads as {texts:?} on different devices"
                        ));
                    }
                    Final::Text(t.to_owned())
                }
                // Nobody has its content: every device that saw it hid it for itself.
                None => Final::Deleted,
            }
        };
        finals.insert(*seq, f);
    }

    // Per user: what their devices hid.
    let mut hidden: HashMap<UserId, BTreeSet<Seq>> = HashMap::new();
    for d in devices {
        for s in &d.seen {
            if let Seen::Hidden(seqs) = s {
                hidden
                    .entry(d.user)
                    .or_default()
                    .extend(seqs.iter().copied());
            }
        }
    }
    let none = Vec::new();
    let empty = BTreeSet::new();
    for d in devices {
        let name = &d.name;
        let mine = ivs.get(&d.user).unwrap_or(&none);
        let my_hidden = hidden.get(&d.user).unwrap_or(&empty);
        let mut got: BTreeSet<Seq> = BTreeSet::new();
        let mut prev = 0;
        let mut joined = false;
        let mut lefts = BTreeSet::new();
        let mut hid = BTreeSet::new();
        let mut state: BTreeMap<Seq, Final> = BTreeMap::new();
        for s in &d.seen {
            match s {
                Seen::Message(m) => {
                    if !got.insert(m.seq) {
                        problems.push(format!("{name}: seq {} arrived twice", m.seq));
                    }
                    if m.seq <= prev {
                        problems.push(format!("{name}: seq {} arrived after seq {prev}", m.seq));
                    }
                    prev = prev.max(m.seq);
                    if !covered(mine, m.seq) {
                        problems.push(format!(
                            "{name}: seq {} is outside its membership intervals {mine:?}",
                            m.seq
                        ));
                    }
                    if m.seq > 1 && mine.iter().any(|i| i.from == m.seq) && !joined {
                        problems.push(format!(
                            "{name}: no ChatJoined before the MembersAdded at seq {}",
                            m.seq
                        ));
                    }
                    apply(&mut state, m);
                }
                Seen::Joined => joined = true,
                Seen::Left(at) => {
                    joined = false;
                    lefts.insert(*at);
                    if !mine.iter().any(|i| i.to == Some(*at)) {
                        problems.push(format!(
                            "{name}: ChatLeft at seq {at} ends none of its intervals {mine:?}"
                        ));
                    }
                    if prev != *at {
                        problems.push(format!(
                            "{name}: ChatLeft at seq {at} arrived after seq {prev}"
                        ));
                    }
                }
                Seen::Hidden(seqs) => hid.extend(seqs.iter().copied()),
            }
        }
        for seq in 1..=last_seq {
            if covered(mine, seq) && !got.contains(&seq) {
                problems.push(format!(
                    "{name}: missing seq {seq} of its intervals {mine:?}"
                ));
            }
        }
        for i in mine {
            if let Some(to) = i.to
                && !lefts.contains(&to)
            {
                problems.push(format!("{name}: no ChatLeft at seq {to}"));
            }
        }
        for seq in my_hidden.difference(&hid) {
            problems.push(format!(
                "{name}: no HiddenForMe for seq {seq} (hidden by its user)"
            ));
        }
        // Convergence: where the device saw every edit and delete of a message, it reads
        // what every other device reads.
        for (seq, f) in &state {
            let mods_seen = edits
                .get(seq)
                .into_iter()
                .flatten()
                .map(|(s, _)| *s)
                .chain(deletes.get(seq).into_iter().flatten().copied())
                .all(|s| covered(mine, s));
            let want = if my_hidden.contains(seq) {
                Some(&Final::Deleted)
            } else {
                finals.get(seq)
            };
            let f = if my_hidden.contains(seq) {
                &Final::Deleted
            } else {
                f
            };
            if mods_seen && want.is_some_and(|w| w != f) {
                problems.push(format!(
                    "{name}: seq {seq} reads {f:?} after applying the chat in seq order, \
                     but should read {want:?}"
                ));
            }
        }
    }

    for f in fetched {
        let name = &f.name;
        let mine = ivs.get(&f.user).unwrap_or(&none);
        let my_hidden = hidden.get(&f.user).unwrap_or(&empty);
        let mut got = BTreeSet::new();
        for m in &f.messages {
            if !got.insert(m.seq) {
                problems.push(format!("{name}: GetMessages returned seq {} twice", m.seq));
            }
            if !covered(mine, m.seq) {
                problems.push(format!(
                    "{name}: GetMessages returned seq {} outside its intervals {mine:?}",
                    m.seq
                ));
            }
            if let Some(want) = finals.get(&m.seq) {
                let want = if my_hidden.contains(&m.seq) {
                    &Final::Deleted
                } else {
                    want
                };
                let is = match text_of(&m.body) {
                    Some(t) => Final::Text(t.to_owned()),
                    None if m.body == MessageBody::Deleted => Final::Deleted,
                    None => Final::Text(format!("{:?}", m.body)),
                };
                if &is != want {
                    problems.push(format!(
                        "{name}: GetMessages shows seq {} as {is:?}, should be {want:?}",
                        m.seq
                    ));
                }
            }
            if let MessageBody::Edit { target, text } = &m.body
                && deletes.contains_key(target)
                && !text.is_empty()
            {
                problems.push(format!(
                    "{name}: edit seq {} of deleted seq {target} still stores {text:?}",
                    m.seq
                ));
            }
        }
        for seq in 1..=last_seq {
            if covered(mine, seq) && !got.contains(&seq) {
                problems.push(format!(
                    "{name}: GetMessages lacks seq {seq} of its intervals"
                ));
            }
        }
    }
    Report {
        problems,
        intervals: ivs,
        last_seq,
        finals,
    }
}

/// Applies one message to a device's view of the content messages.
fn apply(state: &mut BTreeMap<Seq, Final>, m: &Message) {
    match &m.body {
        MessageBody::Text(_) | MessageBody::Rich(_) | MessageBody::Media(_) => {
            let t = text_of(&m.body).unwrap_or_default().to_owned();
            state.insert(m.seq, Final::Text(t));
        }
        MessageBody::Deleted => {
            state.insert(m.seq, Final::Deleted);
        }
        MessageBody::Edit { target, text } => {
            if let Some(f @ Final::Text(_)) = state.get_mut(target)
                && !text.is_empty()
            {
                *f = Final::Text(text.clone());
            }
        }
        MessageBody::Delete { target } => {
            if let Some(f) = state.get_mut(target) {
                *f = Final::Deleted;
            }
        }
        MessageBody::Reaction { .. } | MessageBody::System(_) => {}
    }
}

// ---- Request helpers the group tests share ----

/// The `Sent` of an answer, or a panic naming what came instead.
pub fn sent(what: &str, r: Result<Response, Error>) -> Sent {
    match r {
        Ok(Response::Sent(s)) => s,
        other => panic!("{what}: expected Sent, got {other:?}"),
    }
}

/// The error code and message of an answer, or a panic if it succeeded.
pub fn refused(what: &str, r: Result<Response, Error>) -> (tern_sdk::protocol::ErrorCode, String) {
    match r {
        Err(Error::Server(b)) => (b.code, b.message),
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

/// Creates a group and returns its id.
pub async fn create_group(client: &Client, title: &str, members: &[UserId]) -> ChatId {
    match client
        .request(Request::CreateGroup {
            title: title.into(),
            members: members.to_vec(),
        })
        .await
    {
        Ok(Response::Chat(c)) => c.chat_id,
        other => panic!("CreateGroup {title}: {other:?}"),
    }
}

/// Sends a message with `request` (retrying the same idempotency key when the connection
/// drops), so the answer is the server's.
pub async fn send_body(
    client: &Client,
    chat_id: ChatId,
    client_msg_id: u64,
    body: MessageBody,
) -> Result<Response, Error> {
    loop {
        let r = client
            .request(Request::SendMessage {
                chat_id,
                client_msg_id,
                body: body.clone(),
            })
            .await;
        match r {
            Err(Error::Disconnected | Error::Timeout) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Every message of `chat` the caller may read, up to `last_seq`, with `GetMessages` pages.
pub async fn fetch_all(client: &Client, chat_id: ChatId, last_seq: Seq) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    let mut from = 1;
    while from <= last_seq {
        let page = client
            .request(Request::GetMessages {
                chat_id,
                from_seq: from,
                limit: 256,
            })
            .await;
        let Ok(Response::Messages(page)) = page else {
            panic!("GetMessages {chat_id} from {from}: {page:?}");
        };
        let next = page.last().map_or(0, |m| m.seq + 1);
        out.extend(page);
        from = (from + 256).max(next);
    }
    out
}

/// The user's whole update log, read with `Sync` pages from pts 0.
pub async fn whole_log(client: &Client) -> Vec<Update> {
    let mut log = Vec::new();
    let mut after = SyncCursor { pts: 0 };
    loop {
        let r = client.request(Request::Sync { after, limit: 256 }).await;
        let Ok(Response::SyncPage(page)) = r else {
            panic!("Sync after {}: {r:?}", after.pts);
        };
        log.extend(page.updates);
        after = page.cursor;
        if !page.has_more {
            return log;
        }
    }
}
