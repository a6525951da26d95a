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
//! The server itself lives in `tern_benches::relay` (shared with the paced `quinn-relay` binary).
//!
//! `cargo bench -p tern-benches --bench quinn_relay`

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quinn::{Endpoint, RecvStream, SendStream};
use tern_benches::relay::{
    FRAME, connect_pairs, current_tid, fail, pin, server_thread, thread_cpu,
};
use tokio::sync::Semaphore;

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
        let (client, streams) = rt.block_on(connect_pairs(addr, cert, pairs));
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
