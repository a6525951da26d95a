//! The social layer: profiles and usernames, directory lookup, contacts, blocking and privacy
//! settings (issue 11). Facts (who is whose contact, who blocked whom, settings) live in
//! storage and a bounded in-memory cache ([`facts`]); the rules that turn facts into "may see"
//! live in [`crate::policy`], the one module every feature asks, through
//! [`SocialService::visible`].
//!
//! - [`profiles`]: the username rule, `SetProfile`, `SetUsername`, what a viewer sees.
//! - [`directory`]: `GetProfile`, `LookupUser` and the lookup budget (no enumeration).
//! - [`graph`]: contacts, blocks, privacy settings.
//! - [`facts`]: the cache `visible` reads.
//!
//! Blocking and messages (the contract): in a direct chat, a message from a user the
//! recipient blocked is accepted, stored and answered `Sent` (the sender's devices get it),
//! but withheld from the blocker for good: no log row, no push, never in their `Sync` or
//! `GetMessages`, also after an unblock; `GetMessageReceipts` counts the blocker as pending.
//! The blocked sender is not told ("delivered" never comes for it). The blocker sending into
//! that chat is `Forbidden` "unblock this user to message them". Groups are unaffected.
//! A withheld edit rewrites the stored target, but the blocker keeps reading the text they saw
//! (storage keeps it aside); receipts are hidden both ways while the block stands. Contact,
//! block and privacy changes make presence re-evaluate running watches
//! ([`crate::presence::PresenceService::relations_changed`], called by `services.rs`: social
//! does not depend on presence).

pub mod directory;
pub mod facts;
pub mod graph;
pub mod profiles;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use tern_protocol::{
    ErrorBody, PrivacySettings, Profile, ProfileEdit, SessionInfo, SocialFeatures, UserId,
    UserQuery,
};

use self::facts::{FactsCache, UserFacts};
use crate::auth::storage_error;
use crate::chat::limits::{SharedBudget, UserLimiter};
use crate::metrics::Metrics;
use crate::policy::{Attribute, Facts, Policy};
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
    /// `SetProfile` changes one user may make at once.
    pub profile_burst: u32,
    /// `SetProfile` changes per user per day after the burst.
    pub profile_changes_per_day: u32,
    /// Most users whose facts (settings, contacts, blocks) are cached for `visible`.
    pub max_cached_users: usize,
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
            profile_burst: 5,
            profile_changes_per_day: 50,
            max_cached_users: 50_000,
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
    storage: Arc<dyn Storage>,
    metrics: Metrics,
    #[allow(dead_code)]
    policy: Arc<Policy>,
    config: SocialConfig,
    /// Directory lookups (and profile reads of strangers), per user.
    lookups: UserLimiter,
    /// Username changes, per user.
    username_changes: UserLimiter,
    /// Other profile changes, per user.
    profile_changes: UserLimiter,
    facts_cache: FactsCache,
}

impl SocialService {
    /// Also spends the daily budgets cluster-wide for users on several nodes.
    pub fn with_shared_budget(mut self, shared: Option<Arc<dyn SharedBudget>>) -> Self {
        self.lookups = self.lookups.shared(shared.clone());
        self.username_changes = self.username_changes.shared(shared.clone());
        self.profile_changes = self.profile_changes.shared(shared);
        self
    }

