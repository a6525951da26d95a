//! The bare-quinn upload ceiling for `tern-loadgen upload`: a quinn server with no application
//! logic that reads every bidirectional stream to its end (optionally SHA-256 over the bytes,
//! as Tern's server does) and answers one byte; one client connection uploads `--count`
//! payloads of `--size` bytes, `--streams` at once. The server runs on a thread of its own
//! (current-thread runtime, pinned to `--server-cpu`); reported are MB per wall second and MB
//! per **server CPU-second** (that thread's CPU time from /proc).
//!
//! The transport windows default to what Tern grants a media stream (128 KiB per stream, the
//! connection window of an authenticated connection with its media streams), so the two runs
//! differ only in what the servers do with the bytes.
//!
//! ```text
//! cargo build --release -p tern-benches --bin quinn-upload
//! target/release/quinn-upload --size-mib 64 --count 8 --streams 1 [--hash]
//! ```

use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use clap::Parser;
use quinn::{TransportConfig, VarInt};
use tern_benches::relay::{client_endpoint, current_tid, fail, pin, server_endpoint, thread_cpu};

#[derive(Debug, Parser)]
#[command(name = "quinn-upload")]
struct Args {
    /// Bytes per upload, in MiB.
    #[arg(long, default_value_t = 64)]
    size_mib: usize,
    /// Uploads.
    #[arg(long, default_value_t = 8)]
    count: usize,
    /// Uploads in flight at once (one stream each).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// The server hashes every byte with SHA-256 (ring), as Tern's does.
    #[arg(long)]
    hash: bool,
    /// Per-stream receive window, bytes (Tern: 128 KiB).
    #[arg(long, default_value_t = 128 * 1024)]
    stream_window: u32,
    /// Connection receive window, bytes (Tern with 4 media streams: 144 KiB + 4 × 128 KiB).
    #[arg(long, default_value_t = 144 * 1024 + 4 * 128 * 1024)]
    connection_window: u32,
    /// Pin the server thread to this CPU (and the client to the next one).
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
}

fn main() {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut t = TransportConfig::default();
    t.stream_receive_window(VarInt::from_u32(args.stream_window))
        .receive_window(VarInt::from_u32(args.connection_window))
        .max_concurrent_bidi_streams(VarInt::from_u32(args.streams as u32 + 1));
    let (ready_tx, ready_rx) = std_mpsc::channel();
    let hash = args.hash;
    let server_cpu = args.server_cpu;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail("server runtime", e));
        rt.block_on(async move {
            let (endpoint, cert) = server_endpoint(Some(t));
            let addr = endpoint.local_addr().unwrap_or_else(|e| fail("addr", e));
            let tid = current_tid();
            if let Some(tid) = tid {
                pin(tid, server_cpu);
            }
            let _ = ready_tx.send((addr, cert, tid));
            while let Some(incoming) = endpoint.accept().await {
                let Ok(conn) = incoming.await else { continue };
                tokio::spawn(async move {
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        tokio::spawn(async move {
                            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                            while let Ok(Some(chunk)) = recv.read_chunk(1 << 20, true).await {
                                if hash {
                                    ctx.update(&chunk.bytes);
                                }
                            }
                            let d = ctx.finish();
                            let _ = send.write_all(&d.as_ref()[..1]).await;
                            let _ = send.finish();
                        });
                    }
                });
            }
        });
    });
    let (addr, cert, server_tid) = ready_rx.recv().unwrap_or_else(|e| fail("server start", e));
    let server_tid = server_tid.unwrap_or_else(|| fail("server thread id", "unavailable"));
    if let Some(me) = current_tid() {
        pin(me, server_cpu + 1);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("client runtime", e));
    let size = args.size_mib << 20;
    let payload = bytes::Bytes::from(vec![0x5a_u8; size]);
    let (wall, cpu) = rt.block_on(async move {
        let client = client_endpoint(cert);
        let conn = client
            .connect(addr, "localhost")
            .unwrap_or_else(|e| fail("connect", e))
            .await
            .unwrap_or_else(|e| fail("handshake", e));
        let cpu0 = thread_cpu(server_tid);
        let t0 = Instant::now();
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(args.streams));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..args.count {
            let permit = gate
                .clone()
                .acquire_owned()
                .await
                .unwrap_or_else(|e| fail("gate", e));
            let conn = conn.clone();
            let payload = payload.clone();
            tasks.spawn(async move {
                let (mut send, mut recv) = conn.open_bi().await.unwrap_or_else(|e| fail("open", e));
                let mut off = 0;
                while off < payload.len() {
                    let end = (off + 256 * 1024).min(payload.len());
                    send.write_chunk(payload.slice(off..end))
                        .await
                        .unwrap_or_else(|e| fail("write", e));
                    off = end;
                }
                send.finish().unwrap_or_else(|e| fail("finish", e));
                let _ = recv.read_to_end(16).await;
                drop(permit);
            });
        }
        while tasks.join_next().await.is_some() {}
        let wall = t0.elapsed();
        (wall, thread_cpu(server_tid).saturating_sub(cpu0))
    });
    let mb = (size * args.count) as f64 / 1e6;
    let cpu_s = cpu.as_secs_f64().max(1e-9);
    println!(
        "{{\"peer\":\"bare_quinn_upload\",\"hash\":{},\"streams\":{},\"mb\":{mb:.1},\"wall_s\":{:.3},\"server_cpu_s\":{:.3},\"mb_per_s\":{:.1},\"mb_per_server_cpu_s\":{:.1}}}",
        args.hash,
        args.streams,
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        mb / wall.as_secs_f64().max(1e-9),
        mb / cpu_s
    );
}
