//! `presence`: N users, each watching K others, while a churn of foreground/background switches
//! changes who is online. Reports presence events delivered per server CPU-second and their
//! latency, and checks that every watcher's final view equals the truth.
//!
//! Setup: every user sets all privacy audiences to `Everyone` (presence would otherwise be
//! hidden between users who are not each other's contacts), then user `i` watches users
//! `i+1 .. i+K` (mod N) with `WatchPresence` on its connection. Churn: at `--churn-rate`
//! switches per second in total, a random user flips its foreground flag (`SetForeground`), so
//! it goes offline or online without reconnecting; each user switches at most once per
//! `--min-switch-interval` (default 2x the server's 3 s debounce), so every switch is published.
//!
//! Latency: `online` is a switch to the foreground -> each watcher's `Online` event (published
//! at once); `offline` is a switch to the background -> each watcher's `LastSeen` event (the
//! server publishes it only after the user stayed away for its debounce, by design).
//!
//! The check: after the churn stops and `--grace` (at least the debounce plus a margin) has
//! passed, each watcher's view of each watched user (the last presence it got, snapshot
//! included) must be `Online` exactly when the user is in the foreground.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::Rng;
use tern_sdk::protocol::{Audience, Presence, PresenceState, PrivacySettings, UserId};
use tern_sdk::{Client, ClientEvent, Events};
use tokio::task::JoinSet;

use crate::cli::PresenceArgs;
use crate::report::{PresenceSummary, Report};
use crate::run::{self, Errors, Target, Ui};
use crate::stats::Recorder;

/// Connections per client UDP socket.
const PER_ENDPOINT: usize = 64;

/// One user's truth and the watchers' views of it.
#[derive(Debug)]
struct Watched {
    /// In the foreground now (the truth).
    foreground: AtomicBool,
    /// When it last switched, and to what (for latency).
    switched: Mutex<Option<(Instant, bool)>>,
}

