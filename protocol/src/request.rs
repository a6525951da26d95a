//! Requests a client sends and the responses it gets.

use serde::{Deserialize, Serialize};

use crate::event::{ChatInfo, Message, MessageBody, Receipt, Update, UpdateKind};
use crate::group::{GroupInfo, GroupSettings, MessageReceipts};
use crate::ids::{ChatId, ClientMsgId, DeviceId, MessageId, Seq, SyncCursor, UserId};
use crate::limits::{
    MAX_CHAT_MEMBERS, MAX_DELETE_FOR_ME, MAX_DEVICE_NAME_LEN, MAX_GROUP_DESCRIPTION_LEN,
    MAX_GROUP_TITLE_LEN, MAX_IDENTIFIER_LEN, MAX_LIST_LEN, MAX_MESSAGES_PAGE, MAX_PRESENCE_WATCH,
    MAX_SYNC_PAGE, MAX_TOKEN_LEN, MAX_USERNAME_LEN, OTP_DIGITS,
};
use crate::social::{Presence, PrivacySettings, Profile, ProfileEdit, UserQuery};

/// A request. Only `RequestOtp`, `VerifyOtp`, `Refresh` and `Ping` work before authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Send a one-time code to a phone number (E.164) or email address.
    RequestOtp {
        /// `+4915112345678` or `someone@example.org`.
        identifier: String,
    },
    /// Exchange a code for tokens; registers the device and authenticates this session.
    VerifyOtp {
        /// Same identifier as in `RequestOtp`.
        identifier: String,
        /// The six digits.
        code: String,
        /// Shown in the device list.
        device_name: String,
    },
    /// Rotate a refresh token; authenticates this session as the token's device.
    Refresh {
        /// The current refresh token. Using an already rotated one revokes the family.
        refresh_token: String,
    },
    /// Revoke this device's tokens and end the session.
    Logout,
    /// List the user's devices.
    ListDevices,
    /// Revoke one of the user's devices; its live connections are closed.
    RevokeDevice {
        /// The device.
        device_id: DeviceId,
    },
    /// Open (or find) the direct chat with another user.
    OpenDirectChat {
        /// The other user.
        peer: UserId,
    },
    /// List the user's chats.
    ListChats,
    /// Send a message. Repeating it with the same `client_msg_id` returns the first answer.
    SendMessage {
        /// Target chat.
        chat_id: ChatId,
        /// Idempotency key chosen by this device.
        client_msg_id: ClientMsgId,
        /// Content.
        body: MessageBody,
    },
    /// This device has stored every message of the chat up to `upto_seq`.
    Ack {
        /// The chat.
        chat_id: ChatId,
        /// Highest stored seq.
        upto_seq: Seq,
    },
    /// The user has read the chat up to `upto_seq`.
    MarkRead {
        /// The chat.
        chat_id: ChatId,
        /// Highest read seq.
        upto_seq: Seq,
    },
    /// Fetch updates after a cursor, in a bounded page.
    Sync {
        /// Updates with `pts > after.pts` are returned.
        after: SyncCursor,
        /// At most this many (capped at [`MAX_SYNC_PAGE`]).
        limit: u32,
    },
    /// Fetch a range of a chat's messages, e.g. to fill a seq gap.
    GetMessages {
        /// The chat.
        chat_id: ChatId,
        /// First seq wanted.
        from_seq: Seq,
        /// At most this many (capped at [`MAX_MESSAGES_PAGE`]).
        limit: u32,
    },
    /// Current receipt watermarks of every member of a chat.
    GetReceipts {
        /// The chat.
        chat_id: ChatId,
    },
    /// Liveness check; answered with `Pong`.
    Ping,
    /// A page of the user's chats with ids above `after` (`ChatId(0)`: from the start).
    /// `ListChats` answers only the first page.
    ListChatsPage {
        /// The `next` of the previous page.
        after: ChatId,
        /// At most this many (capped at [`MAX_LIST_LEN`]).
        limit: u32,
    },
    /// A page of the user's devices with ids above `after` (`DeviceId(0)`: from the start).
    /// `ListDevices` answers only the first page.
    ListDevicesPage {
        /// The `next` of the previous page.
        after: DeviceId,
        /// At most this many (capped at [`MAX_LIST_LEN`]).
        limit: u32,
    },
    /// Create a group; the caller becomes its first admin. Answered with `Chat`.
    CreateGroup {
        /// Title, at most [`MAX_GROUP_TITLE_LEN`] bytes, not empty.
        title: String,
        /// Initial members besides the caller; with the caller at most [`MAX_CHAT_MEMBERS`].
        members: Vec<UserId>,
    },
    /// Add members to a group (admins, or anyone when `members_can_add`). Answered with the
    /// `Sent` of the system message.
    AddMembers {
        /// The group.
        chat_id: ChatId,
        /// Users to add; members already in are ignored (all of them already in:
        /// `InvalidArgument`). The group may not exceed [`MAX_CHAT_MEMBERS`] (`TooLarge`).
        members: Vec<UserId>,
    },
    /// Remove a member (admins only). Answered with the `Sent` of the system message.
    RemoveMember {
        /// The group.
        chat_id: ChatId,
        /// The member.
        user_id: UserId,
    },
    /// Leave a group. Answered with the `Sent` of the system message.
    LeaveGroup {
        /// The group.
        chat_id: ChatId,
    },
    /// Promote a member to admin or demote an admin (admins only).
    SetAdmin {
        /// The group.
        chat_id: ChatId,
        /// The member.
        user_id: UserId,
        /// Admin or not.
        admin: bool,
    },
    /// Change title and/or description (admins, or anyone when `members_can_edit_info`).
    EditGroupInfo {
        /// The group.
        chat_id: ChatId,
        /// New title (`None`: unchanged).
        title: Option<String>,
        /// New description (`None`: unchanged).
        description: Option<String>,
    },
    /// Replace the group's settings (admins only).
    SetGroupSettings {
        /// The group.
        chat_id: ChatId,
        /// The new settings.
        settings: GroupSettings,
    },
    /// A group's current state. Answered with `GroupInfo`.
    GetGroupInfo {
        /// The group.
        chat_id: ChatId,
    },
    /// Who a message was delivered to and read by, with times (its sender only).
    GetMessageReceipts {
        /// The chat.
        chat_id: ChatId,
        /// The message.
        seq: Seq,
    },
    /// Hide messages on this user's devices only (delete for me).
    DeleteForMe {
        /// The chat.
        chat_id: ChatId,
        /// At most [`MAX_DELETE_FOR_ME`] seqs.
        seqs: Vec<Seq>,
    },
    /// A user's profile as this user may see it. A user with no relation to the caller (no
    /// shared chat, not a contact either way) costs a directory lookup; an unknown id answers
    /// `NotFound` exactly like a user who blocked the caller is still found.
    GetProfile {
        /// The user.
        user_id: UserId,
    },
    /// Change one's own profile; answered with the new profile. Contacts and chat peers get a
    /// `ProfileChanged` update.
    SetProfile(ProfileEdit),
    /// Take, change or (`None`) drop one's username: unique, 3 to 32 of `a-z0-9_.` (input is
    /// lowercased), starting with a letter; changes are rate-limited. Answered with the profile.
    SetUsername {
        /// The new username.
        username: Option<String>,
    },
    /// Find a user by username or identifier. Bounded per user per day (found or not, the same
    /// cost); an unregistered identifier answers `Lookup(None)`, the same shape as any miss.
    LookupUser(UserQuery),
    /// Add a user to one's contacts (the audience of `Audience::Contacts`).
    AddContact {
        /// The user.
        user_id: UserId,
    },
    /// Remove a user from one's contacts.
    RemoveContact {
        /// The user.
        user_id: UserId,
    },
    /// One's contacts, with their profiles as visible to the caller.
    ListContacts,
    /// Block a user: they cannot message the caller in their direct chat (their messages are
    /// stored and acknowledged but never delivered to the caller) and see none of the caller's
    /// presence, last seen, profile changes or typing. The blocked user is not told.
    Block {
        /// The user.
        user_id: UserId,
    },
    /// Lift a block. Messages withheld while blocked stay withheld.
    Unblock {
        /// The user.
        user_id: UserId,
    },
    /// The users the caller blocked, in id order.
    ListBlocked,
    /// The caller's privacy settings.
    GetPrivacy,
    /// Replace the caller's privacy settings; answered with them.
    SetPrivacy(PrivacySettings),
    /// Replace this connection's watch list (at most [`MAX_PRESENCE_WATCH`] users; an empty list
    /// stops watching). Answered with a snapshot in the same order; changes then arrive as
    /// `Event::Presence` on this connection until the list is replaced or the connection ends.
    WatchPresence {
        /// The users to watch.
        users: Vec<UserId>,
    },
    /// Whether the app on this connection is in the foreground (default: yes). A user is online
    /// while any of their connections is in the foreground.
    SetForeground {
        /// In the foreground.
        foreground: bool,
    },
    /// Typing in a chat, on the control stream: the fallback when datagrams are unavailable.
    /// Always answered `Done`; a rate-limited or unauthorised one is dropped silently.
    SetTyping {
        /// The chat.
        chat_id: ChatId,
        /// Typing or stopped.
        typing: bool,
    },
}

