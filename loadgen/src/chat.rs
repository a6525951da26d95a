//! `chat`: pairs of users exchange 1:1 messages at a fixed total rate, open loop
//! ([`crate::openloop`]: latency counts from each message's intended send time).
//!
//! Every acknowledged message is matched against what its recipient received ([`Ledger`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::bail;
use tern_sdk::protocol::{ChatId, Message, MessageBody, UserId};
use tern_sdk::{Client, ClientEvent, Events};
use tokio::task::JoinSet;

use crate::cli::ChatArgs;
use crate::history::{self, History};
use crate::ledger::{Ledger, Verdict};
use crate::openloop::{self, Core};
use crate::report::Report;
use crate::run::{self, Target, Ui};

/// State shared by the scheduler, the send tasks and the recipients.
#[derive(Debug)]
struct Shared {
    core: Arc<Core>,
    /// One per user as a sender.
    ledgers: Vec<Mutex<Ledger>>,
    /// user id -> index.
    index_of: HashMap<UserId, usize>,
    /// index -> (client, its chat with its partner).
    senders: Vec<(Client, ChatId)>,
    /// index -> its device id (for the history).
    devices: Vec<u64>,
    /// `--history`.
    history: Option<History>,
}

impl Shared {
    fn device(&self, i: usize) -> u64 {
        self.devices.get(i).copied().unwrap_or(0)
    }

    fn ledger(&self, i: usize) -> Option<std::sync::MutexGuard<'_, Ledger>> {
        self.ledgers.get(i).and_then(|l| l.lock().ok())
    }
}

fn partner(i: usize) -> usize {
    i ^ 1
}

async fn send_one(
    shared: Arc<Shared>,
    k: u64,
    sender: usize,
    intended: std::time::Instant,
    payload: usize,
) {
    let Some((client, chat)) = shared.senders.get(sender) else {
        return;
    };
    let device = shared.device(sender);
    if let Some(h) = &shared.history {
        h.invoke(history::process(sender), device, *chat, k + 1);
    }
    let result = shared.core.send(client, *chat, k, intended, payload).await;
    if let Some(h) = &shared.history {
        h.outcome(
            history::process(sender),
            device,
            *chat,
            k + 1,
            result.as_ref().map(|&(seq, _)| seq),
        );
    }
    if let Ok((seq, cmid)) = result
        && let Some(mut l) = shared.ledger(sender)
    {
        l.acked(seq, cmid);
    }
}

fn on_message(shared: &Shared, receiver: usize, m: &Message) {
    let MessageBody::Text(text) = &m.body else {
        shared.core.errors.add("foreign message");
        return;
    };
    let (Some(ns), Some(&sender)) = (openloop::stamp_of(text), shared.index_of.get(&m.sender))
    else {
        shared.core.errors.add("foreign message");
        return;
    };
    if partner(sender) != receiver {
        shared.core.errors.add("misrouted message");
        return;
    }
    shared.core.delivered(ns);
    if let Some(h) = &shared.history {
        h.received(
            history::process(receiver),
            shared.device(receiver),
            m.chat_id,
            m.seq,
            m.client_msg_id,
            history::process(sender),
        );
    }
    if let Some(mut l) = shared.ledger(sender) {
        l.received(m.seq, m.client_msg_id);
    }
}

async fn drain(shared: Arc<Shared>, receiver: usize, mut events: Events) {
    while let Some(ev) = events.next().await {
        match ev {
            ClientEvent::Message {
                message,
                own: false,
                ..
            } => on_message(&shared, receiver, &message),
            ClientEvent::Disconnected { .. } => {
                shared.core.disconnects.fetch_add(1, Ordering::Relaxed);
            }
            ClientEvent::SessionEnded { .. } => shared.core.errors.add("session ended"),
            _ => {}
        }
    }
}

