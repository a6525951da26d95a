//! `churn`: connect, authenticate, sync, close, again and again.
//!
//! Users log in once through the OTP flow; then each of `--users` workers loops: start a client
//! with the user's tokens and sync cursor (a full QUIC + TLS handshake, then `Hello` with the
//! access token: the server checks the JWT and the device), wait until it is authenticated, make
//! one `Sync` round trip, close. Closed loop: each worker starts its next cycle when the last one
//! ended, so the offered load adapts to what the server can take.
//!
//! By default every cycle starts with an empty TLS session cache (full handshakes). With
//! `--resume` each worker keeps one, so its cycles resume their TLS session (`--zero-rtt`: with
//! the `Hello` as early data); the report's `tls_handshakes` shows what the server did (full,
//! resumed, zero_rtt, from its `/metrics`), so two runs, with and without `--resume`, give full
//! and resumed handshakes per server CPU-second side by side.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tern_sdk::protocol::{Request, Response, Tokens};
use tern_sdk::{Client, ClientConfig, ClientEvent, SessionCache, SyncState};
use tokio::task::JoinSet;

use crate::cli::ChurnArgs;
use crate::report::Report;
use crate::run::{self, Errors, Target, Ui};
use crate::stats::Recorder;
use crate::users::{self, Fleet};

/// A user's credentials and sync position, carried from cycle to cycle.
#[derive(Debug, Clone)]
struct Creds {
    tokens: Tokens,
    sync: SyncState,
}

#[derive(Debug)]
struct Shared {
    start: Instant,
    warm_end: Instant,
    end: Instant,
    recorder: Recorder,
    errors: Errors,
    cycles: AtomicU64,
    cycles_in_window: AtomicU64,
}

impl Shared {
    fn in_window(&self, t: Instant) -> bool {
        t >= self.warm_end && t < self.end
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One connect-authenticate-sync-close cycle; returns (connect, sync) durations.
async fn cycle(mut cfg: ClientConfig, creds: &mut Creds) -> Result<(Duration, Duration), String> {
    let t0 = Instant::now();
    cfg.tokens = Some(creds.tokens.clone());
    cfg.sync_state = creds.sync.clone();
    let (client, mut events) = Client::start(cfg).map_err(|e| run::sdk_error_kind("start", &e))?;
    let up = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = events.next().await {
            match ev {
                ClientEvent::Connected { session: Some(_) } => return Ok(()),
                ClientEvent::TokensUpdated(t) => creds.tokens = t,
                ClientEvent::SessionEnded { .. } => return Err("connect: session ended".into()),
                _ => {}
            }
        }
        Err("connect: client stopped".to_owned())
    })
    .await
    .unwrap_or_else(|_| Err("connect: timeout".into()));
    let t1 = Instant::now();
    let result = match up {
        Ok(()) => match client
            .request(Request::Sync {
                after: creds.sync.cursor,
                limit: 16,
            })
            .await
        {
            Ok(Response::SyncPage(_)) => Ok((t1 - t0, t1.elapsed())),
            Ok(_) => Err("sync: unexpected answer".to_owned()),
            Err(e) => Err(run::sdk_error_kind("sync", &e)),
        },
        Err(e) => Err(e),
    };
    client.close().await;
    // Keep rotated tokens (a refresh makes the old refresh token unusable).
    while let Some(ev) = events.next().await {
        if let ClientEvent::TokensUpdated(t) = ev {
            creds.tokens = t;
        }
    }
    result
}

