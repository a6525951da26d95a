//! The bare-quinn relay (`tern_benches::relay`, the same server the criterion bench `quinn_relay`
//! measures closed loop) driven **open loop at a fixed rate**, the way `tern-loadgen chat` drives
//! Tern: frame `k` is due at `start + k / rate` and goes from pair `k % pairs`'s source connection
//! through the relay to its destination connection, whatever happened to earlier frames. For
//! `scripts/bench-peers.sh`.
//!
//! The relay server runs on a thread of its own (current-thread runtime) pinned to
//! `--server-cpu`; this program's client side (one current-thread runtime) runs on
//! `--client-cpu`. Reported: frames relayed per server CPU-second in the measured window (the
//! server thread's CPU time from /proc, sampled at the window's edges), and relay latency from
//! the actual write of a frame (the instant is stamped in the frame) to its arrival at the
//! destination; `dispatch_lag` is how late each write was against its due time (tokio's timer
//! has millisecond granularity). Frames sent, received, lost and out of order are counted.
//!
//! ```text
//! cargo build --release -p tern-benches --bin quinn-relay
//! taskset -c 1 target/release/quinn-relay --pairs 100 --rate 4500 --duration-s 10 --warmup-s 2 --json relay.json
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use quinn::{RecvStream, SendStream};
use tern_benches::relay::{
    FRAME, connect_pairs, current_tid, fail, pin, server_thread, thread_cpu,
};

#[derive(Debug, Parser)]
#[command(name = "quinn-relay")]
struct Args {
    /// Connection pairs (a source and a destination connection each).
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    /// Frames per second, total over all pairs.
    #[arg(long, default_value_t = 4500.0)]
    rate: f64,
    /// Frame size on the wire, 2-byte length prefix included (at least 18).
    #[arg(long, default_value_t = FRAME)]
    frame_bytes: usize,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// Warm-up before the window, seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup_s: f64,
    /// How long to wait for frames still in flight after the last write, seconds.
    #[arg(long, default_value_t = 10.0)]
    grace_s: f64,
    /// CPU for the relay server thread.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// CPU for the client (this program's main thread).
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
    /// Leave scheduling alone (no pinning).
    #[arg(long)]
    no_pin: bool,
    /// Also write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What the receivers record.
#[derive(Debug)]
struct Stats {
    start: Instant,
    window: (u64, u64),
    /// Receptions per frame number.
    received: Vec<AtomicU8>,
    /// Frames whose number was not above the previous one on their stream.
    out_of_order: AtomicU64,
    /// Receptions whose arrival fell in the window.
    window_delivered: AtomicU64,
    /// Latency (µs) of frames written in the window.
    latency: Mutex<Vec<f64>>,
}

fn ns_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Reads pair `pair`'s destination stream until `expected` frames arrived (or it ends).
async fn receive(mut dst: RecvStream, expected: u64, stats: Arc<Stats>) -> RecvStream {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut got = 0u64;
    let mut last: Option<u64> = None;
    let mut lat = Vec::new();
    while got < expected {
        let Ok(Some(chunk)) = dst.read_chunk(64 * 1024, true).await else {
            break;
        };
        let now = ns_since(stats.start);
        buf.extend_from_slice(&chunk.bytes);
        let mut off = 0;
        while buf.len() - off >= 2 {
            let len = usize::from(u16::from_be_bytes([buf[off], buf[off + 1]]));
            if buf.len() - off < 2 + len {
                break;
            }
            let f = &buf[off + 2..off + 2 + len];
            let word = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&f[i..i + 8]);
                u64::from_be_bytes(b)
            };
            let (k, sent) = (word(0), word(8));
            if let Some(r) = usize::try_from(k).ok().and_then(|k| stats.received.get(k)) {
                r.fetch_add(1, Ordering::Relaxed);
            }
            if last.is_some_and(|l| k <= l) {
                stats.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
            last = Some(k);
            if now >= stats.window.0 && now < stats.window.1 {
                stats.window_delivered.fetch_add(1, Ordering::Relaxed);
            }
            if sent >= stats.window.0 && sent < stats.window.1 {
                lat.push(now.saturating_sub(sent) as f64 / 1e3);
            }
            got += 1;
            off += 2 + len;
        }
        buf.drain(..off);
    }
    if let Ok(mut l) = stats.latency.lock() {
        l.extend(lat);
    }
    dst
}

