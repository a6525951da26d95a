//! `tern-server`: runs the Tern messaging server.
//!
//! With no flags: QUIC on 0.0.0.0:4433, admin HTTP on 127.0.0.1:9433, data in ./tern-data, a
//! generated dev certificate, and OTP codes printed to the log.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tern_server::config::OtpSenderConfig;
use tern_server::{Config, RunningServer};

#[derive(Debug, Parser)]
#[command(
    name = "tern-server",
    version,
    about = "Tern realtime messaging server"
)]
struct Cli {
    /// TOML configuration file; flags and TERN_* variables override it.
    #[arg(long, env = "TERN_CONFIG")]
    config: Option<PathBuf>,
    /// QUIC (UDP) listen address [default: 0.0.0.0:4433].
    #[arg(long, env = "TERN_LISTEN")]
    listen: Option<SocketAddr>,
    /// Admin HTTP listen address [default: 127.0.0.1:9433].
    #[arg(long, env = "TERN_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Data directory [default: ./tern-data].
    #[arg(long, env = "TERN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Storage: `fjall` (embedded, in the data directory) or
    /// `cql://HOST:PORT[,HOST:PORT...]/KEYSPACE` (ScyllaDB or Cassandra) [default: fjall].
    #[arg(long, env = "TERN_STORAGE")]
    storage: Option<tern_server::storage::StorageConfig>,
    /// PEM certificate chain (with --key); default: a dev certificate in the data directory.
    #[arg(long, env = "TERN_CERT")]
    cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, env = "TERN_KEY")]
    key: Option<PathBuf>,
    /// OTP delivery: `log` (dev), `file:PATH` (loopback test/load clients only), `webhook:URL`.
    #[arg(long, env = "TERN_OTP_SENDER")]
    otp_sender: Option<String>,
    /// OTP requests allowed per source address at once (raise explicitly for loopback load tests).
    #[arg(long, env = "TERN_OTP_ADDRESS_BURST")]
    otp_address_burst: Option<u32>,
    /// OTP requests per source address per minute, after the burst.
    #[arg(long, env = "TERN_OTP_ADDRESS_PER_MINUTE")]
    otp_address_per_minute: Option<u32>,
    /// OTP requests allowed per number prefix or email domain at once.
    #[arg(long, env = "TERN_OTP_PREFIX_BURST")]
    otp_prefix_burst: Option<u32>,
    /// OTP requests per number prefix or email domain per minute, after the burst.
    #[arg(long, env = "TERN_OTP_PREFIX_PER_MINUTE")]
    otp_prefix_per_minute: Option<u32>,
    /// Bits of an IPv4 source address that per-address auth limits key on [default: 32].
    #[arg(long, env = "TERN_IPV4_PREFIX_LEN")]
    ipv4_prefix_len: Option<u8>,
    /// Bits of an IPv6 source address that per-address auth limits key on [default: 64].
    #[arg(long, env = "TERN_IPV6_PREFIX_LEN")]
    ipv6_prefix_len: Option<u8>,
    /// Seconds a rotated refresh token still returns its successor (lost answers) [default: 120].
    #[arg(long, env = "TERN_REFRESH_GRACE_S")]
    refresh_grace_s: Option<u64>,
    /// Refuse development settings: the `log` and `file` OTP senders.
    #[arg(long, env = "TERN_PRODUCTION")]
    production: bool,
    /// Idle connection timeout in seconds [default: 30].
    #[arg(long, env = "TERN_IDLE_TIMEOUT_S")]
    idle_timeout_s: Option<u64>,
    /// Shards: threads with their own runtime and QUIC endpoint on the shared port [default: one per core].
    #[arg(long, env = "TERN_SHARDS")]
    shards: Option<usize>,
    /// Most concurrent connections from one IPv4 address or IPv6 /64 [default: 256].
    #[arg(long, env = "TERN_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<u32>,
    /// Most concurrent connections in all [default: 100000].
    #[arg(long, env = "TERN_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Most live connections per device; a newer one closes the oldest [default: 4].
    #[arg(long, env = "TERN_MAX_CONNECTIONS_PER_DEVICE")]
    max_connections_per_device: Option<usize>,
    /// Seconds a connection may stay without logging in after `Hello` [default: 120].
    #[arg(long, env = "TERN_AUTH_TIMEOUT_S")]
    auth_timeout_s: Option<u64>,
    /// Bytes queued for one connection before it is shed as a slow consumer [default: 262144].
    #[arg(long, env = "TERN_OUTBOUND_QUEUE_BYTES")]
    outbound_queue_bytes: Option<usize>,
    /// Messages one user may send at once [default: 300].
    #[arg(long, env = "TERN_CHAT_SEND_BURST")]
    chat_send_burst: Option<u32>,
    /// Messages per user per minute after the burst [default: 600].
    #[arg(long, env = "TERN_CHAT_SEND_PER_MINUTE")]
    chat_send_per_minute: Option<u32>,
    /// Chats with new peers one user may open at once [default: 30].
    #[arg(long, env = "TERN_CHAT_NEW_PEER_BURST")]
    chat_new_peer_burst: Option<u32>,
    /// Chats with new peers per user per day after the burst [default: 100].
    #[arg(long, env = "TERN_CHAT_NEW_PEERS_PER_DAY")]
    chat_new_peers_per_day: Option<u32>,
    /// How long delivered receipts are held to coalesce ack steps, ms (0: publish each) [default: 1000].
    #[arg(long, env = "TERN_RECEIPT_DELAY_MS")]
    receipt_delay_ms: Option<u64>,
    /// How long a sender may edit a message, seconds; announced in `Welcome` [default: 900].
    #[arg(long, env = "TERN_CHAT_EDIT_WINDOW_S")]
    chat_edit_window_s: Option<u32>,
    /// How long a sender may delete a message for everyone, seconds (group admins: always);
    /// announced in `Welcome` [default: 172800].
    #[arg(long, env = "TERN_CHAT_DELETE_WINDOW_S")]
    chat_delete_window_s: Option<u32>,
    /// Accept TLS 0-RTT early data from resuming clients (`true`/`false`) [default: true].
    /// Only replay-safe requests run from early data; see docs/protocol.md, "0-RTT and resumption".
    #[arg(long, env = "TERN_ZERO_RTT")]
    zero_rtt: Option<bool>,
    /// Resumable TLS sessions remembered across all shards [default: 65536].
    #[arg(long, env = "TERN_TLS_SESSION_CACHE")]
    tls_session_cache: Option<usize>,
    /// The server secret file (32 bytes, created if missing) [default: DATA_DIR/server.secret].
    /// Every node of a cluster must use the same one: tokens are signed with keys derived from it.
    #[arg(long, env = "TERN_SECRET_FILE")]
    secret_file: Option<PathBuf>,
    /// Cluster mode: this node's id [default: derived from the host name and QUIC port, kept in
    /// the data directory as `node.id`].
    #[arg(long, env = "TERN_NODE_ID")]
    node_id: Option<String>,
    /// Cluster mode: the Redis bus, `redis://HOST:PORT` or `redis+cluster://H1:P1,H2:P2`
    /// (Redis Cluster). Without it the server runs as a single node.
    #[arg(long, env = "TERN_CLUSTER_REDIS")]
    cluster_redis: Option<String>,
    /// Cluster mode: the QUIC address clients use for this node, kept in the node registry
    /// [default: the listen address].
    #[arg(long, env = "TERN_ADVERTISE")]
    advertise: Option<String>,
    /// Where media lives: `fs` (DATA_DIR/media), `fs:PATH`, or `s3://BUCKET[/PREFIX]` (endpoint,
    /// region and keys from TERN_S3_* or the standard AWS_* variables) [default: fs].
    #[arg(long, env = "TERN_MEDIA_STORE")]
    media_store: Option<String>,
    /// Log as JSON lines.
    #[arg(long, env = "TERN_LOG_JSON")]
    log_json: bool,
}

