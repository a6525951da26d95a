//! The privacy and authorization policy every domain asks before one user reaches another
//! (DESIGN §8: one module, not a check per feature). Today it knows one relation, whether two
//! users already share a chat; contacts, blocking and privacy settings (a later issue) extend
//! [`Relation`] and the rules here, and every caller inherits them.
//!
//! The first-contact rule of v1 is a documented equivalent of message requests: opening a chat
//! with someone the user has no chat with spends a per-user token (a small burst, then a daily
//! refill), attempts on ids that do not exist included, so an account can neither spray
//! strangers nor probe for ids. Sends are limited separately (`chat::limits`).

use std::time::Instant;

use tern_protocol::{ErrorBody, UserId};

use crate::chat::limits::{ChatConfig, UserLimiter};

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

    /// Whether `from` may open a conversation with `to`. First contact spends from `from`'s
    /// budget; an existing relation is free.
    pub fn may_contact(
        &self,
        from: UserId,
        _to: UserId,
        relation: Relation,
        now: Instant,
    ) -> Result<(), ErrorBody> {
        match relation {
            Relation::SharesChat => Ok(()),
            Relation::Stranger => self.new_peers.check(from, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_protocol::ErrorCode;

    #[test]
    fn strangers_cost_budget_known_peers_do_not() {
        let config = ChatConfig {
            new_peer_burst: 1,
            ..ChatConfig::default()
        };
        let p = Policy::new(&config);
        let now = Instant::now();
        let (me, you) = (UserId(1), UserId(2));
        assert!(p.may_contact(me, you, Relation::Stranger, now).is_ok());
        let refused = p.may_contact(me, UserId(3), Relation::Stranger, now);
        assert_eq!(refused.unwrap_err().code, ErrorCode::RateLimited);
        for _ in 0..10 {
            assert!(p.may_contact(me, you, Relation::SharesChat, now).is_ok());
        }
    }
}