impl Request {
    /// Whether the request may be sent on an unauthenticated session.
    pub fn allowed_unauthenticated(&self) -> bool {
        matches!(
            self,
            Request::RequestOtp { .. }
                | Request::VerifyOtp { .. }
                | Request::Refresh { .. }
                | Request::Ping
        )
    }

    /// Whether the request may be executed from TLS 0-RTT data, before the server has seen the
    /// handshake complete.
    ///
    /// 0-RTT data can be replayed by anyone who recorded it, and the server cannot tell a
    /// replay from the original until the handshake is confirmed (the replayer lacks the
    /// client's 1-RTT keys, so a replayed connection never gets that far). A request is
    /// replay-safe when running it twice, or for a connection nobody can read, changes nothing
    /// but its own answer: pure reads and `Ping`. Everything that writes state, spends a budget
    /// (`LookupUser`, `RequestOtp`), rotates a secret (`Refresh`) or is seen by other users
    /// (`SetForeground`, `SetTyping`, `WatchPresence` changes what this connection is sent) is
    /// not. The match is exhaustive on purpose: a new request must be classified here.
    pub fn replay_safe(&self) -> bool {
        match self {
            Request::Ping
            | Request::ListDevices
            | Request::ListDevicesPage { .. }
            | Request::ListChats
            | Request::ListChatsPage { .. }
            | Request::Sync { .. }
            | Request::GetMessages { .. }
            | Request::GetReceipts { .. }
            | Request::GetGroupInfo { .. }
            | Request::GetMessageReceipts { .. }
            | Request::GetProfile { .. }
            | Request::ListContacts
            | Request::ListBlocked
            | Request::GetPrivacy => true,
            Request::RequestOtp { .. }
            | Request::VerifyOtp { .. }
            | Request::Refresh { .. }
            | Request::Logout
            | Request::RevokeDevice { .. }
            | Request::OpenDirectChat { .. }
            | Request::SendMessage { .. }
            | Request::Ack { .. }
            | Request::MarkRead { .. }
            | Request::CreateGroup { .. }
            | Request::AddMembers { .. }
            | Request::RemoveMember { .. }
            | Request::LeaveGroup { .. }
            | Request::SetAdmin { .. }
            | Request::EditGroupInfo { .. }
            | Request::SetGroupSettings { .. }
            | Request::DeleteForMe { .. }
            | Request::SetProfile(_)
            | Request::SetUsername { .. }
            | Request::LookupUser(_)
            | Request::AddContact { .. }
            | Request::RemoveContact { .. }
            | Request::Block { .. }
            | Request::Unblock { .. }
            | Request::SetPrivacy(_)
            | Request::WatchPresence { .. }
            | Request::SetForeground { .. }
            | Request::SetTyping { .. } => false,
        }
    }

