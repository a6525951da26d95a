//! Test harness: a real `tern-server` on loopback (in-process or as a child process), SDK clients
//! logged in through the real OTP flow, a raw protocol client for hostile input, and a history
//! checker that compares what was sent with what every device received.

#![allow(clippy::unwrap_used)]

pub mod child;
pub mod cli;
pub mod group_history;
pub mod history;
pub mod load;
pub mod raw;
pub mod relay;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tern_sdk::protocol::{Message, SessionInfo};
use tern_sdk::{Client, ClientConfig, ClientEvent, Events, Trust};
use tern_server::auth::rate_limit::Quota;
use tern_server::config::OtpSenderConfig;
use tern_server::{Config, RunningServer};

/// Installs a log subscriber once (RUST_LOG controls it) and the ring crypto provider.
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A server configuration for tests: loopback, free ports, file OTP sender, generous limits.
pub fn test_config(dir: &Path) -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("data"),
        otp_sender: OtpSenderConfig::File {
            path: dir.join("otp.txt"),
        },
        ..Config::default()
    };
    c.auth.otp_per_address = Quota {
        burst: 100_000,
        per_minute: 100_000,
    };
    c.auth.otp_per_prefix = Quota {
        burst: 100_000,
        per_minute: 100_000,
    };
    c.auth.refresh_per_address = Quota {
        burst: 100_000,
        per_minute: 100_000,
    };
    // Every test client comes from 127.0.0.1.
    c.max_connections_per_ip = 100_000;
    // Tests send thousands of messages from one user and open many chats; the chat limits
    // get tests of their own.
    c.chat.send_burst = 1_000_000;
    c.chat.send_per_minute = 1_000_000;
    c.chat.new_peer_burst = 100_000;
    c.chat.receipt_delay_ms = 100;
    c
}

/// An in-process server on a temporary directory.
#[derive(Debug)]
pub struct TestServer {
    /// The running server.
    pub server: Option<RunningServer>,
    /// Its temporary directory.
    pub dir: tempfile::TempDir,
    /// QUIC address.
    pub addr: SocketAddr,
    /// Certificate fingerprint.
    pub fingerprint: String,
}

impl TestServer {
    /// Starts a server with the default test configuration.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `tweak` has adjusted the configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        init();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let server = RunningServer::start(config).await.unwrap();
        let addr = server.quic_addr;
        let fingerprint = server.cert_fingerprint.clone();
        TestServer {
            server: Some(server),
            dir,
            addr,
            fingerprint,
        }
    }

    /// Where OTP codes are written.
    pub fn otp_file(&self) -> PathBuf {
        self.dir.path().join("otp.txt")
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A client configuration pinned to this server.
    pub fn client_config(&self) -> ClientConfig {
        client_config(self.addr, &self.fingerprint)
    }

    /// Logs a new device of `identifier` in through the OTP flow.
    pub async fn login(&self, identifier: &str) -> Device {
        login(self.client_config(), &self.otp_file(), identifier)
            .await
            .unwrap()
    }

    /// Logs two users in and opens their direct chat: the set-up most delivery tests start from.
    pub async fn pair(&self, a: &str, b: &str) -> (Device, Device, tern_sdk::protocol::ChatId) {
        let a = self.login(a).await;
        let b = self.login(b).await;
        let chat = a
            .client
            .open_direct_chat(b.session.user_id)
            .await
            .unwrap()
            .chat_id;
        (a, b, chat)
    }

    /// Sends one `Refresh` with `token` on a fresh, unauthenticated connection and returns the
    /// answer (the client is closed after it).
    pub async fn refresh_once(
        &self,
        token: &str,
    ) -> Result<tern_sdk::protocol::Response, tern_sdk::Error> {
        let (c, _e) = Client::start(self.client_config()).unwrap();
        let r = c
            .request(tern_sdk::protocol::Request::Refresh {
                refresh_token: token.into(),
            })
            .await;
        c.close().await;
        r
    }

    /// Starts a client that resumes a device from a saved snapshot (tokens and sync cursor),
    /// as an app restarting after being offline would.
    pub fn resume(&self, saved: &tern_sdk::Snapshot) -> (Client, Events) {
        let mut config = self.client_config();
        config.tokens = saved.tokens.clone();
        config.sync_state = saved.sync.clone();
        Client::start(config).unwrap()
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.server.as_ref().map(|s| s.admin_addr).unwrap()
    }
}

