//! The transport ceiling: a bare quinn server (no application logic) on loopback relays 200-byte
//! length-prefixed frames (2-byte length + 198 bytes, about the size of a Tern chat message) from
//! one client connection to another, with 1 and with 32 frames in flight end to end. Tern's routed
//! throughput is reported as a ratio of this.
//!
//! TLS 1.3 with AES-128-GCM preferred (as Tern's server), default quinn transport settings.
//!
//! The server runs on a thread of its own with a single-threaded tokio runtime, so that thread's
//! CPU time is the server's CPU time. Each case is measured twice:
//! - `wall/in_flight_K`: frames relayed per wall second;
//! - `server_cpu/in_flight_K`: the "time" criterion reports is the server thread's CPU time, so
//!   its throughput is frames relayed **per server CPU-second** (the figure DESIGN §12 uses).
//!
//! With two or more CPUs the server thread is pinned to CPU 0 and the client (this bench's main
//! thread, which runs a single-threaded runtime) to CPU 1, as in DESIGN §12's measurements; set
//! `QUINN_RELAY_NO_PIN=1` to leave scheduling alone.
//!
//! `cargo bench -p tern-benches --bench quinn_relay`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quinn::{Endpoint, RecvStream, SendStream};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::Semaphore;

/// Bytes per frame on the wire, length prefix included.
const FRAME: usize = 200;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    panic!("quinn_relay: {what}: {e}")
}

