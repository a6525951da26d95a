//! One QUIC connection: the control stream's reader loop, its writer task, and the glue between
//! the pure session state machine and the services.
//!
//! Frames out go through one queue bounded in bytes ([`super::outbound`]) drained by the writer
//! task. Nothing waits for room: a response or update that does not fit sheds the client with
//! `SlowConsumer` (it reconnects and syncs), so the reader loop always sees close signals.
//!
//! Authentication registers the connection with its shard first and checks the device after, so
//! a revocation that commits at any moment either is seen by that check or finds the connection
//! registered and closes it: there is no window in which a revoked device stays connected.
//!
//! A connection accepted as 0.5-RTT ([`super::early`]) follows the early-data rule until its
//! handshake is confirmed: `Hello` and replay-safe requests run, the session goes live (the
//! registration above) only at confirmation, and the first other request stops the reader.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tern_protocol::codec::{self, FrameDecoder};
use tern_protocol::limits::{MAX_FRAME_LEN, MAX_IN_FLIGHT_REQUESTS, MAX_SYNC_PAGE};
use tern_protocol::session::{HELLO_TIMEOUT, ServerSession, SessionInput};
use tern_protocol::{
    DeviceId, ErrorBody, ErrorCode, Event, Frame, GoAway, GoAwayReason, Hello, PROTOCOL_VERSION,
    Request, ServerLimits, SessionInfo, SyncCursor, Welcome,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::admission::Admitted;
use super::datagram::{
    DATAGRAM_BURST, DATAGRAMS_PER_S, DatagramGate, DatagramSender, Inbound, MAX_TYPING_IN_FLIGHT,
};
use super::early::{self, Handshake};
use super::handshake::HandshakeKind;
use super::outbound::{self, Outbound, OutboundRx};
use crate::metrics::CloseLabels;
use crate::services::{Caller, ConnRef, Services, SessionChange};
use crate::shard::{ConnHandle, Shard};

/// How long a closing connection may take to flush what is queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves one accepted connection until it closes. `admitted` is `None` when the connection is
/// over a cap: it is then told to come back after `retry_after` and closed.
pub async fn serve(
    conn: Connection,
    handshake: Handshake,
    services: Arc<Services>,
    shard: Arc<Shard>,
    admitted: Option<Admitted>,
    retry_after: Duration,
) {
    let remote = conn.remote_address();
    let confirm_by = tokio::time::Instant::now() + early::CONFIRM_TIMEOUT;
    let result = tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()).await;
    let Some(_admitted) = admitted else {
        if let Ok(Ok((send, _recv))) = result {
            refuse_overloaded(&conn, send, retry_after).await;
        } else {
            close(&conn, ErrorCode::Overloaded, "overloaded");
        }
        return;
    };
    shard.open.fetch_add(1, Ordering::Relaxed);
    services
        .metrics
        .connections
        .get_or_create(&shard.label)
        .inc();
    match result {
        Ok(Ok((send, recv))) => {
            let pending = match handshake {
                Handshake::Confirmed => {
                    count_handshake(&conn, &services, &shard);
                    None
                }
                Handshake::Pending(accepted) => Some(accepted),
            };
            let mut c = ConnTask::new(conn.clone(), remote, services.clone(), shard.clone(), send);
            c.handshake = pending;
            c.confirm_by = confirm_by;
            c.run(recv).await;
        }
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "connection ended before its control stream")
        }
        Err(_) => close(
            &conn,
            ErrorCode::HandshakeRequired,
            "no control stream opened in time",
        ),
    }
    services
        .metrics
        .connections
        .get_or_create(&shard.label)
        .dec();
    shard.open.fetch_sub(1, Ordering::Relaxed);
}