async fn worker(
    shared: Arc<Shared>,
    mut cfg: ClientConfig,
    mut creds: Creds,
    stop: Arc<AtomicBool>,
    resume: bool,
    zero_rtt: bool,
) {
    // One cache per worker: tickets are single use, so workers sharing one would take each
    // other's and fall back to full handshakes.
    cfg.sessions = SessionCache::new(1);
    cfg.zero_rtt = zero_rtt;
    loop {
        let t0 = Instant::now();
        if t0 >= shared.end || stop.load(Ordering::Relaxed) {
            return;
        }
        let measured = shared.in_window(t0);
        if !resume {
            cfg.sessions = SessionCache::new(1);
        }
        match cycle(cfg.clone(), &mut creds).await {
            Ok((connect, sync)) => {
                let done = Instant::now();
                shared.cycles.fetch_add(1, Ordering::Relaxed);
                if shared.in_window(done) {
                    shared.cycles_in_window.fetch_add(1, Ordering::Relaxed);
                }
                let second = Some(t0.saturating_duration_since(shared.start).as_secs() as usize);
                let r = &shared.recorder;
                r.record("connect", micros(connect), second, measured);
                r.record("sync", micros(sync), second, measured);
                r.record("cycle", micros(done - t0), None, measured);
            }
            Err(kind) => {
                shared.errors.add(kind);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Runs the scenario.
pub async fn run(
    args: &ChurnArgs,
    target: &Target,
    ui: Ui,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Report> {
    let c = &args.common;
    let n = c.users.unwrap_or(50).max(1);
    let base = users::base_config(target.addr, &target.fingerprint, c.keep_alive, c.ack_delay)?;
    let fleet = Fleet::new(&base, n, c.per_endpoint(crate::cli::DEFAULT_PER_ENDPOINT))?;
    let users = run::login_users(c, target, &fleet, n, ui, &stop).await?;
    let mut creds = Vec::with_capacity(n);
    for u in &users {
        let snap = u
            .client
            .snapshot()
            .await
            .context("reading a client's tokens")?;
        let tokens = snap.tokens.context("a logged-in client without tokens")?;
        creds.push(Creds {
            tokens,
            sync: snap.sync,
        });
    }
    run::close_all(users.into_iter().map(|u| u.client)).await;

    let warmup = c.warmup.unwrap_or(Duration::from_secs(1));
    let start = Instant::now();
    let shared = Arc::new(Shared {
        start,
        warm_end: start + warmup,
        end: start + warmup + c.duration,
        recorder: Recorder::new(),
        errors: Errors::default(),
        cycles: AtomicU64::new(0),
        cycles_in_window: AtomicU64::new(0),
    });
    for kind in ["connect", "sync", "cycle"] {
        shared.recorder.declare(kind);
    }
    let window = run::sample_window(target, shared.warm_end, shared.end, stop.clone());
    let mut workers = JoinSet::new();
    for (i, cr) in creds.into_iter().enumerate() {
        workers.spawn(worker(
            shared.clone(),
            fleet.config(i),
            cr,
            stop.clone(),
            args.resume,
            args.zero_rtt,
        ));
    }
    let bar = ui.bar((warmup + c.duration).as_secs(), "churn");
    while !window.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        bar.set_position(start.elapsed().as_secs());
        bar.set_message(format!(
            "{} cycles, {} errors",
            shared.cycles.load(Ordering::Relaxed),
            shared.errors.total()
        ));
    }
    let window = window.await?;
    bar.set_prefix("finish");
    while workers.join_next().await.is_some() {}
    bar.finish_and_clear();

    let measured_s = window
        .ended
        .map_or(c.duration, |e| e.saturating_duration_since(shared.warm_end))
        .as_secs_f64();
    let in_window = shared.cycles_in_window.load(Ordering::Relaxed);
    let mut report = Report {
        scenario: "churn".into(),
        connections: n as u64,
        users: n as u64,
        endpoints: fleet.endpoints() as u64,
        duration_s: measured_s,
        warmup_s: warmup.as_secs_f64(),
        errors: shared.errors.total(),
        throughput_unit: "connect-auth-sync-close cycles".into(),
        throughput_per_s: in_window as f64 / measured_s.max(1e-9),
        latency_us: shared.recorder.summaries(),
        server_cpu_s: window.server_cpu(),
        server_view: window.server_view(),
        server_rss_bytes: window.server_end.map(|s| s.rss),
        handshakes: Some(in_window),
        loadgen_cpu_s: window.own_cpu(),
        loadgen_rss_bytes: crate::procstat::rss_bytes(crate::procstat::Pid::SelfProcess).ok(),
        error_kinds: shared.errors.kinds(),
        latency_per_second_us: shared.recorder.series(),
        ..Report::default()
    };
    report.tls_handshakes = report
        .server_view
        .as_ref()
        .map(crate::report::TlsHandshakes::from_view);
    report.derive(&window, 0, 0);
    Ok(report)
}
