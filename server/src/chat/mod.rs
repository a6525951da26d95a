//! Chats and messages: opening direct chats, sending, syncing, receipts.
//!
//! The service answers requests; live delivery is not its job. Storage hands committed updates
//! to the router (see [`crate::router`]), so a message is pushed only once it is durable.
//! Per-user limits live in [`limits`], first-contact rules in [`crate::policy`], and delivered
//! receipts are published coalesced by [`receipts`].

pub mod limits;
pub mod receipts;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_protocol::limits::{MAX_FRAME_LEN, MAX_LIST_LEN, MAX_MESSAGES_PAGE, MAX_SYNC_PAGE};
use tern_protocol::{
    ChatId, ChatInfo, ChatsPage, ClientMsgId, ErrorBody, ErrorCode, Message, MessageBody,
    MessageReceipts, Receipt, Sent, Seq, SessionInfo, SyncCursor, SyncPage, Update, UpdateKind,
    UserId,
};

use self::limits::{ChatConfig, SharedBudget, UserLimiter};
use self::receipts::ReceiptCoalescer;
use crate::auth::storage_error;
use crate::metrics::Metrics;
use crate::policy::{Policy, Relation};
use crate::storage::{ChatRecord, MessageRules, NewMessage, Storage, split_page};

/// What the chat service depends on.
#[derive(Debug)]
pub struct ChatDeps {
    /// Where chats and messages live.
    pub storage: Arc<dyn Storage>,
    /// Counters.
    pub metrics: Metrics,
    /// Who may contact whom.
    pub policy: Arc<Policy>,
    /// Limits and receipt coalescing.
    pub config: ChatConfig,
}

/// Chat requests.
#[derive(Debug)]
pub struct ChatService {
    storage: Arc<dyn Storage>,
    metrics: Metrics,
    policy: Arc<Policy>,
    sends: UserLimiter,
    receipts: Arc<ReceiptCoalescer>,
    features: tern_protocol::ChatFeatures,
    rules: MessageRules,
}

/// The one answer for "no such chat" and "not a member", so non-members learn nothing.
pub(crate) fn no_such_chat() -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, "no such chat")
}