/// Tells an over-cap client when to come back, in protocol terms, and closes.
async fn refuse_overloaded(conn: &Connection, mut send: SendStream, retry_after: Duration) {
    let go_away = Frame::GoAway(GoAway {
        reason: GoAwayReason::Overloaded,
        reconnect_after_ms: u32::try_from(retry_after.as_millis()).unwrap_or(u32::MAX),
    });
    let error = Frame::Error(ErrorBody::new(
        ErrorCode::Overloaded,
        "server overloaded; retry later",
    ));
    let mut bytes = Vec::new();
    if codec::encode(&go_away, &mut bytes).is_ok() && codec::encode(&error, &mut bytes).is_ok() {
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, async {
            let _ = send.write_all(&bytes).await;
            let _ = send.finish();
            let _ = send.stopped().await;
        })
        .await;
    }
    close(conn, ErrorCode::Overloaded, "overloaded");
}

/// Resolves when a pending handshake completes or fails (true), or at `deadline` (false);
/// never without one.
async fn until_handshake(
    handshake: &mut Option<quinn::ZeroRttAccepted>,
    deadline: tokio::time::Instant,
) -> bool {
    match handshake {
        // On a server the value says nothing (see `early::completed`).
        Some(accepted) => tokio::time::timeout_at(deadline, accepted).await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Counts a completed handshake by kind (`tern_tls_handshakes_total`).
fn count_handshake(conn: &Connection, services: &Services, shard: &Shard) {
    let labels = crate::metrics::TlsHandshakeLabels {
        shard: shard.label.shard.clone(),
        kind: HandshakeKind::of(conn).label().into(),
    };
    services.metrics.tls_handshakes.get_or_create(&labels).inc();
}

fn close(conn: &Connection, code: ErrorCode, reason: &str) {
    conn.close(VarInt::from(code.as_u16()), reason.as_bytes());
}

struct ConnTask {
    conn: Connection,
    remote: SocketAddr,
    /// An `Arc`: `Services` is ~460 bytes of handles, and every connection and every request
    /// in flight holds it.
    services: Arc<Services>,
    shard: Arc<Shard>,
    session: ServerSession,
    conn_id: u64,
    outbound: Option<Outbound>,
    writer: tokio::task::JoinHandle<()>,
    close_tx: watch::Sender<Option<ErrorCode>>,
    close_rx: watch::Receiver<Option<ErrorCode>>,
    in_flight: JoinSet<()>,
    /// Typing indicators from datagrams being processed (at most `MAX_TYPING_IN_FLIGHT`).
    typing: JoinSet<()>,
    registered: Option<SessionInfo>,
    /// Until the handshake is confirmed: resolves when it completes or fails.
    handshake: Option<quinn::ZeroRttAccepted>,
    /// When an unconfirmed handshake is given up on (`early::CONFIRM_TIMEOUT` after accept).
    confirm_by: tokio::time::Instant,
    /// The first frame that may not run before confirmation; nothing is read past it.
    held: Option<Frame>,
    /// An authenticated `Hello` answered before confirmation: the session goes live (is
    /// registered) at confirmation, with the pts its `Welcome` announced.
    live_pending: Option<(SessionInfo, u64)>,
    /// Media streams are accepted (the session is live and was granted stream credit).
    media_open: bool,
}

impl ConnTask {
    fn new(
        conn: Connection,
        remote: SocketAddr,
        services: Arc<Services>,
        shard: Arc<Shard>,
        send: SendStream,
    ) -> Self {
        let limits = shard.connection_limits();
        let (tx, rx) = outbound::channel(limits.anonymous_outbound_queue);
        let writer = tokio::spawn(write_loop(send, rx));
        let (close_tx, close_rx) = watch::channel(None);
        let conn_id = services.router.next_conn_id();
        shard.register_anonymous(ConnHandle {
            conn_id,
            device_id: DeviceId(0),
            outbound: tx.clone(),
            close: close_tx.clone(),
            datagrams: None,
        });
        ConnTask {
            conn,
            remote,
            services,
            shard,
            session: ServerSession::with_auth_timeout(Instant::now(), limits.auth_timeout),
            conn_id,
            outbound: Some(tx),
            writer,
            close_tx,
            close_rx,
            in_flight: JoinSet::new(),
            typing: JoinSet::new(),
            registered: None,
            handshake: None,
            confirm_by: tokio::time::Instant::now() + early::CONFIRM_TIMEOUT,
            held: None,
            live_pending: None,
            media_open: false,
        }
    }

    async fn run(&mut self, mut recv: RecvStream) {
        let mut decoder = FrameDecoder::new();
        let conn = self.conn.clone();
        let mut gate = DatagramGate::new(DATAGRAMS_PER_S, DATAGRAM_BURST, Instant::now());
        let mut datagrams_open = true;
        let fatal = loop {
            let deadline = self.session.poll_timeout();
            let wake = tokio::time::Instant::from_std(deadline.unwrap_or_else(Instant::now));
            tokio::select! {
                done = until_handshake(&mut self.handshake, self.confirm_by), if self.handshake.is_some() => {
                    self.handshake = None;
                    if !done {
                        // Early data whose handshake never completes (a replay, or a client
                        // whose packets stopped): what it was answered is all it gets.
                        break Some(ErrorBody::new(
                            ErrorCode::HandshakeRequired,
                            "TLS handshake not confirmed in time",
                        ));
                    }
                    if !early::completed(&conn) {
                        break None;
                    }
                    count_handshake(&conn, &self.services, &self.shard);
                    if let Some(err) = Box::pin(self.on_confirmed(&mut decoder)).await {
                        break Some(err);
                    }
                }
                chunk = recv.read_chunk(MAX_FRAME_LEN as usize, true), if self.held.is_none() => match chunk {
                    Ok(Some(chunk)) => {
                        decoder.extend(&chunk.bytes);
                        // Boxed: inline, the frame handlers' state would sit in every idle
                        // connection's task; one short-lived allocation per chunk read instead.
                        if let Some(err) = Box::pin(self.drain(&mut decoder)).await {
                            break Some(err);
                        }
                    }
                    Ok(None) => break None,
                    Err(e) => {
                        tracing::debug!(remote = %self.remote, error = %e, "control stream ended");
                        break None;
                    }
                },
                changed = self.close_rx.changed() => {
                    let code = if changed.is_ok() { *self.close_rx.borrow() } else { None };
                    if let Some(code) = code {
                        break Some(ErrorBody::new(code, "closed by the server"));
                    }
                }
                _ = tokio::time::sleep_until(wake), if deadline.is_some() => {
                    if let Err(v) = self.session.handle_timeout(Instant::now()) {
                        break Some(v.0);
                    }
                }
                Some(_) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {}
                Some(_) = self.typing.join_next(), if !self.typing.is_empty() => {}
                stream = conn.accept_bi(), if self.media_open => match stream {
                    Ok((send, recv)) => self.on_media_stream(send, recv),
                    Err(_) => self.media_open = false,
                },
                datagram = conn.read_datagram(), if datagrams_open => match datagram {
                    Ok(bytes) => self.on_datagram(&bytes, &mut gate),
                    // The connection is closing (the control stream will see it too).
                    Err(_) => datagrams_open = false,
                },
            }
        };
        let user = self.registered.take().map(|s| s.user_id);
        self.shard.unregister(user, self.conn_id);
        self.typing.abort_all();
        if user.is_some() {
            self.services.presence.disconnected(self.conn_ref());
        }
        match fatal {
            Some(error) => Box::pin(self.shutdown(error)).await,
            None => {
                self.outbound = None;
                self.in_flight.abort_all();
                self.writer.abort();
            }
        }
    }

    fn conn_ref(&self) -> ConnRef {
        ConnRef {
            shard: self.shard.index,
            conn_id: self.conn_id,
        }
    }

    /// A media stream: served on its own task; it ends by itself when the connection does
    /// (its reads fail), after committing what it received.
    fn on_media_stream(&mut self, send: SendStream, recv: RecvStream) {
        let Some(s) = self.session.session() else {
            return;
        };
        tokio::spawn(super::media::serve(
            send,
            recv,
            s,
            self.services.media.clone(),
        ));
    }

    /// One received QUIC datagram: admitted by the gate (authenticated, decodable, a client
    /// kind, within the rate) or dropped and counted. Never fatal.
    fn on_datagram(&mut self, bytes: &[u8], gate: &mut DatagramGate) {
        // Typing reaches other users: from early data (a session not live yet) it is dropped
        // like a datagram of an unauthenticated connection (`early`, rule 4).
        let session = self
            .session
            .session()
            .filter(|_| self.handshake.is_none() && self.live_pending.is_none());
        let label = &self.shard.label;
        let metrics = &self.services.metrics;
        match gate.admit(bytes, session.is_some(), Instant::now()) {
            Inbound::Dropped(reason) => metrics.datagram(label, "in", reason),
            Inbound::Typing { chat_id, typing } => {
                let Some(s) = session else { return };
                metrics.datagram(label, "in", "ok");
                let presence = &self.services.presence;
                if !presence.admit_typing(s.user_id, chat_id, typing) {
                    return;
                }
                if self.typing.len() >= MAX_TYPING_IN_FLIGHT {
                    metrics.typing("dropped_load");
                    return;
                }
                let presence = presence.clone();
                self.typing
                    .spawn(async move { presence.deliver_typing(s, chat_id, typing).await });
            }
        }
    }

    /// Sends a connection-level error, flushes, then closes with its code.
    async fn shutdown(&mut self, error: ErrorBody) {
        let code = error.code;
        tracing::debug!(remote = %self.remote, %error, "closing connection");
        let labels = CloseLabels {
            shard: self.shard.label.shard.clone(),
            code: format!("{code:?}"),
        };
        self.services.metrics.closes.get_or_create(&labels).inc();
        if let Ok(bytes) = codec::encode_to_vec(&Frame::Error(error.clone()))
            && let Some(tx) = &self.outbound
        {
            // A full queue (a slow consumer) gets no error frame; the close carries the code.
            let _ = tx.push(Bytes::from(bytes));
        }
        self.outbound = None;
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, async {
            while self.in_flight.join_next().await.is_some() {}
        })
        .await;
        self.in_flight.abort_all();
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, &mut self.writer).await;
        close(&self.conn, code, &error.message);
    }

    /// The handshake is confirmed: the session goes live if its `Hello` was answered early,
    /// then the held frame and whatever followed it run, in order.
    async fn on_confirmed(&mut self, decoder: &mut FrameDecoder) -> Option<ErrorBody> {
        if let Some((session, announced)) = self.live_pending.take()
            && let Err(e) = self.go_live(session, announced).await
        {
            return Some(e);
        }
        if let Some(frame) = self.held.take()
            && let Some(e) = self.handle(frame).await
        {
            return Some(e);
        }
        self.drain(decoder).await
    }

    /// Handles every complete frame in the decoder, stopping at the first one that must wait
    /// for the handshake ([`early`]). Returns a fatal error, if one occurred.
    async fn drain(&mut self, decoder: &mut FrameDecoder) -> Option<ErrorBody> {
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(e) => return Some(ErrorBody::new(e.code(), e.to_string())),
            };
            if self.handshake.is_some() && !early::may_run_early(&frame) {
                self.held = Some(frame);
                return None;
            }
            if let Some(e) = self.handle(frame).await {
                return Some(e);
            }
        }
    }

    /// Handles one frame. Returns a fatal error, if one occurred.
    async fn handle(&mut self, frame: Frame) -> Option<ErrorBody> {
        self.shard.series.frame_in(frame.kind());
        match self.session.handle_frame(frame, Instant::now()) {
            Err(violation) => Some(violation.0),
            // Boxed: the login path's state (auth, storage reads, a first sync) is large and
            // runs once per connection; inline, every idle connection's task would carry its
            // size for its whole life (see "Memory per connection" in BENCHMARKS.md).
            Ok(SessionInput::Hello(hello)) => Box::pin(self.on_hello(hello)).await.err(),
            Ok(SessionInput::Refused { req_id, error }) => {
                self.respond(req_id, Err(error));
                None
            }
            Ok(SessionInput::Request { req_id, body }) => self.on_request(req_id, body).await.err(),
        }
    }

    async fn on_hello(&mut self, hello: Hello) -> Result<(), ErrorBody> {
        let session = match &hello.auth {
            Some(token) => Some(self.services.auth.authenticate(token).await?),
            None => None,
        };
        let latest_pts = match session {
            Some(s) => Some(self.services.chat.latest_pts(s.user_id).await?),
            None => None,
        };
        self.services
            .metrics
            .handshakes
            .get_or_create(&self.shard.label)
            .inc();
        let welcome = Welcome {
            protocol_version: PROTOCOL_VERSION,
            server: format!("tern-server/{}", env!("CARGO_PKG_VERSION")),
            session,
            limits: ServerLimits::protocol_defaults(self.services.idle_timeout_ms),
            latest_pts,
            server_time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            features: self.services.chat.features(),
            social: self
                .services
                .social
                .features(self.services.presence.config()),
            media: self.services.media.limits(),
        };
        // Welcome goes first; live updates start only after it is queued.
        self.send_frame(&Frame::Welcome(welcome));
        if let (Some(s), Some(announced)) = (session, latest_pts) {
            if self.handshake.is_some() {
                // Early data: reads may be served now, but registering (live updates, the
                // device cap, presence) waits for the confirmed handshake (`early`, rule 1).
                self.session.authenticate(s);
                if let Some(outbound) = &self.outbound {
                    outbound.set_limit(self.shard.connection_limits().outbound_queue);
                }
                self.live_pending = Some((s, announced));
                return Ok(());
            }
            self.go_live(s, announced).await?;
        }
        Ok(())
    }

    /// Registers an authenticated session for live updates and pushes what was committed since
    /// its `Welcome` announced `announced`.
    async fn go_live(&mut self, s: SessionInfo, announced: u64) -> Result<(), ErrorBody> {
        self.authenticated(s).await?;
        // Updates committed between reading `latest_pts` and registering were neither
        // announced nor pushed: push them now so the client does not wait for the next one.
        let now = self.services.chat.latest_pts(s.user_id).await?;
        if now > announced {
            let page = self
                .services
                .chat
                .sync(s, SyncCursor { pts: announced }, MAX_SYNC_PAGE)
                .await?;
            for update in page.updates {
                self.send_frame(&Frame::Event(Event::Update(update)));
            }
        }
        Ok(())
    }

    /// Makes the session authenticated as `session`: registers the connection for live updates
    /// first, then checks the device again, so a revocation racing this login is never missed
    /// (see the module docs).
    async fn authenticated(&mut self, session: SessionInfo) -> Result<(), ErrorBody> {
        let Some(outbound) = self.outbound.clone() else {
            return Ok(());
        };
        self.shard.register(
            session.user_id,
            ConnHandle {
                conn_id: self.conn_id,
                device_id: session.device_id,
                outbound: outbound.clone(),
                close: self.close_tx.clone(),
                datagrams: Some(DatagramSender::new(self.conn.clone())),
            },
        );
        self.registered = Some(session);
        self.services.auth.check_session(session).await?;
        self.session.authenticate(session);
        // Online only once the device is known to be valid: a revoked device never flickers
        // online to watchers.
        self.services
            .presence
            .connected(self.conn_ref(), session.user_id);
        outbound.set_limit(self.shard.connection_limits().outbound_queue);
        self.grant_media_streams();
        Ok(())
    }

    /// Gives a live session its media stream credit and the receive window to fill them.
    fn grant_media_streams(&mut self) {
        let streams = self.services.media.limits().max_streams;
        if streams == 0 {
            return;
        }
        // The server only tunes the outbound queue; the windows are the defaults.
        let t = super::limits::TransportLimits::default();
        self.conn
            .set_max_concurrent_bi_streams(VarInt::from_u32(1 + streams));
        self.conn.set_receive_window(VarInt::from_u32(
            t.receive_window
                .saturating_add(streams.saturating_mul(t.stream_receive_window)),
        ));
        self.media_open = true;
    }

    /// Handles one request. Err is connection-fatal.
    async fn on_request(&mut self, req_id: u32, body: Request) -> Result<(), ErrorBody> {
        let caller = Caller {
            session: self.session.session(),
            addr: self.remote.ip(),
            conn: ConnRef {
                shard: self.shard.index,
                conn_id: self.conn_id,
            },
        };
        // Requests that change the session run inline so later frames see the new state
        // (boxed, like `Hello`: the OTP login's state would otherwise stay in every task).
        if caller.session.is_none() {
            return Box::pin(self.on_anonymous_request(req_id, caller, body)).await;
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT_REQUESTS as usize {
            let e = ErrorBody::new(ErrorCode::TooManyRequests, "too many requests in flight");
            self.respond(req_id, Err(e));
            return Ok(());
        }
        let services = self.services.clone();
        let shard = self.shard.clone();
        let Some(outbound) = self.outbound.clone() else {
            return Ok(());
        };
        let close = self.close_tx.clone();
        let watch = matches!(body, Request::WatchPresence { .. });
        self.in_flight.spawn(async move {
            let (result, _) = services.handle(&shard.series, caller, body).await;
            let frame = Frame::Response { req_id, result };
            if let Some(bytes) = encode(&frame) {
                shard.series.frame_out("response");
                if outbound.push(bytes).is_err() {
                    services
                        .metrics
                        .slow_consumers
                        .get_or_create(&shard.label)
                        .inc();
                    let _ = close.send(Some(ErrorCode::SlowConsumer));
                } else if watch {
                    // Presence events for this watch set may follow the snapshot now.
                    services.presence.watch_answered(caller.conn);
                }
            }
        });
        Ok(())
    }

    /// A request before authentication (OTP login, refresh): answered before the next frame.
    async fn on_anonymous_request(
        &mut self,
        req_id: u32,
        caller: Caller,
        body: Request,
    ) -> Result<(), ErrorBody> {
        let (result, change) = self.services.handle(&self.shard.series, caller, body).await;
        let login = match change {
            SessionChange::Authenticated(s) => Some(s),
            SessionChange::None => None,
        };
        self.respond(req_id, result);
        if let Some(s) = login {
            self.authenticated(s).await?;
        }
        Ok(())
    }

    fn respond(&mut self, req_id: u32, result: Result<tern_protocol::Response, ErrorBody>) {
        self.send_frame(&Frame::Response { req_id, result });
    }

    /// Queues a frame without waiting; a full queue sheds the client.
    fn send_frame(&mut self, frame: &Frame) {
        let (Some(tx), Some(bytes)) = (&self.outbound, encode(frame)) else {
            return;
        };
        self.shard.series.frame_out(frame.kind());
        if tx.push(bytes).is_err() {
            self.services
                .metrics
                .slow_consumers
                .get_or_create(&self.shard.label)
                .inc();
            let _ = self.close_tx.send(Some(ErrorCode::SlowConsumer));
        }
    }
}

