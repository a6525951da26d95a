//! The driver task: owns the connection, the outbox, the sync state and every in-flight request.
//!
//! One task, one loop: `run` connects, serves the link until it drops, backs off with jitter and
//! connects again, until the app closes the client or the session ends.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_protocol::codec::{self, FrameDecoder};
use tern_protocol::{
    ChatFeatures, ChatId, ClientInfo, ClientMsgId, ErrorBody, ErrorCode, Event, Frame, Hello,
    MessageBody, PROTOCOL_VERSION, Request, Response, Sent, SessionInfo, Tokens, Update,
    UpdateKind,
};
use tokio::sync::{mpsc, oneshot};

use crate::client::{ClientEvent, Snapshot};
use crate::config::ClientConfig;
use crate::error::Error;
use crate::state::{AckBatch, HoleGuard, PageStep, SyncState, Verdict, refusal_backoff};

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
    Ack,
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
    acks: AckBatch,
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
    connected: bool,
    /// From the last `Welcome`.
    features: Option<ChatFeatures>,
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
        let mut client_cfg = crate::tls::client_config(&cfg.trust)?;
        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(cfg.keep_alive))
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(Duration::from_secs(30))
                    .map_err(|e| Error::Config(e.to_string()))?,
            ))
            .max_concurrent_bidi_streams(0u32.into())
            .max_concurrent_uni_streams(0u32.into());
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
            connected: false,
            features: None,
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
                Command::Reconnect | Command::Rebind => {}
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
        }
    }

    fn queue_offline(&mut self, cmd: Command) {
        match cmd {
            Command::Request { body, reply } => {
                self.waiting
                    .push_back((body, reply, Instant::now() + self.cfg.request_timeout));
            }
            Command::Send {
                chat_id,
                body,
                client_msg_id,
                reply,
            } => {
                self.outbox
                    .insert(client_msg_id, OutboxEntry::new(chat_id, body, reply));
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
            }
            Command::Reconnect | Command::Rebind | Command::Close { .. } => {}
        }
    }

    fn fail_all(&mut self, reason: &str) {
        for (_, entry) in std::mem::take(&mut self.outbox) {
            if let Some(r) = entry.reply {
                let _ = r.send(Err(Error::Closed(reason.into())));
            }
        }
        for (_, reply, _) in self.waiting.drain(..) {
            let _ = reply.send(Err(Error::Closed(reason.into())));
        }
    }

    async fn open_link(&mut self) -> Result<Link, String> {
        let connecting = self
            .endpoint
            .connect_with(
                self.client_cfg.clone(),
                self.cfg.server,
                &self.cfg.server_name,
            )
            .map_err(|e| format!("connect: {e}"))?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| format!("handshake: {e}"))?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| format!("open stream: {e}"))?;
        let (out_tx, out_rx) = mpsc::channel(4096);
        let (in_tx, in_rx) = mpsc::channel(1024);
        tokio::spawn(write_loop(send, out_rx));
        tokio::spawn(read_loop(recv, conn.clone(), in_tx));
        Ok(Link {
            out: out_tx,
            inbound: in_rx,
            conn,
            pending: HashMap::new(),
            deadlines: HashMap::new(),
            timeout: self.cfg.request_timeout,
            next_req_id: 0,
            authenticated: false,
            syncing: false,
            gap: false,
            go_away: None,
            acks: AckBatch::default(),
            holes: HoleGuard::default(),
        })
    }

    async fn connect_and_serve(&mut self) -> LinkEnd {
        let mut link = match self.open_link().await {
            Ok(l) => l,
            Err(reason) => {
                return LinkEnd::Lost {
                    reason,
                    retry_after: None,
                    was_up: false,
                };
            }
        };
        let access = self
            .tokens
            .as_ref()
            .filter(|t| t.access_expires_at_ms > now_ms() + TOKEN_MARGIN_MS)
            .map(|t| t.access_token.clone());
        let sent_auth = access.is_some();
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            client: ClientInfo {
                name: self.cfg.app.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
                platform: std::env::consts::OS.into(),
            },
            auth: access,
            resume: self.tokens.as_ref().map(|_| self.sync.cursor),
        };
        link.send(&Frame::Hello(hello));
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT.min(self.cfg.request_timeout);
        let mut hint = None;
        let welcome = loop {
            let lost = |reason: String, retry_after| LinkEnd::Lost {
                reason,
                retry_after,
                was_up: false,
            };
            match tokio::time::timeout_at(deadline, link.inbound.recv()).await {
                Ok(Some(Inbound::Frame(Frame::Welcome(w)))) => break w,
                // An overloaded server says when to come back before it refuses us.
                Ok(Some(Inbound::Frame(Frame::GoAway(g)))) => {
                    hint = Some(Duration::from_millis(u64::from(g.reconnect_after_ms)));
                }
                Ok(Some(Inbound::Frame(Frame::Error(e)))) => {
                    return match self.on_error(e, sent_auth, false) {
                        LinkEnd::Lost {
                            reason,
                            retry_after,
                            was_up,
                        } => LinkEnd::Lost {
                            reason,
                            retry_after: retry_after.or(hint),
                            was_up,
                        },
                        other => other,
                    };
                }
                Ok(Some(Inbound::End { code, reason })) => {
                    return match self.on_end(code, reason, false) {
                        LinkEnd::Lost { reason, .. } => lost(reason, hint),
                        other => other,
                    };
                }
                Ok(Some(Inbound::Frame(other))) => {
                    return lost(format!("expected Welcome, got {other:?}"), hint);
                }
                Ok(None) => return lost("connection closed".into(), hint),
                Err(_) => return lost("no Welcome in time".into(), hint),
            }
        };
        self.connected = true;
        self.features = Some(welcome.features);
        if let Some(session) = welcome.session {
            self.on_authenticated(&mut link, session, welcome.latest_pts);
        } else if let Some(t) = self.tokens.clone() {
            link.request(
                Request::Refresh {
                    refresh_token: t.refresh_token,
                },
                Pending::Refresh,
            );
        } else {
            self.emit(ClientEvent::Connected { session: None });
            self.flush_waiting(&mut link);
        }
        self.serve(link).await
    }

    fn on_error(&mut self, e: ErrorBody, sent_auth: bool, was_up: bool) -> LinkEnd {
        match e.code {
            ErrorCode::TokenExpired | ErrorCode::InvalidToken
                if sent_auth && self.tokens.is_some() =>
            {
                // Force a refresh on the next connection.
                if let Some(t) = &mut self.tokens {
                    t.access_expires_at_ms = 0;
                }
                LinkEnd::Lost {
                    reason: e.to_string(),
                    retry_after: Some(Duration::ZERO),
                    was_up,
                }
            }
            ErrorCode::DeviceRevoked
            | ErrorCode::RefreshReused
            | ErrorCode::UnsupportedVersion
            | ErrorCode::InvalidToken => LinkEnd::SessionEnded {
                code: Some(e.code),
                reason: e.message,
            },
            _ => LinkEnd::Lost {
                reason: e.to_string(),
                retry_after: None,
                was_up,
            },
        }
    }

    fn on_end(&mut self, code: Option<ErrorCode>, reason: String, was_up: bool) -> LinkEnd {
        match code {
            Some(c @ (ErrorCode::DeviceRevoked | ErrorCode::RefreshReused)) => {
                LinkEnd::SessionEnded {
                    code: Some(c),
                    reason,
                }
            }
            _ => LinkEnd::Lost {
                reason,
                retry_after: None,
                was_up,
            },
        }
    }

    fn on_authenticated(&mut self, link: &mut Link, session: SessionInfo, latest_pts: Option<u64>) {
        link.authenticated = true;
        self.session = Some(session);
        self.emit(ClientEvent::Connected {
            session: Some(session),
        });
        if let Some(head) = latest_pts.filter(|&p| p < self.sync.cursor.pts) {
            self.reset_sync(Some(head));
        }
        if latest_pts.is_none_or(|p| p != self.sync.cursor.pts) {
            link.gap = true;
            self.request_sync(link);
        }
        for (cmid, entry) in self.outbox.iter_mut() {
            entry.in_flight = false;
            let body = Request::SendMessage {
                chat_id: entry.chat_id,
                client_msg_id: *cmid,
                body: entry.body.clone(),
            };
            if link.request(body, Pending::Send(*cmid)) {
                entry.in_flight = true;
            }
        }
        self.flush_waiting(link);
    }

    fn flush_waiting(&mut self, link: &mut Link) {
        while let Some((body, reply, deadline)) = self.waiting.pop_front() {
            if !link.request(body, Pending::Request { reply, deadline }) {
                break;
            }
        }
    }

    fn request_sync(&mut self, link: &mut Link) {
        if !link.syncing {
            link.gap = false;
            let body = Request::Sync {
                after: self.sync.cursor,
                limit: self.cfg.sync_page,
            };
            link.syncing = link.request(body, Pending::Sync);
        }
    }

    async fn serve(&mut self, mut link: Link) -> LinkEnd {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let end = loop {
            tokio::select! {
                inbound = link.inbound.recv() => match inbound {
                    Some(Inbound::Frame(frame)) => {
                        if let Some(end) = self.on_frame(&mut link, frame) {
                            break end;
                        }
                        // Drain what else has arrived before acknowledging, to batch acks.
                        while let Ok(next) = link.inbound.try_recv() {
                            match next {
                                Inbound::Frame(f) => {
                                    if let Some(end) = self.on_frame(&mut link, f) {
                                        return self.finish(link, end);
                                    }
                                }
                                Inbound::End { code, reason } => return self.finish_end(link, code, reason),
                            }
                        }
                        self.flush_acks(&mut link);
                    }
                    Some(Inbound::End { code, reason }) => return self.finish_end(link, code, reason),
                    None => break LinkEnd::Lost { reason: "reader stopped".into(), retry_after: None, was_up: true },
                },
                cmd = self.commands.recv() => match cmd {
                    None => break LinkEnd::Closed(None),
                    Some(Command::Close { reply }) => break LinkEnd::Closed(Some(reply)),
                    Some(Command::Reconnect) => break LinkEnd::Lost { reason: "reconnect requested".into(), retry_after: Some(Duration::ZERO), was_up: true },
                    Some(Command::Rebind) => self.rebind(),
                    Some(Command::Snapshot { reply }) => { let _ = reply.send(self.snapshot()); }
                    Some(Command::Request { body, reply }) => {
                        let deadline = Instant::now() + self.cfg.request_timeout;
                        if !link.request(body, Pending::Request { reply, deadline }) {
                            break LinkEnd::Lost { reason: "send queue full".into(), retry_after: None, was_up: true };
                        }
                    }
                    Some(Command::Send { chat_id, body, client_msg_id, reply }) => {
                        let mut entry = OutboxEntry::new(chat_id, body.clone(), reply);
                        if link.authenticated {
                            let req = Request::SendMessage { chat_id, client_msg_id, body };
                            entry.in_flight = link.request(req, Pending::Send(client_msg_id));
                        }
                        self.outbox.insert(client_msg_id, entry);
                    }
                },
                _ = tick.tick() => {
                    if let Some(reason) = self.expire_requests(&mut link) {
                        break LinkEnd::Lost {
                            reason: reason.into(),
                            retry_after: None,
                            was_up: true,
                        };
                    }
                    self.retry_outbox(&mut link);
                }
            }
        };
        self.finish(link, end)
    }

    fn finish_end(&mut self, link: Link, code: Option<ErrorCode>, reason: String) -> LinkEnd {
        let end = self.on_end(code, reason, true);
        self.finish(link, end)
    }

    /// Fails what was in flight on the link (sends go back to the outbox) and closes it.
    fn finish(&mut self, mut link: Link, end: LinkEnd) -> LinkEnd {
        for (_, p) in link.pending.drain() {
            if let Pending::Request { reply, .. } = p {
                let _ = reply.send(Err(Error::Disconnected));
            }
        }
        for entry in self.outbox.values_mut() {
            entry.in_flight = false;
        }
        link.conn.close(0u32.into(), b"bye");
        match end {
            LinkEnd::Lost {
                reason,
                retry_after,
                was_up,
            } => LinkEnd::Lost {
                reason,
                retry_after: retry_after.or(link.go_away),
                was_up,
            },
            other => other,
        }
    }

    /// Gives up on requests past their deadline: the app's requests fail with
    /// [`Error::Timeout`], a send goes back to the outbox (retried with the same id), a lost ack
    /// is forgotten. Returns why the link must be dropped, when it must: a timed-out `Refresh` or
    /// `Sync` leaves the session half set up, and an unauthenticated request (login, refresh) may
    /// have logged the connection in on the server anyway, so its state is unknown. A new
    /// connection starts over; a refresh retried there gets the same new tokens (the server's
    /// grace window).
    fn expire_requests(&mut self, link: &mut Link) -> Option<&'static str> {
        let now = Instant::now();
        let expired: Vec<u32> = link
            .deadlines
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut restart = None;
        for id in expired {
            link.deadlines.remove(&id);
            match link.pending.remove(&id) {
                Some(Pending::Request { reply, .. }) => {
                    let _ = reply.send(Err(Error::Timeout));
                    if !link.authenticated {
                        restart = Some("an unauthenticated request timed out");
                    }
                }
                Some(Pending::Send(cmid)) => {
                    if let Some(entry) = self.outbox.get_mut(&cmid) {
                        entry.in_flight = false;
                    }
                }
                Some(Pending::Refresh) => restart = Some("refresh timed out"),
                Some(Pending::Sync) => restart = Some("sync timed out"),
                Some(Pending::Ack) | None => {}
            }
        }
        restart
    }

    fn retry_outbox(&mut self, link: &mut Link) {
        if !link.authenticated {
            return;
        }
        let now = Instant::now();
        let due = |e: &OutboxEntry| !e.in_flight && e.not_before.is_none_or(|t| t <= now);
        for (cmid, entry) in self.outbox.iter_mut().filter(|(_, e)| due(e)) {
            let req = Request::SendMessage {
                chat_id: entry.chat_id,
                client_msg_id: *cmid,
                body: entry.body.clone(),
            };
            entry.in_flight = link.request(req, Pending::Send(*cmid));
        }
    }

    fn flush_acks(&mut self, link: &mut Link) {
        for (chat_id, upto_seq) in link.acks.take() {
            link.request(Request::Ack { chat_id, upto_seq }, Pending::Ack);
        }
    }

    fn on_update(&mut self, link: &mut Link, update: Update) {
        match self.sync.apply(&update) {
            Verdict::Duplicate => {}
            Verdict::Gap => {
                link.gap = true;
                self.request_sync(link);
            }
            Verdict::Apply => {
                let pts = update.pts;
                match update.kind {
                    UpdateKind::Message(message) => {
                        let own = self.session.is_some_and(|s| s.user_id == message.sender);
                        link.acks.on_message(&message, own);
                        self.emit(ClientEvent::Message { message, own, pts });
                    }
                    UpdateKind::Receipt(r) => self.emit(ClientEvent::Receipt(r)),
                    UpdateKind::ChatJoined(c) => self.emit(ClientEvent::ChatJoined(c)),
                    UpdateKind::ChatLeft { chat_id, at_seq } => {
                        link.acks.on_left(chat_id);
                        self.emit(ClientEvent::ChatLeft { chat_id, at_seq })
                    }
                    UpdateKind::HiddenForMe { chat_id, seqs } => {
                        self.emit(ClientEvent::HiddenForMe { chat_id, seqs })
                    }
                }
            }
        }
    }

    /// Drops the sync state because the server's log is behind it, and tells the app.
    fn reset_sync(&mut self, server_latest: Option<u64>) {
        let cursor_was = self.sync.cursor.pts;
        tracing::warn!(
            cursor_was,
            ?server_latest,
            "server log is behind the cursor: resyncing from scratch"
        );
        self.sync.reset();
        self.emit(ClientEvent::SyncReset {
            cursor_was,
            server_latest,
        });
    }

    /// Applies a sync page; a page that does not advance the cursor (a hole in the log) is
    /// asked for again a bounded number of times, then the hole is skipped and reported.
    fn on_sync_page(&mut self, link: &mut Link, page: tern_protocol::SyncPage) {
        let before = self.sync.cursor.pts;
        let first = page.updates.first().map(|u| u.pts);
        // Still syncing while the page is applied: a gap inside it must not send a request
        // of its own (that was the endless loop on a hole).
        for u in &page.updates {
            self.on_update(link, u.clone());
        }
        link.syncing = false;
        let step = link
            .holes
            .after_page(before, &self.sync, first, page.cursor.pts, page.has_more);
        match step {
            PageStep::Progress => {
                // Sync again if the log goes on, or a live update showed a gap meanwhile.
                if page.has_more || link.gap {
                    self.request_sync(link);
                }
            }
            PageStep::Retry => self.request_sync(link),
            PageStep::SkipHole { to } => {
                tracing::warn!(
                    after = before,
                    missing_to = to,
                    "skipping a hole in the update log"
                );
                self.emit(ClientEvent::SyncHole {
                    after: before,
                    missing_to: to,
                });
                self.sync.skip_to(to);
                link.syncing = true;
                for u in page.updates {
                    self.on_update(link, u);
                }
                link.syncing = false;
                if page.has_more || link.gap {
                    self.request_sync(link);
                }
            }
            PageStep::GiveUp => {
                link.gap = false;
                self.emit(ClientEvent::SyncStalled { cursor: before });
            }
        }
    }

    fn on_frame(&mut self, link: &mut Link, frame: Frame) -> Option<LinkEnd> {
        match frame {
            Frame::Response { req_id, result } => self.on_response(link, req_id, result),
            Frame::Event(Event::Update(u)) => {
                self.on_update(link, u);
                None
            }
            Frame::GoAway(g) => {
                link.go_away = Some(Duration::from_millis(u64::from(g.reconnect_after_ms)));
                None
            }
            Frame::Error(e) => Some(self.on_error(e, link.authenticated, true)),
            other => Some(LinkEnd::Lost {
                reason: format!("unexpected frame {other:?}"),
                retry_after: None,
                was_up: true,
            }),
        }
    }

    /// New tokens and an authenticated session after `VerifyOtp` or `Refresh`.
    fn on_logged_in(&mut self, link: &mut Link, grant: &tern_protocol::LoginGrant) {
        self.tokens = Some(grant.tokens.clone());
        self.emit(ClientEvent::TokensUpdated(grant.tokens.clone()));
        let session = SessionInfo {
            user_id: grant.user_id,
            device_id: grant.device_id,
        };
        self.on_authenticated(link, session, None);
    }

    fn on_response(
        &mut self,
        link: &mut Link,
        req_id: u32,
        result: Result<Response, ErrorBody>,
    ) -> Option<LinkEnd> {
        let pending = link.pending.remove(&req_id)?;
        link.deadlines.remove(&req_id);
        match pending {
            Pending::Request { reply, .. } => {
                if let Ok(Response::LoggedIn(g)) = &result {
                    self.on_logged_in(link, g);
                }
                let _ = reply.send(result.map_err(Error::Server));
            }
            Pending::Refresh => match result {
                Ok(Response::LoggedIn(g)) => self.on_logged_in(link, &g),
                Ok(other) => {
                    return Some(LinkEnd::Lost {
                        reason: format!("bad refresh answer {other:?}"),
                        retry_after: None,
                        was_up: true,
                    });
                }
                Err(e) if e.code.is_retryable() => {
                    return Some(LinkEnd::Lost {
                        reason: e.to_string(),
                        retry_after: None,
                        was_up: true,
                    });
                }
                Err(e) => {
                    return Some(LinkEnd::SessionEnded {
                        code: Some(e.code),
                        reason: e.message,
                    });
                }
            },
            Pending::Send(cmid) => match result {
                Ok(Response::Sent(sent)) => {
                    if let Some(r) = self.outbox.remove(&cmid).and_then(|e| e.reply) {
                        let _ = r.send(Ok(sent));
                    }
                }
                Err(e) if e.code.is_retryable() => {
                    if let Some(entry) = self.outbox.get_mut(&cmid) {
                        entry.in_flight = false;
                        entry.not_before =
                            Some(Instant::now() + refusal_backoff(entry.refusals, rand::random()));
                        entry.refusals = entry.refusals.saturating_add(1);
                    }
                }
                other => {
                    if let Some(r) = self.outbox.remove(&cmid).and_then(|e| e.reply) {
                        let err = match other {
                            Err(e) => Error::Server(e),
                            Ok(resp) => Error::Protocol(format!("unexpected send answer {resp:?}")),
                        };
                        let _ = r.send(Err(err));
                    }
                }
            },
            Pending::Sync => match result {
                Ok(Response::SyncPage(page)) => self.on_sync_page(link, page),
                Err(e) if e.code == ErrorCode::CursorAhead => {
                    link.syncing = false;
                    self.reset_sync(None);
                    self.request_sync(link);
                }
                Ok(_) | Err(_) => {
                    link.syncing = false;
                    return Some(LinkEnd::Lost {
                        reason: "sync failed".into(),
                        retry_after: None,
                        was_up: true,
                    });
                }
            },
            Pending::Ack => {}
        }
        None
    }
}

