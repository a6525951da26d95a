//! Identifiers. All are plain integers on the wire (postcard varints) so they stay compact.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub u64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A user account; one per verified phone number or email address.
    UserId
);
id_type!(
    /// One device of a user (a phone, a desktop). Each device has its own session and cursors.
    DeviceId
);
id_type!(
    /// A chat. A direct chat is a chat with two members; groups use the same model.
    ChatId
);
id_type!(
    /// Server-wide unique message identifier.
    MessageId
);

/// Position of a message in its chat: dense and gap-free, starting at 1.
pub type Seq = u64;

/// Per-user update sequence number (like Telegram's `pts`): every update a user must see, in any of
/// their chats, takes the user's next pts. One number is the whole sync cursor of a device.
pub type Pts = u64;

/// Idempotency key chosen by the sending device; unique per device.
pub type ClientMsgId = u64;

/// Where a device stands in its user's update log: it has seen every update with `pts <= self.pts`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct SyncCursor {
    /// Highest update sequence the device has processed.
    pub pts: Pts,
}
