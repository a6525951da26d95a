//! Reaching the server: which address and certificate (flags over profile), starting an SDK
//! client, and waiting, within `--connect-timeout`, until it is connected, logged in and syncing.
//!
//! The SDK reconnects forever on its own, which is right for an app and wrong for a command: here
//! every wait is bounded and ends in a typed [`Failure`]. Refreshed tokens are written to the
//! profile the moment the SDK reports them, because the previous refresh token is dead by then.

use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use tern_sdk::protocol::SessionInfo;
use tern_sdk::{Client, ClientConfig, ClientEvent, Events, Trust};

use crate::args::Global;
use crate::failure::Failure;
use crate::output::Output;
use crate::profile::{Profile, ProfileStore};

/// The server used when neither a flag nor the profile names one.
pub const DEFAULT_SERVER: &str = "127.0.0.1:4433";

/// Where to connect and whom to trust.
#[derive(Debug, Clone)]
pub struct Target {
    /// As given (`HOST:PORT`), for the profile and for messages.
    pub server: String,
    /// Resolved address.
    pub addr: SocketAddr,
    /// Pinned fingerprint, hex.
    pub fingerprint: String,
}

impl Target {
    /// Flags win over the profile; `login` may fall back to [`DEFAULT_SERVER`].
    pub fn resolve(
        global: &Global,
        profile: &Profile,
        default_server: bool,
    ) -> Result<Self, Failure> {
        let server = global
            .server
            .clone()
            .or_else(|| profile.server.clone())
            .or_else(|| default_server.then(|| DEFAULT_SERVER.to_owned()))
            .ok_or_else(|| Failure::Usage("no server known: pass --server HOST:PORT".into()))?;
        let fingerprint = match (&global.cert_fingerprint, &global.server_data_dir) {
            (Some(fp), _) => fp.trim().to_owned(),
            (None, Some(dir)) => read_fingerprint(dir)?,
            (None, None) => profile.cert_fingerprint.clone().ok_or_else(|| {
                Failure::Usage(
                    "no certificate to trust: pass --cert-fingerprint HEX or --server-data-dir DIR \
                     (the server prints its fingerprint and writes it to DIR/dev-cert.sha256)"
                        .into(),
                )
            })?,
        };
        // Parse now, so a typo is a usage error rather than a connection failure later.
        Trust::pinned_hex(&fingerprint).map_err(|e| {
            Failure::Usage(format!("bad --cert-fingerprint: {e}: expect 64 hex digits"))
        })?;
        let addr = resolve(&server)?;
        Ok(Target {
            server,
            addr,
            fingerprint,
        })
    }
}

fn read_fingerprint(dir: &Path) -> Result<String, Failure> {
    let path = dir.join("dev-cert.sha256");
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| {
            Failure::Usage(format!(
                "cannot read the fingerprint from {}: {e}: pass the server's --data-dir, or \
                 --cert-fingerprint HEX",
                path.display()
            ))
        })
}

fn resolve(server: &str) -> Result<SocketAddr, Failure> {
    match server.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| Failure::Unreachable {
            message: format!("{server} resolves to no address"),
            hint: "check --server".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Err(Failure::Usage(format!(
            "bad --server {server:?}: expect HOST:PORT, e.g. 127.0.0.1:4433"
        ))),
        Err(e) => Err(Failure::Unreachable {
            message: format!("cannot resolve {server}: {e}"),
            hint: "check --server and the network".into(),
        }),
    }
}

/// A started SDK client and its events, bound to a profile.
#[derive(Debug)]
pub struct Connection {
    /// The SDK handle.
    pub client: Client,
    events: Events,
    /// Update events that arrived while waiting for something else, oldest first.
    held: VecDeque<ClientEvent>,
    /// Owned here (not by the SDK) so `finish` can wait until the close has reached the server.
    endpoint: quinn::Endpoint,
    target: Target,
    request_timeout: Duration,
    /// For notes to people (text mode, stderr).
    out: Output,
}

impl Connection {
    /// Starts a client for `target`, resuming `profile`'s device when `resume` (tokens and cursor).
    pub fn start(
        global: &Global,
        target: &Target,
        profile: &Profile,
        device_name: &str,
        resume: bool,
    ) -> Result<Connection, Failure> {
        let trust = Trust::pinned_hex(&target.fingerprint)?;
        let mut config = ClientConfig::new(target.addr, trust);
        let endpoint = tern_sdk::shared_endpoint(target.addr)?;
        config.endpoint = Some(endpoint.clone());
        config.device_name = device_name.to_owned();
        config.app = format!("tern-cli/{}", env!("CARGO_PKG_VERSION"));
        config.request_timeout = global.request_timeout;
        // Quick retries: a command waits seconds, not minutes, for the server to appear.
        config.reconnect_min = Duration::from_millis(100);
        config.reconnect_max = Duration::from_secs(1);
        if resume {
            config.tokens = profile.tokens.clone();
            config.sync_state = profile.sync.clone();
        }
        let (client, events) = Client::start(config)?;
        Ok(Connection {
            client,
            events,
            held: VecDeque::new(),
            endpoint,
            target: target.clone(),
            request_timeout: global.request_timeout,
            out: Output::new(global.json),
        })
    }