/// The chat's row if `user` is a member of it, else the missing-chat answer.
pub(crate) async fn member_chat(
    storage: &dyn Storage,
    user: UserId,
    chat: ChatId,
) -> Result<ChatRecord, ErrorBody> {
    match storage.chat(chat).await.map_err(storage_error)? {
        Some(record) if record.has_member(user) => Ok(record),
        _ => Err(no_such_chat()),
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ChatService {
    /// Also spends the send budget cluster-wide for users on several nodes.
    pub fn with_shared_budget(mut self, shared: Option<Arc<dyn SharedBudget>>) -> Self {
        self.sends = self.sends.shared(shared);
        self
    }

    /// Builds the service from its dependencies.
    pub fn new(deps: ChatDeps) -> Self {
        let c = &deps.config;
        ChatService {
            sends: UserLimiter::per_minute(
                "messages",
                c.send_burst,
                c.send_per_minute,
                c.max_limited_users,
            ),
            receipts: Arc::new(ReceiptCoalescer::new(
                deps.storage.clone(),
                Duration::from_millis(c.receipt_delay_ms),
                c.max_pending_receipts,
            )),
            features: c.features(),
            rules: MessageRules {
                edit_window_ms: u64::from(c.edit_window_s) * 1000,
                delete_window_ms: u64::from(c.delete_window_s) * 1000,
                max_edits: c.max_edits,
                max_mentions: c.features().max_mentions,
            },
            storage: deps.storage,
            metrics: deps.metrics,
            policy: deps.policy,
        }
    }

    /// Starts publishing coalesced receipts in the background (abort the handle to stop; call
    /// [`ChatService::flush_receipts`] before closing storage).
    pub fn spawn_receipt_flusher(&self) -> tokio::task::JoinHandle<()> {
        self.receipts.spawn_flusher()
    }

    /// Publishes every held receipt now (shutdown).
    pub async fn flush_receipts(&self) {
        self.receipts.flush().await;
    }

    async fn member_chat(&self, user: UserId, chat: ChatId) -> Result<ChatRecord, ErrorBody> {
        member_chat(self.storage.as_ref(), user, chat).await
    }

    /// Opens (or finds) the direct chat with `peer`.
    pub async fn open_direct(&self, s: SessionInfo, peer: UserId) -> Result<ChatInfo, ErrorBody> {
        if peer == s.user_id {
            return Err(ErrorBody::new(
                ErrorCode::InvalidArgument,
                "a direct chat needs another user",
            ));
        }
        let existing = self
            .storage
            .direct_chat(s.user_id, peer)
            .await
            .map_err(storage_error)?;
        let relation = match existing {
            Some(_) => Relation::SharesChat,
            None => Relation::Stranger,
        };
        // Asked before the user lookup: probing ids spends the same budget as real contacts.
        self.policy
            .may_contact(s.user_id, peer, relation, Instant::now())
            .await?;
        if existing.is_none()
            && !self
                .storage
                .user_exists(peer)
                .await
                .map_err(storage_error)?
        {
            return Err(ErrorBody::new(ErrorCode::NotFound, "no such user"));
        }
        self.storage
            .open_direct_chat(s.user_id, peer, now_ms())
            .await
            .map_err(storage_error)
    }

    /// The caller's first [`tern_protocol::limits::MAX_LIST_LEN`] chats (`ListChats`).
    pub async fn list(&self, s: SessionInfo) -> Result<Vec<ChatInfo>, ErrorBody> {
        let ids = self
            .storage
            .user_chats(s.user_id)
            .await
            .map_err(storage_error)?;
        self.infos(ids).await
    }

    /// A page of the caller's chats with ids above `after` (`ListChatsPage`).
    pub async fn list_page(
        &self,
        s: SessionInfo,
        after: ChatId,
        limit: u32,
    ) -> Result<ChatsPage, ErrorBody> {
        let limit = limit.clamp(1, MAX_LIST_LEN as u32);
        let rows = self
            .storage
            .user_chats_page(s.user_id, after, limit + 1)
            .await
            .map_err(storage_error)?;
        let (ids, more) = split_page(rows, limit);
        let last_id = ids.last().copied();
        let mut chats = self.infos(ids).await?;
        let fit = fitting(chats.iter().map(chat_size));
        let next = if fit < chats.len() {
            chats.truncate(fit);
            chats.last().map(|c| c.chat_id)
        } else if more {
            last_id
        } else {
            None
        };
        Ok(ChatsPage { chats, next })
    }

    async fn infos(&self, ids: Vec<ChatId>) -> Result<Vec<ChatInfo>, ErrorBody> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = self.storage.chat(id).await.map_err(storage_error)? {
                let last = self.storage.last_seq(id).await.map_err(storage_error)?;
                out.push(record.info(last));
            }
        }
        Ok(out)
    }

    /// Stores a message durably and answers with its seq. Idempotent per `(device, client_msg_id)`.
    pub async fn send(
        &self,
        s: SessionInfo,
        chat: ChatId,
        client_msg_id: ClientMsgId,
        body: MessageBody,
    ) -> Result<Sent, ErrorBody> {
        // Membership first: a non-member gets the missing-chat answer whatever the body. The
        // body itself (targets, windows, announcement-only) and blocks in a direct chat (the
        // blocker's send is `Forbidden`, the blocked sender's is withheld from the blocker)
        // are checked by storage, in the writer, against the state the message is appended
        // to, so a block and a send racing each other have one order.
        self.member_chat(s.user_id, chat).await?;
        self.sends.check(s.user_id, Instant::now()).await?;
        let appended = self
            .storage
            .append_message(NewMessage {
                chat_id: chat,
                sender: s.user_id,
                sender_device: s.device_id,
                client_msg_id,
                body,
                ts_ms: now_ms(),
                rules: self.rules,
            })
            .await
            .map_err(storage_error)?;
        if !appended.duplicate {
            self.metrics.messages_stored.inc();
        }
        if appended.withheld {
            self.metrics.social_event("message_withheld");
        }
        Ok(Sent::of(&appended.message))
    }

    /// Records that one of the member's devices stored everything up to `upto`.
    /// The watermark is durable when this returns; the other members see it coalesced.
    pub async fn ack(&self, s: SessionInfo, chat: ChatId, upto: Seq) -> Result<Receipt, ErrorBody> {
        let change = self
            .storage
            .ack(chat, s.user_id, upto)
            .await
            .map_err(storage_error)?;
        if change.changed {
            self.receipts.moved(chat, s.user_id).await;
        }
        Ok(change.receipt)
    }

    /// Records that the member read everything up to `upto`.
    pub async fn mark_read(
        &self,
        s: SessionInfo,
        chat: ChatId,
        upto: Seq,
    ) -> Result<Receipt, ErrorBody> {
        Ok(self
            .storage
            .mark_read(chat, s.user_id, upto)
            .await
            .map_err(storage_error)?
            .receipt)
    }

    /// A page of the caller's update log after `after`.
    pub async fn sync(
        &self,
        s: SessionInfo,
        after: SyncCursor,
        limit: u32,
    ) -> Result<SyncPage, ErrorBody> {
        let limit = limit.clamp(1, MAX_SYNC_PAGE);
        let mut updates = self
            .storage
            .updates(s.user_id, after.pts, limit + 1)
            .await
            .map_err(storage_error)?;
        if updates.is_empty() && after.pts > 0 {
            // An empty page is also what a cursor beyond the log's head gets (a server restored
            // from an older backup). Say so: the client would otherwise drop every new update
            // below its cursor as a duplicate.
            let head = self
                .storage
                .latest_pts(s.user_id)
                .await
                .map_err(storage_error)?;
            if after.pts > head {
                return Err(ErrorBody::new(
                    ErrorCode::CursorAhead,
                    format!("cursor {} is ahead of the update log ({head})", after.pts),
                ));
            }
        }
        let fit = fitting(updates.iter().map(update_size));
        let has_more = updates.len() > fit.min(limit as usize);
        updates.truncate(fit.min(limit as usize));
        let cursor = SyncCursor {
            pts: updates.last().map_or(after.pts, |u| u.pts),
        };
        Ok(SyncPage {
            updates,
            cursor,
            has_more,
        })
    }

    /// A range of a chat's messages.
    pub async fn messages(
        &self,
        s: SessionInfo,
        chat: ChatId,
        from: Seq,
        limit: u32,
    ) -> Result<Vec<Message>, ErrorBody> {
        self.member_chat(s.user_id, chat).await?;
        let limit = limit.clamp(1, MAX_MESSAGES_PAGE);
        let mut messages = self
            .storage
            .messages(s.user_id, chat, from, limit)
            .await
            .map_err(storage_error)?;
        messages.truncate(fitting(messages.iter().map(message_size)));
        Ok(messages)
    }

    /// Every member's receipt watermarks.
    pub async fn receipts(&self, s: SessionInfo, chat: ChatId) -> Result<Vec<Receipt>, ErrorBody> {
        self.member_chat(s.user_id, chat).await?;
        self.storage
            .receipts(s.user_id, chat)
            .await
            .map_err(storage_error)
    }

    /// Who a message was delivered to and read by (`GetMessageReceipts`): its sender only.
    pub async fn message_receipts(
        &self,
        s: SessionInfo,
        chat: ChatId,
        seq: Seq,
    ) -> Result<MessageReceipts, ErrorBody> {
        self.member_chat(s.user_id, chat).await?;
        let no_such = || ErrorBody::new(ErrorCode::InvalidArgument, "no such message");
        let message = self
            .storage
            .message(chat, seq)
            .await
            .map_err(storage_error)?
            .ok_or_else(no_such)?;
        if message.sender != s.user_id {
            return Err(ErrorBody::new(
                ErrorCode::Forbidden,
                "only the sender may see who received a message",
            ));
        }
        self.storage
            .message_receipts(chat, seq)
            .await
            .map_err(storage_error)
    }

    /// Hides messages on the caller's devices only (`DeleteForMe`).
    pub async fn delete_for_me(
        &self,
        s: SessionInfo,
        chat: ChatId,
        seqs: Vec<Seq>,
    ) -> Result<(), ErrorBody> {
        self.member_chat(s.user_id, chat).await?;
        self.storage
            .hide_messages(s.user_id, chat, seqs)
            .await
            .map_err(storage_error)
    }

    /// Message-feature windows and limits, for `Welcome`.
    pub fn features(&self) -> tern_protocol::ChatFeatures {
        self.features
    }

    /// The user's latest pts, for `Welcome`.
    pub async fn latest_pts(&self, user: UserId) -> Result<u64, ErrorBody> {
        self.storage.latest_pts(user).await.map_err(storage_error)
    }
}

