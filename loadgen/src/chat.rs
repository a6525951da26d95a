//! `chat`: pairs of users exchange 1:1 messages at a fixed total rate.
//!
//! Open loop: message `k` is due at `start + k / rate`, whatever happened to earlier messages.
//! A scheduler thread issues each send at its due time (tokio's timer wheel has millisecond
//! granularity; a thread's sleep is tens of microseconds), and every latency is measured from the
//! due ("intended") time, so a stalled server or client shows up as latency instead of silently
//! lowering the offered load. The text of each message starts with its intended send time in
//! nanoseconds since the run's start, so the recipient can compute delivery latency itself.
//!
//! Every acknowledged message is matched against what its recipient received ([`Ledger`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use tern_sdk::protocol::{ChatId, Message, MessageBody, UserId};
use tern_sdk::{Client, ClientEvent, Events};
use tokio::task::JoinSet;

use crate::cli::ChatArgs;
use crate::ledger::{Ledger, Verdict};
use crate::report::Report;
use crate::run::{self, Errors, Target, Ui};
use crate::stats::Recorder;
use crate::users::{self, Fleet};

/// Digits of the intended-send timestamp at the start of each message.
const STAMP_DIGITS: usize = 20;
/// The scheduler spins (instead of sleeping) for the last this-much before a due time...
const SPIN_WINDOW: Duration = Duration::from_micros(120);
/// ...when sends are at least this far apart (low rates, where the CPU is there to spare).
const SPIN_ABOVE: Duration = Duration::from_millis(1);
/// Smallest payload: the stamp and a separator.
pub const MIN_PAYLOAD: usize = 24;

/// The text of a message due `ns` nanoseconds after the start, `len` bytes long.
fn message_text(ns: u64, len: usize) -> String {
    let mut s = format!("{ns:0STAMP_DIGITS$}|");
    let pad = len.saturating_sub(s.len());
    s.extend(std::iter::repeat_n('x', pad));
    s
}

/// The intended-send time stamped into a message text.
fn stamp_of(text: &str) -> Option<u64> {
    text.get(..STAMP_DIGITS)?.parse().ok()
}

/// State shared by the scheduler, the send tasks and the recipients.
#[derive(Debug)]
struct Shared {
    start: Instant,
    warm_end: Instant,
    end: Instant,
    recorder: Recorder,
    errors: Errors,
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    delivered: AtomicU64,
    acked_in_window: AtomicU64,
    delivered_in_window: AtomicU64,
    disconnects: AtomicU64,
    /// One per user as a sender.
    ledgers: Vec<Mutex<Ledger>>,
    /// user id -> index.
    index_of: HashMap<UserId, usize>,
    /// index -> (client, its chat with its partner).
    senders: Vec<(Client, ChatId)>,
}

impl Shared {
    fn in_window(&self, t: Instant) -> bool {
        t >= self.warm_end && t < self.end
    }

    /// Second of the run an intended time falls in, and whether it is measured.
    fn slot(&self, intended: Instant) -> (Option<usize>, bool) {
        let second = intended.saturating_duration_since(self.start).as_secs() as usize;
        (Some(second), self.in_window(intended))
    }

    fn ledger(&self, i: usize) -> Option<std::sync::MutexGuard<'_, Ledger>> {
        self.ledgers.get(i).and_then(|l| l.lock().ok())
    }
}

fn partner(i: usize) -> usize {
    i ^ 1
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

async fn send_one(shared: Arc<Shared>, k: u64, sender: usize, intended: Instant, payload: usize) {
    let Some((client, chat)) = shared.senders.get(sender).cloned() else {
        return;
    };
    let (second, measured) = shared.slot(intended);
    shared.recorder.record(
        "dispatch_lag",
        micros(Instant::now().saturating_duration_since(intended)),
        None,
        measured,
    );
    let ns = u64::try_from((intended - shared.start).as_nanos()).unwrap_or(u64::MAX);
    let cmid = k + 1;
    match client
        .send(chat, MessageBody::Text(message_text(ns, payload)), cmid)
        .await
    {
        Ok(sent) => {
            let now = Instant::now();
            shared.acked.fetch_add(1, Ordering::Relaxed);
            if shared.in_window(now) {
                shared.acked_in_window.fetch_add(1, Ordering::Relaxed);
            }
            shared.recorder.record(
                "ack",
                micros(now.saturating_duration_since(intended)),
                second,
                measured,
            );
            if sent.chat_id != chat {
                shared.errors.add("ack for another chat");
            }
            if let Some(mut l) = shared.ledger(sender) {
                l.acked(sent.seq, cmid);
            }
        }
        Err(e) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            shared.errors.add(run::sdk_error_kind("send", &e));
        }
    }
}

