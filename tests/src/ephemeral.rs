//! A raw client for presence and typing tests: it logs in with an access token, sends requests
//! and QUIC datagrams, and tells apart what arrived as a datagram from what arrived on the
//! control stream (the SDK hides that difference; these tests must see it).
//!
//! Included by the tests with `#[path]` (tests/src/lib.rs belongs to the harness owner).

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use tern_sdk::protocol::codec::{self, FrameDecoder};
use tern_sdk::protocol::{
    ChatId, Datagram, ErrorBody, Event, Frame, Presence, Request, Response, TypingEvent, Welcome,
};
use tern_tests::Device;
use tern_tests::child::{admin_get, metric};
use tern_tests::raw::RawConn;

/// How a pushed item arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A QUIC datagram.
    Datagram,
    /// A frame on the control stream.
    Stream,
}

/// Something the server pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// A presence event (always on the stream).
    Presence(Presence),
    /// A typing event, and how it came.
    Typing(TypingEvent, Via),
    /// Anything else (updates).
    Other,
}

/// A logged-in raw connection.
#[derive(Debug)]
pub struct EphemeralClient {
    raw: RawConn,
    decoder: FrameDecoder,
    next_req: u32,
    pushed: VecDeque<Pushed>,
    /// The server's `Welcome`.
    pub welcome: Option<Welcome>,
}

/// The access token of a logged-in SDK device.
pub async fn token(dev: &Device) -> String {
    let snap = dev.client.snapshot().await.unwrap();
    snap.tokens.unwrap().access_token
}

/// The value of one series in the server's `/metrics` (0 if absent).
pub async fn metric_value(admin: SocketAddr, series: &str) -> f64 {
    metric(&admin_get(admin, "/metrics").await, series).unwrap_or(0.0)
}

/// Open connections per shard, from `/metrics`.
pub async fn connections_per_shard(admin: SocketAddr, shards: usize) -> Vec<f64> {
    let text = admin_get(admin, "/metrics").await;
    (0..shards)
        .map(|s| metric(&text, &format!("tern_connections{{shard=\"{s}\"}}")).unwrap_or(0.0))
        .collect()
}

impl EphemeralClient {
    /// Connects, presents `token` and waits for `Welcome`. `datagrams: false` disables
    /// datagrams on the client (the server must then use the control stream).
    pub async fn connect(
        addr: SocketAddr,
        fingerprint: &str,
        token: &str,
        datagrams: bool,
    ) -> anyhow::Result<EphemeralClient> {
        let mut t = quinn::TransportConfig::default();
        if !datagrams {
            t.datagram_receive_buffer_size(None);
        }
        let mut raw = RawConn::connect_with(addr, fingerprint, Some(t)).await?;
        raw.send_frame(&RawConn::hello(Some(token.to_owned())))
            .await?;
        let mut c = EphemeralClient {
            raw,
            decoder: FrameDecoder::new(),
            next_req: 1,
            pushed: VecDeque::new(),
            welcome: None,
        };
        match c.frame(Duration::from_secs(10)).await? {
            Frame::Welcome(w) => c.welcome = Some(w),
            other => anyhow::bail!("expected Welcome, got {other:?}"),
        }
        Ok(c)
    }

    /// The next frame on the control stream.
    async fn frame(&mut self, timeout: Duration) -> anyhow::Result<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(f) = self.decoder.next_frame()? {
                return Ok(f);
            }
            match tokio::time::timeout_at(deadline, self.raw.recv.read_chunk(65_536, true)).await {
                Err(_) => anyhow::bail!("no frame in time"),
                Ok(Ok(Some(chunk))) => self.decoder.extend(&chunk.bytes),
                Ok(Ok(None)) => anyhow::bail!("stream finished"),
                Ok(Err(e)) => anyhow::bail!("stream error: {e}"),
            }
        }
    }

    fn stash(&mut self, frame: Frame) {
        let item = match frame {
            Frame::Event(Event::Presence(p)) => Pushed::Presence(p),
            Frame::Event(Event::Typing(t)) => Pushed::Typing(t, Via::Stream),
            _ => Pushed::Other,
        };
        self.pushed.push_back(item);
    }

    /// Sends `body` and waits for its answer (events meanwhile are kept for `next`).
    pub async fn request(&mut self, body: Request) -> anyhow::Result<Result<Response, ErrorBody>> {
        let req_id = self.next_req;
        self.next_req += 1;
        self.raw
            .send_frame(&Frame::Request { req_id, body })
            .await?;
        loop {
            match self.frame(Duration::from_secs(20)).await? {
                Frame::Response { req_id: r, result } if r == req_id => return Ok(result),
                Frame::Error(e) => anyhow::bail!("connection error {e:?}"),
                other => self.stash(other),
            }
        }
    }

    /// Sends a typing indicator as a QUIC datagram.
    pub fn typing_datagram(&self, chat_id: ChatId, typing: bool) -> anyhow::Result<()> {
        let bytes = codec::encode_datagram(&Datagram::Typing { chat_id, typing })?;
        self.raw.conn.send_datagram(bytes.into())?;
        Ok(())
    }

    /// Sends raw bytes as a QUIC datagram.
    pub fn raw_datagram(&self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.raw.conn.send_datagram(bytes.into())?;
        Ok(())
    }

    /// The next pushed item within `timeout`, from the stream or a datagram.
    pub async fn next(&mut self, timeout: Duration) -> Option<Pushed> {
        if let Some(p) = self.pushed.pop_front() {
            return Some(p);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(f)) = self.decoder.next_frame() {
                self.stash(f);
                return self.pushed.pop_front();
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return None,
                d = self.raw.conn.read_datagram() => match d {
                    Ok(bytes) => match codec::decode_datagram(&bytes) {
                        Ok(Datagram::TypingEvent(t)) => return Some(Pushed::Typing(t, Via::Datagram)),
                        _ => return Some(Pushed::Other),
                    },
                    Err(_) => return None,
                },
                chunk = self.raw.recv.read_chunk(65_536, true) => match chunk {
                    Ok(Some(c)) => self.decoder.extend(&c.bytes),
                    _ => return None,
                },
            }
        }
    }

    /// Typing events only, until `quiet` passes with none.
    pub async fn typing_events(&mut self, quiet: Duration) -> Vec<(TypingEvent, Via)> {
        let mut out = Vec::new();
        while let Some(p) = self.next(quiet).await {
            if let Pushed::Typing(t, via) = p {
                out.push((t, via));
            }
        }
        out
    }

    /// Presence events only, until `quiet` passes with none.
    pub async fn presence_events(&mut self, quiet: Duration) -> Vec<Presence> {
        let mut out = Vec::new();
        while let Some(p) = self.next(quiet).await {
            if let Pushed::Presence(p) = p {
                out.push(p);
            }
        }
        out
    }

    /// Whether the peer (the server) accepts datagrams on this connection.
    pub fn max_datagram_size(&self) -> Option<usize> {
        self.raw.conn.max_datagram_size()
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.raw.conn.close(0u32.into(), b"bye");
    }
}
