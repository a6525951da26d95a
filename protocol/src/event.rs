//! Chat content and server pushes: messages, receipts, updates and events.

use serde::{Deserialize, Serialize};

use crate::group::SystemEvent;
use crate::ids::{ChatId, ClientMsgId, DeviceId, MessageId, Pts, Seq, UserId};
use crate::limits::{MAX_CHAT_MEMBERS, MAX_MENTIONS, MAX_REACTION_LEN, MAX_TEXT_LEN};
use crate::media::MediaMessage;
use crate::social::{Presence, TypingEvent};

/// The content of a message. New kinds (media) are appended as variants.
///
/// Edits, reactions and deletes for everyone are messages of their own, with their own seq, that
/// point at an earlier seq (`target`) of the same chat: a device applies the chat in seq order
/// and converges with every other device. `Deleted` and `System` are written by the server only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// UTF-8 text, at most [`MAX_TEXT_LEN`] bytes.
    Text(String),
    /// Text that replies to an earlier message and/or mentions members.
    Rich(RichText),
    /// The sender's reaction to `target`: one per user per message; a later one replaces it,
    /// `emoji: None` removes it.
    Reaction {
        /// The message reacted to.
        target: Seq,
        /// At most [`MAX_REACTION_LEN`] bytes; `None` removes the sender's reaction.
        emoji: Option<String>,
    },
    /// The sender replaced the text of their message `target` (within the edit window). The
    /// stored target shows the new text from now on. After the target is deleted for everyone
    /// its edits keep their seq with an empty `text`: the content is gone.
    Edit {
        /// The edited message.
        target: Seq,
        /// The new text.
        text: String,
    },
    /// Delete `target` for everyone: its stored content is replaced by [`MessageBody::Deleted`].
    Delete {
        /// The deleted message.
        target: Seq,
    },
    /// What a message deleted for everyone (or hidden with `DeleteForMe`) reads as.
    Deleted,
    /// A membership or settings change.
    System(SystemEvent),
    /// A photo, video, voice note or document uploaded on a media stream (new in v4).
    Media(MediaMessage),
}

/// Text with a reply reference and mentions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RichText {
    /// UTF-8 text, at most [`MAX_TEXT_LEN`] bytes.
    pub text: String,
    /// The earlier message of the same chat this replies to.
    pub reply_to: Option<Seq>,
    /// Members mentioned (`@user`), at most [`MAX_MENTIONS`]; flagged for notifications.
    pub mentions: Vec<UserId>,
}

impl MessageBody {
    /// Whether the body respects the protocol limits.
    pub fn within_limits(&self) -> bool {
        match self {
            MessageBody::Text(t) => t.len() <= MAX_TEXT_LEN,
            MessageBody::Rich(r) => {
                r.text.len() <= MAX_TEXT_LEN && r.mentions.len() <= MAX_MENTIONS
            }
            MessageBody::Reaction { emoji, .. } => {
                emoji.as_ref().is_none_or(|e| e.len() <= MAX_REACTION_LEN)
            }
            MessageBody::Edit { text, .. } => text.len() <= MAX_TEXT_LEN,
            MessageBody::Delete { .. } | MessageBody::Deleted => true,
            MessageBody::System(e) => e.within_limits(),
            MessageBody::Media(m) => m.within_limits(),
        }
    }

    /// The seq this body points at (edits, reactions, deletes), if any.
    pub fn target(&self) -> Option<Seq> {
        match self {
            MessageBody::Reaction { target, .. }
            | MessageBody::Edit { target, .. }
            | MessageBody::Delete { target } => Some(*target),
            _ => None,
        }
    }

    /// Whether this is content a person wrote (text, media), as opposed to an event about a
    /// message.
    pub fn is_content(&self) -> bool {
        matches!(
            self,
            MessageBody::Text(_) | MessageBody::Rich(_) | MessageBody::Media(_)
        )
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
    /// Up to [`MAX_CHAT_MEMBERS`] members with admins, title and settings.
    Group,
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
    /// The user's membership of a group ended (removed, or left) at `at_seq`: the system message
    /// saying so is the last message of the chat this user gets until re-added.
    ChatLeft {
        /// The chat.
        chat_id: ChatId,
        /// Seq of the system message that ended the interval.
        at_seq: Seq,
    },
    /// The user deleted these messages for themself (`DeleteForMe`); their devices hide them.
    HiddenForMe {
        /// The chat.
        chat_id: ChatId,
        /// The hidden messages, at most [`crate::limits::MAX_DELETE_FOR_ME`].
        seqs: Vec<Seq>,
    },
    /// A user's profile changed (display name, about, photo or username). Written to the logs of
    /// their contacts' and chat peers' devices, not to users they blocked; carries no content:
    /// fetch it with `GetProfile`, which applies the viewer's privacy at that time.
    ProfileChanged {
        /// Whose profile.
        user_id: UserId,
    },
}

/// A server push on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A live update; the same entries a later `Sync` would return, with their `pts`.
    Update(Update),
    /// A watched user's presence changed (only on the connection that watches them).
    Presence(Presence),
    /// Typing, on the control stream: only when this connection cannot take the datagram.
    Typing(TypingEvent),
}
