//! The storage seam: one trait shaped like the ScyllaDB schema, implemented by backends.
//!
//! Partitions: messages by chat (clustered by seq), devices, chats and the update log by user.
//! The trait knows no database driver; backends live in submodules ([`fjall`] is the embedded
//! default; `cql`, behind the cargo feature of that name, talks to ScyllaDB or Cassandra).
//! Every backend runs the same [`conformance`] suite.
//!
//! Durability contract: a write method returns only after its effects are durable (fsynced or
//! quorum-written), and readers never observe a write before it is durable. Backends group
//! concurrent writes into one commit so throughput does not collapse to one fsync per message.
//!
//! Committed updates flow to an [`UpdateSink`] in commit order, once durable: this is how live
//! delivery learns of new messages, so a recipient can never see a message a crash could erase.

mod config;
pub mod conformance;
#[cfg(feature = "cql")]
pub mod cql;
pub mod fjall;
mod record;
pub(crate) mod rules;

/// Closed membership intervals kept per member and chat; beyond it the oldest are dropped (the
/// member loses read access to that oldest stretch only).
pub const MAX_PAST_INTERVALS: usize = 64;
/// Messages a receipt publish looks back over to find the senders to tell (groups).
pub const RECEIPT_SENDER_SCAN: u64 = 64;

use async_trait::async_trait;
use tern_protocol::{
    ChatId, ChatInfo, ClientMsgId, DeviceId, GroupSettings, Message, MessageBody, MessageReceipts,
    PrivacySettings, Pts, Receipt, Seq, Update, UserId,
};

pub use config::StorageConfig;
pub use record::{
    ChatRecord, DeviceRecord, GroupState, ProfileChange, ProfileRecord, RefreshRecord, Rotation,
};

/// What can go wrong in storage.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The underlying store failed (disk, network). The operation may or may not have applied;
    /// retrying an idempotent operation is safe.
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// Stored bytes did not decode.
    #[error("corrupt record in {what}: {detail}")]
    Corrupt {
        /// Which table.
        what: &'static str,
        /// Decoder message.
        detail: String,
    },
    /// The chat does not exist or the user is not a member.
    #[error("no such chat for this user")]
    ChatNotFound,
    /// A seq beyond the chat's last message was acknowledged or marked read.
    #[error("seq {seq} is beyond the chat's last seq {last}")]
    SeqOutOfRange {
        /// Requested seq.
        seq: Seq,
        /// The chat's last seq.
        last: Seq,
    },
    /// The storage has shut down.
    #[error("storage is closed")]
    Closed,
    /// The caller may not do this (not an admin, not the sender, a window has passed).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request conflicts with the chat's state (not a member, no such message, ...).
    #[error("invalid: {0}")]
    Invalid(String),
    /// A chat would exceed a size limit; the message names it.
    #[error("too large: {0}")]
    TooLarge(String),
    /// A user named in the request is not registered.
    #[error("no such user")]
    UserNotFound,
}

/// Result alias for storage operations.
pub type StorageResult<T> = Result<T, StorageError>;

/// Cuts a list fetched with `limit + 1` to `limit`, and says whether more followed: asking one
/// extra row is how a page knows it is not the last without a second query.
pub fn split_page<T>(mut rows: Vec<T>, limit: u32) -> (Vec<T>, bool) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    (rows, more)
}

/// A message to append; the backend assigns seq, id and the members' pts.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Target chat.
    pub chat_id: ChatId,
    /// Author (must be a member).
    pub sender: UserId,
    /// Author's device.
    pub sender_device: DeviceId,
    /// Idempotency key of the device.
    pub client_msg_id: ClientMsgId,
    /// Content.
    pub body: MessageBody,
    /// Server time, ms since the epoch.
    pub ts_ms: u64,
    /// Edit and delete windows and limits.
    pub rules: MessageRules,
}

/// Rules a message feature is checked against inside the writer, where the target's state
/// cannot change underneath the check. From the chat configuration (announced in `Welcome`).
#[derive(Debug, Clone, Copy)]
pub struct MessageRules {
    /// The sender may edit for this long, ms.
    pub edit_window_ms: u64,
    /// The sender may delete for everyone for this long, ms (group admins always).
    pub delete_window_ms: u64,
    /// Most edits of one message.
    pub max_edits: u32,
    /// Most mentions in one message.
    pub max_mentions: u32,
}

impl Default for MessageRules {
    fn default() -> Self {
        let f = tern_protocol::ChatFeatures::default();
        MessageRules {
            edit_window_ms: u64::from(f.edit_window_s) * 1000,
            delete_window_ms: u64::from(f.delete_window_s) * 1000,
            max_edits: f.max_edits,
            max_mentions: f.max_mentions,
        }
    }
}

