//! The driver task: owns the connection, the outbox, the sync state and every in-flight request.
//!
//! One task, one loop: `run` connects, serves the link until it drops, backs off with jitter and
//! connects again, until the app closes the client or the session ends.
//!
//! This file holds that outer loop (connect, back off, reconnect, close) and the state every
//! part shares: the commands from [`Client`](crate::Client), the outbox entry, what is pending on
//! a link and why a link ended. The work on one link is split by concern:
//!
//! - [`connect`]: opening a link: the QUIC connection and its stream, the reader and writer
//!   tasks, the `Hello`/`Welcome` handshake, and which errors end the session for good.
//! - [`serve`]: a link that is up: the loop over frames, commands and ticks, the session coming
//!   up, and the update stream (live updates, sync pages and their holes, acks).
//! - [`requests`]: what waits for an answer: the outbox of sends, requests made offline, the
//!   answers to requests in flight, their deadlines, and failing them all when the client ends.

mod connect;
mod requests;
mod serve;
mod social;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_protocol::codec;
use tern_protocol::{
    ChatFeatures, ChatId, ClientMsgId, ErrorCode, Frame, MessageBody, Presence, Request, Response,
    Sent, SessionInfo, SocialFeatures, Tokens, UserId,
};
use tokio::sync::{mpsc, oneshot};

use crate::client::{ClientEvent, Snapshot};
use crate::config::ClientConfig;
use crate::error::Error;
use crate::state::{AckBatch, HoleGuard, SyncState};
/// A refresh is done before connecting when the access token expires within this margin.
const TOKEN_MARGIN_MS: u64 = 30_000;
/// Connect and handshake must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) enum Command {
    Request {
        body: Request,
        reply: oneshot::Sender<Result<Response, Error>>,
    },
    Send {
        chat_id: ChatId,
        body: MessageBody,
        client_msg_id: ClientMsgId,
        reply: oneshot::Sender<Result<Sent, Error>>,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
    /// Replace the presence watch list.
    Watch {
        users: Vec<UserId>,
        reply: oneshot::Sender<Result<Vec<Presence>, Error>>,
    },
    /// The app went to the foreground (true) or the background.
    Foreground(bool),
    /// This user is typing (or stopped) in a chat.
    Typing {
        chat_id: ChatId,
        typing: bool,
    },
    /// The live connection, for media streams: answered once the session is authenticated.
    Connection {
        reply: oneshot::Sender<quinn::Connection>,
    },
    Reconnect,
    Rebind,
    Close {
        reply: oneshot::Sender<()>,
    },
}

struct OutboxEntry {
    chat_id: ChatId,
    body: MessageBody,
    reply: Option<oneshot::Sender<Result<Sent, Error>>>,
    in_flight: bool,
    /// Retryable refusals (e.g. `RateLimited`) in a row; drives the backoff.
    refusals: u32,
    /// Not resent before this (after a retryable refusal).
    not_before: Option<Instant>,
}

impl OutboxEntry {
    fn new(
        chat_id: ChatId,
        body: MessageBody,
        reply: oneshot::Sender<Result<Sent, Error>>,
    ) -> Self {
        OutboxEntry {
            chat_id,
            body,
            reply: Some(reply),
            in_flight: false,
            refusals: 0,
            not_before: None,
        }
    }
}

enum Pending {
    Request {
        reply: oneshot::Sender<Result<Response, Error>>,
        deadline: Instant,
    },
    Send(ClientMsgId),
    Sync,
    Refresh,
    /// Answer ignored (acks, foreground, typing on the stream).
    Ack,
    /// A presence watch: the app's call waiting for its snapshot, or one restored after a
    /// reconnect (`None`: the snapshot becomes events).
    Watch(Option<oneshot::Sender<Result<Vec<Presence>, Error>>>),
}

/// Why a link ended.
enum LinkEnd {
    /// Reconnect after backoff (at least `retry_after`).
    Lost {
        reason: String,
        retry_after: Option<Duration>,
        was_up: bool,
    },
    /// Stop for good.
    SessionEnded {
        code: Option<ErrorCode>,
        reason: String,
    },
    /// The app closed the client.
    Closed(Option<oneshot::Sender<()>>),
}

/// What the reader task reports.
enum Inbound {
    Frame(Frame),
    /// A QUIC datagram payload.
    Datagram(Bytes),
    End {
        code: Option<ErrorCode>,
        reason: String,
    },
}

