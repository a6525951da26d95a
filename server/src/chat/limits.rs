//! Per-user limits of the chat service: how fast one account may send, and how many chats with
//! new peers it may open. Buckets are keyed by `UserId`, so a spammer's many connections share
//! one budget, and the tables are bounded (see [`RateLimiter`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tern_protocol::{ErrorBody, ErrorCode, UserId};

use crate::auth::rate_limit::{Quota, RateLimiter};

/// Chat settings: rate limits and receipt coalescing. Defaults are far above what a person
/// does; load generators raise them explicitly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Messages one user may send at once.
    pub send_burst: u32,
    /// Messages per user per minute after the burst.
    pub send_per_minute: u32,
    /// Chats with users they had no chat with that one user may open at once.
    pub new_peer_burst: u32,
    /// Chats with new peers per user per day after the burst.
    pub new_peers_per_day: u32,
    /// How long delivered receipts are held to coalesce ack steps, milliseconds.
    pub receipt_delay_ms: u64,
    /// Most (chat, member) pairs with an unpublished delivered receipt; beyond it a receipt is
    /// published at once.
    pub max_pending_receipts: usize,
    /// Most users tracked per limiter (idle full buckets are dropped first).
    pub max_limited_users: usize,
    /// A sender may edit a message for this long, seconds (announced in `Welcome`).
    pub edit_window_s: u32,
    /// A sender may delete a message for everyone for this long, seconds; group admins may
    /// always (announced in `Welcome`).
    pub delete_window_s: u32,
    /// Most edits of one message.
    pub max_edits: u32,
    /// Most mentions in one message (at most the protocol's `MAX_MENTIONS`).
    pub max_mentions: u32,
}

impl ChatConfig {
    /// What `Welcome` announces.
    pub fn features(&self) -> tern_protocol::ChatFeatures {
        tern_protocol::ChatFeatures {
            max_chat_members: tern_protocol::limits::MAX_CHAT_MEMBERS as u32,
            edit_window_s: self.edit_window_s,
            delete_window_s: self.delete_window_s,
            max_edits: self.max_edits,
            max_mentions: self
                .max_mentions
                .min(tern_protocol::limits::MAX_MENTIONS as u32),
        }
    }
}

impl Default for ChatConfig {
    fn default() -> Self {
        let features = tern_protocol::ChatFeatures::default();
        ChatConfig {
            send_burst: 300,
            send_per_minute: 600,
            new_peer_burst: 30,
            new_peers_per_day: 100,
            receipt_delay_ms: 1_000,
            max_pending_receipts: 100_000,
            max_limited_users: 1_000_000,
            edit_window_s: features.edit_window_s,
            delete_window_s: features.delete_window_s,
            max_edits: features.max_edits,
            max_mentions: features.max_mentions,
        }
    }
}

/// One keyed token bucket per user. The per-day limiter feeds the shared [`RateLimiter`] a
/// clock that runs 1440 times slower, so its "per minute" refill is a refill per day.
#[derive(Debug)]
pub struct UserLimiter {
    inner: Mutex<RateLimiter<UserId>>,
    what: &'static str,
    slowdown: u32,
    epoch: Instant,
}

/// Minutes in a day: the slowdown that turns a per-minute quota into a per-day one.
const MINUTES_PER_DAY: u32 = 24 * 60;

impl UserLimiter {
    /// `burst` at once, then `per_minute`.
    pub fn per_minute(what: &'static str, burst: u32, per_minute: u32, max_users: usize) -> Self {
        Self::scaled(what, burst, per_minute, max_users, 1)
    }

    /// `burst` at once, then `per_day`.
    pub fn per_day(what: &'static str, burst: u32, per_day: u32, max_users: usize) -> Self {
        Self::scaled(what, burst, per_day, max_users, MINUTES_PER_DAY)
    }

    fn scaled(what: &'static str, burst: u32, rate: u32, max_users: usize, slowdown: u32) -> Self {
        let quota = Quota {
            burst,
            per_minute: rate,
        };
        UserLimiter {
            inner: Mutex::new(RateLimiter::new(quota, max_users)),
            what,
            slowdown,
            epoch: Instant::now(),
        }
    }

    /// Takes one token for `user`, or answers `RateLimited` saying when to retry.
    pub fn check(&self, user: UserId, now: Instant) -> Result<(), ErrorBody> {
        let virtual_now = self.epoch + now.saturating_duration_since(self.epoch) / self.slowdown;
        let verdict = match self.inner.lock() {
            Ok(mut limiter) => limiter.check(&user, virtual_now),
            // A poisoned lock means a panic elsewhere; refuse rather than run unlimited.
            Err(_) => Err(Duration::from_secs(1)),
        };
        verdict.map_err(|wait| {
            let wait = wait.saturating_mul(self.slowdown);
            ErrorBody::new(
                ErrorCode::RateLimited,
                format!(
                    "too many {}; retry in {} s",
                    self.what,
                    wait.as_secs().max(1)
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_day_refills_a_token_per_day_share() {
        let l = UserLimiter::per_day("new chats", 2, 24, 10);
        let t0 = Instant::now();
        let u = UserId(7);
        assert!(l.check(u, t0).is_ok());
        assert!(l.check(u, t0).is_ok());
        let refused = l.check(u, t0).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(
            l.check(u, t0 + Duration::from_secs(30 * 60)).is_err(),
            "24 a day is one an hour: not yet after 30 minutes"
        );
        assert!(l.check(u, t0 + Duration::from_secs(61 * 60)).is_ok());
        assert!(l.check(UserId(8), t0).is_ok(), "users are independent");
    }
}
