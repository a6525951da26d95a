//! Groups: creation, membership, admins, title and settings.
//!
//! A group is a chat (same seq, messages, receipts and update log as a direct chat); this
//! service adds what only groups have. Every change is a system message written by storage,
//! which also checks permissions against the state the change applies to (see
//! `storage::fjall::groups`), so this layer validates arguments, rate-limits and answers.
//! Non-members get exactly the answer a missing chat gets.

use std::sync::Arc;
use std::time::Instant;

use tern_protocol::limits::MAX_CHAT_MEMBERS;
use tern_protocol::{
    ChatId, ChatInfo, ErrorBody, ErrorCode, GroupInfo, GroupSettings, Sent, SessionInfo, UserId,
};

use crate::auth::storage_error;
use crate::chat::limits::UserLimiter;
use crate::chat::{member_chat, now_ms};
use crate::metrics::Metrics;
use crate::storage::{GroupCommand, GroupOp, NewGroup, Storage};

/// What the group service depends on.
#[derive(Debug)]
pub struct GroupDeps {
    /// Where chats live.
    pub storage: Arc<dyn Storage>,
    /// Counters.
    pub metrics: Metrics,
    /// Group changes per user: each writes to up to 1024 logs, so they are limited like
    /// sending messages (the same quota, counted apart).
    pub changes: UserLimiter,
}

/// Group requests.
#[derive(Debug)]
pub struct GroupService {
    storage: Arc<dyn Storage>,
    metrics: Metrics,
    changes: UserLimiter,
}

impl GroupService {
    /// Builds the service from its dependencies.
    pub fn new(deps: GroupDeps) -> Self {
        GroupService {
            storage: deps.storage,
            metrics: deps.metrics,
            changes: deps.changes,
        }
    }

    /// Checks that every user is registered (`NotFound` "no such user" otherwise).
    async fn registered(&self, users: &[UserId]) -> Result<(), ErrorBody> {
        for &u in users {
            if !self.storage.user_exists(u).await.map_err(storage_error)? {
                return Err(ErrorBody::new(
                    ErrorCode::NotFound,
                    format!("no such user {u}"),
                ));
            }
        }
        Ok(())
    }

    /// `CreateGroup`.
    pub async fn create(
        &self,
        s: SessionInfo,
        title: String,
        mut members: Vec<UserId>,
    ) -> Result<ChatInfo, ErrorBody> {
        if title.trim().is_empty() {
            return Err(ErrorBody::new(
                ErrorCode::InvalidArgument,
                "a group needs a title",
            ));
        }
        members.retain(|&u| u != s.user_id);
        members.sort_unstable();
        members.dedup();
        if members.len() + 1 > MAX_CHAT_MEMBERS {
            return Err(ErrorBody::new(
                ErrorCode::TooLarge,
                format!("a chat has at most {MAX_CHAT_MEMBERS} members"),
            ));
        }
        self.changes.check(s.user_id, Instant::now()).await?;
        self.registered(&members).await?;
        let info = self
            .storage
            .create_group(NewGroup {
                creator: s.user_id,
                creator_device: s.device_id,
                title,
                members,
                now_ms: now_ms(),
            })
            .await
            .map_err(storage_error)?;
        self.metrics.groups_created.inc();
        Ok(info)
    }

    /// Any membership or settings change; answered with the system message's `Sent`.
    pub async fn change(
        &self,
        s: SessionInfo,
        chat: ChatId,
        op: GroupOp,
    ) -> Result<Sent, ErrorBody> {
        match &op {
            GroupOp::Add(users) if users.len() > MAX_CHAT_MEMBERS => {
                return Err(ErrorBody::new(
                    ErrorCode::TooLarge,
                    format!("a chat has at most {MAX_CHAT_MEMBERS} members"),
                ));
            }
            GroupOp::Add(users) => {
                // Membership first, so a non-member learns nothing about the users named.
                self.member_chat(s.user_id, chat).await?;
                self.registered(users).await?;
            }
            _ => {}
        }
        self.changes.check(s.user_id, Instant::now()).await?;
        let message = self
            .storage
            .change_group(GroupCommand {
                chat_id: chat,
                actor: s.user_id,
                actor_device: s.device_id,
                op,
                now_ms: now_ms(),
            })
            .await
            .map_err(storage_error)?;
        self.metrics.messages_stored.inc();
        Ok(Sent::of(&message))
    }

    async fn member_chat(
        &self,
        user: UserId,
        chat: ChatId,
    ) -> Result<crate::storage::ChatRecord, ErrorBody> {
        member_chat(self.storage.as_ref(), user, chat).await
    }

    /// `GetGroupInfo`.
    pub async fn info(&self, s: SessionInfo, chat: ChatId) -> Result<GroupInfo, ErrorBody> {
        let record = self.member_chat(s.user_id, chat).await?;
        let last = self.storage.last_seq(chat).await.map_err(storage_error)?;
        record
            .group_info(last)
            .ok_or_else(|| ErrorBody::new(ErrorCode::InvalidArgument, "not a group"))
    }

    /// `SetGroupSettings`.
    pub async fn settings(
        &self,
        s: SessionInfo,
        chat: ChatId,
        settings: GroupSettings,
    ) -> Result<Sent, ErrorBody> {
        self.change(s, chat, GroupOp::Settings(settings)).await
    }
}