struct Link {
    out: mpsc::Sender<Bytes>,
    inbound: mpsc::Receiver<Inbound>,
    conn: quinn::Connection,
    pending: HashMap<u32, Pending>,
    /// When each in-flight request stops being waited for (every kind, so nothing the driver
    /// sends by itself, such as `Refresh` or `Sync`, can hang the link).
    deadlines: HashMap<u32, Instant>,
    timeout: Duration,
    next_req_id: u32,
    authenticated: bool,
    syncing: bool,
    gap: bool,
    go_away: Option<Duration>,
    /// Sync pages in a row that did not advance the cursor.
    holes: HoleGuard,
}

impl Link {
    fn send(&mut self, frame: &Frame) -> bool {
        match codec::encode_to_vec(frame) {
            Ok(b) => self.out.try_send(Bytes::from(b)).is_ok(),
            Err(_) => false,
        }
    }

    fn request(&mut self, body: Request, pending: Pending) -> bool {
        self.next_req_id = self.next_req_id.wrapping_add(1);
        let req_id = self.next_req_id;
        let ok = self.send(&Frame::Request { req_id, body });
        if ok {
            let deadline = match &pending {
                Pending::Request { deadline, .. } => *deadline,
                _ => Instant::now() + self.timeout,
            };
            self.pending.insert(req_id, pending);
            self.deadlines.insert(req_id, deadline);
        }
        ok
    }
}

/// A request made while offline: sent once a connection is up, unless its deadline passes.
type Waiting = (Request, oneshot::Sender<Result<Response, Error>>, Instant);

