//! Durable send throughput probe: starts a release `tern-server` child on loopback, logs clients in
//! through the real OTP flow, and has pairs of users exchange messages with a fixed number of
//! sends in flight per sender for a fixed time. Reports sends acknowledged (durable) per second
//! and per server CPU-second (read from /proc), ack latency percentiles, and deliveries checked
//! against what was acknowledged. `tern-loadgen` (its own issue) will supersede this probe.
//!
//! ```text
//! cargo build --release -p tern-server -p tern-benches
//! taskset -c 1 target/release/send-probe --server-bin target/release/tern-server --server-cpu 0
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use tern_sdk::ClientEvent;
use tern_sdk::protocol::MessageBody;
use tern_tests::child::rss_bytes;
use tern_tests::{client_config, login};
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
struct Args {
    /// tern-server binary.
    #[arg(long, default_value = "target/release/tern-server")]
    server_bin: PathBuf,
    /// Pin the server to this CPU with taskset.
    #[arg(long)]
    server_cpu: Option<usize>,
    /// Sender/receiver pairs.
    #[arg(long, default_value_t = 20)]
    pairs: usize,
    /// Sends in flight per sender.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Measured seconds (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 200)]
    payload: usize,
    /// Server shards (`--shards` of tern-server).
    #[arg(long)]
    shards: Option<usize>,
}

fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("bad stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).context("utime")?.parse::<f64>()? + f.get(12).context("stime")?.parse::<f64>()?;
    Ok(ticks / 100.0)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let quic: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let otp = dir.path().join("otp.txt");
    let mut cmd = match args.server_cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(&args.server_bin);
            c
        }
        None => Command::new(&args.server_bin),
    };
    let mut child = cmd
        .args([
            "--listen",
            &quic.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--otp-sender")
        .arg(format!("file:{}", otp.display()))
        .args([
            "--otp-address-burst",
            "1000000",
            "--otp-prefix-burst",
            "1000000",
        ])
        .args(
            args.shards
                .map(|n| vec!["--shards".to_owned(), n.to_string()])
                .unwrap_or_default(),
        )
        .env("TERN_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting tern-server")?;
    let pid = child.id();
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(admin).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fp = std::fs::read_to_string(dir.path().join("data/dev-cert.sha256"))?;
    let cfg = || client_config(quic, fp.trim());

    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..args.pairs {
        senders.push(login(cfg(), &otp, &format!("+1555100{i:04}")).await?);
        receivers.push(login(cfg(), &otp, &format!("+1555200{i:04}")).await?);
    }
    let delivered = Arc::new(AtomicU64::new(0));
    let mut chats = Vec::new();
    for (s, r) in senders.iter().zip(&receivers) {
        chats.push(s.client.open_direct_chat(r.session.user_id).await?.chat_id);
    }
    // Keep the receivers' handles alive: a client stops when its last handle is dropped.
    let mut receiver_handles = Vec::new();
    for r in receivers {
        receiver_handles.push(r.client);
        let mut events = r.events;
        let delivered = delivered.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                if let ClientEvent::Message { .. } = ev {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    let body = MessageBody::Text("x".repeat(args.payload));
    let warmup = Instant::now() + Duration::from_secs(1);
    let stop = warmup + Duration::from_secs(args.seconds);
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (s, chat) in senders.iter().zip(&chats) {
        for lane in 0..args.in_flight {
            let client = s.client.clone();
            let chat = *chat;
            let body = body.clone();
            let latencies = latencies.clone();
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                let mut local = Vec::new();
                let mut n = 0u64;
                loop {
                    let t0 = Instant::now();
                    if t0 >= stop {
                        break;
                    }
                    n += 1;
                    let id = ((lane as u64) << 40) | n;
                    if client.send(chat, body.clone(), id).await.is_ok() && t0 >= warmup {
                        local.push(t0.elapsed().as_micros() as u64);
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies.lock().await.extend(local);
            }));
        }
    }
    tokio::time::sleep_until(warmup.into()).await;
    let cpu0 = cpu_seconds(pid)?;
    let delivered0 = delivered.load(Ordering::Relaxed);
    tokio::time::sleep_until(stop.into()).await;
    let cpu1 = cpu_seconds(pid)?;
    let acked_n = acked.load(Ordering::Relaxed);
    let delivered_n = delivered.load(Ordering::Relaxed) - delivered0;
    for t in tasks {
        let _ = t.await;
    }
    let mut lat = latencies.lock().await.clone();
    lat.sort_unstable();
    let cpu = cpu1 - cpu0;
    println!(
        "pairs={} in_flight={} payload={}B seconds={}",
        args.pairs, args.in_flight, args.payload, args.seconds
    );
    println!(
        "acked={acked_n} acked_per_s={:.0}",
        acked_n as f64 / args.seconds as f64
    );
    println!(
        "server_cpu_s={cpu:.2} acked_per_server_cpu_s={:.0}",
        acked_n as f64 / cpu.max(1e-9)
    );
    println!("delivered_live_in_window={delivered_n}");
    println!(
        "ack_latency_us p50={} p99={} p999={} max={}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        lat.last().copied().unwrap_or(0)
    );
    println!("server_rss_bytes={}", rss_bytes(pid));
    drop(receiver_handles);
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}
