//! Rows the storage trait hands out. These are server types, never sent on the wire as they are.

use serde::{Deserialize, Serialize};
use tern_protocol::{
    ChatId, ChatInfo, ChatKind, DeviceId, DeviceInfo, GroupInfo, GroupMember, GroupSettings,
    MediaRef, Profile, Seq, UserId,
};

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
    /// Set when the token has been exchanged; a second use after the grace window is theft.
    pub used: bool,
    /// When it was exchanged, ms since the epoch (0 while unused).
    pub used_ms: u64,
    /// Hash of the token it was exchanged for, so a retry within the grace window can be told
    /// from a reuse.
    pub successor: Option<[u8; 32]>,
    /// Hash of the token this one replaced. Set by storage at rotation; when this token is
    /// rotated in turn, that predecessor is deleted, so a device keeps at most two rows: its
    /// current token and the one before it (still needed for lost-answer retries and for reuse
    /// detection of the token a thief is most likely to hold).
    pub predecessor: Option<[u8; 32]>,
}

impl RefreshRecord {
    /// An unused token of `device` expiring at `expires_ms`.
    pub fn new(user_id: UserId, device_id: DeviceId, expires_ms: u64) -> Self {
        RefreshRecord {
            user_id,
            device_id,
            expires_ms,
            used: false,
            used_ms: 0,
            successor: None,
            predecessor: None,
        }
    }
}

/// The row layout before rotation kept its successor; still read from older data directories.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LegacyRefreshRecord {
    pub user_id: UserId,
    pub device_id: DeviceId,
    pub expires_ms: u64,
    pub used: bool,
}

impl From<LegacyRefreshRecord> for RefreshRecord {
    fn from(r: LegacyRefreshRecord) -> Self {
        RefreshRecord {
            used: r.used,
            ..RefreshRecord::new(r.user_id, r.device_id, r.expires_ms)
        }
    }
}

/// What rotating a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// No such token.
    Unknown,
    /// The token was unused: it is now used and its successor stored, in one commit.
    Rotated(RefreshRecord),
    /// The token was rotated to this same successor within the grace window, and the successor
    /// is still unused: a retry after a lost answer. Nothing was written.
    Replayed(RefreshRecord),
    /// The token was used before, outside the grace window or for another successor: theft.
    Reused(RefreshRecord),
}

/// A chat row: direct chats and groups alike (one storage model); `group` holds what only groups
/// have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRecord {
    /// The chat.
    pub chat_id: ChatId,
    /// Kind.
    pub kind: ChatKind,
    /// Current members, sorted.
    pub members: Vec<UserId>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Title, admins, settings and membership intervals of a group; `None` for direct chats.
    pub group: Option<Box<GroupState>>,
}

/// The row layout before groups; still read from older data directories.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LegacyChatRecord {
    pub chat_id: ChatId,
    pub kind: ChatKind,
    pub members: Vec<UserId>,
    pub created_ms: u64,
}

impl From<LegacyChatRecord> for ChatRecord {
    fn from(r: LegacyChatRecord) -> Self {
        ChatRecord {
            chat_id: r.chat_id,
            kind: r.kind,
            members: r.members,
            created_ms: r.created_ms,
            group: None,
        }
    }
}

/// What a group has beyond a direct chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Who may do what.
    pub settings: GroupSettings,
    /// Creator.
    pub created_by: UserId,
    /// Current members with their role and the start of their interval, sorted by user id
    /// (the same users as [`ChatRecord::members`]).
    pub members: Vec<GroupMember>,
}

impl ChatRecord {
    /// Whether `user` is a member.
    pub fn has_member(&self, user: UserId) -> bool {
        self.members.binary_search(&user).is_ok()
    }

    /// A current member's group state (`None` for direct chats and non-members).
    pub fn member(&self, user: UserId) -> Option<&GroupMember> {
        let g = self.group.as_ref()?;
        g.members
            .binary_search_by_key(&user, |m| m.user_id)
            .ok()
            .map(|i| &g.members[i])
    }

    /// Whether `user` is an admin of this group.
    pub fn is_admin(&self, user: UserId) -> bool {
        self.member(user).is_some_and(|m| m.admin)
    }

    /// The first seq a current member may see: where their interval started (1 in direct chats).
    pub fn since_seq(&self, user: UserId) -> Option<Seq> {
        if !self.has_member(user) {
            return None;
        }
        Some(self.member(user).map_or(1, |m| m.since_seq))
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

    /// The group view (`None` for direct chats).
    pub fn group_info(&self, last_seq: Seq) -> Option<GroupInfo> {
        let g = self.group.as_ref()?;
        Some(GroupInfo {
            chat_id: self.chat_id,
            title: g.title.clone(),
            description: g.description.clone(),
            settings: g.settings,
            created_by: g.created_by,
            created_ms: self.created_ms,
            members: g.members.clone(),
            last_seq,
        })
    }
}

/// A user's stored profile (everything, as the user themself sees it). A registered user
/// without a row reads as the default: no username, empty name, nothing else, updated 0.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProfileRecord {
    /// Unique handle, normalised (lowercase).
    pub username: Option<String>,
    /// Display name (may be empty).
    pub display_name: String,
    /// About text; `None` when unset.
    pub about: Option<String>,
    /// Profile photo.
    pub avatar: Option<MediaRef>,
    /// Last change, ms since the epoch (0: never).
    pub updated_ms: u64,
}

impl ProfileRecord {
    /// The wire view of `user`'s profile with everything in it (privacy is applied by the
    /// social service, which blanks what a viewer may not see).
    pub fn profile(&self, user: UserId) -> Profile {
        Profile {
            user_id: user,
            username: self.username.clone(),
            display_name: self.display_name.clone(),
            about: self.about.clone(),
            avatar: self.avatar,
            updated_ms: self.updated_ms,
        }
    }
}

/// A change of one user's profile, validated by the social service; `None` fields stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileChange {
    /// Whose profile.
    pub user: UserId,
    /// New display name.
    pub display_name: Option<String>,
    /// New about text (`Some(None)` clears it).
    pub about: Option<Option<String>>,
    /// New photo (`Some(None)` removes it).
    pub avatar: Option<Option<MediaRef>>,
    /// New username, normalised (`Some(None)` drops it). Taken by someone else:
    /// [`crate::storage::StorageError::Invalid`] "username is taken", and nothing is written.
    pub username: Option<Option<String>>,
    /// Server time, ms since the epoch.
    pub now_ms: u64,
}
