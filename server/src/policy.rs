//! The privacy and authorization policy every domain asks before one user reaches another
//! (DESIGN §8: one module, not a check per feature). Two questions live here: whether one user
//! may open a conversation with another ([`Policy::may_contact`]), and whether a viewer may see
//! an attribute of an owner ([`visible`], the one visibility rule of issue 11). `visible` is a
//! pure function over [`Facts`] (contacts, blocks, privacy settings) that the social service
//! gathers; presence, typing and profiles ask it through `SocialService::visible` and never
//! decide on their own.
//!
//! The first-contact rule of v1 is a documented equivalent of message requests: opening a chat
//! with someone the user has no chat with spends a per-user token (a small burst, then a daily
//! refill), attempts on ids that do not exist included, so an account can neither spray
//! strangers nor probe for ids. Sends are limited separately (`chat::limits`).

use std::sync::Arc;
use std::time::Instant;

use tern_protocol::{Audience, ErrorBody, PrivacySettings, UserId};

use crate::chat::limits::{ChatConfig, SharedBudget, UserLimiter};

/// What one user may or may not see of another. Rules for each live in this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Attribute {
    /// When they were last online.
    LastSeen,
    /// That they are online now.
    Online,
    /// The profile photo.
    Photo,
    /// The about text.
    About,
    /// That they are typing (in a chat both are members of).
    Typing,
    /// That their profile changed (the `ProfileChanged` update).
    ProfileChanges,
}

/// What the visibility rule needs to know about a viewer `V` and an owner `O`. Gathered by the
/// social service (storage and its cache); the rule itself reads nothing else.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Who looks.
    pub viewer: UserId,
    /// Whose attribute.
    pub owner: UserId,
    /// The owner's privacy settings.
    pub owner_settings: &'a PrivacySettings,
    /// The viewer's privacy settings (last seen and online are reciprocal).
    pub viewer_settings: &'a PrivacySettings,
    /// `contact(O, V)`: the owner has the viewer in their contacts.
    pub owner_has_viewer: bool,
    /// `contact(V, O)`: the viewer has the owner in their contacts.
    pub viewer_has_owner: bool,
    /// `blocked(O, V)`: the owner blocked the viewer.
    pub owner_blocked_viewer: bool,
    /// `blocked(V, O)`: the viewer blocked the owner.
    pub viewer_blocked_owner: bool,
}

/// Whether `audience` of a user admits `who`, given whether the user has `who` as a contact.
pub fn admits(audience: &Audience, who: UserId, is_contact: bool) -> bool {
    match audience {
        Audience::Everyone => true,
        Audience::Contacts => is_contact,
        Audience::ContactsExcept(except) => is_contact && !except.contains(&who),
        Audience::Nobody => false,
    }
}

/// The one visibility rule: whether `facts.viewer` may see `attr` of `facts.owner`.
///
/// - Oneself: always.
/// - A block either way hides every attribute, both ways.
/// - Last seen and online are reciprocal (WhatsApp): the owner's audience must admit the
///   viewer and the viewer's audience must admit the owner, so who hides cannot see.
/// - Photo and about: the owner's audience.
/// - Typing and profile changes: anyone not blocked; who gets them at all is decided by chat
///   membership (typing) and by the `ProfileChanged` recipients (contacts and chat peers).
pub fn visible(facts: &Facts<'_>, attr: Attribute) -> bool {
    if facts.viewer == facts.owner {
        return true;
    }
    if facts.owner_blocked_viewer || facts.viewer_blocked_owner {
        return false;
    }
    let owner_admits = |a: &Audience| admits(a, facts.viewer, facts.owner_has_viewer);
    let viewer_admits = |a: &Audience| admits(a, facts.owner, facts.viewer_has_owner);
    let (o, v) = (facts.owner_settings, facts.viewer_settings);
    match attr {
        Attribute::LastSeen => owner_admits(&o.last_seen) && viewer_admits(&v.last_seen),
        Attribute::Online => owner_admits(&o.online) && viewer_admits(&v.online),
        Attribute::Photo => owner_admits(&o.photo),
        Attribute::About => owner_admits(&o.about),
        Attribute::Typing | Attribute::ProfileChanges => true,
    }
}

/// How two users stand to each other, as far as the policy is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Relation {
    /// They already share a chat.
    SharesChat,
    /// No relation: first contact.
    Stranger,
}

/// The one policy object, shared by every service.
#[derive(Debug)]
pub struct Policy {
    new_peers: UserLimiter,
}

impl Policy {
    /// The policy with the configured first-contact budget.
    pub fn new(config: &ChatConfig) -> Self {
        Policy {
            new_peers: UserLimiter::per_day(
                "chats with new people",
                config.new_peer_burst,
                config.new_peers_per_day,
                config.max_limited_users,
            ),
        }
    }

    /// Also spends the first-contact budget cluster-wide for users on several nodes.
    pub fn with_shared_budget(mut self, shared: Option<Arc<dyn SharedBudget>>) -> Self {
        self.new_peers = self.new_peers.shared(shared);
        self
    }

    /// Whether `from` may open a conversation with `to`. First contact spends from `from`'s
    /// budget; an existing relation is free.
    pub async fn may_contact(
        &self,
        from: UserId,
        _to: UserId,
        relation: Relation,
        now: Instant,
    ) -> Result<(), ErrorBody> {
        match relation {
            Relation::SharesChat => Ok(()),
            Relation::Stranger => self.new_peers.check(from, now).await,
        }
    }
}

#[cfg(test)]
mod tests;
