//! The social graph a user owns: contacts (the audience of `Audience::Contacts`), blocks and
//! privacy settings. Each write commits, then drops the owner's cached facts, so the next
//! `visible` answers from the new state.
//!
//! What a block does beyond these rows lives where it applies: the policy hides every
//! attribute both ways ([`crate::policy::visible`]); storage withholds the blocked user's
//! direct messages from the blocker and refuses the blocker's own sends into that chat
//! ([`crate::storage::Storage::append_message`]); `ProfileChanged` skips both directions.

use std::collections::BTreeSet;

use tern_protocol::limits::MAX_PRIVACY_EXCEPTIONS;
use tern_protocol::{
    Audience, ErrorBody, ErrorCode, PrivacySettings, Profile, SessionInfo, UserId,
};

use super::SocialService;
use super::directory::no_such_user;
use crate::auth::storage_error;
use crate::storage::{EdgeChange, EdgeKind, StorageError};

fn not_yourself(what: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::InvalidArgument,
        format!("you cannot {what} yourself"),
    )
}

/// Unknown users answer exactly like [`no_such_user`]; the rest as storage says.
fn graph_error(e: StorageError) -> ErrorBody {
    match e {
        StorageError::UserNotFound => no_such_user(),
        other => storage_error(other),
    }
}

/// Sorts and deduplicates an exception list (the order a client gave carries no meaning).
fn tidy(a: Audience) -> Result<Audience, ErrorBody> {
    match a {
        Audience::ContactsExcept(list) => {
            let set: BTreeSet<UserId> = list.into_iter().collect();
            if set.len() > MAX_PRIVACY_EXCEPTIONS {
                return Err(ErrorBody::new(
                    ErrorCode::TooLarge,
                    format!("at most {MAX_PRIVACY_EXCEPTIONS} exceptions"),
                ));
            }
            Ok(Audience::ContactsExcept(set.into_iter().collect()))
        }
        other => Ok(other),
    }
}

impl SocialService {
    /// `AddContact`: a stranger costs a directory token (adding random ids is a lookup).
    pub(super) async fn add_contact_of(
        &self,
        s: SessionInfo,
        user: UserId,
    ) -> Result<(), ErrorBody> {
        if user == s.user_id {
            return Err(not_yourself("add"));
        }
        self.spend_unless_related(s.user_id, user).await?;
        self.set_edge(s, EdgeKind::Contact, user, true).await
    }

    /// `RemoveContact`: idempotent.
    pub(super) async fn remove_contact_of(
        &self,
        s: SessionInfo,
        user: UserId,
    ) -> Result<(), ErrorBody> {
        self.set_edge(s, EdgeKind::Contact, user, false).await
    }

    /// Writes one edge of the caller's, then drops their cached facts.
    async fn set_edge(
        &self,
        s: SessionInfo,
        kind: EdgeKind,
        other: UserId,
        on: bool,
    ) -> Result<(), ErrorBody> {
        let max = match kind {
            EdgeKind::Contact => self.config.max_contacts,
            EdgeKind::Block => self.config.max_blocked,
        };
        let change = EdgeChange {
            kind,
            owner: s.user_id,
            other,
            on,
            max,
        };
        let r = self.storage.set_edge(change).await;
        self.facts_cache.invalidate(s.user_id);
        r.map_err(graph_error)?;
        self.metrics.social_event(match (kind, on) {
            (EdgeKind::Contact, true) => "contact_added",
            (EdgeKind::Contact, false) => "contact_removed",
            (EdgeKind::Block, true) => "blocked",
            (EdgeKind::Block, false) => "unblocked",
        });
        Ok(())
    }

    /// The caller's edges of a kind, in id order.
    async fn edge_list(&self, s: SessionInfo, kind: EdgeKind) -> Result<Vec<UserId>, ErrorBody> {
        let mut ids = self
            .storage
            .edges(s.user_id, kind)
            .await
            .map_err(storage_error)?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// `ListContacts`: profiles as visible to the caller, in id order.
    pub(super) async fn contact_profiles(&self, s: SessionInfo) -> Result<Vec<Profile>, ErrorBody> {
        let ids = self.edge_list(s, EdgeKind::Contact).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let record = self.record(id).await?;
            out.push(self.view(s.user_id, id, &record).await);
        }
        Ok(out)
    }

    /// `Block` / `Unblock`: idempotent; blocking oneself or an unknown id is refused.
    pub(super) async fn set_blocked(
        &self,
        s: SessionInfo,
        user: UserId,
        blocked: bool,
    ) -> Result<(), ErrorBody> {
        if blocked && user == s.user_id {
            return Err(not_yourself("block"));
        }
        self.set_edge(s, EdgeKind::Block, user, blocked).await
    }

    /// `ListBlocked`, in id order.
    pub(super) async fn blocked_list(&self, s: SessionInfo) -> Result<Vec<UserId>, ErrorBody> {
        self.edge_list(s, EdgeKind::Block).await
    }

    /// `GetPrivacy`.
    pub(super) async fn privacy_of(&self, s: SessionInfo) -> Result<PrivacySettings, ErrorBody> {
        Ok(self.facts(s.user_id).await?.privacy.clone())
    }

    /// `SetPrivacy`: stored as given, exception lists sorted and deduplicated.
    pub(super) async fn replace_privacy(
        &self,
        s: SessionInfo,
        p: PrivacySettings,
    ) -> Result<PrivacySettings, ErrorBody> {
        let p = PrivacySettings {
            last_seen: tidy(p.last_seen)?,
            online: tidy(p.online)?,
            photo: tidy(p.photo)?,
            about: tidy(p.about)?,
        };
        let r = self.storage.set_privacy(s.user_id, p.clone()).await;
        self.facts_cache.invalidate(s.user_id);
        r.map_err(storage_error)?;
        self.metrics.social_event("privacy_changed");
        Ok(p)
    }
}
