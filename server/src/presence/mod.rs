//! Presence and typing (issue 11): in memory, per node, never in the storage commit path.
//!
//! - [`hub`]: who is online (foreground authenticated connections per user), who watches whom,
//!   what each watcher was last told; [`debounce`]: the pure per-user debounce.
//! - [`watch`]: snapshots, per-watcher views of each published change, the background driver
//!   (timers, fan-out, the last-seen flush every ~10 s through `Storage::save_last_seen`).
//! - [`typing`]: the per (sender, chat) limit and the fan-out of typing indicators.
//!
//! Visibility is asked of [`SocialService::visible`] only; delivery goes through the router's
//! mailboxes (presence to one connection, reliable; typing to all of a user's connections,
//! ephemeral: dropped first under load). The transport reports authenticated connections
//! ([`PresenceService::connected`], [`PresenceService::disconnected`]) and typing datagrams.

pub mod debounce;
pub mod hub;
pub mod typing;
pub mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use tern_protocol::{ChatId, ErrorBody, ErrorCode, Presence, SessionInfo, UserId};
use tokio::sync::Notify;

use self::hub::{Hub, HubStats};
use self::typing::{MAX_TYPING_ENTRIES, TYPING_INTERVAL, TypingLimiter};
use self::watch::wall_ms;

use crate::metrics::Metrics;
use crate::router::Router;
use crate::services::ConnRef;
use crate::social::SocialService;
use crate::storage::Storage;

/// Presence and typing timings (`[presence]` in the TOML file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// Most users one connection may watch (at most the protocol's `MAX_PRESENCE_WATCH`).
    pub max_watch: u32,
    /// A `typing: true` is shown this long by receivers unless refreshed.
    pub typing_ttl_ms: u32,
    /// At most one published presence change per user per this interval (debounce of flapping
    /// devices); going offline is published only after it, so a quick reconnect shows nothing.
    pub debounce_ms: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            max_watch: tern_protocol::limits::MAX_PRESENCE_WATCH as u32,
            typing_ttl_ms: 6_000,
            debounce_ms: 3_000,
        }
    }
}

/// What the presence service depends on.
#[derive(Debug)]
pub struct PresenceDeps {
    /// Chat membership, for typing.
    pub storage: Arc<dyn Storage>,
    /// Who may see what.
    pub social: Arc<SocialService>,
    /// Where connections are.
    pub router: Arc<Router>,
    /// Counters.
    pub metrics: Metrics,
    /// Timings.
    pub config: PresenceConfig,
}

/// Presence watches and typing.
#[derive(Debug)]
pub struct PresenceService {
    deps: PresenceDeps,
    hub: Hub,
    limiter: TypingLimiter,
    /// Wakes the driver when a change was published or a snapshot answered.
    wake: Notify,
}

impl PresenceService {
    /// The timings, for `Welcome`.
    pub fn config(&self) -> &PresenceConfig {
        &self.deps.config
    }

    /// Builds the service (start its driver with [`PresenceService::spawn_driver`]).
    pub fn new(deps: PresenceDeps) -> Self {
        let interval = Duration::from_millis(deps.config.debounce_ms);
        PresenceService {
            hub: Hub::new(interval),
            limiter: TypingLimiter::new(TYPING_INTERVAL, MAX_TYPING_ENTRIES),
            wake: Notify::new(),
            deps,
        }
    }

    /// An authenticated connection of `user` (foreground until it says otherwise).
    pub fn connected(&self, conn: ConnRef, user: UserId) {
        self.hub.connected(conn, user, Instant::now(), wall_ms());
        self.wake.notify_one();
    }

    /// The connection ended: its watches end, and its user may go offline (debounced).
    pub fn disconnected(&self, conn: ConnRef) {
        self.hub.disconnected(conn, Instant::now(), wall_ms());
        self.wake.notify_one();
    }

    /// The server is shutting down and its shards have stopped: every connection is gone.
    pub fn disconnect_all(&self) {
        self.hub.disconnect_all(Instant::now(), wall_ms());
        self.wake.notify_one();
    }

    /// The snapshot answer of `conn`'s last `WatchPresence` is queued: events may follow.
    pub fn watch_answered(&self, conn: ConnRef) {
        self.hub.answered(conn);
        self.wake.notify_one();
    }

    /// A block, contact or privacy change between `users`: their watchers' views are
    /// evaluated again now (see [`Hub::reconsider`]).
    pub fn relations_changed(&self, users: &[UserId]) {
        self.hub.reconsider(users);
        self.wake.notify_one();
    }

    /// Counts of the hub (connections, watched users, online users), for tests and metrics.
    pub fn stats(&self) -> HubStats {
        self.hub.stats()
    }

    /// `WatchPresence`: replaces the watch list of `conn`, answers the snapshot.
    pub async fn watch(
        &self,
        s: SessionInfo,
        conn: ConnRef,
        mut users: Vec<UserId>,
    ) -> Result<Vec<Presence>, ErrorBody> {
        // Duplicates collapse; the answer keeps the order asked (first occurrence).
        let mut seen = std::collections::HashSet::with_capacity(users.len());
        users.retain(|u| seen.insert(*u));
        let max = self.deps.config.max_watch as usize;
        if users.len() > max {
            return Err(ErrorBody::new(
                ErrorCode::TooLarge,
                format!("at most {max} users may be watched per connection"),
            ));
        }
        let Some(watched) = self.hub.replace_watches(conn, &users) else {
            return Err(ErrorBody::new(
                ErrorCode::Internal,
                "this connection is not registered for presence",
            ));
        };
        self.deps
            .metrics
            .presence_watched_users
            .set(self.hub.watched_users() as i64);
        Ok(self.snapshot(s.user_id, conn, watched).await)
    }

    /// `SetForeground`.
    pub async fn set_foreground(
        &self,
        _s: SessionInfo,
        conn: ConnRef,
        foreground: bool,
    ) -> Result<(), ErrorBody> {
        if !self
            .hub
            .set_foreground(conn, foreground, Instant::now(), wall_ms())
        {
            return Err(ErrorBody::new(
                ErrorCode::Internal,
                "this connection is not registered for presence",
            ));
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Typing, from a datagram or `SetTyping`: never answered with an error (a hint).
    pub async fn typing(&self, s: SessionInfo, chat: ChatId, typing: bool) {
        if self.admit_typing(s.user_id, chat, typing) {
            self.deliver_typing(s, chat, typing).await;
        }
    }
}