    /// A short stable name, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::RequestOtp { .. } => "request_otp",
            Request::VerifyOtp { .. } => "verify_otp",
            Request::Refresh { .. } => "refresh",
            Request::Logout => "logout",
            Request::ListDevices => "list_devices",
            Request::RevokeDevice { .. } => "revoke_device",
            Request::OpenDirectChat { .. } => "open_direct_chat",
            Request::ListChats => "list_chats",
            Request::SendMessage { .. } => "send_message",
            Request::Ack { .. } => "ack",
            Request::MarkRead { .. } => "mark_read",
            Request::Sync { .. } => "sync",
            Request::GetMessages { .. } => "get_messages",
            Request::GetReceipts { .. } => "get_receipts",
            Request::Ping => "ping",
            Request::ListChatsPage { .. } => "list_chats_page",
            Request::ListDevicesPage { .. } => "list_devices_page",
            Request::CreateGroup { .. } => "create_group",
            Request::AddMembers { .. } => "add_members",
            Request::RemoveMember { .. } => "remove_member",
            Request::LeaveGroup { .. } => "leave_group",
            Request::SetAdmin { .. } => "set_admin",
            Request::EditGroupInfo { .. } => "edit_group_info",
            Request::SetGroupSettings { .. } => "set_group_settings",
            Request::GetGroupInfo { .. } => "get_group_info",
            Request::GetMessageReceipts { .. } => "get_message_receipts",
            Request::DeleteForMe { .. } => "delete_for_me",
            Request::GetProfile { .. } => "get_profile",
            Request::SetProfile(_) => "set_profile",
            Request::SetUsername { .. } => "set_username",
            Request::LookupUser(_) => "lookup_user",
            Request::AddContact { .. } => "add_contact",
            Request::RemoveContact { .. } => "remove_contact",
            Request::ListContacts => "list_contacts",
            Request::Block { .. } => "block",
            Request::Unblock { .. } => "unblock",
            Request::ListBlocked => "list_blocked",
            Request::GetPrivacy => "get_privacy",
            Request::SetPrivacy(_) => "set_privacy",
            Request::WatchPresence { .. } => "watch_presence",
            Request::SetForeground { .. } => "set_foreground",
            Request::SetTyping { .. } => "set_typing",
        }
    }

    /// Whether every field respects its protocol limit (the server's decoder refuses the
    /// frame otherwise, and closes the connection: clients check before sending).
    pub fn within_limits(&self) -> bool {
        match self {
            Request::RequestOtp { identifier } => identifier.len() <= MAX_IDENTIFIER_LEN,
            Request::VerifyOtp {
                identifier,
                code,
                device_name,
            } => {
                identifier.len() <= MAX_IDENTIFIER_LEN
                    && code.len() <= OTP_DIGITS * 4
                    && device_name.len() <= MAX_DEVICE_NAME_LEN
            }
            Request::Refresh { refresh_token } => refresh_token.len() <= MAX_TOKEN_LEN,
            Request::SendMessage { body, .. } => body.within_limits(),
            Request::CreateGroup { title, members } => {
                title.len() <= MAX_GROUP_TITLE_LEN && members.len() <= MAX_CHAT_MEMBERS
            }
            Request::AddMembers { members, .. } => members.len() <= MAX_CHAT_MEMBERS,
            Request::EditGroupInfo {
                title, description, ..
            } => {
                title
                    .as_ref()
                    .is_none_or(|t| t.len() <= MAX_GROUP_TITLE_LEN)
                    && description
                        .as_ref()
                        .is_none_or(|d| d.len() <= MAX_GROUP_DESCRIPTION_LEN)
            }
            Request::DeleteForMe { seqs, .. } => seqs.len() <= MAX_DELETE_FOR_ME,
            Request::SetProfile(edit) => edit.within_limits(),
            Request::SetUsername { username } => username
                .as_ref()
                .is_none_or(|u| u.len() <= MAX_USERNAME_LEN),
            Request::LookupUser(q) => q.within_limits(),
            Request::SetPrivacy(p) => p.within_limits(),
            Request::WatchPresence { users } => users.len() <= MAX_PRESENCE_WATCH,
            Request::Logout
            | Request::ListDevices
            | Request::RevokeDevice { .. }
            | Request::OpenDirectChat { .. }
            | Request::ListChats
            | Request::Ack { .. }
            | Request::MarkRead { .. }
            | Request::Sync { .. }
            | Request::GetMessages { .. }
            | Request::GetReceipts { .. }
            | Request::Ping
            | Request::ListChatsPage { .. }
            | Request::ListDevicesPage { .. }
            | Request::RemoveMember { .. }
            | Request::LeaveGroup { .. }
            | Request::SetAdmin { .. }
            | Request::SetGroupSettings { .. }
            | Request::GetGroupInfo { .. }
            | Request::GetMessageReceipts { .. }
            | Request::GetProfile { .. }
            | Request::AddContact { .. }
            | Request::RemoveContact { .. }
            | Request::ListContacts
            | Request::Block { .. }
            | Request::Unblock { .. }
            | Request::ListBlocked
            | Request::GetPrivacy
            | Request::SetForeground { .. }
            | Request::SetTyping { .. } => true,
        }
    }
}