fn on_message(shared: &Shared, receiver: usize, m: &Message) {
    let now = Instant::now();
    shared.delivered.fetch_add(1, Ordering::Relaxed);
    if shared.in_window(now) {
        shared.delivered_in_window.fetch_add(1, Ordering::Relaxed);
    }
    let MessageBody::Text(text) = &m.body else {
        shared.errors.add("foreign message");
        return;
    };
    let (Some(ns), Some(&sender)) = (stamp_of(text), shared.index_of.get(&m.sender)) else {
        shared.errors.add("foreign message");
        return;
    };
    if partner(sender) != receiver {
        shared.errors.add("misrouted message");
        return;
    }
    let intended = shared.start + Duration::from_nanos(ns);
    let (second, measured) = shared.slot(intended);
    shared.recorder.record(
        "deliver",
        micros(now.saturating_duration_since(intended)),
        second,
        measured,
    );
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
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
            }
            ClientEvent::SessionEnded { .. } => shared.errors.add("session ended"),
            _ => {}
        }
    }
}

/// Issues every send at its intended time; runs on its own thread.
fn schedule(
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
    rate: f64,
    total: u64,
    payload: usize,
    stop: Arc<AtomicBool>,
) {
    let n = shared.senders.len() as u64;
    let due = |k: u64| shared.start + Duration::from_secs_f64(k as f64 / rate);
    let mut k = 0u64;
    while k < total && !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let next = due(k);
        if next > now {
            let gap = next - now;
            if gap > SPIN_ABOVE {
                // Sleeping overshoots by the timer slack and a wake-up (~100 us), which would
                // count as latency: sleep to just before the due time, then spin.
                std::thread::sleep(gap - SPIN_WINDOW);
                while Instant::now() < next {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::sleep(gap);
            }
            continue;
        }
        while k < total {
            let intended = due(k);
            if intended > now {
                break;
            }
            let sender = (k % n) as usize;
            // Counted here, not in the task: the grace wait compares it with what resolved.
            shared.sent.fetch_add(1, Ordering::Relaxed);
            rt.spawn(send_one(shared.clone(), k, sender, intended, payload));
            k += 1;
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
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be a positive number of messages per second");
    }
    if args.payload_bytes < MIN_PAYLOAD
        || args.payload_bytes > tern_sdk::protocol::limits::MAX_TEXT_LEN
    {
        bail!(
            "--payload-bytes must be between {MIN_PAYLOAD} (the text carries its send time) and {}",
            tern_sdk::protocol::limits::MAX_TEXT_LEN
        );
    }
    let n = c.users.unwrap_or(100).max(2).next_multiple_of(2);
    let warmup = c.warmup.unwrap_or(Duration::from_secs(1));
    let base = users::base_config(target.addr, &target.fingerprint, c.keep_alive)?;
    let fleet = Fleet::new(&base, n, c.connections_per_endpoint)?;
    let users = run::login_users(c, target, &fleet, n, ui, &stop).await?;

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

    let start = Instant::now() + Duration::from_millis(200);
    let warm_end = start + warmup;
    let end = warm_end + c.duration;
    let recorder = Recorder::new();
    for kind in ["ack", "deliver", "dispatch_lag"] {
        recorder.declare(kind);
    }
    let shared = Arc::new(Shared {
        start,
        warm_end,
        end,
        recorder,
        errors: Errors::default(),
        sent: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        acked_in_window: AtomicU64::new(0),
        delivered_in_window: AtomicU64::new(0),
        disconnects: AtomicU64::new(0),
        ledgers: (0..n).map(|_| Mutex::new(Ledger::default())).collect(),
        index_of: users.iter().map(|u| (u.session.user_id, u.index)).collect(),
        senders,
    });
    let mut clients = Vec::with_capacity(n);
    let mut drains = JoinSet::new();
    for u in users {
        clients.push(u.client);
        drains.spawn(drain(shared.clone(), u.index, u.events));
    }

    let total = (args.rate * (warmup + c.duration).as_secs_f64()).round() as u64;
    let window = run::sample_window(target, warm_end, end, stop.clone());
    let scheduler = {
        let shared = shared.clone();
        let rt = tokio::runtime::Handle::current();
        let stop = stop.clone();
        let (rate, payload) = (args.rate, args.payload_bytes);
        std::thread::Builder::new()
            .name("schedule".into())
            .spawn(move || schedule(shared, rt, rate, total, payload, stop))?
    };

    let bar = ui.bar(total, "chat");
    let progress = |shared: &Shared| {
        format!(
            "acked {} delivered {} errors {}",
            shared.acked.load(Ordering::Relaxed),
            shared.delivered.load(Ordering::Relaxed),
            shared.errors.total()
        )
    };
    while !scheduler.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bar.set_position(shared.sent.load(Ordering::Relaxed));
        bar.set_message(progress(&shared));
    }
    let _ = scheduler.join();
    let window = window.await?;

    // Grace: wait for outstanding sends and deliveries, bounded.
    bar.set_prefix("grace");
    let grace_end = Instant::now() + c.grace;
    loop {
        let sent = shared.sent.load(Ordering::Relaxed);
        let resolved = shared.acked.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed);
        let outstanding: usize = shared
            .ledgers
            .iter()
            .filter_map(|l| l.lock().ok().map(|l| l.outstanding()))
            .sum();
        if (resolved >= sent && outstanding == 0)
            || Instant::now() >= grace_end
            || stop.load(Ordering::Relaxed)
        {
            break;
        }
        bar.set_message(progress(&shared));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bar.finish_and_clear();
    let own_rss = crate::procstat::rss_bytes(crate::procstat::Pid::SelfProcess).ok();
    run::close_all(clients).await;
    drains.abort_all();

    let mut verdict = Verdict::default();
    for l in &shared.ledgers {
        if let Ok(l) = l.lock() {
            verdict += l.check();
        }
    }
    let measured_s = window
        .ended
        .map_or(c.duration, |e| e.saturating_duration_since(warm_end))
        .as_secs_f64();
    let acked_in_window = shared.acked_in_window.load(Ordering::Relaxed);
    let delivered_in_window = shared.delivered_in_window.load(Ordering::Relaxed);
    let sent = shared.sent.load(Ordering::Relaxed);
    let acked = shared.acked.load(Ordering::Relaxed);
    let failed = shared.failed.load(Ordering::Relaxed);
    let mut report = Report {
        scenario: "chat".into(),
        connections: n as u64,
        users: n as u64,
        endpoints: fleet.endpoints() as u64,
        rate_target_per_s: Some(args.rate),
        payload_bytes: Some(args.payload_bytes),
        duration_s: measured_s,
        warmup_s: warmup.as_secs_f64(),
        sent,
        acked,
        delivered: shared.delivered.load(Ordering::Relaxed),
        lost: verdict.lost,
        duplicates: verdict.duplicates,
        out_of_order: verdict.out_of_order,
        errors: shared.errors.total(),
        unacked: sent.saturating_sub(acked + failed),
        disconnects: shared.disconnects.load(Ordering::Relaxed),
        throughput_unit: "acked messages".into(),
        throughput_per_s: acked_in_window as f64 / measured_s.max(1e-9),
        delivered_per_s: delivered_in_window as f64 / measured_s.max(1e-9),
        latency_us: shared.recorder.summaries(),
        server_cpu_s: window.server_cpu(),
        server_view: window.server_view(),
        server_rss_bytes: window.server_end.map(|s| s.rss),
        loadgen_cpu_s: window.own_cpu(),
        loadgen_rss_bytes: own_rss,
        error_kinds: shared.errors.kinds(),
        delivery_check: Some(verdict),
        latency_per_second_us: shared.recorder.series(),
        ..Report::default()
    };
    report.derive(&window, acked_in_window, delivered_in_window);
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
    fn texts_carry_their_intended_time() {
        let t = message_text(1_234_567_890, 200);
        assert_eq!(t.len(), 200);
        assert_eq!(stamp_of(&t), Some(1_234_567_890));
        assert_eq!(message_text(5, MIN_PAYLOAD).len(), MIN_PAYLOAD);
        assert_eq!(stamp_of("hello"), None);
    }

    #[test]
    fn partners_are_pairs() {
        assert_eq!(partner(0), 1);
        assert_eq!(partner(1), 0);
        assert_eq!(partner(6), 7);
    }
}
