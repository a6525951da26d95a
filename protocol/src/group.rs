//! Groups and message features: system messages, group info, per-message receipts.
//!
//! A group is a chat like a direct chat (same seq, same receipts, same update log); what is new is
//! that its membership and settings change, and every change is a [`SystemEvent`] message in the
//! chat's seq, so every device replays the same ordered history. Edits, reactions and deletes are
//! messages too ([`crate::MessageBody`]), so devices converge by applying the chat in seq order.

use serde::{Deserialize, Serialize};

use crate::ids::{ChatId, Seq, UserId};
use crate::limits::{MAX_CHAT_MEMBERS, MAX_GROUP_DESCRIPTION_LEN, MAX_GROUP_TITLE_LEN};

/// Who may do what in a group. Admins may always do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettings {
    /// Whether members who are not admins may add members.
    pub members_can_add: bool,
    /// Whether members who are not admins may change the title and description.
    pub members_can_edit_info: bool,
    /// Announcement-only: only admins may send messages (reactions included).
    pub announcement_only: bool,
}

impl Default for GroupSettings {
    /// WhatsApp's defaults: everyone may edit info and send, only admins add members.
    fn default() -> Self {
        GroupSettings {
            members_can_add: false,
            members_can_edit_info: true,
            announcement_only: false,
        }
    }
}

/// What a system message says happened. Written by the server only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupChange {
    /// The group was created with this title (its first message, seq 1). The initial members
    /// follow in a `MembersAdded` at seq 2.
    Created {
        /// Title at creation.
        title: String,
    },
    /// These users became members (their interval starts at this message's seq).
    MembersAdded(Vec<UserId>),
    /// The actor removed this member (their interval ends at this message's seq).
    MemberRemoved(UserId),
    /// The actor left (their interval ends at this message's seq).
    Left,
    /// The actor made this member an admin.
    AdminPromoted(UserId),
    /// The actor took admin rights from this member.
    AdminDemoted(UserId),
    /// The last admin left, so the longest-standing current member (smallest `since_seq`, ties:
    /// smallest user id) became admin. Written right after the `Left`; the actor is the member
    /// who left.
    AdminInherited(UserId),
    /// Title and/or description changed (`None`: unchanged).
    InfoChanged {
        /// New title.
        title: Option<String>,
        /// New description.
        description: Option<String>,
    },
    /// The settings are now these.
    SettingsChanged(GroupSettings),
}

/// A system message: who did what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemEvent {
    /// The member who made the change.
    pub actor: UserId,
    /// The change.
    pub change: GroupChange,
}

impl SystemEvent {
    pub(crate) fn within_limits(&self) -> bool {
        match &self.change {
            GroupChange::Created { title } => title.len() <= MAX_GROUP_TITLE_LEN,
            GroupChange::MembersAdded(users) => users.len() <= MAX_CHAT_MEMBERS,
            GroupChange::InfoChanged { title, description } => {
                title
                    .as_ref()
                    .is_none_or(|t| t.len() <= MAX_GROUP_TITLE_LEN)
                    && description
                        .as_ref()
                        .is_none_or(|d| d.len() <= MAX_GROUP_DESCRIPTION_LEN)
            }
            GroupChange::MemberRemoved(_)
            | GroupChange::Left
            | GroupChange::AdminPromoted(_)
            | GroupChange::AdminDemoted(_)
            | GroupChange::AdminInherited(_)
            | GroupChange::SettingsChanged(_) => true,
        }
    }
}

/// One member of a group as `GetGroupInfo` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The member.
    pub user_id: UserId,
    /// Whether they are an admin.
    pub admin: bool,
    /// Seq of the system message that started their current membership interval: they see
    /// messages from this seq on.
    pub since_seq: Seq,
    /// When that happened, ms since the epoch.
    pub joined_ms: u64,
}

/// A group's current state (`GetGroupInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The chat.
    pub chat_id: ChatId,
    /// Title, at most [`MAX_GROUP_TITLE_LEN`] bytes.
    pub title: String,
    /// Description, at most [`MAX_GROUP_DESCRIPTION_LEN`] bytes.
    pub description: String,
    /// Who may do what.
    pub settings: GroupSettings,
    /// Creator.
    pub created_by: UserId,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Current members in user id order, at most [`MAX_CHAT_MEMBERS`].
    pub members: Vec<GroupMember>,
    /// Highest seq when this was read.
    pub last_seq: Seq,
}

impl GroupInfo {
    pub(crate) fn within_limits(&self) -> bool {
        self.title.len() <= MAX_GROUP_TITLE_LEN
            && self.description.len() <= MAX_GROUP_DESCRIPTION_LEN
            && self.members.len() <= MAX_CHAT_MEMBERS
    }
}

/// When a member's watermark passed a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberReceipt {
    /// The member.
    pub user_id: UserId,
    /// When the member's watermark first covered the message, ms since the epoch.
    pub at_ms: u64,
}

/// Who a message was delivered to and read by (`GetMessageReceipts`, the sender's "message info").
/// Covers the current members other than the sender whose membership interval covers the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageReceipts {
    /// The chat.
    pub chat_id: ChatId,
    /// The message.
    pub seq: Seq,
    /// Members (other than the sender) with a device that stored it, in user id order.
    pub delivered: Vec<MemberReceipt>,
    /// Members (other than the sender) who read it, in user id order.
    pub read: Vec<MemberReceipt>,
    /// Members (other than the sender) whose interval covers the message and who have not
    /// stored it yet.
    pub pending: u32,
}

impl MessageReceipts {
    pub(crate) fn within_limits(&self) -> bool {
        self.delivered.len() <= MAX_CHAT_MEMBERS && self.read.len() <= MAX_CHAT_MEMBERS
    }
}

/// Message-feature settings the server announces in `Welcome`, so they change without an app
/// release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatFeatures {
    /// Most members in a chat, the creator included.
    pub max_chat_members: u32,
    /// A sender may edit a message for this long after it was sent.
    pub edit_window_s: u32,
    /// A sender may delete a message for everyone for this long (group admins: always).
    pub delete_window_s: u32,
    /// Most edits of one message.
    pub max_edits: u32,
    /// Most mentions in one message.
    pub max_mentions: u32,
}

impl Default for ChatFeatures {
    /// WhatsApp's windows: 15 minutes to edit, two days to delete for everyone.
    fn default() -> Self {
        ChatFeatures {
            max_chat_members: MAX_CHAT_MEMBERS as u32,
            edit_window_s: 15 * 60,
            delete_window_s: 48 * 3600,
            max_edits: 20,
            max_mentions: crate::limits::MAX_MENTIONS as u32,
        }
    }
}