/// Access and refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Short-lived JWT, presented in `Hello.auth`.
    pub access_token: String,
    /// When the access token expires, milliseconds since the Unix epoch.
    pub access_expires_at_ms: u64,
    /// Opaque, single-use; exchanged with `Refresh` for a new pair.
    pub refresh_token: String,
}

/// Result of a successful login or refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginGrant {
    /// The user.
    pub user_id: UserId,
    /// This device.
    pub device_id: DeviceId,
    /// New tokens.
    pub tokens: Tokens,
}

/// A device in the user's device list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The device.
    pub device_id: DeviceId,
    /// Its name.
    pub name: String,
    /// Registration time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Whether it has been revoked.
    pub revoked: bool,
}

/// Answer to `SendMessage`: the message is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The chat.
    pub chat_id: ChatId,
    /// Its seq in the chat.
    pub seq: Seq,
    /// Server-wide id.
    pub msg_id: MessageId,
    /// Server timestamp, milliseconds since the Unix epoch.
    pub ts_ms: u64,
}

/// A page of the user's update log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPage {
    /// Updates in pts order.
    pub updates: Vec<Update>,
    /// Cursor after this page (the last update's pts, or the request's cursor if empty).
    pub cursor: SyncCursor,
    /// Whether more updates follow; ask again with `cursor`.
    pub has_more: bool,
}

