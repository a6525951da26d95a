//! Presence and typing (issue 11): in memory, per node, never in the storage commit path.
//!
//! SKELETON: placeholders until the presence service lands.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use tern_protocol::{ChatId, ErrorBody, ErrorCode, Presence, SessionInfo, UserId};

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
    #[allow(dead_code)]
    deps: PresenceDeps,
}

impl PresenceService {
    /// The timings, for `Welcome`.
    pub fn config(&self) -> &PresenceConfig {
        &self.deps.config
    }

    /// Builds the service.
    pub fn new(deps: PresenceDeps) -> Self {
        PresenceService { deps }
    }

    /// `WatchPresence`: replaces the watch list of `conn`, answers the snapshot.
    pub async fn watch(
        &self,
        _s: SessionInfo,
        _conn: ConnRef,
        _users: Vec<UserId>,
    ) -> Result<Vec<Presence>, ErrorBody> {
        Err(ErrorBody::new(ErrorCode::Internal, "not built yet"))
    }

    /// `SetForeground`.
    pub async fn set_foreground(
        &self,
        _s: SessionInfo,
        _conn: ConnRef,
        _foreground: bool,
    ) -> Result<(), ErrorBody> {
        Err(ErrorBody::new(ErrorCode::Internal, "not built yet"))
    }

    /// Typing, from a datagram or `SetTyping`: never answered with an error (a hint).
    pub async fn typing(&self, _s: SessionInfo, _chat: ChatId, _typing: bool) {}
}