/// Bytes of payload a page may carry, leaving room for framing within `MAX_FRAME_LEN`.
const PAGE_BUDGET: usize = MAX_FRAME_LEN as usize - 4 * 1024;

/// Upper bound of a message's encoded size (postcard varints never exceed these widths).
fn message_size(m: &Message) -> usize {
    use tern_protocol::GroupChange;
    let body = match &m.body {
        MessageBody::Text(t) | MessageBody::Edit { text: t, .. } => t.len(),
        MessageBody::Rich(r) => r.text.len() + r.mentions.len() * 10 + 10,
        MessageBody::Reaction { emoji, .. } => emoji.as_ref().map_or(0, String::len) + 10,
        MessageBody::Delete { .. } | MessageBody::Deleted => 10,
        MessageBody::Media(m) => {
            m.mime.len()
                + m.caption.as_ref().map_or(0, String::len)
                + match &m.thumbnail {
                    tern_protocol::Thumbnail::Inline(b) => b.len(),
                    _ => 0,
                }
                + 120
        }
        MessageBody::System(e) => {
            20 + match &e.change {
                GroupChange::Created { title } => title.len(),
                GroupChange::MembersAdded(users) => users.len() * 10,
                GroupChange::InfoChanged { title, description } => {
                    title.as_ref().map_or(0, String::len)
                        + description.as_ref().map_or(0, String::len)
                }
                _ => 0,
            }
        }
    };
    body + 80
}

fn chat_size(c: &ChatInfo) -> usize {
    c.members.len() * 10 + 64
}

fn update_size(u: &Update) -> usize {
    match &u.kind {
        UpdateKind::Message(m) => message_size(m) + 12,
        UpdateKind::Receipt(_) => 64,
        UpdateKind::ChatJoined(c) => chat_size(c),
        UpdateKind::ChatLeft { .. } => 32,
        UpdateKind::HiddenForMe { seqs, .. } => seqs.len() * 10 + 32,
        UpdateKind::ProfileChanged { .. } => 16,
    }
}

/// How many leading items fit in one frame (at least one: a single item always fits).
fn fitting(sizes: impl Iterator<Item = usize>) -> usize {
    let mut total = 0;
    let mut n = 0;
    for size in sizes {
        total += size;
        if total > PAGE_BUDGET && n > 0 {
            break;
        }
        n += 1;
    }
    n
}
