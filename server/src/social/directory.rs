//! The directory: profiles by id, lookup by username or identifier, and the budget that keeps
//! it from being enumerated.
//!
//! Every `LookupUser` spends one token of the caller's lookup budget before anything is read,
//! found or not, valid or not, so a hit and a miss cost the same and answer the same shape
//! (`Lookup(None)` for every kind of miss). `GetProfile` and `AddContact` of a user the caller
//! has no relation with (no shared chat, not a contact either way) spend from the same budget:
//! reading profiles of random ids is a lookup too.

use std::time::Instant;

use tern_protocol::{ErrorBody, ErrorCode, Profile, SessionInfo, UserId, UserQuery};

use super::SocialService;
use super::profiles::normalise_username;
use crate::auth::identifier::Identifier;
use crate::auth::storage_error;

/// The answer for an id nobody holds.
pub(super) fn no_such_user() -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, "no such user")
}

impl SocialService {
    /// Whether `a` and `b` know each other: a contact either way, or a shared chat (direct or
    /// group). Reads `a`'s chats only when the cheaper facts say nothing.
    pub(super) async fn related(&self, a: UserId, b: UserId) -> Result<bool, ErrorBody> {
        let fa = self.facts(a).await?;
        let fb = self.facts(b).await?;
        if fa.has_contact(b) || fb.has_contact(a) {
            return Ok(true);
        }
        let storage = self.storage.as_ref();
        if storage
            .direct_chat(a, b)
            .await
            .map_err(storage_error)?
            .is_some()
        {
            return Ok(true);
        }
        for chat in storage.user_chats(a).await.map_err(storage_error)? {
            if let Some(r) = storage.chat(chat).await.map_err(storage_error)?
                && r.has_member(a)
                && r.has_member(b)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Spends one directory token unless `viewer` and `user` are related (or the same).
    pub(super) async fn spend_unless_related(
        &self,
        viewer: UserId,
        user: UserId,
    ) -> Result<(), ErrorBody> {
        if viewer == user || self.related(viewer, user).await? {
            return Ok(());
        }
        self.lookups.check(viewer, Instant::now()).await
    }

    /// `GetProfile`.
    pub(super) async fn profile_of(
        &self,
        s: SessionInfo,
        user: UserId,
    ) -> Result<Profile, ErrorBody> {
        self.spend_unless_related(s.user_id, user).await?;
        if !self.user_exists(user).await? {
            return Err(no_such_user());
        }
        let record = self.record(user).await?;
        Ok(self.view(s.user_id, user, &record).await)
    }

    pub(super) async fn user_exists(&self, user: UserId) -> Result<bool, ErrorBody> {
        self.storage.user_exists(user).await.map_err(storage_error)
    }

    /// `LookupUser`.
    pub(super) async fn find(
        &self,
        s: SessionInfo,
        query: UserQuery,
    ) -> Result<Option<Profile>, ErrorBody> {
        self.lookups.check(s.user_id, Instant::now()).await?;
        let found = match &query {
            UserQuery::Username(raw) => match normalise_username(raw) {
                Ok(name) => self
                    .storage
                    .user_by_username(&name)
                    .await
                    .map_err(storage_error)?,
                Err(_) => None,
            },
            UserQuery::Identifier(raw) => match Identifier::parse(raw) {
                Some(id) => self
                    .storage
                    .user_by_identifier(id.as_str())
                    .await
                    .map_err(storage_error)?,
                None => None,
            },
        };
        let Some(user) = found else {
            self.metrics.social_event("lookup_missed");
            return Ok(None);
        };
        self.metrics.social_event("lookup_found");
        // A user who blocked the caller is still found (as in WhatsApp), with photo and about
        // hidden by the policy.
        let record = self.record(user).await?;
        Ok(Some(self.view(s.user_id, user, &record).await))
    }
}
