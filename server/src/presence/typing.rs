//! Typing indicators: checked, rate-limited, fanned out to the chat's other members' live
//! connections across shards, never stored.
//!
//! A typing indicator is a hint that expires by itself at the receiver (`ttl_ms`), so every
//! step may drop it: a sender over its rate, a sender who is not a member, a member who may not
//! see it (a block), a shard or connection under load. Each drop is counted
//! (`tern_typing_total{result}`) and none is reported to the sender.
//!
//! Order of the checks: the rate limit first (it is a hash lookup, and it bounds how often one
//! sender can make the server read a chat row), then membership, then the policy per receiver.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_protocol::codec;
use tern_protocol::{ChatId, Datagram, Event, Frame, SessionInfo, TypingEvent, UserId};

use super::PresenceService;
use crate::policy::Attribute;

/// One `typing: true` and one `typing: false` per (sender, chat) per this interval.
pub const TYPING_INTERVAL: Duration = Duration::from_secs(1);
/// Most (sender, chat, kind) entries the limiter tracks; when full, entries older than the
/// interval are pruned, and if it is still full new senders are refused (dropped, counted).
pub const MAX_TYPING_ENTRIES: usize = 100_000;

/// The per (sender, chat) typing rate limit, bounded in memory.
#[derive(Debug)]
pub struct TypingLimiter {
    last: Mutex<HashMap<(UserId, ChatId, bool), Instant>>,
    interval: Duration,
    max_entries: usize,
}

impl TypingLimiter {
    /// A limiter allowing one of each kind per `interval` per (sender, chat).
    pub fn new(interval: Duration, max_entries: usize) -> Self {
        TypingLimiter {
            last: Mutex::new(HashMap::new()),
            interval,
            max_entries,
        }
    }

    /// Whether a `typing` indicator of `user` in `chat` may go out at `now` (and records it).
    pub fn allow(&self, user: UserId, chat: ChatId, typing: bool, now: Instant) -> bool {
        let mut map = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let key = (user, chat, typing);
        if let Some(at) = map.get_mut(&key) {
            if now.saturating_duration_since(*at) < self.interval {
                return false;
            }
            *at = now;
            return true;
        }
        if map.len() >= self.max_entries {
            let interval = self.interval;
            map.retain(|_, at| now.saturating_duration_since(*at) < interval);
            if map.len() >= self.max_entries {
                return false;
            }
        }
        map.insert(key, now);
        true
    }
}

/// A typing event encoded both ways, once per indicator: the datagram for connections that
/// take datagrams, the control-stream frame for those that do not.
#[derive(Debug, Clone)]
pub struct EncodedTyping {
    /// `Datagram::TypingEvent`, no length prefix.
    pub datagram: Bytes,
    /// `Frame::Event(Event::Typing)`, length-prefixed.
    pub frame: Bytes,
}

impl EncodedTyping {
    /// Encodes `event`; `None` if it does not encode (it always does: fixed-size fields).
    pub fn new(event: TypingEvent) -> Option<Self> {
        let datagram = codec::encode_datagram(&Datagram::TypingEvent(event)).ok()?;
        let frame = codec::encode_to_vec(&Frame::Event(Event::Typing(event))).ok()?;
        Some(EncodedTyping {
            datagram: Bytes::from(datagram),
            frame: Bytes::from(frame),
        })
    }
}

impl PresenceService {
    /// The per (sender, chat) rate limit alone: synchronous, so the transport can apply it to
    /// a datagram before it spends a task on it. False (counted) if over the rate.
    pub fn admit_typing(&self, user: UserId, chat: ChatId, typing: bool) -> bool {
        let ok = self.limiter.allow(user, chat, typing, Instant::now());
        if !ok {
            self.deps.metrics.typing("dropped_rate");
        }
        ok
    }

    /// Delivers an admitted typing indicator of `s` in `chat`: membership, policy per receiver,
    /// fan-out (see the module docs).
    pub async fn deliver_typing(&self, s: SessionInfo, chat: ChatId, typing: bool) {
        let m = &self.deps.metrics;
        let record = match self.deps.storage.chat(chat).await {
            Ok(Some(r)) if r.members.binary_search(&s.user_id).is_ok() => r,
            Ok(_) => {
                m.typing("dropped_not_member");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "typing: reading the chat failed; dropped");
                m.typing("dropped_load");
                return;
            }
        };
        let event = TypingEvent {
            chat_id: chat,
            user_id: s.user_id,
            typing,
            ttl_ms: self.deps.config.typing_ttl_ms,
        };
        let Some(encoded) = EncodedTyping::new(event) else {
            return;
        };
        for member in record.members {
            if member == s.user_id || !self.deps.router.is_connected(member) {
                continue;
            }
            if !self
                .deps
                .social
                .visible(member, s.user_id, Attribute::Typing)
                .await
            {
                m.typing("dropped_policy");
                continue;
            }
            self.deps.router.post_typing(member, &encoded);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_start_and_one_stop_per_interval_per_sender_and_chat() {
        let l = TypingLimiter::new(TYPING_INTERVAL, 1_000);
        let t = Instant::now();
        let (u, c) = (UserId(1), ChatId(1));
        assert!(l.allow(u, c, true, t));
        assert!(!l.allow(u, c, true, t + Duration::from_millis(500)));
        assert!(l.allow(u, c, false, t + Duration::from_millis(500)));
        assert!(
            l.allow(u, ChatId(2), true, t),
            "another chat has its own budget"
        );
        assert!(l.allow(UserId(2), c, true, t), "another sender too");
        assert!(l.allow(u, c, true, t + TYPING_INTERVAL));
    }

    #[test]
    fn the_limiter_stays_bounded() {
        let l = TypingLimiter::new(TYPING_INTERVAL, 4);
        let t = Instant::now();
        for i in 0..4 {
            assert!(l.allow(UserId(i), ChatId(1), true, t));
        }
        assert!(
            !l.allow(UserId(9), ChatId(1), true, t),
            "full of fresh entries"
        );
        assert!(
            l.allow(UserId(9), ChatId(1), true, t + TYPING_INTERVAL),
            "old ones pruned"
        );
    }

    #[test]
    fn a_typing_event_fits_a_datagram() {
        let e = TypingEvent {
            chat_id: ChatId(u64::MAX),
            user_id: UserId(u64::MAX),
            typing: true,
            ttl_ms: u32::MAX,
        };
        let enc = EncodedTyping::new(e).unwrap_or_else(|| panic!("encodes"));
        assert!(enc.datagram.len() <= tern_protocol::limits::MAX_DATAGRAM_LEN);
        assert_eq!(
            codec::decode_datagram(&enc.datagram).ok(),
            Some(Datagram::TypingEvent(e))
        );
    }
}