/// Encodes a server frame. A response that cannot be encoded (it would exceed the frame limit)
/// becomes an `Internal` error response, so every request still gets exactly one answer.
fn encode(frame: &Frame) -> Option<Bytes> {
    match codec::encode_to_vec(frame) {
        Ok(b) => Some(Bytes::from(b)),
        Err(e) => {
            tracing::error!(error = %e, "a server frame did not encode");
            let Frame::Response { req_id, .. } = frame else {
                return None;
            };
            let fallback = Frame::Response {
                req_id: *req_id,
                result: Err(ErrorBody::new(
                    ErrorCode::Internal,
                    "the answer did not fit in a frame",
                )),
            };
            codec::encode_to_vec(&fallback).ok().map(Bytes::from)
        }
    }
}

/// Writes queued frames in order, every frame waiting at the time in one call: quinn takes
/// them under one lock and wakes its connection driver once, so they leave in as few packets as
/// fit them, not one wake-up (and often one packet) per frame.
async fn write_loop(mut send: SendStream, mut rx: OutboundRx) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 32).await > 0 {
        if send.write_all_chunks(&mut batch).await.is_err() {
            return;
        }
        batch.clear();
        // An idle connection keeps a few slots, not its largest batch.
        batch.shrink_to(4);
    }
    let _ = send.finish();
    let _ = send.stopped().await;
}