/// A page of the user's chats, in chat id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatsPage {
    /// The chats, each with its current `last_seq`.
    pub chats: Vec<ChatInfo>,
    /// Ask again with `after = next` for more; `None` when this is the last page.
    pub next: Option<ChatId>,
}

/// A page of the user's devices, in device id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicesPage {
    /// The devices, revoked ones included.
    pub devices: Vec<DeviceInfo>,
    /// Ask again with `after = next` for more; `None` when this is the last page.
    pub next: Option<DeviceId>,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A code was sent if the identifier is valid (same answer whether or not it is registered).
    OtpRequested {
        /// Seconds the code stays valid.
        expires_in_s: u32,
    },
    /// Login or refresh succeeded; the session is authenticated as this device.
    LoggedIn(LoginGrant),
    /// Generic success without data (logout, revoke, ack, mark-read).
    Done,
    /// The user's devices.
    Devices(Vec<DeviceInfo>),
    /// A chat.
    Chat(ChatInfo),
    /// The user's chats.
    Chats(Vec<ChatInfo>),
    /// A message is durable.
    Sent(Sent),
    /// A sync page.
    SyncPage(SyncPage),
    /// Messages in seq order.
    Messages(Vec<Message>),
    /// Receipt watermarks per member.
    Receipts(Vec<Receipt>),
    /// Answer to `Ping`.
    Pong,
    /// Answer to `ListChatsPage`.
    ChatsPage(ChatsPage),
    /// Answer to `ListDevicesPage`.
    DevicesPage(DevicesPage),
    /// Answer to `GetGroupInfo`.
    GroupInfo(GroupInfo),
    /// Answer to `GetMessageReceipts`.
    MessageReceipts(MessageReceipts),
    /// `GetProfile`, `SetProfile`, `SetUsername`.
    Profile(Profile),
    /// `LookupUser`: the user found, or `None` (never distinguishes why).
    Lookup(Option<Profile>),
    /// `ListContacts`: at most [`MAX_LIST_LEN`].
    Profiles(Vec<Profile>),
    /// `ListBlocked`: at most [`MAX_LIST_LEN`].
    Users(Vec<UserId>),
    /// `GetPrivacy`, `SetPrivacy`.
    Privacy(PrivacySettings),
    /// `WatchPresence`: the snapshot, in the order asked.
    Presence(Vec<Presence>),
}

