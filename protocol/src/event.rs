//! Chat content and server pushes: messages, receipts, updates and events.

use serde::{Deserialize, Serialize};

use crate::ids::{ChatId, ClientMsgId, DeviceId, MessageId, Pts, Seq, UserId};
use crate::limits::{MAX_CHAT_MEMBERS, MAX_TEXT_LEN};

/// The content of a message. New kinds (media, replies, reactions) are appended as variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// UTF-8 text, at most [`MAX_TEXT_LEN`] bytes.
    Text(String),
}

impl MessageBody {
    /// Whether the body respects the protocol limits.
    pub fn within_limits(&self) -> bool {
        match self {
            MessageBody::Text(t) => t.len() <= MAX_TEXT_LEN,
        }
    }
}

/// A stored message as every member device sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Chat the message belongs to.
    pub chat_id: ChatId,
    /// Position in the chat: dense, gap-free, starting at 1.
    pub seq: Seq,
    /// Server-wide unique id.
    pub msg_id: MessageId,
    /// Author.
    pub sender: UserId,
    /// Device the author sent it from.
    pub sender_device: DeviceId,
    /// The sender device's idempotency key.
    pub client_msg_id: ClientMsgId,
    /// Server timestamp, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Content.
    pub body: MessageBody,
}

/// Kind of chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatKind {
    /// Two members, opened by either of them; at most one per pair of users.
    Direct,
}

/// What a member knows about a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatInfo {
    /// The chat.
    pub chat_id: ChatId,
    /// Its kind.
    pub kind: ChatKind,
    /// Members, at most [`MAX_CHAT_MEMBERS`].
    pub members: Vec<UserId>,
    /// Highest seq in the chat when this was read.
    pub last_seq: Seq,
}

impl ChatInfo {
    /// Whether the member list respects the protocol limits.
    pub fn within_limits(&self) -> bool {
        self.members.len() <= MAX_CHAT_MEMBERS
    }
}

/// Per-member receipt watermarks in a chat. Both only move forward and `read_seq <= delivered_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The chat.
    pub chat_id: ChatId,
    /// The member these watermarks belong to.
    pub user_id: UserId,
    /// Highest seq stored by at least one of the member's devices.
    pub delivered_seq: Seq,
    /// Highest seq the member has read.
    pub read_seq: Seq,
}

/// One entry of a user's update log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// The user's update sequence number of this entry.
    pub pts: Pts,
    /// What happened.
    pub kind: UpdateKind,
}

/// What an update carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateKind {
    /// A new message in one of the user's chats.
    Message(Message),
    /// A member's receipt watermarks moved.
    Receipt(Receipt),
    /// The user became a member of a chat.
    ChatJoined(ChatInfo),
}

/// A server push on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A live update; the same entries a later `Sync` would return, with their `pts`.
    Update(Update),
}