/// Runs the scenario.
pub async fn run(
    args: &ChatArgs,
    target: &Target,
    ui: Ui,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Report> {
    let c = &args.common;
    openloop::validate(args.rate, args.payload_bytes)?;
    let history = args.history.as_deref().map(History::create).transpose()?;
    let n = c.users.unwrap_or(100).max(2).next_multiple_of(2);
    let (fleet, users) =
        run::login_fleet(c, target, n, crate::cli::DEFAULT_PER_ENDPOINT, ui, &stop).await?;

    // Pair 2i with 2i+1: one direct chat per pair, both users send in it.
    let mut chats: Vec<Option<ChatId>> = vec![None; n];
    let mut set = JoinSet::new();
    for pair in 0..n / 2 {
        let (a, b) = (&users[2 * pair], &users[2 * pair + 1]);
        let client = a.client.clone();
        let peer = b.session.user_id;
        set.spawn(async move { (pair, client.open_direct_chat(peer).await) });
        while set.len() >= c.login_concurrency.max(1) {
            collect_chat(&mut set, &mut chats).await?;
        }
    }
    while !set.is_empty() {
        collect_chat(&mut set, &mut chats).await?;
    }
    let mut senders = Vec::with_capacity(n);
    for (u, chat) in users.iter().zip(&chats) {
        let Some(chat) = chat else {
            bail!("no chat for user {}", u.index);
        };
        senders.push((u.client.clone(), *chat));
    }

    if let Some(h) = &history {
        for (u, (_, chat)) in users.iter().zip(&senders) {
            h.join(history::process(u.index), u.session.device_id.0, *chat);
        }
    }
    let shared = Arc::new(Shared {
        core: Arc::new(Core::new(c, std::time::Duration::from_secs(1), args.rate)),
        ledgers: (0..n).map(|_| Mutex::new(Ledger::default())).collect(),
        index_of: users.iter().map(|u| (u.session.user_id, u.index)).collect(),
        senders,
        devices: users.iter().map(|u| u.session.device_id.0).collect(),
        history,
    });
    let mut clients = Vec::with_capacity(n);
    let mut drains = JoinSet::new();
    for u in users {
        clients.push(u.client);
        drains.spawn(drain(shared.clone(), u.index, u.events));
    }

    let issue = {
        let shared = shared.clone();
        let rt = tokio::runtime::Handle::current();
        let payload = args.payload_bytes;
        move |k: u64, intended| {
            let sender = (k % n as u64) as usize;
            rt.spawn(send_one(shared.clone(), k, sender, intended, payload));
        }
    };
    let outstanding = || -> usize {
        shared
            .ledgers
            .iter()
            .filter_map(|l| l.lock().ok().map(|l| l.outstanding()))
            .sum()
    };
    let window = shared
        .core
        .drive(target, ui, "chat", stop, issue, outstanding)
        .await?;
    let own_rss = crate::procstat::rss_bytes(crate::procstat::Pid::SelfProcess).ok();
    run::close_all(clients).await;
    drains.abort_all();
    if let Some(h) = &shared.history {
        h.finish()?;
    }

    let mut verdict = Verdict::default();
    for l in &shared.ledgers {
        if let Ok(l) = l.lock() {
            verdict += l.check();
        }
    }
    let mut report = shared.core.report("chat", &window, verdict, own_rss);
    report.connections = n as u64;
    report.users = n as u64;
    report.endpoints = fleet.endpoints() as u64;
    report.payload_bytes = Some(args.payload_bytes);
    Ok(report)
}

async fn collect_chat(
    set: &mut JoinSet<(usize, Result<tern_sdk::protocol::ChatInfo, tern_sdk::Error>)>,
    chats: &mut [Option<ChatId>],
) -> anyhow::Result<()> {
    if let Some(done) = set.join_next().await {
        let (pair, info) = done?;
        let info = info.map_err(|e| anyhow::anyhow!("opening a direct chat: {e}"))?;
        for i in [2 * pair, 2 * pair + 1] {
            if let Some(slot) = chats.get_mut(i) {
                *slot = Some(info.chat_id);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partners_are_pairs() {
        assert_eq!(partner(0), 1);
        assert_eq!(partner(1), 0);
        assert_eq!(partner(6), 7);
    }
}