    /// Builds the service from its dependencies.
    pub fn new(deps: SocialDeps) -> Self {
        let c = &deps.config;
        let per_day =
            |what, burst, rate| UserLimiter::per_day(what, burst, rate, c.max_limited_users);
        SocialService {
            lookups: per_day("directory lookups", c.lookup_burst, c.lookups_per_day),
            username_changes: per_day(
                "username changes",
                c.username_burst,
                c.username_changes_per_day,
            ),
            profile_changes: per_day(
                "profile changes",
                c.profile_burst,
                c.profile_changes_per_day,
            ),
            facts_cache: FactsCache::new(c.max_cached_users),
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

    /// Another node committed a social write of `users` (cluster mode): their cached facts go.
    pub fn forget_facts(&self, users: &[UserId]) {
        for u in users {
            self.facts_cache.invalidate(*u);
        }
    }

    /// The bus may have lost such a write: every cached fact goes.
    pub fn forget_all_facts(&self) {
        self.facts_cache.clear();
    }

    /// A user's facts, through the cache.
    async fn facts(&self, user: UserId) -> Result<Arc<UserFacts>, ErrorBody> {
        self.facts_cache
            .get(self.storage.as_ref(), user)
            .await
            .map_err(storage_error)
    }

    /// Whether `viewer` may see `attr` of `owner` now (blocks either way, contacts, settings,
    /// reciprocity): gathers the facts and asks [`crate::policy::visible`]. Every feature asks
    /// this; none decides on its own. Fails closed: a storage error hides.
    pub async fn visible(&self, viewer: UserId, owner: UserId, attr: Attribute) -> bool {
        if viewer == owner {
            return true;
        }
        let (o, v) = match (self.facts(owner).await, self.facts(viewer).await) {
            (Ok(o), Ok(v)) => (o, v),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = ?e, "visibility facts unavailable; hiding");
                return false;
            }
        };
        crate::policy::visible(
            &Facts {
                viewer,
                owner,
                owner_settings: &o.privacy,
                viewer_settings: &v.privacy,
                owner_has_viewer: o.has_contact(viewer),
                viewer_has_owner: v.has_contact(owner),
                owner_blocked_viewer: o.blocks(viewer),
                viewer_blocked_owner: v.blocks(owner),
            },
            attr,
        )
    }

    /// `GetProfile`.
    pub async fn get_profile(&self, s: SessionInfo, user: UserId) -> Result<Profile, ErrorBody> {
        self.profile_of(s, user).await
    }

    /// `SetProfile`.
    pub async fn set_profile(
        &self,
        s: SessionInfo,
        edit: ProfileEdit,
    ) -> Result<Profile, ErrorBody> {
        self.edit_profile(s, edit).await
    }

    /// `SetUsername`.
    pub async fn set_username(
        &self,
        s: SessionInfo,
        username: Option<String>,
    ) -> Result<Profile, ErrorBody> {
        self.change_username(s, username).await
    }

    /// `LookupUser`.
    pub async fn lookup(&self, s: SessionInfo, q: UserQuery) -> Result<Option<Profile>, ErrorBody> {
        self.find(s, q).await
    }

    /// `AddContact`.
    pub async fn add_contact(&self, s: SessionInfo, user: UserId) -> Result<(), ErrorBody> {
        self.add_contact_of(s, user).await
    }

    /// `RemoveContact`.
    pub async fn remove_contact(&self, s: SessionInfo, user: UserId) -> Result<(), ErrorBody> {
        self.remove_contact_of(s, user).await
    }

    /// `ListContacts`.
    pub async fn contacts(&self, s: SessionInfo) -> Result<Vec<Profile>, ErrorBody> {
        self.contact_profiles(s).await
    }

    /// `Block`.
    pub async fn block(&self, s: SessionInfo, user: UserId) -> Result<(), ErrorBody> {
        self.set_blocked(s, user, true).await
    }

    /// `Unblock`.
    pub async fn unblock(&self, s: SessionInfo, user: UserId) -> Result<(), ErrorBody> {
        self.set_blocked(s, user, false).await
    }

    /// `ListBlocked`.
    pub async fn blocked(&self, s: SessionInfo) -> Result<Vec<UserId>, ErrorBody> {
        self.blocked_list(s).await
    }

    /// `GetPrivacy`.
    pub async fn privacy(&self, s: SessionInfo) -> Result<PrivacySettings, ErrorBody> {
        self.privacy_of(s).await
    }

    /// `SetPrivacy`.
    pub async fn set_privacy(
        &self,
        s: SessionInfo,
        p: PrivacySettings,
    ) -> Result<PrivacySettings, ErrorBody> {
        self.replace_privacy(s, p).await
    }
}