/// CPU time of one thread of this process: the scheduler's precise `sum_exec_runtime` when the
/// kernel exposes it, else utime + stime in clock ticks.
fn thread_cpu(tid: u32) -> Duration {
    let task = format!("/proc/self/task/{tid}");
    if let Ok(sched) = std::fs::read_to_string(format!("{task}/sched"))
        && let Some(ms) = sched
            .lines()
            .find(|l| l.starts_with("se.sum_exec_runtime"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse::<f64>().ok())
    {
        return Duration::from_secs_f64(ms / 1000.0);
    }
    let stat = std::fs::read_to_string(format!("{task}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    Duration::from_secs_f64(ticks / 100.0)
}

/// This thread's id (from /proc/thread-self -> "<pid>/task/<tid>").
fn current_tid() -> Option<u32> {
    std::fs::read_link("/proc/thread-self")
        .ok()?
        .file_name()?
        .to_str()?
        .parse()
        .ok()
}

fn pin(tid: u32, cpu: usize) {
    let ok = std::process::Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("quinn_relay: could not pin thread {tid} to CPU {cpu} (taskset)");
    }
}

/// Reads frames from `from` and writes each one, separately, to `to`.
async fn relay(mut from: RecvStream, mut to: SendStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    while let Ok(Some(chunk)) = from.read_chunk(64 * 1024, true).await {
        buf.extend_from_slice(&chunk.bytes);
        let mut off = 0;
        while buf.len() - off >= 2 {
            let len = usize::from(u16::from_be_bytes([buf[off], buf[off + 1]]));
            if buf.len() - off < 2 + len {
                break;
            }
            if to.write_all(&buf[off..off + 2 + len]).await.is_err() {
                return;
            }
            off += 2 + len;
        }
        buf.drain(..off);
    }
}

/// One server connection's first stream: its role (`S`ource or `D`estination) and pair number.
async fn accept_one(
    incoming: quinn::Incoming,
) -> (u8, u16, quinn::Connection, SendStream, RecvStream) {
    let conn = incoming.await.unwrap_or_else(|e| fail("handshake", e));
    let (send, mut recv) = conn.accept_bi().await.unwrap_or_else(|e| fail("stream", e));
    let mut hello = [0u8; 3];
    recv.read_exact(&mut hello)
        .await
        .unwrap_or_else(|e| fail("role", e));
    (
        hello[0],
        u16::from_be_bytes([hello[1], hello[2]]),
        conn,
        send,
        recv,
    )
}

/// The server thread: accepts `pairs` source and destination connections (each opens one
/// bidirectional stream and announces its role and pair) and relays each source to its
/// destination, all on this one thread.
fn server_thread(
    pairs: usize,
    ready: std_mpsc::Sender<(SocketAddr, CertificateDer<'static>, Option<u32>)>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("server runtime", e));
    rt.block_on(async move {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .unwrap_or_else(|e| fail("certificate", e));
        let der = cert.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        // TLS 1.3 with AES-128-GCM preferred, as Tern's server negotiates it.
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: vec![
                rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
                rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
            ],
            ..rustls::crypto::ring::default_provider()
        };
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap_or_else(|e| fail("tls versions", e))
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap_or_else(|e| fail("server certificate", e));
        tls.ignore_client_order = true;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .unwrap_or_else(|e| fail("quic tls", e));
        let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint = Endpoint::server(config, SocketAddr::from(([127, 0, 0, 1], 0)))
            .unwrap_or_else(|e| fail("server endpoint", e));
        let addr = endpoint
            .local_addr()
            .unwrap_or_else(|e| fail("server address", e));
        let _ = ready.send((addr, der, current_tid()));
        let mut sources = HashMap::new();
        let mut dests = HashMap::new();
        let mut relays = Vec::new();
        for _ in 0..2 * pairs {
            let Some(incoming) = endpoint.accept().await else {
                return;
            };
            let (role, pair, conn, send, recv) = accept_one(incoming).await;
            if role == b'S' {
                sources.insert(pair, (conn, recv));
            } else {
                dests.insert(pair, (conn, send));
            }
            if let (Some(_), Some(_)) = (sources.get(&pair), dests.get(&pair))
                && let (Some((c1, from)), Some((c2, to))) =
                    (sources.remove(&pair), dests.remove(&pair))
            {
                relays.push(tokio::spawn(async move {
                    relay(from, to).await;
                    drop((c1, c2));
                }));
            }
        }
        for r in relays {
            let _ = r.await;
        }
        endpoint.close(0u32.into(), b"done");
    });
}

/// A relay server plus, per pair, the source connection's send stream and the destination
/// connection's receive stream.
struct Relay {
    rt: tokio::runtime::Runtime,
    client: Endpoint,
    pairs: Vec<(SendStream, RecvStream)>,
    server_tid: Option<u32>,
    frame: Arc<Vec<u8>>,
}

impl Relay {
    fn start(pairs: usize) -> Relay {
        let pinned = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2
            && std::env::var_os("QUINN_RELAY_NO_PIN").is_none();
        let (tx, rx) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("relay-server".into())
            .spawn(move || server_thread(pairs, tx))
            .unwrap_or_else(|e| fail("server thread", e));
        let (addr, cert, server_tid) = rx.recv().unwrap_or_else(|e| fail("server start", e));
        if pinned {
            if let Some(t) = server_tid {
                pin(t, 0);
            }
            if let Some(t) = current_tid() {
                pin(t, 1);
            }
            eprintln!("quinn_relay: {pairs} pair(s), server thread on CPU 0, client on CPU 1");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail("client runtime", e));
        let (client, streams) = rt.block_on(async {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert).unwrap_or_else(|e| fail("root", e));
            let config = quinn::ClientConfig::with_root_certificates(Arc::new(roots))
                .unwrap_or_else(|e| fail("client config", e));
            let mut client = Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
                .unwrap_or_else(|e| fail("client endpoint", e));
            client.set_default_client_config(config);
            let open = |role: u8, pair: u16| {
                let client = client.clone();
                async move {
                    let conn = client
                        .connect(addr, "localhost")
                        .unwrap_or_else(|e| fail("connect", e))
                        .await
                        .unwrap_or_else(|e| fail("client handshake", e));
                    let (mut send, recv) = conn.open_bi().await.unwrap_or_else(|e| fail("open", e));
                    let [hi, lo] = pair.to_be_bytes();
                    send.write_all(&[role, hi, lo])
                        .await
                        .unwrap_or_else(|e| fail("role", e));
                    (send, recv)
                }
            };
            let mut streams = Vec::with_capacity(pairs);
            for pair in 0..pairs as u16 {
                let (src, _) = open(b'S', pair).await;
                let (_, dst) = open(b'D', pair).await;
                streams.push((src, dst));
            }
            (client, streams)
        });
        let mut frame = vec![0x5a; FRAME];
        frame[..2].copy_from_slice(&((FRAME - 2) as u16).to_be_bytes());
        Relay {
            rt,
            client,
            pairs: streams,
            server_tid,
            frame: Arc::new(frame),
        }
    }

    /// Relays `frames` frames, spread over the pairs, with at most `window` in flight per pair;
    /// returns (wall, server CPU).
    fn run(&mut self, frames: u64, window: usize) -> (Duration, Duration) {
        let cpu0 = self.server_tid.map(thread_cpu).unwrap_or_default();
        let t0 = Instant::now();
        let n = self.pairs.len() as u64;
        let streams = std::mem::take(&mut self.pairs);
        let frame = self.frame.clone();
        self.pairs = self.rt.block_on(async move {
            let mut tasks = Vec::new();
            for (i, (src, dst)) in streams.into_iter().enumerate() {
                let share = frames / n + u64::from((i as u64) < frames % n);
                tasks.push(tokio::spawn(relay_pair(
                    src,
                    dst,
                    share,
                    window,
                    frame.clone(),
                )));
            }
            let mut back = Vec::with_capacity(tasks.len());
            for t in tasks {
                back.push(t.await.unwrap_or_else(|e| fail("pair", e)));
            }
            back
        });
        let wall = t0.elapsed();
        let cpu = self.server_tid.map(thread_cpu).unwrap_or_default() - cpu0;
        (wall, cpu)
    }
}

/// Sends `frames` frames on `src` with at most `window` not yet received on `dst`.
async fn relay_pair(
    mut src: SendStream,
    mut dst: RecvStream,
    frames: u64,
    window: usize,
    frame: Arc<Vec<u8>>,
) -> (SendStream, RecvStream) {
    let permits = Semaphore::new(window);
    let send = async {
        for _ in 0..frames {
            permits
                .acquire()
                .await
                .unwrap_or_else(|e| fail("permit", e))
                .forget();
            src.write_all(&frame)
                .await
                .unwrap_or_else(|e| fail("send", e));
        }
    };
    let receive = async {
        let total = frames * FRAME as u64;
        let mut got = 0u64;
        while got < total {
            let chunk = dst
                .read_chunk(64 * 1024, true)
                .await
                .unwrap_or_else(|e| fail("receive", e))
                .unwrap_or_else(|| fail("receive", "stream ended"));
            let before = got / FRAME as u64;
            got += chunk.bytes.len() as u64;
            permits.add_permits((got / FRAME as u64 - before) as usize);
        }
    };
    tokio::join!(send, receive);
    (src, dst)
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.client.close(0u32.into(), b"bye");
    }
}