    /// Waits until the client is connected (and, when resuming, authenticated), saving any
    /// refreshed tokens on the way. Ends in `Unreachable` after `timeout`.
    pub async fn wait_connected(
        &mut self,
        store: &ProfileStore,
        profile: &mut Profile,
        timeout: Duration,
    ) -> Result<Option<SessionInfo>, Failure> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_reason = None;
        loop {
            let event = match tokio::time::timeout_at(deadline, self.events.next()).await {
                Ok(Some(event)) => event,
                Ok(None) => return Err(Failure::Local("the SDK client stopped".into())),
                Err(_) => return Err(self.unreachable(timeout, last_reason)),
            };
            match event {
                ClientEvent::Connected { session } => return Ok(session),
                ClientEvent::ConnectFailed { reason } => last_reason = Some(reason),
                other => {
                    if let Some(update) = self.absorb(store, profile, other)? {
                        self.held.push_back(update);
                    }
                }
            }
        }
    }

    fn unreachable(&self, timeout: Duration, reason: Option<String>) -> Failure {
        let server = &self.target.server;
        let timeout = humantime::format_duration(timeout);
        match reason {
            Some(r) if r.contains("pinned fingerprint") => Failure::Unreachable {
                message: format!(
                    "{server} presented a certificate that does not match the pinned fingerprint"
                ),
                hint: "pass the fingerprint the server prints now (--cert-fingerprint HEX or \
                       --server-data-dir DIR); a server on a fresh data dir has a new certificate"
                    .into(),
            },
            reason => Failure::Unreachable {
                message: format!(
                    "cannot connect to {server} within {timeout}{}",
                    reason
                        .map(|r| format!(" (last attempt: {r})"))
                        .unwrap_or_default()
                ),
                hint: "check that tern-server is running there and --server is right, or raise \
                       --connect-timeout"
                    .into(),
            },
        }
    }

    /// Handles the bookkeeping events (tokens, session end) and hands back the rest.
    fn absorb(
        &self,
        store: &ProfileStore,
        profile: &mut Profile,
        event: ClientEvent,
    ) -> Result<Option<ClientEvent>, Failure> {
        match event {
            ClientEvent::TokensUpdated(tokens) => {
                if profile.tokens.is_some() {
                    profile.tokens = Some(tokens);
                    store.save(profile)?;
                }
                Ok(None)
            }
            ClientEvent::SessionEnded { code, reason } => {
                profile.forget_session();
                store.save(profile)?;
                Err(match code {
                    Some(code) => Failure::refused(code, &reason),
                    None => Failure::Local(format!("the session ended: {reason}")),
                })
            }
            ClientEvent::Disconnected { reason } => {
                // A long `tail` outlives connections; say why the stream paused.
                self.out.note(&format!(
                    "tern: connection to {} lost ({reason}); reconnecting",
                    self.target.server
                ));
                Ok(None)
            }
            ClientEvent::Connected { .. } | ClientEvent::ConnectFailed { .. } => Ok(None),
            update => Ok(Some(update)),
        }
    }

    /// The next update event (message, receipt, chat joined), with tokens saved on the way;
    /// `None` once the client has stopped.
    pub async fn next_update(
        &mut self,
        store: &ProfileStore,
        profile: &mut Profile,
    ) -> Result<Option<ClientEvent>, Failure> {
        if let Some(held) = self.held.pop_front() {
            return Ok(Some(held));
        }
        while let Some(event) = self.events.next().await {
            if let Some(update) = self.absorb(store, profile, event)? {
                return Ok(Some(update));
            }
        }
        Ok(None)
    }

    /// Runs one request, bounded by `--request-timeout` even where the SDK would retry forever
    /// (sends). Ends in `Unreachable` when the time is up.
    pub async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, tern_sdk::Error>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(result) => result.map_err(Failure::from),
            Err(_) => Err(Failure::timed_out(what)),
        }
    }

    /// Saves what the SDK reported meanwhile (tokens), then closes the connection cleanly, so the
    /// server frees it at once rather than at its idle timeout. The cursor is not saved here:
    /// only `tail` moves it, after printing (see `commands::tail`).
    pub async fn finish(
        mut self,
        store: &ProfileStore,
        profile: &mut Profile,
    ) -> Result<(), Failure> {
        while let Some(event) = self.events.try_next() {
            let _ = self.absorb(store, profile, event);
        }
        if profile.logged_in()
            && let Ok(snapshot) = self.client.snapshot().await
            && snapshot.tokens.is_some()
            && snapshot.tokens != profile.tokens
        {
            profile.tokens = snapshot.tokens;
            store.save(profile)?;
        }
        self.client.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        Ok(())
    }
}