/// A group to create.
#[derive(Debug, Clone)]
pub struct NewGroup {
    /// Creator, its first admin.
    pub creator: UserId,
    /// The creator's device (author of the system messages).
    pub creator_device: DeviceId,
    /// Title, not empty.
    pub title: String,
    /// Initial members besides the creator (registered users; duplicates ignored).
    pub members: Vec<UserId>,
    /// Server time, ms since the epoch.
    pub now_ms: u64,
}

/// A membership or settings change of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOp {
    /// Add registered users.
    Add(Vec<UserId>),
    /// Remove a member (admins).
    Remove(UserId),
    /// The actor leaves.
    Leave,
    /// Promote or demote (admins).
    SetAdmin {
        /// The member.
        user: UserId,
        /// Admin or not.
        admin: bool,
    },
    /// New title and/or description.
    EditInfo {
        /// New title.
        title: Option<String>,
        /// New description.
        description: Option<String>,
    },
    /// New settings (admins).
    Settings(GroupSettings),
}

/// A group change to apply, checked against the group's state inside the writer.
#[derive(Debug, Clone)]
pub struct GroupCommand {
    /// The group.
    pub chat_id: ChatId,
    /// Who asks.
    pub actor: UserId,
    /// From which device.
    pub actor_device: DeviceId,
    /// What.
    pub op: GroupOp,
    /// Server time, ms since the epoch.
    pub now_ms: u64,
}

/// A directed relation one user keeps about another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// `owner` has `other` in their contacts (the audience of `Audience::Contacts`).
    Contact,
    /// `owner` blocked `other`.
    Block,
}

/// Adding or removing one edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeChange {
    /// Which relation.
    pub kind: EdgeKind,
    /// Whose.
    pub owner: UserId,
    /// About whom.
    pub other: UserId,
    /// Add (true) or remove.
    pub on: bool,
    /// Most edges of this kind per owner (checked when adding).
    pub max: u32,
}

/// Outcome of an append.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The stored message (the original one when `duplicate`).
    pub message: Message,
    /// True when `(device, client_msg_id)` had been sent before and nothing was written.
    pub duplicate: bool,
    /// True when this append withheld the message from a blocker (never for a duplicate).
    pub withheld: bool,
}

/// Outcome of a receipt write.
#[derive(Debug, Clone, Copy)]
pub struct ReceiptChange {
    /// The member's watermarks after the write.
    pub receipt: Receipt,
    /// False when the write did not move either watermark (nothing was written).
    pub changed: bool,
}

/// Receives updates once they are durable, in commit order, before the writes that produced them
/// return to their callers. Called on the backend's commit path: implementations must not block
/// (push into bounded queues and return).
pub trait UpdateSink: Send + Sync + 'static {
    /// `updates` are `(recipient, update)` pairs in commit order.
    fn committed(&self, updates: &[(UserId, Update)]);
}

/// A sink that drops everything, for tools that only need storage.
#[derive(Debug, Default)]
pub struct NoSink;

impl UpdateSink for NoSink {
    fn committed(&self, _updates: &[(UserId, Update)]) {}
}