impl Response {
    pub(crate) fn within_limits(&self) -> bool {
        match self {
            Response::Devices(d) => {
                d.len() <= MAX_LIST_LEN && d.iter().all(|d| d.name.len() <= MAX_DEVICE_NAME_LEN)
            }
            Response::LoggedIn(g) => {
                g.tokens.access_token.len() <= MAX_TOKEN_LEN
                    && g.tokens.refresh_token.len() <= MAX_TOKEN_LEN
            }
            Response::Chat(c) => c.within_limits(),
            Response::Chats(c) => c.len() <= MAX_LIST_LEN && c.iter().all(ChatInfo::within_limits),
            Response::SyncPage(p) => {
                p.updates.len() <= MAX_SYNC_PAGE as usize
                    && p.updates.iter().all(|u| u.kind.within_limits())
            }
            Response::Messages(m) => {
                m.len() <= MAX_MESSAGES_PAGE as usize && m.iter().all(|m| m.body.within_limits())
            }
            Response::Receipts(r) => r.len() <= MAX_LIST_LEN,
            Response::ChatsPage(p) => {
                p.chats.len() <= MAX_LIST_LEN && p.chats.iter().all(ChatInfo::within_limits)
            }
            Response::DevicesPage(p) => {
                p.devices.len() <= MAX_LIST_LEN
                    && p.devices
                        .iter()
                        .all(|d| d.name.len() <= MAX_DEVICE_NAME_LEN)
            }
            Response::GroupInfo(g) => g.within_limits(),
            Response::MessageReceipts(r) => r.within_limits(),
            Response::Profile(p) => p.within_limits(),
            Response::Lookup(p) => p.as_ref().is_none_or(Profile::within_limits),
            Response::Profiles(p) => {
                p.len() <= MAX_LIST_LEN && p.iter().all(Profile::within_limits)
            }
            Response::Users(u) => u.len() <= MAX_LIST_LEN,
            Response::Privacy(p) => p.within_limits(),
            Response::Presence(p) => p.len() <= MAX_PRESENCE_WATCH,
            Response::OtpRequested { .. } | Response::Done | Response::Sent(_) | Response::Pong => {
                true
            }
        }
    }
}

impl UpdateKind {
    pub(crate) fn within_limits(&self) -> bool {
        match self {
            UpdateKind::Message(m) => m.body.within_limits(),
            UpdateKind::Receipt(_) => true,
            UpdateKind::ChatJoined(c) => c.within_limits(),
            UpdateKind::ChatLeft { .. } => true,
            UpdateKind::HiddenForMe { seqs, .. } => seqs.len() <= MAX_DELETE_FOR_ME,
            UpdateKind::ProfileChanged { .. } => true,
        }
    }
}

impl Sent {
    /// The `Sent` answer describing a stored message.
    pub fn of(message: &Message) -> Sent {
        Sent {
            chat_id: message.chat_id,
            seq: message.seq,
            msg_id: message.msg_id,
            ts_ms: message.ts_ms,
        }
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;
    use crate::{ChatId, UserId};

    #[test]
    fn only_reads_are_replay_safe() {
        let safe = [
            Request::Ping,
            Request::Sync {
                after: crate::SyncCursor { pts: 0 },
                limit: 16,
            },
            Request::GetMessages {
                chat_id: ChatId(1),
                from_seq: 1,
                limit: 10,
            },
            Request::ListChats,
            Request::GetProfile { user_id: UserId(1) },
        ];
        for r in &safe {
            assert!(r.replay_safe(), "{} is a read", r.name());
        }
        let unsafe_ = [
            Request::SendMessage {
                chat_id: ChatId(1),
                client_msg_id: 1,
                body: crate::MessageBody::Text("x".into()),
            },
            Request::Ack {
                chat_id: ChatId(1),
                upto_seq: 1,
            },
            Request::MarkRead {
                chat_id: ChatId(1),
                upto_seq: 1,
            },
            Request::RequestOtp {
                identifier: "a@example.org".into(),
            },
            Request::Refresh {
                refresh_token: "t".into(),
            },
            Request::Block { user_id: UserId(2) },
            Request::OpenDirectChat { peer: UserId(2) },
            Request::SetForeground { foreground: true },
            Request::Logout,
        ];
        for r in &unsafe_ {
            assert!(!r.replay_safe(), "{} changes state", r.name());
        }
    }
}
