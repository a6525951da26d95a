//! The bare-quinn relay (the transport ceiling, DESIGN §12): a quinn server with no application
//! logic that relays 200-byte length-prefixed frames from a source connection to a destination
//! connection, one `write_all` per frame, all on one thread with a current-thread runtime. Used by
//! the criterion bench `quinn_relay` (closed loop, K frames in flight per pair) and by the
//! `quinn-relay` binary (open loop at a fixed rate, for `scripts/bench-peers.sh`).
//!
//! TLS 1.3 with AES-128-GCM preferred (as Tern's server), default quinn transport settings.
//!
//! Protocol: each client connection opens one bidirectional stream and writes 3 bytes, its role
//! (`S`ource or `D`estination) and its pair number (u16, big endian); the server relays the pair's
//! source stream to its destination stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use quinn::{Endpoint, RecvStream, SendStream};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Bytes per frame on the wire, length prefix included.
pub const FRAME: usize = 200;

/// Panics with what failed: these are benchmarks, and a failed step ends the run.
pub fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    panic!("quinn_relay: {what}: {e}")
}

/// CPU time of one thread of this process: the scheduler's precise `sum_exec_runtime` when the
/// kernel exposes it, else utime + stime in clock ticks.
pub fn thread_cpu(tid: u32) -> Duration {
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
pub fn current_tid() -> Option<u32> {
    std::fs::read_link("/proc/thread-self")
        .ok()?
        .file_name()?
        .to_str()?
        .parse()
        .ok()
}

/// Pins thread `tid` to `cpu` with `taskset -p` (warns when it cannot).
pub fn pin(tid: u32, cpu: usize) {
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
pub fn server_thread(
    pairs: usize,
    ready: std_mpsc::Sender<(SocketAddr, CertificateDer<'static>, Option<u32>)>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("server runtime", e));
    rt.block_on(async move {
        let (endpoint, der) = server_endpoint(None);
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

/// A quinn server endpoint on a free loopback port with a fresh self-signed certificate (TLS 1.3,
/// AES-128-GCM preferred, as Tern's server), and that certificate for clients to trust.
/// `transport`: quinn's defaults when `None`.
pub fn server_endpoint(
    transport: Option<quinn::TransportConfig>,
) -> (Endpoint, CertificateDer<'static>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .unwrap_or_else(|e| fail("certificate", e));
    let der = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
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
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    if let Some(t) = transport {
        config.transport_config(Arc::new(t));
    }
    let endpoint = Endpoint::server(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .unwrap_or_else(|e| fail("server endpoint", e));
    (endpoint, der)
}

/// A client endpoint on a free loopback port that trusts `cert`.
pub fn client_endpoint(cert: CertificateDer<'static>) -> Endpoint {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap_or_else(|e| fail("root", e));
    let config = quinn::ClientConfig::with_root_certificates(Arc::new(roots))
        .unwrap_or_else(|e| fail("client config", e));
    let mut client = Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
        .unwrap_or_else(|e| fail("client endpoint", e));
    client.set_default_client_config(config);
    client
}

/// Opens, for each of `pairs` pairs, a source and a destination connection to the relay at
/// `addr` (trusting `cert`), and returns the client endpoint and per pair the source's send
/// stream and the destination's receive stream.
pub async fn connect_pairs(
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    pairs: usize,
) -> (Endpoint, Vec<(SendStream, RecvStream)>) {
    let client = client_endpoint(cert);
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
}