/// The storage trait: every method is one durable query or write.
#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    // --- users and devices (partition: user) ---

    /// The user registered under `identifier`, creating it if needed. New users get a random id
    /// in `1..2^53` (exact in JSON numbers), never a counter, so ids cannot be enumerated.
    async fn upsert_user(&self, identifier: &str, now_ms: u64) -> StorageResult<UserId>;
    /// The user registered under `identifier`, if any (a point read; creates nothing).
    async fn user_by_identifier(&self, identifier: &str) -> StorageResult<Option<UserId>>;
    /// Whether the user exists (ids from before random allocation stay valid).
    async fn user_exists(&self, user: UserId) -> StorageResult<bool>;
    /// Registers a new device for the user.
    async fn create_device(
        &self,
        user: UserId,
        name: &str,
        now_ms: u64,
    ) -> StorageResult<DeviceRecord>;
    /// One device.
    async fn device(&self, user: UserId, device: DeviceId) -> StorageResult<Option<DeviceRecord>>;
    /// A user's first [`tern_protocol::limits::MAX_LIST_LEN`] devices.
    async fn devices(&self, user: UserId) -> StorageResult<Vec<DeviceRecord>>;
    /// A user's devices with ids above `after`, at most `limit`, in id order.
    async fn devices_page(
        &self,
        user: UserId,
        after: DeviceId,
        limit: u32,
    ) -> StorageResult<Vec<DeviceRecord>>;
    /// Marks a device revoked. Returns false if it does not exist.
    async fn revoke_device(&self, user: UserId, device: DeviceId) -> StorageResult<bool>;

    // --- refresh tokens (partition: token hash) ---

    /// Stores a refresh token by its hash.
    async fn put_refresh_token(&self, hash: [u8; 32], record: RefreshRecord) -> StorageResult<()>;
    /// A token's record, if known.
    async fn refresh_token(&self, hash: [u8; 32]) -> StorageResult<Option<RefreshRecord>>;
    /// Exchanges token `old` for `new` in one commit: `old` is marked used (remembering `new` and
    /// `now_ms`) and `new` stored with `record`, or neither. A second call with the same `old`
    /// and `new` less than `grace_ms` after the first, while `new` is unused, is a
    /// [`Rotation::Replayed`] retry; any other second use is [`Rotation::Reused`].
    async fn rotate_refresh_token(
        &self,
        old: [u8; 32],
        new: [u8; 32],
        record: RefreshRecord,
        now_ms: u64,
        grace_ms: u64,
    ) -> StorageResult<Rotation>;

    // --- chats (partition: chat; index by user) ---

    /// The direct chat between two users, created (with `ChatJoined` updates) if needed.
    async fn open_direct_chat(&self, a: UserId, b: UserId, now_ms: u64) -> StorageResult<ChatInfo>;
    /// A chat's record, if it exists.
    async fn chat(&self, chat: ChatId) -> StorageResult<Option<ChatRecord>>;
    /// The first [`tern_protocol::limits::MAX_LIST_LEN`] chats a user is a member of.
    async fn user_chats(&self, user: UserId) -> StorageResult<Vec<ChatId>>;
    /// The user's chats with ids above `after`, at most `limit`, in id order.
    async fn user_chats_page(
        &self,
        user: UserId,
        after: ChatId,
        limit: u32,
    ) -> StorageResult<Vec<ChatId>>;
    /// The direct chat between two users, if one was opened (never creates one).
    async fn direct_chat(&self, a: UserId, b: UserId) -> StorageResult<Option<ChatId>>;
    /// The last seq of a chat (0 when empty).
    async fn last_seq(&self, chat: ChatId) -> StorageResult<Seq>;

    // --- groups (partition: chat) ---

    /// Creates a group: seq 1 `Created`, seq 2 `MembersAdded` (with initial members), every
    /// member's `ChatJoined`. More than `MAX_CHAT_MEMBERS` members is [`StorageError::TooLarge`].
    async fn create_group(&self, group: NewGroup) -> StorageResult<ChatInfo>;
    /// Applies a membership or settings change as a system message (the first one written when
    /// it takes two, e.g. `Left` then `AdminInherited`). Permissions are checked here, against
    /// the state the write applies to.
    async fn change_group(&self, command: GroupCommand) -> StorageResult<Message>;

    // --- messages (partition: chat, clustering: seq) ---

    /// Appends a message durably, assigning the next seq; idempotent per `(device, client_msg_id)`.
    /// Edits, reactions, deletes and replies are checked against their target here.
    ///
    /// Blocks, in a direct chat, checked against the state the message is appended to: a
    /// sender who blocked the other member is [`StorageError::Forbidden`]; a sender the other
    /// member blocked is stored as usual (the sender's log gets it) but withheld from the
    /// blocker: no log row, a withheld marker instead, so [`Storage::messages`] skips it for
    /// them and [`Storage::message_receipts`] counts them pending, also after an unblock. A
    /// withheld edit rewrites the stored target like any edit, but the blocker keeps reading
    /// the body they saw before it, until an edit they do see or a delete for everyone.
    async fn append_message(&self, message: NewMessage) -> StorageResult<Appended>;
    /// Messages with `seq >= from` that `viewer` may see (inside their membership intervals,
    /// not withheld from them; hidden ones read as `Deleted`, ones edited by a user they blocked
    /// as before that edit), at most `limit`, in seq order. [`Storage::updates`] shows message
    /// bodies by the same rule.
    async fn messages(
        &self,
        viewer: UserId,
        chat: ChatId,
        from: Seq,
        limit: u32,
    ) -> StorageResult<Vec<Message>>;
    /// Hides messages for `user` only (delete for me) and tells the user's devices with a
    /// `HiddenForMe` update. Seqs outside the user's intervals are [`StorageError::Invalid`].
    async fn hide_messages(&self, user: UserId, chat: ChatId, seqs: Vec<Seq>) -> StorageResult<()>;
    /// One stored message as it is now.
    async fn message(&self, chat: ChatId, seq: Seq) -> StorageResult<Option<Message>>;

    // --- update log (partition: user, clustering: pts) ---

    /// Updates with `pts > after`, at most `limit`, in pts order.
    async fn updates(&self, user: UserId, after: Pts, limit: u32) -> StorageResult<Vec<Update>>;
    /// The user's latest pts (0 when none).
    async fn latest_pts(&self, user: UserId) -> StorageResult<Pts>;

    // --- receipts (partition: chat) ---

    /// Max-merges a member's delivered watermark. Writes no update-log row: delivered receipts
    /// are published coalesced with [`Storage::publish_receipt`], so the log grows with messages,
    /// not with ack steps.
    async fn ack(&self, chat: ChatId, user: UserId, upto: Seq) -> StorageResult<ReceiptChange>;
    /// Appends the member's current watermarks (read when the write runs, so what is published
    /// never moves backwards) to the update log of the members who should see it: the other
    /// member of a direct chat; in a group the senders of the messages the watermark newly
    /// covers. `None` when the chat does not exist or `user` is not a member.
    async fn publish_receipt(&self, chat: ChatId, user: UserId) -> StorageResult<Option<Receipt>>;
    /// Max-merges a member's read watermark (and delivered, since read implies delivered).
    async fn mark_read(
        &self,
        chat: ChatId,
        user: UserId,
        upto: Seq,
    ) -> StorageResult<ReceiptChange>;
    /// Every member's watermarks as `viewer` may see them: in a direct chat where a block
    /// stands either way, the other member's row is left out (receipts are activity, hidden
    /// across a block like presence).
    async fn receipts(&self, viewer: UserId, chat: ChatId) -> StorageResult<Vec<Receipt>>;
    /// Which current members (other than the message's sender) whose interval covers `seq`
    /// stored and read it, and when. In a direct chat where a block stands either way, the
    /// other member is counted pending, whatever their watermark.
    async fn message_receipts(&self, chat: ChatId, seq: Seq) -> StorageResult<MessageReceipts>;

    // --- profiles, contacts, blocks, privacy (partition: user) ---

    /// A user's stored profile, `None` if they never set one.
    async fn profile(&self, user: UserId) -> StorageResult<Option<ProfileRecord>>;
    /// Applies a profile change in one commit: the profile row, the username index (a taken
    /// name is [`StorageError::Invalid`] "username is taken" and writes nothing; the old name
    /// is released), and a `ProfileChanged` update in the log of every recipient: the user
    /// themself, everyone who has the user as a contact, and every member of every chat the
    /// user is in, minus users the user blocked or who blocked the user; each once.
    async fn change_profile(&self, change: ProfileChange) -> StorageResult<ProfileRecord>;
    /// The user holding a (normalised) username.
    async fn user_by_username(&self, username: &str) -> StorageResult<Option<UserId>>;
    /// Adds or removes one edge (a contact or a block) of `owner`'s; idempotent. Adding an
    /// unregistered user (or oneself) is [`StorageError::UserNotFound`]; beyond `max` edges of
    /// the kind [`StorageError::TooLarge`]. From the commit of a block on, direct messages
    /// from `other` to `owner` are withheld from `owner` (see [`Storage::append_message`]).
    async fn set_edge(&self, change: EdgeChange) -> StorageResult<()>;
    /// `owner`'s first [`tern_protocol::limits::MAX_LIST_LEN`] edges of a kind (their contacts,
    /// or the users they blocked), in id order.
    async fn edges(&self, owner: UserId, kind: EdgeKind) -> StorageResult<Vec<UserId>>;
    /// A user's privacy settings, `None` if never set (the default applies).
    async fn privacy(&self, user: UserId) -> StorageResult<Option<PrivacySettings>>;
    /// Replaces a user's privacy settings. If the photo or about audience changed, the same
    /// `ProfileChanged` updates as [`Storage::change_profile`] are written in the commit (what
    /// others see of the profile changed); last seen and online are presence's business.
    async fn set_privacy(&self, user: UserId, settings: PrivacySettings) -> StorageResult<()>;

    // --- last seen (partition: user) ---

    /// Stores when each user last went offline (ms since the epoch), replacing older values.
    /// One batch, not synced per row and off the commit path: presence flushes changed values
    /// every few seconds, and a crash losing the newest ones only makes someone's last seen a
    /// few seconds older. After [`Storage::close`] it answers [`StorageError::Closed`].
    async fn save_last_seen(&self, rows: Vec<(UserId, u64)>) -> StorageResult<()>;
    /// When the user last went offline, if that was ever saved.
    async fn last_seen(&self, user: UserId) -> StorageResult<Option<u64>>;

    /// Makes everything written so far durable and stops accepting writes.
    async fn close(&self) -> StorageResult<()>;
}
