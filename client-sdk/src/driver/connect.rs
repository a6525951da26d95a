//! Opening a link: connect over QUIC, open the one stream, start its reader and writer tasks,
//! then the `Hello`/`Welcome` handshake (with a refresh first when the access token is about to
//! expire).
//!
//! With a resumable TLS session and `ClientConfig::zero_rtt`, the `Hello` is written as 0-RTT
//! early data: it is the only frame written before the handshake completes (the server answers
//! it at once and holds every state-changing request until the handshake is confirmed; see
//! docs/protocol.md, "0-RTT and resumption"). A server that refuses the early data discards it,
//! and the `Hello` is written again on a fresh stream once the handshake is done.
//!
//! It exists apart from serving because everything here happens before the link is up: a
//! failure is a failed connect (`was_up: false`), and the server's refusals decide whether to try
//! again or end the session for good ([`Driver::on_error`], [`Driver::on_end`], also used once
//! the link is up).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tern_protocol::codec::{self, FrameDecoder};
use tern_protocol::{ClientInfo, ErrorBody, ErrorCode, Frame, Hello, PROTOCOL_VERSION, Request};
use tokio::sync::mpsc;

use super::{CONNECT_TIMEOUT, Driver, Inbound, Link, LinkEnd, Pending, TOKEN_MARGIN_MS, now_ms};
use crate::client::ClientEvent;
use crate::state::HoleGuard;

impl Driver {
    /// Connects, opens the control stream and writes `hello` on it (in 0-RTT when it can).
    async fn open_link(&mut self, hello: &Frame) -> Result<Link, String> {
        let hello = codec::encode_to_vec(hello).map_err(|e| format!("encoding Hello: {e}"))?;
        let connecting = self
            .endpoint
            .connect_with(
                self.client_cfg.clone(),
                self.cfg.server,
                &self.cfg.server_name,
            )
            .map_err(|e| format!("connect: {e}"))?;
        let (conn, send, recv) =
            tokio::time::timeout(CONNECT_TIMEOUT, self.handshake(connecting, &hello))
                .await
                .map_err(|_| "connect timed out".to_owned())??;
        let (out_tx, out_rx) = mpsc::channel(4096);
        let (in_tx, in_rx) = mpsc::channel(1024);
        tokio::spawn(write_loop(send, out_rx));
        tokio::spawn(datagram_loop(conn.clone(), in_tx.clone()));
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
            holes: HoleGuard::default(),
        })
    }

    /// The QUIC handshake with `hello` written on the control stream: as 0-RTT early data when
    /// enabled and a session ticket allows it, else after the handshake.
    async fn handshake(
        &mut self,
        connecting: quinn::Connecting,
        hello: &[u8],
    ) -> Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream), String> {
        let connecting = if self.cfg.zero_rtt {
            match connecting.into_0rtt() {
                Ok((conn, accepted)) => {
                    // Only `Hello` is written before the handshake completes: it is replay-safe
                    // (a replayed flight yields a connection the replayer cannot read).
                    let early = async {
                        let (mut send, recv) = conn.open_bi().await.ok()?;
                        send.write_all(hello).await.ok()?;
                        Some((send, recv))
                    }
                    .await;
                    let accepted = accepted.await;
                    if let Some(reason) = conn.close_reason() {
                        return Err(format!("handshake: {reason}"));
                    }
                    if accepted && let Some((send, recv)) = early {
                        self.zero_rtt_accepted += 1;
                        return Ok((conn, send, recv));
                    }
                    // Refused: the server never saw the early stream (quinn discarded it and
                    // resets stream ids), so start the control stream again in 1-RTT.
                    self.zero_rtt_rejected += 1;
                    return open_control(conn, hello).await;
                }
                // No ticket for this server: a full handshake.
                Err(connecting) => connecting,
            }
        } else {
            connecting
        };
        let conn = connecting.await.map_err(|e| format!("handshake: {e}"))?;
        open_control(conn, hello).await
    }

    pub(super) async fn connect_and_serve(&mut self) -> LinkEnd {
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
        let mut link = match self.open_link(&Frame::Hello(hello)).await {
            Ok(l) => l,
            Err(reason) => {
                return LinkEnd::Lost {
                    reason,
                    retry_after: None,
                    was_up: false,
                };
            }
        };
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
                // Nothing to show before the session is up.
                Ok(Some(Inbound::Datagram(_))) => {}
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
        self.social_features = Some(welcome.social);
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

    pub(super) fn on_error(&mut self, e: ErrorBody, sent_auth: bool, was_up: bool) -> LinkEnd {
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

    pub(super) fn on_end(
        &mut self,
        code: Option<ErrorCode>,
        reason: String,
        was_up: bool,
    ) -> LinkEnd {
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
}

/// Opens the control stream on an established connection and writes `hello`.
async fn open_control(
    conn: quinn::Connection,
    hello: &[u8],
) -> Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream), String> {
    let (mut send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| format!("open stream: {e}"))?;
    send.write_all(hello)
        .await
        .map_err(|e| format!("writing Hello: {e}"))?;
    Ok((conn, send, recv))
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

/// Forwards datagrams until the connection ends. A full inbound queue drops the datagram: typing
/// is a hint, and frames must not wait behind it.
async fn datagram_loop(conn: quinn::Connection, tx: mpsc::Sender<Inbound>) {
    while let Ok(d) = conn.read_datagram().await {
        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Inbound::Datagram(d)) {
            return;
        }
    }
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
