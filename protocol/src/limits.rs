//! Protocol limits. Decoders check every length against these before allocating, so a peer can
//! never make the other side allocate without bound. The server announces them in `Welcome`.

/// Largest encoded frame (payload after the length prefix), in bytes.
pub const MAX_FRAME_LEN: u32 = 64 * 1024;
/// Longest text message body, in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 16 * 1024;
/// Longest login identifier (E.164 number or email address), in bytes.
pub const MAX_IDENTIFIER_LEN: usize = 254;
/// Longest device name, in bytes.
pub const MAX_DEVICE_NAME_LEN: usize = 64;
/// Longest token (access or refresh), in bytes.
pub const MAX_TOKEN_LEN: usize = 2048;
/// Longest client name/version/platform string in `Hello`, in bytes.
pub const MAX_CLIENT_INFO_LEN: usize = 64;
/// Longest server software name in `Welcome.server`, in bytes.
pub const MAX_SERVER_NAME_LEN: usize = 64;
/// Longest QUIC datagram payload the server accepts (typing and presence pings are tiny).
pub const MAX_DATAGRAM_LEN: usize = 512;
/// Longest human-readable error message, in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 512;
/// Most updates in one sync page.
pub const MAX_SYNC_PAGE: u32 = 256;
/// Most messages in one `GetMessages` answer.
pub const MAX_MESSAGES_PAGE: u32 = 256;
/// Most members in a chat (direct chats have two). Beyond it, `TooLarge`.
pub const MAX_CHAT_MEMBERS: usize = 1024;
/// Most items in any other list (devices, chats, receipts).
pub const MAX_LIST_LEN: usize = 1024;
/// Most requests a client may have in flight on one connection.
pub const MAX_IN_FLIGHT_REQUESTS: u32 = 256;
/// Length of an OTP code, in digits.
pub const OTP_DIGITS: usize = 6;
/// Longest group title, in bytes of UTF-8.
pub const MAX_GROUP_TITLE_LEN: usize = 128;
/// Longest group description, in bytes of UTF-8.
pub const MAX_GROUP_DESCRIPTION_LEN: usize = 2048;
/// Longest reaction (one emoji, possibly with modifiers), in bytes of UTF-8.
pub const MAX_REACTION_LEN: usize = 32;
/// Most mentions one message may carry (the server may announce fewer in `Welcome`).
pub const MAX_MENTIONS: usize = 64;
/// Most seqs in one `DeleteForMe`.
pub const MAX_DELETE_FOR_ME: usize = 256;
/// Longest username, in bytes (usernames are 3 to 32 of `a-z`, `0-9`, `_`, `.`).
pub const MAX_USERNAME_LEN: usize = 32;
/// Shortest username.
pub const MIN_USERNAME_LEN: usize = 3;
/// Longest display name, in bytes.
pub const MAX_DISPLAY_NAME_LEN: usize = 64;
/// Longest about text, in bytes.
pub const MAX_ABOUT_LEN: usize = 256;
/// Most users in one `ContactsExcept` audience.
pub const MAX_PRIVACY_EXCEPTIONS: usize = 256;
/// Most users one connection may watch (`WatchPresence`).
pub const MAX_PRESENCE_WATCH: usize = 256;
/// Longest media header frame (`MediaOpen`, `MediaReply`) on a media stream, in bytes.
pub const MAX_MEDIA_HEADER_LEN: u32 = 1024;
/// Longest MIME type, in bytes.
pub const MAX_MIME_LEN: usize = 128;
/// Longest media caption, in bytes of UTF-8.
pub const MAX_CAPTION_LEN: usize = 4096;
/// Largest client-made thumbnail carried inline in a media message, in bytes.
pub const MAX_INLINE_THUMBNAIL_LEN: usize = 8 * 1024;
