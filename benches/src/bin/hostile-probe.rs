//! Memory one hostile, never-authenticating connection pins on a real server: starts a release
//! `tern-server` child on loopback, then opens `--connections` connections that each do the worst
//! an anonymous client can: send `Hello` without a token, pipeline pings whose answers they never
//! read (with a tiny receive window, so answers pile up on the server), leave a maximal frame
//! unfinished in the server's decoder, fill the datagram buffer, and try to open more streams.
//! Reports the server's RSS growth per connection next to the bound computed from the limits
//! (`TransportLimits::worst_case_bytes`).
//!
//! ```text
//! cargo build --release -p tern-server -p tern-benches
//! target/release/hostile-probe --server-bin target/release/tern-server --connections 500
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tern_sdk::protocol::{Frame, Request, limits};
use tern_server::transport::limits::TransportLimits;
use tern_tests::child::rss_bytes;
use tern_tests::raw::RawConn;

#[derive(Debug, Parser)]
struct Args {
    /// tern-server binary.
    #[arg(long, default_value = "target/release/tern-server")]
    server_bin: PathBuf,
    /// Hostile connections to open.
    #[arg(long, default_value_t = 500)]
    connections: usize,
    /// Pipelined pings per connection (their answers are never read).
    #[arg(long, default_value_t = 2000)]
    pings: u32,
}

/// The varint length prefix of a frame of `len` bytes.
fn prefix(mut len: u32) -> Vec<u8> {
    let mut out = Vec::new();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out
}

async fn hostile(addr: SocketAddr, fp: &str, pings: u32) -> anyhow::Result<RawConn> {
    let mut tiny = quinn::TransportConfig::default();
    tiny.stream_receive_window(quinn::VarInt::from_u32(1024))
        .receive_window(quinn::VarInt::from_u32(1024));
    let mut raw = RawConn::connect_with(addr, fp, Some(tiny)).await?;
    raw.send_frame(&RawConn::hello(None)).await?;
    let mut burst = Vec::new();
    for req_id in 0..pings {
        let ping = Frame::Request {
            req_id,
            body: Request::Ping,
        };
        burst.extend(tern_sdk::protocol::codec::encode_to_vec(&ping)?);
    }
    // A frame of the maximum size, one byte short of complete: the decoder must hold it.
    burst.extend(prefix(limits::MAX_FRAME_LEN));
    burst.extend(std::iter::repeat_n(0u8, limits::MAX_FRAME_LEN as usize - 1));
    raw.write(&burst).await?;
    for _ in 0..64 {
        let _ = raw
            .conn
            .send_datagram(vec![0u8; limits::MAX_DATAGRAM_LEN].into());
    }
    // Extra streams: with no credit these never open; do not wait for them.
    let _ = tokio::time::timeout(Duration::from_millis(1), raw.conn.open_uni()).await;
    Ok(raw)
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
    let mut child = Command::new(&args.server_bin)
        .args(["--listen", &quic.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--max-connections-per-ip", "1000000"])
        .args(["--auth-timeout-s", "600", "--shards", "1"])
        .env("TERN_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting tern-server")?;
    let pid = child.id();
    let fp_file = dir.path().join("data/dev-cert.sha256");
    let mut fp = String::new();
    for _ in 0..200 {
        if let Ok(s) = std::fs::read_to_string(&fp_file) {
            fp = s.trim().to_owned();
            if !fp.is_empty() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One honest connection first, so per-process start-up memory is in the baseline.
    let warm = hostile(quic, &fp, 1).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_bytes(pid);
    let mut conns = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        conns.push(hostile(quic, &fp, args.pings).await?);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_bytes(pid);
    let open = conns
        .iter()
        .filter(|c| c.conn.close_reason().is_none())
        .count();
    let per_conn = after.saturating_sub(before) / args.connections.max(1) as u64;
    let bound = TransportLimits::default().worst_case_bytes(true);
    println!(
        "{} hostile anonymous connections ({} still open): server RSS {} -> {} MiB, \
         {:.1} KiB per connection (bound from the limits: {} KiB)",
        args.connections,
        open,
        before >> 20,
        after >> 20,
        per_conn as f64 / 1024.0,
        bound / 1024
    );
    drop(conns);
    drop(warm);
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}
