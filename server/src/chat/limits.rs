//! Per-user limits of the chat service: how fast one account may send, and how many chats with
//! new peers it may open. Buckets are keyed by `UserId`, so a spammer's many connections share
//! one budget, and the tables are bounded (see [`RateLimiter`]). The social and group services
//! use the same [`UserLimiter`].
//!
//! Several nodes: a user whose connections are all on one node is limited exactly by that
//! node's bucket (it sees all their requests). A user with connections on several nodes would
//! get each node's full budget, so for them a [`SharedBudget`] (Redis, in cluster mode) is asked
//! too, after the local bucket: one budget for the whole cluster. Asking it costs a round trip
//! only for such users. When it cannot answer, the local bucket's verdict stands: the limit
//! degrades to per node, never to none (these limits protect capacity and other users from
//! spam; no secret depends on them, unlike the OTP budgets, which fail closed).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

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

/// A per-user budget shared by every node (see the module docs).
#[async_trait]
pub trait SharedBudget: Send + Sync + fmt::Debug {
    /// Whether `user` has connections on other nodes now (only then is the budget asked).
    fn spans_nodes(&self, user: UserId) -> bool;

    /// Takes one token from `user`'s budget `what` (`burst` at once, refilled at `per_ms`
    /// tokens a millisecond): `Ok(false)` when none is left, `Err` when it cannot answer.
    async fn take(
        &self,
        what: &'static str,
        user: UserId,
        burst: u32,
        per_ms: f64,
    ) -> Result<bool, String>;
}

/// One keyed token bucket per user. The per-day limiter feeds the shared [`RateLimiter`] a
/// clock that runs 1440 times slower, so its "per minute" refill is a refill per day.
#[derive(Debug)]
pub struct UserLimiter {
    inner: Mutex<RateLimiter<UserId>>,
    what: &'static str,
    slowdown: u32,
    epoch: Instant,
    quota: Quota,
    shared: Option<Arc<dyn SharedBudget>>,
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
            quota,
            shared: None,
        }
    }

    /// Also asks `shared` for users with connections on several nodes (cluster mode).
    pub fn shared(mut self, shared: Option<Arc<dyn SharedBudget>>) -> Self {
        self.shared = shared;
        self
    }

    /// Takes one token for `user` (and, for a user on several nodes, one of the cluster-wide
    /// budget), or answers `RateLimited` saying when to retry.
    pub async fn check(&self, user: UserId, now: Instant) -> Result<(), ErrorBody> {
        self.check_local(user, now)?;
        let Some(shared) = self.shared.as_ref().filter(|s| s.spans_nodes(user)) else {
            return Ok(());
        };
        let per_ms = f64::from(self.quota.per_minute) / 60_000.0 / f64::from(self.slowdown);
        match shared.take(self.what, user, self.quota.burst, per_ms).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ErrorBody::new(
                ErrorCode::RateLimited,
                format!(
                    "too many {} across this account's devices; retry later",
                    self.what
                ),
            )),
            Err(e) => {
                tracing::debug!(error = %e, what = self.what, "shared budget unavailable; the node's own limit applies");
                Ok(())
            }
        }
    }

    /// This node's bucket only.
    fn check_local(&self, user: UserId, now: Instant) -> Result<(), ErrorBody> {
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
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn per_day_refills_a_token_per_day_share() {
        let l = UserLimiter::per_day("new chats", 2, 24, 10);
        let t0 = Instant::now();
        let u = UserId(7);
        assert!(l.check(u, t0).await.is_ok());
        assert!(l.check(u, t0).await.is_ok());
        let refused = l.check(u, t0).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(
            l.check(u, t0 + Duration::from_secs(30 * 60)).await.is_err(),
            "24 a day is one an hour: not yet after 30 minutes"
        );
        assert!(l.check(u, t0 + Duration::from_secs(61 * 60)).await.is_ok());
        assert!(
            l.check(UserId(8), t0).await.is_ok(),
            "users are independent"
        );
    }

    /// A budget with `left` tokens for user 1, who is on several nodes; `None`: unreachable.
    #[derive(Debug)]
    struct Budget {
        left: Option<AtomicU32>,
        asked: AtomicU32,
    }

    #[async_trait]
    impl SharedBudget for Budget {
        fn spans_nodes(&self, user: UserId) -> bool {
            user == UserId(1)
        }

        async fn take(&self, _: &'static str, _: UserId, _: u32, _: f64) -> Result<bool, String> {
            self.asked.fetch_add(1, Ordering::Relaxed);
            let left = self.left.as_ref().ok_or("unreachable")?;
            Ok(left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok())
        }
    }

    #[tokio::test]
    async fn users_on_several_nodes_also_spend_the_shared_budget() {
        let budget = Arc::new(Budget {
            left: Some(AtomicU32::new(2)),
            asked: AtomicU32::new(0),
        });
        let l = UserLimiter::per_minute("messages", 10, 10, 10).shared(Some(budget.clone()));
        let t = Instant::now();
        assert!(l.check(UserId(1), t).await.is_ok());
        assert!(l.check(UserId(1), t).await.is_ok());
        let refused = l.check(UserId(1), t).await.unwrap_err();
        assert_eq!(
            refused.code,
            ErrorCode::RateLimited,
            "the cluster's budget is spent"
        );
        for _ in 0..5 {
            assert!(l.check(UserId(2), t).await.is_ok(), "one node: local only");
        }
        assert_eq!(budget.asked.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn an_unreachable_shared_budget_leaves_the_local_limit() {
        let budget = Arc::new(Budget {
            left: None,
            asked: AtomicU32::new(0),
        });
        let l = UserLimiter::per_minute("messages", 3, 1, 10).shared(Some(budget));
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.check(UserId(1), t).await.is_ok());
        }
        assert!(
            l.check(UserId(1), t).await.is_err(),
            "never unlimited: the node's own bucket still refuses"
        );
    }
}
