//! `idle`: log N users in (each one authenticated connection) and hold the connections.
//!
//! Server memory per connection is `(RSS holding N - RSS before the first connection) / N`. The
//! difference also contains what storage keeps for N new users and devices (memtables, caches), so
//! the figure is an upper bound of the per-connection cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tern_sdk::ClientEvent;
use tokio::task::JoinSet;

use crate::cli::IdleArgs;
use crate::report::Report;
use crate::run::{self, Errors, Target, Ui};
use crate::stats::Recorder;
use crate::users::{self, Fleet};

/// Runs the scenario.
pub async fn run(
    args: &IdleArgs,
    target: &Target,
    ui: Ui,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Report> {
    let c = &args.common;
    let n = c.users.unwrap_or(1000).max(1);
    // Let the server settle before the baseline (it may still be opening storage).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = target.sample();
    let base = users::base_config(target.addr, &target.fingerprint, c.keep_alive, c.ack_delay)?;
    let fleet = Fleet::new(&base, n, c.per_endpoint(crate::cli::DEFAULT_PER_ENDPOINT))?;
    let t0 = Instant::now();
    let users = run::login_users(c, target, &fleet, n, ui, &stop).await?;
    let login_s = t0.elapsed().as_secs_f64();
    let recorder = Recorder::new();
    for u in &users {
        recorder.record("login", u.login_time.as_micros() as u64, None, true);
    }

    let disconnects = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Errors::default());
    let mut clients = Vec::with_capacity(n);
    let mut drains = JoinSet::new();
    for u in users {
        clients.push(u.client);
        let (disconnects, errors) = (disconnects.clone(), errors.clone());
        let mut events = u.events;
        drains.spawn(async move {
            while let Some(ev) = events.next().await {
                match ev {
                    ClientEvent::Disconnected { .. } => {
                        disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    ClientEvent::SessionEnded { .. } => errors.add("session ended"),
                    _ => {}
                }
            }
        });
    }

    // Hold; the window starts once every connection is up (plus any warm-up).
    let warmup = c.warmup.unwrap_or(Duration::from_secs(2));
    let from = Instant::now() + warmup;
    let to = from + c.duration;
    let window = run::sample_window(target, from, to, stop.clone());
    let bar = ui.bar((warmup + c.duration).as_secs(), "hold");
    let started = Instant::now();
    while !window.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        bar.set_position(started.elapsed().as_secs());
        bar.set_message(format!(
            "{} connections, {} disconnects",
            clients.len(),
            disconnects.load(Ordering::Relaxed)
        ));
    }
    bar.finish_and_clear();
    let window = window.await?;
    let own_rss = crate::procstat::rss_bytes(crate::procstat::Pid::SelfProcess).ok();
    run::close_all(clients).await;
    drains.abort_all();

    let connections = n as u64;
    let rss = window.server_end.map(|s| s.rss);
    let per_connection = match (rss, baseline) {
        (Some(r), Some(b)) => Some((r as f64 - b.rss as f64) / connections as f64),
        _ => None,
    };
    let mut report = Report {
        scenario: "idle".into(),
        connections,
        users: connections,
        endpoints: fleet.endpoints() as u64,
        duration_s: window
            .ended
            .map_or(c.duration, |e| e.saturating_duration_since(from))
            .as_secs_f64(),
        warmup_s: warmup.as_secs_f64(),
        errors: errors.total(),
        disconnects: disconnects.load(Ordering::Relaxed),
        throughput_unit: "logins (during setup)".into(),
        throughput_per_s: connections as f64 / login_s.max(1e-9),
        latency_us: recorder.summaries(),
        server_cpu_s: window.server_cpu(),
        server_view: window.server_view(),
        server_rss_bytes: rss,
        server_rss_baseline_bytes: baseline.map(|b| b.rss),
        server_rss_per_connection_bytes: per_connection.map(|p| p.round()),
        loadgen_cpu_s: window.own_cpu(),
        loadgen_rss_bytes: own_rss,
        error_kinds: errors.kinds(),
        ..Report::default()
    };
    report.derive(&window, 0, 0);
    Ok(report)
}