/// A client configuration pinned to `fingerprint`, with quick reconnects.
pub fn client_config(addr: SocketAddr, fingerprint: &str) -> ClientConfig {
    let mut c = ClientConfig::new(addr, Trust::pinned_hex(fingerprint).unwrap());
    c.reconnect_min = Duration::from_millis(50);
    c.reconnect_max = Duration::from_millis(500);
    c
}

/// A logged-in SDK client with its event stream.
#[derive(Debug)]
pub struct Device {
    /// The handle.
    pub client: Client,
    /// Its events.
    pub events: Events,
    /// Who it is.
    pub session: SessionInfo,
}

/// Bytes in the OTP file so far (0 if it does not exist yet).
fn otp_len(otp_file: &Path) -> u64 {
    std::fs::metadata(otp_file).map(|m| m.len()).unwrap_or(0)
}

/// The OTP file's text from byte `from` on.
fn otp_tail(otp_file: &Path, from: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut out = String::new();
    if let Ok(mut f) = std::fs::File::open(otp_file)
        && f.seek(SeekFrom::Start(from)).is_ok()
    {
        let _ = f.read_to_string(&mut out);
    }
    out
}

/// Waits for a code for `identifier` written after byte `from` of the OTP file.
pub async fn read_code(otp_file: &Path, identifier: &str, from: u64) -> anyhow::Result<String> {
    for _ in 0..1000 {
        let tail = otp_tail(otp_file, from);
        let code = tail
            .lines()
            .filter_map(|l| l.strip_prefix(identifier).and_then(|r| r.strip_prefix(' ')))
            .next_back()
            .map(str::to_owned);
        if let Some(code) = code {
            return Ok(code);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("no OTP code for {identifier} in {}", otp_file.display())
}

/// Asks for a code and returns it once the server has written it.
pub async fn request_code(
    client: &Client,
    otp_file: &Path,
    identifier: &str,
) -> anyhow::Result<String> {
    let from = otp_len(otp_file);
    client
        .request_otp(identifier)
        .await
        .context("request_otp")?;
    read_code(otp_file, identifier, from).await
}

/// Starts a client and logs it in as a new device of `identifier`.
pub async fn login(
    config: ClientConfig,
    otp_file: &Path,
    identifier: &str,
) -> anyhow::Result<Device> {
    let (client, events) = Client::start(config)?;
    let code = request_code(&client, otp_file, identifier).await?;
    let session = client
        .verify_otp(identifier, &code)
        .await
        .context("verify_otp")?;
    Ok(Device {
        client,
        events,
        session,
    })
}

/// Collects message events until `n` have arrived or `timeout` passes.
pub async fn collect_messages(events: &mut Events, n: usize, timeout: Duration) -> Vec<Message> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(ClientEvent::Message { message, .. })) => out.push(message),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// Drains events for `quiet` and returns the messages among them.
pub async fn drain_messages(events: &mut Events, quiet: Duration) -> Vec<Message> {
    let mut out = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(quiet, events.next()).await {
        if let ClientEvent::Message { message, .. } = ev {
            out.push(message);
        }
    }
    out
}

/// Path of the `tern-server` binary built by cargo (for child-process tests).
pub fn server_binary() -> PathBuf {
    workspace_binary("tern-server")
}

/// Path of a workspace binary built by cargo: cargo's `CARGO_BIN_EXE_<name>` when set, else
/// beside the test executable's `deps/` directory.
pub fn workspace_binary(name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(format!("CARGO_BIN_EXE_{name}")) {
        return PathBuf::from(p);
    }
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

/// Sends one message per id in `ids` on `chat` from `lanes` concurrent tasks (the id is the
/// idempotency key, `body(id)` the content) and returns what the server acknowledged.
pub async fn send_lanes(
    client: &Client,
    chat: tern_sdk::protocol::ChatId,
    ids: std::ops::Range<u64>,
    lanes: u64,
    body: impl Fn(u64) -> tern_sdk::protocol::MessageBody + Send + Sync + Clone + 'static,
) -> Vec<history::Acked> {
    let mut tasks = Vec::new();
    for lane in 0..lanes.max(1) {
        let client = client.clone();
        let body = body.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for id in ids.skip(lane as usize).step_by(lanes.max(1) as usize) {
                let b = body(id);
                let sent = client.send(chat, b.clone(), id).await.unwrap();
                out.push(history::Acked { sent, body: b });
            }
            out
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    acked
}

/// Collects `n` messages, then whatever else arrives within a short quiet period (so a
/// duplicate arriving late is seen too).
pub async fn receive_all(events: &mut Events, n: usize, timeout: Duration) -> Vec<Message> {
    let mut got = collect_messages(events, n, timeout).await;
    got.extend(drain_messages(events, Duration::from_millis(300)).await);
    got
}
