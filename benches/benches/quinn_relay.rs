//! The transport ceiling: a bare quinn server (no application logic) on loopback relays 200-byte
//! length-prefixed frames (2-byte length + 198 bytes, about the size of a Tern chat message) from
//! one client connection to another, with 1 and with 32 frames in flight end to end. Tern's routed
//! throughput is reported as a ratio of this.
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

/// The server thread: accepts a source and a destination connection (each opens one
/// bidirectional stream and announces its role with one byte) and relays between them.
fn server_thread(ready: std_mpsc::Sender<(SocketAddr, CertificateDer<'static>, Option<u32>)>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("server runtime", e));
    rt.block_on(async move {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .unwrap_or_else(|e| fail("certificate", e));
        let der = cert.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let config = quinn::ServerConfig::with_single_cert(vec![der.clone()], key)
            .unwrap_or_else(|e| fail("server config", e));
        let endpoint = Endpoint::server(config, SocketAddr::from(([127, 0, 0, 1], 0)))
            .unwrap_or_else(|e| fail("server endpoint", e));
        let addr = endpoint
            .local_addr()
            .unwrap_or_else(|e| fail("server address", e));
        let _ = ready.send((addr, der, current_tid()));
        let (mut source, mut dest) = (None, None);
        while source.is_none() || dest.is_none() {
            let Some(incoming) = endpoint.accept().await else {
                return;
            };
            let conn = incoming.await.unwrap_or_else(|e| fail("handshake", e));
            let (send, mut recv) = conn.accept_bi().await.unwrap_or_else(|e| fail("stream", e));
            let mut role = [0u8; 1];
            recv.read_exact(&mut role)
                .await
                .unwrap_or_else(|e| fail("role", e));
            if role[0] == b'S' {
                source = Some((conn, recv));
            } else {
                dest = Some((conn, send));
            }
        }
        if let (Some((_c1, from)), Some((_c2, to))) = (source, dest) {
            relay(from, to).await;
        }
        endpoint.close(0u32.into(), b"done");
    });
}

/// A relay server plus the two client connections' streams.
struct Relay {
    rt: tokio::runtime::Runtime,
    client: Endpoint,
    src: SendStream,
    dst: RecvStream,
    server_tid: Option<u32>,
    frame: Vec<u8>,
}

impl Relay {
    fn start() -> Relay {
        let pinned = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2
            && std::env::var_os("QUINN_RELAY_NO_PIN").is_none();
        let (tx, rx) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("relay-server".into())
            .spawn(move || server_thread(tx))
            .unwrap_or_else(|e| fail("server thread", e));
        let (addr, cert, server_tid) = rx.recv().unwrap_or_else(|e| fail("server start", e));
        if pinned {
            if let Some(t) = server_tid {
                pin(t, 0);
            }
            if let Some(t) = current_tid() {
                pin(t, 1);
            }
            eprintln!("quinn_relay: server thread on CPU 0, client on CPU 1");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail("client runtime", e));
        let (client, src, dst) = rt.block_on(async {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert).unwrap_or_else(|e| fail("root", e));
            let config = quinn::ClientConfig::with_root_certificates(Arc::new(roots))
                .unwrap_or_else(|e| fail("client config", e));
            let mut client = Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
                .unwrap_or_else(|e| fail("client endpoint", e));
            client.set_default_client_config(config);
            let open = |role: u8| {
                let client = client.clone();
                async move {
                    let conn = client
                        .connect(addr, "localhost")
                        .unwrap_or_else(|e| fail("connect", e))
                        .await
                        .unwrap_or_else(|e| fail("client handshake", e));
                    let (mut send, recv) = conn.open_bi().await.unwrap_or_else(|e| fail("open", e));
                    send.write_all(&[role])
                        .await
                        .unwrap_or_else(|e| fail("role", e));
                    (send, recv)
                }
            };
            let (src, _) = open(b'S').await;
            let (_, dst) = open(b'D').await;
            (client, src, dst)
        });
        let mut frame = vec![0x5a; FRAME];
        frame[..2].copy_from_slice(&((FRAME - 2) as u16).to_be_bytes());
        Relay {
            rt,
            client,
            src,
            dst,
            server_tid,
            frame,
        }
    }

    /// Relays `frames` frames with at most `window` in flight; returns (wall, server CPU).
    fn run(&mut self, frames: u64, window: usize) -> (Duration, Duration) {
        let cpu0 = self.server_tid.map(thread_cpu).unwrap_or_default();
        let t0 = Instant::now();
        let (src, dst, frame) = (&mut self.src, &mut self.dst, &self.frame);
        self.rt.block_on(async {
            let permits = Semaphore::new(window);
            let send = async {
                for _ in 0..frames {
                    permits
                        .acquire()
                        .await
                        .unwrap_or_else(|e| fail("permit", e))
                        .forget();
                    src.write_all(frame)
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
        });
        let wall = t0.elapsed();
        let cpu = self.server_tid.map(thread_cpu).unwrap_or_default() - cpu0;
        (wall, cpu)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.client.close(0u32.into(), b"bye");
    }
}

fn quinn_relay(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut relay = Relay::start();
    // Settle the connections (congestion window, buffers) before measuring.
    relay.run(20_000, 32);
    let mut g = c.benchmark_group("quinn_relay");
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(1));
    for window in [1usize, 32] {
        let (mut frames, mut wall, mut cpu) = (0u64, Duration::ZERO, Duration::ZERO);
        g.bench_function(format!("wall/in_flight_{window}"), |b| {
            b.iter_custom(|iters| {
                let (w, c) = relay.run(iters, window);
                (frames, wall, cpu) = (frames + iters, wall + w, cpu + c);
                w
            })
        });
        g.bench_function(format!("server_cpu/in_flight_{window}"), |b| {
            b.iter_custom(|iters| {
                let (w, c) = relay.run(iters, window);
                (frames, wall, cpu) = (frames + iters, wall + w, cpu + c);
                c
            })
        });
        eprintln!(
            "quinn_relay in_flight={window}: {frames} frames, {:.0} frames/s wall, {:.0} frames per server CPU-second (server busy {:.0}% of wall)",
            frames as f64 / wall.as_secs_f64().max(1e-9),
            frames as f64 / cpu.as_secs_f64().max(1e-9),
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9),
        );
    }
    g.finish();
}

criterion_group!(benches, quinn_relay);
criterion_main!(benches);
