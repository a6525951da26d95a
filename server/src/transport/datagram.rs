//! QUIC datagrams: the typing hints that must never wait behind chat traffic (DESIGN §3).
//!
//! Out: [`DatagramSender`] is what a shard's connection handle holds to hand a connection an
//! encoded `Datagram::TypingEvent` (the shard knows nothing of quinn). Whether it fits is
//! asked of quinn per send: `max_datagram_size()` is `None` when the peer disabled datagrams
//! and shrinks with the path MTU, and a datagram that does not fit goes on the control stream
//! instead (the caller's choice).
//!
//! In: [`DatagramGate`] decides what one received datagram is worth. quinn already bounds a
//! datagram by the size the server advertises (the datagram receive buffer, a few KiB) and
//! buffers at most that many bytes per connection, dropping the oldest; decoding is postcard
//! over the received bytes and allocates nothing more. A datagram before authentication, one
//! that does not decode, a server-to-client kind, or one over the connection's rate is dropped
//! and counted; none of these closes the connection, since datagrams are unreliable by contract
//! and a client cannot tell a drop from a loss.

use std::time::Instant;

use bytes::Bytes;
use quinn::Connection;
use tern_protocol::{ChatId, Datagram, codec};

/// Sustained datagrams per second one connection may send; typing needs about 2.
pub const DATAGRAMS_PER_S: f64 = 10.0;
/// Datagrams one connection may send at once above the sustained rate.
pub const DATAGRAM_BURST: f64 = 20.0;

/// Hands encoded datagrams to one connection.
#[derive(Debug, Clone)]
pub struct DatagramSender {
    conn: Connection,
}

/// The datagram was not sent (the caller falls back to the control stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("datagram not sent")]
pub struct NotSent;

impl DatagramSender {
    /// A sender for `conn`.
    pub fn new(conn: Connection) -> Self {
        DatagramSender { conn }
    }

    /// Whether a datagram of `len` bytes can go to this peer now.
    pub fn fits(&self, len: usize) -> bool {
        self.conn.max_datagram_size().is_some_and(|max| max >= len)
    }

    /// Queues `payload` as one datagram. quinn's send buffer is bounded (the oldest datagram is
    /// dropped when it is full), so this never waits.
    pub fn send(&self, payload: Bytes) -> Result<(), NotSent> {
        self.conn.send_datagram(payload).map_err(|_| NotSent)
    }
}

/// What to do with one received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// A typing indicator from an authenticated client.
    Typing {
        /// The chat.
        chat_id: ChatId,
        /// Typing or stopped.
        typing: bool,
    },
    /// Dropped, with the reason as its metric label.
    Dropped(&'static str),
}

/// Per-connection admission of received datagrams: a token bucket and the decode.
#[derive(Debug)]
pub struct DatagramGate {
    tokens: f64,
    last: Instant,
    per_s: f64,
    burst: f64,
}

impl DatagramGate {
    /// A full bucket of `burst` refilled at `per_s` per second.
    pub fn new(per_s: f64, burst: f64, now: Instant) -> Self {
        DatagramGate {
            tokens: burst,
            last: now,
            per_s,
            burst,
        }
    }

    /// Classifies `payload`, received at `now` on a connection that is `authenticated` or not.
    pub fn admit(&mut self, payload: &[u8], authenticated: bool, now: Instant) -> Inbound {
        if !authenticated {
            return Inbound::Dropped("unauthenticated");
        }
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_s).min(self.burst);
        if self.tokens < 1.0 {
            return Inbound::Dropped("rate_limited");
        }
        self.tokens -= 1.0;
        match codec::decode_datagram(payload) {
            Ok(Datagram::Typing { chat_id, typing }) => Inbound::Typing { chat_id, typing },
            Ok(Datagram::TypingEvent(_)) => Inbound::Dropped("wrong_kind"),
            Err(_) => Inbound::Dropped("malformed"),
        }
    }
}

/// Admitted typing indicators of one connection being delivered at once; beyond that they are
/// dropped (`tern_typing_total{result="dropped_load"}`), so a client typing in many chats at
/// once cannot pile up work.
pub const MAX_TYPING_IN_FLIGHT: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tern_protocol::{TypingEvent, UserId};

    fn token_period() -> Duration {
        Duration::from_secs_f64(1.0 / DATAGRAMS_PER_S)
    }

    fn typing() -> Vec<u8> {
        codec::encode_datagram(&Datagram::Typing {
            chat_id: ChatId(7),
            typing: true,
        })
        .unwrap_or_default()
    }

    #[test]
    fn only_authenticated_client_kinds_within_the_rate_pass() {
        let t = Instant::now();
        let mut g = DatagramGate::new(DATAGRAMS_PER_S, 3.0, t);
        assert_eq!(
            g.admit(&typing(), false, t),
            Inbound::Dropped("unauthenticated")
        );
        assert_eq!(
            g.admit(&typing(), true, t),
            Inbound::Typing {
                chat_id: ChatId(7),
                typing: true
            }
        );
        assert_eq!(
            g.admit(&[0xff, 0xff, 0xff], true, t),
            Inbound::Dropped("malformed")
        );
        let event = codec::encode_datagram(&Datagram::TypingEvent(TypingEvent {
            chat_id: ChatId(1),
            user_id: UserId(1),
            typing: true,
            ttl_ms: 1,
        }))
        .unwrap_or_default();
        assert_eq!(g.admit(&event, true, t), Inbound::Dropped("wrong_kind"));
        assert_eq!(
            g.admit(&typing(), true, t),
            Inbound::Dropped("rate_limited")
        );
        assert!(matches!(
            g.admit(&typing(), true, t + token_period()),
            Inbound::Typing { .. }
        ));
        let big = vec![0u8; 100_000];
        let mut g = DatagramGate::new(DATAGRAMS_PER_S, 3.0, t);
        assert_eq!(g.admit(&big, true, t), Inbound::Dropped("malformed"));
        assert_eq!(g.admit(&[], true, t), Inbound::Dropped("malformed"));
    }
}