fn quinn_relay(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut g = c.benchmark_group("quinn_relay");
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(1));
    // (connection pairs, frames in flight per pair)
    for (pairs, window) in [(1usize, 1usize), (1, 32), (32, 1)] {
        let mut relay = Relay::start(pairs);
        // Settle the connections (congestion windows, buffers) before measuring.
        relay.run(20_000, window);
        let case = format!("pairs_{pairs}_in_flight_{window}");
        let (mut frames, mut wall, mut cpu) = (0u64, Duration::ZERO, Duration::ZERO);
        g.bench_function(format!("wall/{case}"), |b| {
            b.iter_custom(|iters| {
                let (w, c) = relay.run(iters, window);
                (frames, wall, cpu) = (frames + iters, wall + w, cpu + c);
                w
            })
        });
        g.bench_function(format!("server_cpu/{case}"), |b| {
            b.iter_custom(|iters| {
                let (w, c) = relay.run(iters, window);
                (frames, wall, cpu) = (frames + iters, wall + w, cpu + c);
                c
            })
        });
        eprintln!(
            "quinn_relay {case}: {frames} frames, {:.0} frames/s wall, {:.0} frames per server CPU-second (server busy {:.0}% of wall)",
            frames as f64 / wall.as_secs_f64().max(1e-9),
            frames as f64 / cpu.as_secs_f64().max(1e-9),
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9),
        );
    }
    g.finish();
}

criterion_group!(benches, quinn_relay);
criterion_main!(benches);