fn parse_sender(s: &str) -> anyhow::Result<OtpSenderConfig> {
    if s == "log" {
        return Ok(OtpSenderConfig::Log);
    }
    if let Some(path) = s.strip_prefix("file:") {
        return Ok(OtpSenderConfig::File {
            path: PathBuf::from(path),
        });
    }
    if let Some(url) = s.strip_prefix("webhook:") {
        return Ok(OtpSenderConfig::Webhook {
            url: url.to_owned(),
        });
    }
    anyhow::bail!("--otp-sender must be `log`, `file:PATH` or `webhook:URL`, not {s:?}")
}

fn config(cli: Cli) -> anyhow::Result<Config> {
    let mut c = match &cli.config {
        Some(path) => Config::from_toml_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = cli.listen {
        c.listen = v;
    }
    if let Some(v) = cli.admin_listen {
        c.admin_listen = v;
    }
    if let Some(v) = cli.data_dir {
        c.data_dir = v;
    }
    if let Some(v) = cli.storage {
        c.storage = v;
    }
    if cli.cert.is_some() {
        c.cert = cli.cert;
    }
    if cli.key.is_some() {
        c.key = cli.key;
    }
    if let Some(s) = cli.otp_sender {
        c.otp_sender = parse_sender(&s)?;
    }
    if let Some(v) = cli.otp_address_burst {
        c.auth.otp_per_address.burst = v;
    }
    if let Some(v) = cli.otp_address_per_minute {
        c.auth.otp_per_address.per_minute = v;
    }
    if let Some(v) = cli.otp_prefix_burst {
        c.auth.otp_per_prefix.burst = v;
    }
    if let Some(v) = cli.otp_prefix_per_minute {
        c.auth.otp_per_prefix.per_minute = v;
    }
    if let Some(v) = cli.ipv4_prefix_len {
        c.auth.ipv4_prefix_len = v;
    }
    if let Some(v) = cli.ipv6_prefix_len {
        c.auth.ipv6_prefix_len = v;
    }
    if let Some(v) = cli.refresh_grace_s {
        c.auth.refresh_grace_s = v;
    }
    c.production |= cli.production;
    if let Some(v) = cli.idle_timeout_s {
        c.idle_timeout_s = v;
    }
    if cli.shards.is_some() {
        c.shards = cli.shards;
    }
    if let Some(v) = cli.max_connections_per_ip {
        c.max_connections_per_ip = v;
    }
    if let Some(v) = cli.max_connections {
        c.max_connections = v;
    }
    if let Some(v) = cli.max_connections_per_device {
        c.max_connections_per_device = v;
    }
    if let Some(v) = cli.auth_timeout_s {
        c.auth_timeout_s = v;
    }
    if let Some(v) = cli.outbound_queue_bytes {
        c.outbound_queue_bytes = v;
    }
    if let Some(v) = cli.chat_send_burst {
        c.chat.send_burst = v;
    }
    if let Some(v) = cli.chat_send_per_minute {
        c.chat.send_per_minute = v;
    }
    if let Some(v) = cli.chat_new_peer_burst {
        c.chat.new_peer_burst = v;
    }
    if let Some(v) = cli.chat_new_peers_per_day {
        c.chat.new_peers_per_day = v;
    }
    if let Some(v) = cli.receipt_delay_ms {
        c.chat.receipt_delay_ms = v;
    }
    if let Some(v) = cli.chat_edit_window_s {
        c.chat.edit_window_s = v;
    }
    if let Some(v) = cli.chat_delete_window_s {
        c.chat.delete_window_s = v;
    }
    if let Some(p) = cli.secret_file {
        c.secret_file = Some(p);
    }
    if let Some(v) = cli.zero_rtt {
        c.transport.zero_rtt = v;
    }
    if let Some(v) = cli.tls_session_cache {
        c.transport.session_cache = v;
    }
    if let Some(v) = cli.media_store {
        c.media.store = v;
    }
    if cli.node_id.is_some() {
        c.cluster.node_id = cli.node_id;
    }
    if cli.cluster_redis.is_some() {
        c.cluster.redis = cli.cluster_redis;
    }
    if cli.advertise.is_some() {
        c.cluster.advertise = cli.advertise;
    }
    Ok(c)
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn"));
    if json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let config = config(cli)?;
    let server = RunningServer::start(config.clone())
        .await
        .context("starting tern-server")?;
    tracing::info!(
        quic = %server.quic_addr,
        admin = %server.admin_addr,
        shards = server.shards,
        data_dir = %config.data_dir.display(),
        "tern-server listening"
    );
    tracing::info!(sha256 = %server.cert_fingerprint, "certificate fingerprint (pin this in dev clients)");
    tracing::info!(sender = %server.otp_sender, "OTP sender");
    if let Some(warning) = config.dev_otp_warning() {
        // Loud on purpose: the quick start runs like this, a deployment must not.
        eprintln!("\n*** WARNING: {warning} ***\n");
        tracing::warn!("{warning}");
    }
    shutdown_signal().await;
    tracing::info!("shutting down: draining connections and flushing storage");
    server.shutdown().await;
    tracing::info!("bye");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
