//! The social layer: profiles and usernames, directory lookup, contacts, blocking and privacy
//! settings (issue 11). Facts (who is whose contact, who blocked whom, settings) live in
//! storage and a bounded in-memory cache here; the rules that turn facts into "may see" live
//! in [`crate::policy`], the one module every feature asks.
//!
//! SKELETON: the request methods are placeholders answered `Internal` until the social
//! service lands; `visible` admits everything until then.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use tern_protocol::{
    ErrorBody, ErrorCode, PrivacySettings, Profile, ProfileEdit, SessionInfo, SocialFeatures,
    UserId, UserQuery,
};

use crate::metrics::Metrics;
use crate::policy::{Attribute, Policy};
use crate::storage::Storage;

/// Limits of the social layer (`[social]` in the TOML file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocialConfig {
    /// Directory lookups (found or not) one user may make at once.
    pub lookup_burst: u32,
    /// Directory lookups per user per day after the burst (announced in `Welcome`).
    pub lookups_per_day: u32,
    /// Most contacts per user (at most the protocol's `MAX_LIST_LEN`).
    pub max_contacts: u32,
    /// Most blocked users per user (at most the protocol's `MAX_LIST_LEN`).
    pub max_blocked: u32,
    /// Username changes one user may make at once.
    pub username_burst: u32,
    /// Username changes per user per day after the burst.
    pub username_changes_per_day: u32,
    /// Most users tracked per limiter.
    pub max_limited_users: usize,
}

impl Default for SocialConfig {
    fn default() -> Self {
        SocialConfig {
            lookup_burst: 20,
            lookups_per_day: 100,
            max_contacts: tern_protocol::limits::MAX_LIST_LEN as u32,
            max_blocked: tern_protocol::limits::MAX_LIST_LEN as u32,
            username_burst: 2,
            username_changes_per_day: 5,
            max_limited_users: 100_000,
        }
    }
}

/// What the social service depends on.
#[derive(Debug)]
pub struct SocialDeps {
    /// Where profiles, contacts, blocks and settings live.
    pub storage: Arc<dyn Storage>,
    /// Counters.
    pub metrics: Metrics,
    /// The rules.
    pub policy: Arc<Policy>,
    /// Limits.
    pub config: SocialConfig,
}

/// Social requests, and the visibility question every other feature asks.
#[derive(Debug)]
pub struct SocialService {
    #[allow(dead_code)]
    storage: Arc<dyn Storage>,
    #[allow(dead_code)]
    metrics: Metrics,
    #[allow(dead_code)]
    policy: Arc<Policy>,
    config: SocialConfig,
}

fn not_built() -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, "not built yet")
}

impl SocialService {
    /// Builds the service from its dependencies.
    pub fn new(deps: SocialDeps) -> Self {
        SocialService {
            storage: deps.storage,
            metrics: deps.metrics,
            policy: deps.policy,
            config: deps.config,
        }
    }

    /// What `Welcome` announces; `presence` fills in its own part.
    pub fn features(&self, presence: &crate::presence::PresenceConfig) -> SocialFeatures {
        SocialFeatures {
            max_presence_watch: presence.max_watch,
            typing_ttl_ms: presence.typing_ttl_ms,
            lookups_per_day: self.config.lookups_per_day,
            max_contacts: self.config.max_contacts,
            max_blocked: self.config.max_blocked,
        }
    }

    /// Whether `viewer` may see `attr` of `owner` now (blocks either way, contacts, settings,
    /// reciprocity). Every feature asks this; none decides on its own.
    pub async fn visible(&self, _viewer: UserId, _owner: UserId, _attr: Attribute) -> bool {
        true
    }

    /// `GetProfile`.
    pub async fn get_profile(&self, _s: SessionInfo, _user: UserId) -> Result<Profile, ErrorBody> {
        Err(not_built())
    }

    /// `SetProfile`.
    pub async fn set_profile(&self, _s: SessionInfo, _edit: ProfileEdit) -> Result<Profile, ErrorBody> {
        Err(not_built())
    }

    /// `SetUsername`.
    pub async fn set_username(
        &self,
        _s: SessionInfo,
        _username: Option<String>,
    ) -> Result<Profile, ErrorBody> {
        Err(not_built())
    }

    /// `LookupUser`.
    pub async fn lookup(&self, _s: SessionInfo, _q: UserQuery) -> Result<Option<Profile>, ErrorBody> {
        Err(not_built())
    }

    /// `AddContact`.
    pub async fn add_contact(&self, _s: SessionInfo, _user: UserId) -> Result<(), ErrorBody> {
        Err(not_built())
    }

    /// `RemoveContact`.
    pub async fn remove_contact(&self, _s: SessionInfo, _user: UserId) -> Result<(), ErrorBody> {
        Err(not_built())
    }

    /// `ListContacts`.
    pub async fn contacts(&self, _s: SessionInfo) -> Result<Vec<Profile>, ErrorBody> {
        Err(not_built())
    }

    /// `Block`.
    pub async fn block(&self, _s: SessionInfo, _user: UserId) -> Result<(), ErrorBody> {
        Err(not_built())
    }

    /// `Unblock`.
    pub async fn unblock(&self, _s: SessionInfo, _user: UserId) -> Result<(), ErrorBody> {
        Err(not_built())
    }

    /// `ListBlocked`.
    pub async fn blocked(&self, _s: SessionInfo) -> Result<Vec<UserId>, ErrorBody> {
        Err(not_built())
    }

    /// `GetPrivacy`.
    pub async fn privacy(&self, _s: SessionInfo) -> Result<PrivacySettings, ErrorBody> {
        Err(not_built())
    }

    /// `SetPrivacy`.
    pub async fn set_privacy(
        &self,
        _s: SessionInfo,
        _p: PrivacySettings,
    ) -> Result<PrivacySettings, ErrorBody> {
        Err(not_built())
    }
}