async fn write_loop(mut send: quinn::SendStream, mut rx: mpsc::Receiver<Bytes>) {
    let mut batch = Vec::with_capacity(32);
    while rx.recv_many(&mut batch, 32).await > 0 {
        for b in batch.drain(..) {
            if send.write_all(&b).await.is_err() {
                return;
            }
        }
    }
    let _ = send.finish();
}

async fn read_loop(
    mut recv: quinn::RecvStream,
    conn: quinn::Connection,
    tx: mpsc::Sender<Inbound>,
) {
    let mut decoder = FrameDecoder::new();
    loop {
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => {
                decoder.extend(&chunk.bytes);
                loop {
                    match decoder.next_frame() {
                        Ok(Some(frame)) => {
                            if tx.send(Inbound::Frame(frame)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tx
                                .send(Inbound::End {
                                    code: Some(e.code()),
                                    reason: e.to_string(),
                                })
                                .await;
                            return;
                        }
                    }
                }
            }
            Ok(None) | Err(_) => {
                let (code, reason) = match conn.closed().await {
                    quinn::ConnectionError::ApplicationClosed(c) => {
                        let code = u16::try_from(c.error_code.into_inner())
                            .ok()
                            .map(ErrorCode::from);
                        (code, String::from_utf8_lossy(&c.reason).into_owned())
                    }
                    other => (None, other.to_string()),
                };
                let _ = tx.send(Inbound::End { code, reason }).await;
                return;
            }
        }
    }
}
