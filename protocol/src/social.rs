//! The social layer on the wire (protocol v3): profiles and usernames, directory lookup,
//! contacts, blocking, privacy settings, presence and typing.
//!
//! Privacy is evaluated by the server for each viewer: a [`Profile`] or [`Presence`] a client
//! receives already has the attributes its user may not see removed (`None` / [`PresenceState::Hidden`]),
//! so a client cannot leak what it never got. Typing travels as QUIC datagrams ([`Datagram`]),
//! presence as reliable events on the control stream: presence is state a watcher must converge
//! to, typing is a hint that expires by itself.

use serde::{Deserialize, Serialize};

use crate::ids::{ChatId, UserId};
use crate::limits::{
    MAX_ABOUT_LEN, MAX_DISPLAY_NAME_LEN, MAX_IDENTIFIER_LEN, MAX_LIST_LEN, MAX_PRIVACY_EXCEPTIONS,
    MAX_USERNAME_LEN,
};
pub use crate::media::MediaRef;

/// A user's public face, as the asking user may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The user.
    pub user_id: UserId,
    /// Unique handle (lowercase), if the user chose one.
    pub username: Option<String>,
    /// Free text, at most [`MAX_DISPLAY_NAME_LEN`] bytes; empty until set.
    pub display_name: String,
    /// At most [`MAX_ABOUT_LEN`] bytes; `None` when unset or hidden from the viewer.
    pub about: Option<String>,
    /// Profile photo; `None` when unset or hidden from the viewer.
    pub avatar: Option<MediaRef>,
    /// When the profile last changed (ms since the epoch); 0 if never.
    pub updated_ms: u64,
}

impl Profile {
    pub(crate) fn within_limits(&self) -> bool {
        self.username
            .as_ref()
            .is_none_or(|u| u.len() <= MAX_USERNAME_LEN)
            && self.display_name.len() <= MAX_DISPLAY_NAME_LEN
            && self.about.as_ref().is_none_or(|a| a.len() <= MAX_ABOUT_LEN)
    }
}

/// A change of one's own profile: `None` fields stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProfileEdit {
    /// New display name.
    pub display_name: Option<String>,
    /// New about text (`Some("")` clears it).
    pub about: Option<String>,
    /// `Some(None)` removes the photo, `Some(Some(r))` sets it.
    pub avatar: Option<Option<MediaRef>>,
}

impl ProfileEdit {
    pub(crate) fn within_limits(&self) -> bool {
        self.display_name
            .as_ref()
            .is_none_or(|n| n.len() <= MAX_DISPLAY_NAME_LEN)
            && self.about.as_ref().is_none_or(|a| a.len() <= MAX_ABOUT_LEN)
    }
}

/// What a directory lookup searches by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserQuery {
    /// A username, matched case-insensitively.
    Username(String),
    /// A phone number (E.164) or email address the user logged in with.
    Identifier(String),
}

impl UserQuery {
    pub(crate) fn within_limits(&self) -> bool {
        match self {
            UserQuery::Username(u) => u.len() <= MAX_USERNAME_LEN,
            UserQuery::Identifier(i) => i.len() <= MAX_IDENTIFIER_LEN,
        }
    }
}

/// Who may see one attribute. As in WhatsApp, last seen and online are reciprocal: a user who
/// does not show them to someone cannot see that person's either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Audience {
    /// Anyone who has not been blocked (either way).
    Everyone,
    /// The user's contacts.
    Contacts,
    /// The user's contacts except these, at most [`MAX_PRIVACY_EXCEPTIONS`].
    ContactsExcept(Vec<UserId>),
    /// No one.
    Nobody,
}

/// One user's privacy settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacySettings {
    /// Who sees when the user was last online (reciprocal).
    pub last_seen: Audience,
    /// Who sees that the user is online now (reciprocal).
    pub online: Audience,
    /// Who sees the profile photo.
    pub photo: Audience,
    /// Who sees the about text.
    pub about: Audience,
}

impl Default for PrivacySettings {
    /// Last seen and online: contacts; photo and about: everyone.
    fn default() -> Self {
        PrivacySettings {
            last_seen: Audience::Contacts,
            online: Audience::Contacts,
            photo: Audience::Everyone,
            about: Audience::Everyone,
        }
    }
}

impl PrivacySettings {
    pub(crate) fn within_limits(&self) -> bool {
        [&self.last_seen, &self.online, &self.photo, &self.about]
            .iter()
            .all(|a| match a {
                Audience::ContactsExcept(list) => list.len() <= MAX_PRIVACY_EXCEPTIONS,
                _ => true,
            })
    }
}

/// A watched user's presence as the watcher may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The watched user.
    pub user_id: UserId,
    /// What the watcher may know.
    pub state: PresenceState,
}

/// Online, last seen, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresenceState {
    /// At least one of the user's devices is connected and in the foreground.
    Online,
    /// Offline (or online hidden from the watcher); last seen at this time (ms since the epoch).
    LastSeen {
        /// When the user was last online.
        at_ms: u64,
    },
    /// Not visible to the watcher: privacy, a block, a user never seen, or no such user (all
    /// alike, so watching cannot probe for accounts).
    Hidden,
}

/// Someone typing in a chat, pushed to the chat's other online members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingEvent {
    /// The chat.
    pub chat_id: ChatId,
    /// Who is typing.
    pub user_id: UserId,
    /// Started (or still) typing, or stopped.
    pub typing: bool,
    /// The receiver drops a `typing: true` this long after it arrived unless refreshed.
    pub ttl_ms: u32,
}

/// The payload of one QUIC datagram (postcard, no length prefix: a datagram is its own frame),
/// at most [`crate::limits::MAX_DATAGRAM_LEN`] bytes. Datagrams are unreliable and unordered:
/// only hints that expire by themselves travel this way. Appended variants follow the
/// compatibility rule of `Frame`; a receiver ignores a datagram it cannot decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Datagram {
    /// Client to server: this user starts (or keeps) typing in `chat_id`, or stopped.
    Typing {
        /// The chat.
        chat_id: ChatId,
        /// Typing or stopped.
        typing: bool,
    },
    /// Server to client: someone else's typing.
    TypingEvent(TypingEvent),
}

/// Social limits and timings the server announces in `Welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocialFeatures {
    /// Most users one connection may watch at once (`WatchPresence`).
    pub max_presence_watch: u32,
    /// A `typing: true` is shown this long unless refreshed; clients refresh at half of it.
    pub typing_ttl_ms: u32,
    /// Directory lookups (found or not) a user may make per day.
    pub lookups_per_day: u32,
    /// Most contacts per user.
    pub max_contacts: u32,
    /// Most blocked users per user.
    pub max_blocked: u32,
}

impl Default for SocialFeatures {
    fn default() -> Self {
        SocialFeatures {
            max_presence_watch: crate::limits::MAX_PRESENCE_WATCH as u32,
            typing_ttl_ms: 6_000,
            lookups_per_day: 100,
            max_contacts: MAX_LIST_LEN as u32,
            max_blocked: MAX_LIST_LEN as u32,
        }
    }
}