pub(crate) struct Driver {
    cfg: ClientConfig,
    endpoint: quinn::Endpoint,
    own_endpoint: bool,
    client_cfg: quinn::ClientConfig,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<ClientEvent>,
    tokens: Option<Tokens>,
    session: Option<SessionInfo>,
    sync: SyncState,
    outbox: BTreeMap<ClientMsgId, OutboxEntry>,
    waiting: VecDeque<Waiting>,
    /// Media calls waiting for a live connection.
    conn_waiters: Vec<oneshot::Sender<quinn::Connection>>,
    connected: bool,
    /// From the last `Welcome`.
    features: Option<ChatFeatures>,
    /// Social limits from the last `Welcome`.
    social_features: Option<SocialFeatures>,
    /// Presence watch, foreground flag and typing, kept across links.
    social: social::SocialState,
    /// Delivery acks not sent yet: batched for `ack_delay`, carried over a reconnect (the
    /// messages they cover will not come again).
    acks: AckBatch,
    /// When the batched acks go out.
    ack_due: Option<tokio::time::Instant>,
    /// Connections whose `Hello` the server took as 0-RTT early data.
    zero_rtt_accepted: u64,
    /// Connections that offered 0-RTT and were refused (the `Hello` went again in 1-RTT).
    zero_rtt_rejected: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Driver {
    pub(crate) fn new(
        cfg: ClientConfig,
        commands: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedSender<ClientEvent>,
    ) -> Result<Self, Error> {
        let mut client_cfg =
            crate::tls::client_config_with(&cfg.trust, &cfg.sessions, cfg.zero_rtt)?;
        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(cfg.keep_alive))
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(Duration::from_secs(30))
                    .map_err(|e| Error::Config(e.to_string()))?,
            ))
            .max_concurrent_bidi_streams(0u32.into())
            .max_concurrent_uni_streams(0u32.into())
            // Typing arrives as datagrams; a few KiB hold many (each is tens of bytes), and
            // `None` makes the server fall back to the stream.
            .datagram_receive_buffer_size(cfg.datagrams.then_some(64 * 1024));
        client_cfg.transport_config(Arc::new(transport));
        let (endpoint, own_endpoint) = match &cfg.endpoint {
            Some(e) => (e.clone(), false),
            None => (crate::config::shared_endpoint(cfg.server)?, true),
        };
        Ok(Driver {
            own_endpoint,
            client_cfg,
            tokens: cfg.tokens.clone(),
            sync: cfg.sync_state.clone(),
            cfg,
            endpoint,
            commands,
            events,
            session: None,
            outbox: BTreeMap::new(),
            waiting: VecDeque::new(),
            conn_waiters: Vec::new(),
            connected: false,
            features: None,
            social_features: None,
            social: social::SocialState::default(),
            acks: AckBatch::default(),
            ack_due: None,
            zero_rtt_accepted: 0,
            zero_rtt_rejected: 0,
        })
    }

    fn emit(&self, event: ClientEvent) {
        let _ = self.events.send(event);
    }

    pub(crate) async fn run(mut self) {
        let mut attempt: u32 = 0;
        let close_reply = loop {
            let end = self.connect_and_serve().await;
            self.connected = false;
            match end {
                LinkEnd::Closed(reply) => break reply,
                LinkEnd::SessionEnded { code, reason } => {
                    self.emit(ClientEvent::SessionEnded {
                        code,
                        reason: reason.clone(),
                    });
                    self.fail_all(&reason);
                    // Keep answering snapshots until the app closes us, but nothing else.
                    break self.drain_until_close(&reason).await;
                }
                LinkEnd::Lost {
                    reason,
                    retry_after,
                    was_up,
                } => {
                    tracing::debug!(%reason, "connection lost");
                    if was_up {
                        attempt = 0;
                        self.emit(ClientEvent::Disconnected { reason });
                    } else {
                        self.emit(ClientEvent::ConnectFailed { reason });
                    }
                    // A server hint (GoAway, Overloaded) is honoured with jitter so clients spread out.
                    let hinted = retry_after
                        .unwrap_or_default()
                        .mul_f64(1.0 + rand::random::<f64>() / 2.0);
                    let delay = self.backoff(attempt).max(hinted);
                    attempt = attempt.saturating_add(1);
                    if let Some(reply) = self.idle(delay).await {
                        break reply;
                    }
                }
            }
        };
        self.fail_all("the client was closed");
        if self.own_endpoint {
            self.endpoint.close(0u32.into(), b"closed");
        }
        if let Some(reply) = close_reply {
            let _ = reply.send(());
        }
    }

    fn rebind(&mut self) {
        let bind: SocketAddr = if self.cfg.server.is_ipv6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([0u8; 4], 0))
        };
        match std::net::UdpSocket::bind(bind).and_then(|s| self.endpoint.rebind(s)) {
            Ok(()) => tracing::debug!("rebound to a new local socket"),
            Err(e) => tracing::warn!(error = %e, "rebinding failed"),
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .cfg
            .reconnect_min
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cfg.reconnect_max);
        let jitter = 0.5 + rand::random::<f64>();
        base.mul_f64(jitter)
    }

    /// Waits out a backoff while still taking commands. `Some` when the app closed the client.
    async fn idle(&mut self, delay: Duration) -> Option<Option<oneshot::Sender<()>>> {
        let until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return None,
                cmd = self.commands.recv() => match cmd {
                    None => return Some(None),
                    Some(Command::Close { reply }) => return Some(Some(reply)),
                    Some(Command::Reconnect) => return None,
                    Some(Command::Rebind) => self.rebind(),
                    Some(other) => self.queue_offline(other),
                }
            }
        }
    }

    async fn drain_until_close(&mut self, reason: &str) -> Option<oneshot::Sender<()>> {
        while let Some(cmd) = self.commands.recv().await {
            match cmd {
                Command::Close { reply } => return Some(reply),
                Command::Snapshot { reply } => {
                    let _ = reply.send(self.snapshot());
                }
                Command::Request { reply, .. } => {
                    let _ = reply.send(Err(Error::Closed(reason.into())));
                }
                Command::Send { reply, .. } => {
                    let _ = reply.send(Err(Error::Closed(reason.into())));
                }
                Command::Watch { reply, .. } => {
                    let _ = reply.send(Err(Error::Closed(reason.into())));
                }
                Command::Reconnect
                | Command::Rebind
                | Command::Connection { .. }
                | Command::Foreground(_)
                | Command::Typing { .. } => {}
            }
        }
        None
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            session: self.session,
            tokens: self.tokens.clone(),
            sync: self.sync.clone(),
            outbox_len: self.outbox.len(),
            connected: self.connected,
            features: self.features,
            social: self.social_features,
            typing_datagrams_in: self.social.datagrams_in,
            typing_out: self.social.typing_out,
            zero_rtt: (self.zero_rtt_accepted, self.zero_rtt_rejected),
        }
    }
}
