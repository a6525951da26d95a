//! Rows the storage trait hands out. These are server types, never sent on the wire as they are.

use serde::{Deserialize, Serialize};
use tern_protocol::{ChatId, ChatInfo, ChatKind, DeviceId, DeviceInfo, Seq, UserId};

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Owner.
    pub user_id: UserId,
    /// The device.
    pub device_id: DeviceId,
    /// Name given at login.
    pub name: String,
    /// Registration time, ms since the epoch.
    pub created_ms: u64,
    /// Revoked devices cannot authenticate.
    pub revoked: bool,
}

impl DeviceRecord {
    /// The wire view.
    pub fn info(&self) -> DeviceInfo {
        DeviceInfo {
            device_id: self.device_id,
            name: self.name.clone(),
            created_ms: self.created_ms,
            revoked: self.revoked,
        }
    }
}

/// A refresh token, stored under the SHA-256 of the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// Owner.
    pub user_id: UserId,
    /// Device the token belongs to; the device is the token family.
    pub device_id: DeviceId,
    /// Expiry, ms since the epoch.
    pub expires_ms: u64,
    /// Set when the token has been exchanged; a second use is theft.
    pub used: bool,
}

/// A chat row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRecord {
    /// The chat.
    pub chat_id: ChatId,
    /// Kind.
    pub kind: ChatKind,
    /// Members, sorted.
    pub members: Vec<UserId>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
}

impl ChatRecord {
    /// Whether `user` is a member.
    pub fn has_member(&self, user: UserId) -> bool {
        self.members.binary_search(&user).is_ok()
    }

    /// The wire view, with the chat's current last seq.
    pub fn info(&self, last_seq: Seq) -> ChatInfo {
        ChatInfo {
            chat_id: self.chat_id,
            kind: self.kind,
            members: self.members.clone(),
            last_seq,
        }
    }
}