#[derive(Debug)]
struct Shared {
    users: Vec<Watched>,
    index_of: HashMap<UserId, usize>,
    /// watcher index -> (watched index -> last state seen)
    views: Vec<Mutex<HashMap<usize, PresenceState>>>,
    recorder: Recorder,
    errors: Errors,
    events: AtomicU64,
    events_in_window: AtomicU64,
    switches: AtomicU64,
    warm_end: Instant,
    end: Instant,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Shared {
    fn on_presence(&self, watcher: usize, p: Presence) {
        let now = Instant::now();
        self.events.fetch_add(1, Ordering::Relaxed);
        if now >= self.warm_end && now < self.end {
            self.events_in_window.fetch_add(1, Ordering::Relaxed);
        }
        let Some(&watched) = self.index_of.get(&p.user_id) else {
            self.errors.add("presence of an unwatched user");
            return;
        };
        if let Some(Ok(switched)) = self.users.get(watched).map(|u| u.switched.lock())
            && let Some((at, to_foreground)) = *switched
        {
            let online = matches!(p.state, PresenceState::Online);
            if online == to_foreground {
                let kind = if online { "online" } else { "offline" };
                let measured = at >= self.warm_end && at < self.end;
                self.recorder.record(
                    kind,
                    micros(now.saturating_duration_since(at)),
                    None,
                    measured,
                );
            }
        }
        if let Some(Ok(mut view)) = self.views.get(watcher).map(|v| v.lock()) {
            view.insert(watched, p.state);
        }
    }
}

async fn drain(shared: Arc<Shared>, watcher: usize, mut events: Events) {
    while let Some(ev) = events.next().await {
        match ev {
            ClientEvent::Presence(p) => shared.on_presence(watcher, p),
            ClientEvent::SessionEnded { .. } => shared.errors.add("session ended"),
            _ => {}
        }
    }
}

fn everyone() -> PrivacySettings {
    PrivacySettings {
        last_seen: Audience::Everyone,
        online: Audience::Everyone,
        photo: Audience::Everyone,
        about: Audience::Everyone,
    }
}

/// Runs the scenario.
pub async fn run(
    args: &PresenceArgs,
    target: &Target,
    ui: Ui,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Report> {
    let c = &args.common;
    let n = c.users.unwrap_or(200).max(2);
    let k = args.watch.min(n - 1).max(1);
    let (fleet, users) = run::login_fleet(c, target, n, PER_ENDPOINT, ui, &stop).await?;
    let warmup = c.warmup.unwrap_or(Duration::from_secs(2));

    // Privacy first, so the snapshots already show presence.
    let mut set = JoinSet::new();
    for u in &users {
        let client = u.client.clone();
        set.spawn(async move { client.set_privacy(everyone()).await });
    }
    while let Some(r) = set.join_next().await {
        r?.context("setting privacy to everyone")?;
    }
    let index_of: HashMap<UserId, usize> =
        users.iter().map(|u| (u.session.user_id, u.index)).collect();
    let ids: Vec<UserId> = users.iter().map(|u| u.session.user_id).collect();
    let start = Instant::now();
    let shared = Arc::new(Shared {
        users: (0..n)
            .map(|_| Watched {
                foreground: AtomicBool::new(true),
                switched: Mutex::new(None),
            })
            .collect(),
        index_of,
        views: (0..n).map(|_| Mutex::new(HashMap::new())).collect(),
        recorder: Recorder::new(),
        errors: Errors::default(),
        events: AtomicU64::new(0),
        events_in_window: AtomicU64::new(0),
        switches: AtomicU64::new(0),
        warm_end: start + warmup,
        end: start + warmup + c.duration,
    });
    for kind in ["online", "offline", "watch"] {
        shared.recorder.declare(kind);
    }
    let mut clients: Vec<Client> = Vec::with_capacity(n);
    let mut drains = JoinSet::new();
    let mut watches = JoinSet::new();
    for u in users {
        let watched: Vec<UserId> = (1..=k).map(|d| ids[(u.index + d) % n]).collect();
        let client = u.client.clone();
        let (sh, i) = (shared.clone(), u.index);
        watches.spawn(async move {
            let t0 = Instant::now();
            let snapshot = client.watch_presence(watched).await;
            (i, t0.elapsed(), snapshot)
        });
        clients.push(u.client);
        drains.spawn(drain(sh, i, u.events));
    }
    while let Some(done) = watches.join_next().await {
        let (i, took, snapshot) = done?;
        let snapshot = snapshot.with_context(|| format!("user {i} watching"))?;
        shared.recorder.record("watch", micros(took), None, false);
        for p in snapshot {
            shared.on_presence(i, p);
        }
    }
    eprintln!(
        "{n} users each watching {k}; churn at {}/s",
        args.churn_rate
    );

    let window = run::sample_window(target, shared.warm_end, shared.end, stop.clone());
    let min_gap = args.min_switch_interval;
    let mut last_switch: Vec<Option<Instant>> = vec![None; n];
    let period = Duration::from_secs_f64(1.0 / args.churn_rate.max(0.001));
    let mut next = tokio::time::Instant::now();
    let bar = ui.bar((warmup + c.duration).as_secs(), "presence");
    while Instant::now() < shared.end && !stop.load(Ordering::Relaxed) {
        next += period;
        tokio::time::sleep_until(next).await;
        let now = Instant::now();
        let pick = rand::rng().random_range(0..n);
        let Some(i) = (0..n)
            .map(|d| (pick + d) % n)
            .find(|&i| last_switch[i].is_none_or(|t| now.duration_since(t) >= min_gap))
        else {
            continue;
        };
        last_switch[i] = Some(now);
        let to = !shared.users[i].foreground.load(Ordering::Relaxed);
        if let Ok(mut s) = shared.users[i].switched.lock() {
            *s = Some((now, to));
        }
        shared.users[i].foreground.store(to, Ordering::Relaxed);
        if clients[i].set_foreground(to).is_err() {
            shared.errors.add("set_foreground");
        }
        shared.switches.fetch_add(1, Ordering::Relaxed);
        bar.set_position(start.elapsed().as_secs());
        bar.set_message(format!(
            "{} switches, {} events",
            shared.switches.load(Ordering::Relaxed),
            shared.events.load(Ordering::Relaxed)
        ));
    }
    let window = window.await?;
    bar.finish_and_clear();
    // Let the debounced changes out, then compare every view with the truth.
    tokio::time::sleep(c.grace).await;
    let (checked, wrong) = check(&shared, n, k);
    run::close_all(clients).await;
    drains.abort_all();
    if checked == 0 {
        bail!("no view was checked");
    }

    let measured_s = window
        .ended
        .map_or(c.duration, |e| e.saturating_duration_since(shared.warm_end))
        .as_secs_f64();
    let in_window = shared.events_in_window.load(Ordering::Relaxed);
    let mut report = Report {
        scenario: "presence".into(),
        connections: n as u64,
        users: n as u64,
        endpoints: fleet.endpoints() as u64,
        duration_s: measured_s,
        warmup_s: warmup.as_secs_f64(),
        rate_target_per_s: Some(args.churn_rate),
        errors: shared.errors.total(),
        delivered: shared.events.load(Ordering::Relaxed),
        throughput_unit: "presence events delivered".into(),
        throughput_per_s: in_window as f64 / measured_s.max(1e-9),
        latency_us: shared.recorder.summaries(),
        server_cpu_s: window.server_cpu(),
        server_view: window.server_view(),
        server_rss_bytes: window.server_end.map(|s| s.rss),
        loadgen_cpu_s: window.own_cpu(),
        loadgen_rss_bytes: crate::procstat::rss_bytes(crate::procstat::Pid::SelfProcess).ok(),
        error_kinds: shared.errors.kinds(),
        latency_per_second_us: shared.recorder.series(),
        presence: Some(PresenceSummary {
            watch_per_user: k as u64,
            switches: shared.switches.load(Ordering::Relaxed),
            views_checked: checked,
            views_wrong: wrong,
        }),
        ..Report::default()
    };
    report.derive(&window, 0, in_window);
    report.ok = wrong == 0 && report.errors == 0;
    Ok(report)
}

/// Each watcher's final view of each watched user against the truth: (checked, wrong).
fn check(shared: &Shared, n: usize, k: usize) -> (u64, u64) {
    let (mut checked, mut wrong) = (0, 0);
    for watcher in 0..n {
        let Some(Ok(view)) = shared.views.get(watcher).map(|v| v.lock()) else {
            continue;
        };
        for d in 1..=k {
            let watched = (watcher + d) % n;
            let truth = shared.users[watched].foreground.load(Ordering::Relaxed);
            let seen = matches!(view.get(&watched), Some(PresenceState::Online));
            checked += 1;
            if seen != truth {
                wrong += 1;
                if wrong <= 8 {
                    eprintln!(
                        "view wrong: watcher {watcher} sees user {watched} as {:?}, truth: {}",
                        view.get(&watched),
                        if truth { "online" } else { "offline" }
                    );
                }
            }
        }
    }
    (checked, wrong)
}