/// utime + stime of this whole process, seconds.
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum::<f64>()
        / 100.0
}

/// Busy CPU-seconds of the whole machine since boot (user nice system irq softirq).
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let v = |i: usize| f.get(i).copied().unwrap_or(0.0);
    (v(0) + v(1) + v(2) + v(5) + v(6)) / 100.0
}

fn summary(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return r#"{"count":0}"#.to_owned();
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    format!(
        r#"{{"count":{},"p50":{:.1},"p99":{:.1},"p999":{:.1},"max":{:.1},"mean":{:.1}}}"#,
        v.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        v[v.len() - 1],
        mean
    )
}

fn main() {
    let args = Args::parse();
    if args.pairs == 0 || args.rate <= 0.0 || !(18..=65_537).contains(&args.frame_bytes) {
        eprintln!("quinn-relay: need --pairs >= 1, --rate > 0, 18 <= --frame-bytes <= 65537");
        std::process::exit(1);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pairs = args.pairs;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("relay-server".into())
        .spawn(move || server_thread(pairs, tx))
        .unwrap_or_else(|e| fail("server thread", e));
    let (addr, cert, server_tid) = rx.recv().unwrap_or_else(|e| fail("server start", e));
    let Some(server_tid) = server_tid else {
        fail("server thread id", "unknown (/proc/thread-self)")
    };
    if !args.no_pin {
        pin(server_tid, args.server_cpu);
        if let Some(t) = current_tid() {
            pin(t, args.client_cpu);
        }
        eprintln!(
            "quinn-relay: server thread on CPU {}, client on CPU {}",
            args.server_cpu, args.client_cpu
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("client runtime", e));
    let (client, streams) = rt.block_on(connect_pairs(addr, cert, pairs));

    let total = (args.rate * (args.warmup_s + args.duration_s)).ceil() as u64;
    let window = (
        (args.warmup_s * 1e9) as u64,
        ((args.warmup_s + args.duration_s) * 1e9) as u64,
    );
    eprintln!(
        "quinn-relay: {pairs} pairs on {addr}: {total} frames of {} B at {}/s, {} s warm-up + {} s measured",
        args.frame_bytes, args.rate, args.warmup_s, args.duration_s
    );
    let start = Instant::now();
    let stats = Arc::new(Stats {
        start,
        window,
        received: (0..total).map(|_| AtomicU8::new(0)).collect(),
        out_of_order: AtomicU64::new(0),
        window_delivered: AtomicU64::new(0),
        latency: Mutex::new(Vec::new()),
    });
    // CPU at the window's edges, on a thread of its own (it inherits the client's CPU).
    let sampler = std::thread::spawn(move || {
        let read = || {
            (
                thread_cpu(server_tid).as_secs_f64(),
                process_cpu(),
                machine_busy(),
            )
        };
        let wait = |ns: u64| {
            let until = start + Duration::from_nanos(ns);
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        };
        wait(window.0);
        let a = read();
        wait(window.1);
        (a, read())
    });
    let frame_bytes = args.frame_bytes;
    let rate = args.rate;
    let grace = Duration::from_secs_f64(args.grace_s.max(0.0));
    let shared = stats.clone();
    let (sent, lag, streams) = rt.block_on(async move {
        let mut sources = Vec::with_capacity(pairs);
        let mut receivers = Vec::with_capacity(pairs);
        for (i, (src, dst)) in streams.into_iter().enumerate() {
            let expected = total / pairs as u64 + u64::from((i as u64) < total % pairs as u64);
            sources.push(src);
            receivers.push(tokio::spawn(receive(dst, expected, shared.clone())));
        }
        let mut frame = vec![0x5a_u8; frame_bytes];
        frame[..2].copy_from_slice(&((frame_bytes - 2) as u16).to_be_bytes());
        let mut lag = Vec::new();
        let mut sent = 0u64;
        for k in 0..total {
            let due_ns = (k as f64 * 1e9 / rate) as u64;
            let due = start + Duration::from_nanos(due_ns);
            if Instant::now() < due {
                tokio::time::sleep_until(due.into()).await;
            }
            let now = ns_since(start);
            frame[2..10].copy_from_slice(&k.to_be_bytes());
            frame[10..18].copy_from_slice(&now.to_be_bytes());
            let src: &mut SendStream = &mut sources[(k % pairs as u64) as usize];
            src.write_all(&frame)
                .await
                .unwrap_or_else(|e| fail("send", e));
            sent += 1;
            if now >= window.0 && now < window.1 {
                lag.push(now.saturating_sub(due_ns) as f64 / 1e3);
            }
        }
        let mut back = Vec::new();
        let all = async {
            for r in receivers {
                if let Ok(dst) = r.await {
                    back.push(dst);
                }
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            eprintln!("quinn-relay: frames still missing after the grace period");
        }
        (sent, lag, (sources, back))
    });
    let ((srv0, proc0, mach0), (srv1, proc1, mach1)) = sampler
        .join()
        .unwrap_or_else(|_| fail("sampler", "panicked"));
    drop(streams);
    client.close(0u32.into(), b"done");

    let mut delivered = 0u64;
    let mut duplicates = 0u64;
    for r in &stats.received {
        let n = u64::from(r.load(Ordering::Relaxed));
        delivered += u64::from(n > 0);
        duplicates += n.saturating_sub(1);
    }
    let lost = sent - delivered;
    let out_of_order = stats.out_of_order.load(Ordering::Relaxed);
    let window_delivered = stats.window_delivered.load(Ordering::Relaxed);
    let server_cpu = srv1 - srv0;
    let driver_cpu = (proc1 - proc0) - server_cpu;
    let other_cpu = ((mach1 - mach0) - (proc1 - proc0)).max(0.0);
    let per_cpu = if server_cpu > 0.0 {
        window_delivered as f64 / server_cpu
    } else {
        0.0
    };
    let latency = stats
        .latency
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    let ok = lost == 0 && duplicates == 0 && out_of_order == 0;
    let json = format!(
        r#"{{
  "peer": "bare-quinn-relay",
  "pairs": {pairs},
  "connections": {connections},
  "rate_target_per_s": {rate},
  "frame_bytes": {frame_bytes},
  "warmup_s": {warmup},
  "duration_s": {duration},
  "sent": {sent},
  "delivered": {delivered},
  "duplicates": {duplicates},
  "lost": {lost},
  "out_of_order": {out_of_order},
  "window_delivered": {window_delivered},
  "delivered_per_s": {per_s:.1},
  "server_cpu_s": {server_cpu:.3},
  "delivered_per_server_cpu_s": {per_cpu:.1},
  "work_per_server_cpu_s": {per_cpu:.1},
  "work_unit": "frames relayed per server CPU-second (server thread's CPU time)",
  "driver_cpu_s": {driver_cpu:.3},
  "other_cpu_s": {other_cpu:.3},
  "latency_from": "actual write (stamped in the frame); dispatch_lag = write - due time",
  "latency_us": {{"deliver": {deliver}, "dispatch_lag": {lag}}},
  "ok": {ok}
}}"#,
        connections = 2 * pairs,
        warmup = args.warmup_s,
        duration = args.duration_s,
        per_s = window_delivered as f64 / args.duration_s,
        deliver = summary(latency),
        lag = summary(lag),
    );
    println!("{json}");
    if let Some(path) = &args.json {
        std::fs::write(path, format!("{json}\n")).unwrap_or_else(|e| fail("writing --json", e));
    }
    eprintln!(
        "quinn-relay: sent {sent}, delivered {delivered}, lost {lost}, out of order {out_of_order}; {per_cpu:.0} frames per server CPU-s"
    );
    if !ok {
        std::process::exit(2);
    }
}
