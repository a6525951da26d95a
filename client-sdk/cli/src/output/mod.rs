//! What `tern` prints: one [`Record`] per result or event, as a line of text for people or as one
//! JSON object per line for scripts. The JSON field names are a stable interface, documented in
//! `docs/cli.md`: add fields, never rename or remove them.
//!
//! This file holds the records themselves (their fields are the JSON shape) and [`Output`], which
//! prints them or a failure. The rest is split by direction:
//!
//! - [`records`]: building records from what the SDK returns (messages by body kind, group
//!   changes as JSON, chats, devices, receipts).
//! - [`text`]: the text mode: each record as the line a person reads, and group changes and
//!   message bodies as sentences (also the JSON `text` of a system message).

mod records;
mod text;

use std::io::{self, Write};

use serde::Serialize;
use tern_sdk::protocol::{GroupSettings, MemberReceipt};

use crate::failure::Failure;

/// One line of output. The variant name is the JSON `type` field.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// `login` succeeded.
    LoggedIn {
        profile: String,
        identifier: String,
        user_id: u64,
        device_id: u64,
        server: String,
    },
    /// `logout` succeeded.
    LoggedOut { profile: String },
    /// `whoami`.
    Whoami {
        profile: String,
        logged_in: bool,
        identifier: Option<String>,
        user_id: Option<u64>,
        device_id: Option<u64>,
        server: Option<String>,
        cursor: u64,
    },
    /// One of `devices`.
    Device {
        device_id: u64,
        name: String,
        created_ms: u64,
        revoked: bool,
        current: bool,
    },
    /// `revoke`.
    Revoked { device_id: u64 },
    /// One of `chats`, or `open`'s chat.
    Chat {
        chat_id: u64,
        kind: &'static str,
        members: Vec<u64>,
        last_seq: u64,
    },
    /// `send`: the message is durable.
    Sent {
        chat_id: u64,
        seq: u64,
        msg_id: u64,
        ts_ms: u64,
    },
    /// A message (`history`, `tail`). `pts` is set by `tail` only; the fields after `kind`
    /// only for the kinds that have them.
    Message {
        chat_id: u64,
        seq: u64,
        msg_id: u64,
        sender: u64,
        sender_device: u64,
        own: bool,
        text: String,
        ts_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        pts: Option<u64>,
        kind: &'static str,
        #[serde(flatten)]
        extra: MessageExtra,
    },
    /// A member's watermarks (`receipts`, `tail`). `pts` is set by `tail` only.
    Receipt {
        chat_id: u64,
        user_id: u64,
        delivered_seq: u64,
        read_seq: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        pts: Option<u64>,
    },
    /// This user joined a chat (`tail`).
    ChatJoined {
        chat_id: u64,
        kind: &'static str,
        members: Vec<u64>,
        pts: u64,
    },
    /// `read`.
    Read { chat_id: u64, seq: u64 },
    /// This user's membership of a group ended (`tail`).
    ChatLeft { chat_id: u64, at_seq: u64, pts: u64 },
    /// A contact's or chat peer's profile changed (`tail`).
    ProfileChanged { user_id: u64, pts: u64 },
    /// A profile as this user may see it (`profile`, `lookup`, `contacts`). `avatar` is the
    /// photo's media reference in hex; hidden and unset both read as absent.
    Profile {
        user_id: u64,
        username: Option<String>,
        display_name: String,
        about: Option<String>,
        avatar: Option<String>,
        updated_ms: u64,
    },
    /// `lookup` found nobody (unregistered, unknown username: one answer for all).
    NotFound { query: String },
    /// `contacts add|remove`.
    Contact { user_id: u64, contact: bool },
    /// `block`, `unblock`, and each line of `blocked`.
    Blocked { user_id: u64, blocked: bool },
    /// `privacy`: each attribute's audience (`everyone`, `contacts`, `nobody`,
    /// `contacts_except:ID,ID`).
    Privacy {
        last_seen: String,
        online: String,
        photo: String,
        about: String,
    },
    /// A watched user's presence (`presence`, `watch`, `tail --watch`): `online`,
    /// `last_seen` (with `last_seen_ms`) or `hidden`.
    Presence {
        user_id: u64,
        state: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        last_seen_ms: Option<u64>,
    },
    /// Someone typing in a chat (`tail`); `datagram` says it came as a QUIC datagram.
    Typing {
        chat_id: u64,
        user_id: u64,
        typing: bool,
        datagram: bool,
    },
    /// `typing CHAT`: this user's typing was sent.
    TypingSent { chat_id: u64, typing: bool },
    /// `send-file`: the bytes are stored (`resumed_from`: offsets of resumed streams).
    Uploaded {
        media: String,
        kind: &'static str,
        mime: String,
        size: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        dimensions: Option<(u32, u32)>,
        resumed_from: Vec<u64>,
    },
    /// `download`: the file is complete.
    Downloaded {
        media: String,
        path: String,
        mime: String,
        size: u64,
    },
    /// Messages hidden for this user only (`delete --for-me`, `tail`). `pts`: `tail` only.
    HiddenForMe {
        chat_id: u64,
        seqs: Vec<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pts: Option<u64>,
    },
    /// A group change was made (`group add|remove|leave|admin|edit|settings`): its system
    /// message is `seq`.
    GroupChanged {
        chat_id: u64,
        seq: u64,
        msg_id: u64,
        ts_ms: u64,
        change: &'static str,
        #[serde(skip)]
        what: String,
    },
    /// `group info`.
    Group {
        chat_id: u64,
        title: String,
        description: String,
        settings: SettingsRecord,
        created_by: u64,
        created_ms: u64,
        members: Vec<MemberRecord>,
        last_seq: u64,
    },
    /// `receipts CHAT SEQ`: who one message reached.
    MessageReceipts {
        chat_id: u64,
        seq: u64,
        delivered: Vec<MemberReceiptRecord>,
        read: Vec<MemberReceiptRecord>,
        pending: u32,
    },
}

/// The fields of a message that only some kinds have (flattened into `message`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MessageExtra {
    /// `rich`: the message replied to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<Option<u64>>,
    /// `rich`: the users mentioned.
    #[serde(skip_serializing_if = "Option::is_none")]
    mentions: Option<Vec<u64>>,
    /// `reaction`, `edit`, `delete`: the message it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<u64>,
    /// `reaction`: the emoji, `null` when the reaction was removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    emoji: Option<Option<String>>,
    /// `system`: the group change.
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<SystemRecord>,
    /// `media`: what to download (`tern download MEDIA PATH`).
    #[serde(skip_serializing_if = "Option::is_none")]
    media: Option<Box<MediaRecord>>,
}

/// A media message's attachment as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct MediaRecord {
    /// The media id (64 hex digits).
    pub id: String,
    /// `image`, `video`, `audio` or `document`.
    pub kind: &'static str,
    /// MIME type.
    pub mime: String,
    /// Size in bytes.
    pub size: u64,
    /// Width and height, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<(u32, u32)>,
}

/// A group change as JSON: `change` names it; the other fields are there when it has them.
#[derive(Debug, Clone, Serialize)]
pub struct SystemRecord {
    change: &'static str,
    actor: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    users: Option<Vec<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    settings: Option<SettingsRecord>,
}

/// A group's settings as JSON.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SettingsRecord {
    members_can_add: bool,
    members_can_edit_info: bool,
    announcement_only: bool,
}

impl From<GroupSettings> for SettingsRecord {
    fn from(s: GroupSettings) -> Self {
        SettingsRecord {
            members_can_add: s.members_can_add,
            members_can_edit_info: s.members_can_edit_info,
            announcement_only: s.announcement_only,
        }
    }
}

/// One member in `group`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemberRecord {
    user_id: u64,
    admin: bool,
    since_seq: u64,
    joined_ms: u64,
}

/// One member in `message_receipts`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemberReceiptRecord {
    user_id: u64,
    at_ms: u64,
}

impl From<&MemberReceipt> for MemberReceiptRecord {
    fn from(r: &MemberReceipt) -> Self {
        MemberReceiptRecord {
            user_id: r.user_id.0,
            at_ms: r.at_ms,
        }
    }
}

/// Where records go: stdout, as text or JSON lines. Errors go to stderr (see [`Output::failure`]).
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    /// Text, or JSON lines when `json`.
    pub fn new(json: bool) -> Output {
        Output { json }
    }

    /// Prints one record as one line and flushes it, so a reader of a pipe sees each event as it
    /// happens. A closed pipe is an error here (not a panic), so `tail` stops without moving its
    /// cursor past what nobody read.
    pub fn print(&self, record: &Record) -> Result<(), Failure> {
        let line = if self.json {
            serde_json::to_string(record)
                .map_err(|e| Failure::Local(format!("encoding output: {e}")))?
        } else {
            record.text()
        };
        let mut out = io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| Failure::Local(format!("writing to stdout: {e}")))
    }

    /// A note for people (text mode only, on stderr): never mixed into JSON output.
    pub fn note(&self, text: &str) {
        if !self.json {
            let _ = writeln!(io::stderr(), "{text}");
        }
    }

    /// Reports a failure on stderr: `tern: <cause> [<code>]: <what to do>`, or one JSON object
    /// `{"type":"error","error":..,"code":..,"code_number":..,"message":..,"hint":..,"exit_code":..}`.
    pub fn failure(&self, failure: &Failure) {
        let line = if self.json {
            let code = failure.code();
            let record = ErrorRecord {
                kind: "error",
                error: failure.kind(),
                code: code.map(|c| format!("{c:?}")),
                code_number: code.map(|c| c.as_u16()),
                message: failure.message(),
                hint: failure.hint(),
                exit_code: failure.exit_code(),
            };
            serde_json::to_string(&record).unwrap_or_else(|_| failure.to_string())
        } else {
            format!("tern: {failure}")
        };
        let _ = writeln!(io::stderr(), "{line}");
    }
}

/// A failure as one JSON object (fields in this order; see `docs/cli.md`).
#[derive(Debug, Serialize)]
struct ErrorRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: &'static str,
    code: Option<String>,
    code_number: Option<u16>,
    message: &'a str,
    hint: Option<&'a str>,
    exit_code: u8,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_sdk::protocol::{
        ChatId, DeviceId, GroupChange, Message, MessageBody, MessageId, RichText, SystemEvent,
        UserId,
    };

    fn message(body: MessageBody) -> Message {
        Message {
            chat_id: ChatId(9),
            seq: 4,
            msg_id: MessageId(40),
            sender: UserId(1),
            sender_device: DeviceId(2),
            client_msg_id: 7,
            ts_ms: 0,
            body,
        }
    }

    fn json(body: MessageBody) -> serde_json::Value {
        serde_json::to_value(Record::message(&message(body), Some(2), None)).unwrap()
    }

    fn line(body: MessageBody) -> String {
        let text = Record::message(&message(body), Some(1), None).text();
        text.split_once(" chat 9 #4 ").unwrap().1.to_owned()
    }

    fn system(change: GroupChange) -> MessageBody {
        MessageBody::System(SystemEvent {
            actor: UserId(1),
            change,
        })
    }

    #[test]
    fn each_kind_has_its_fields_and_nothing_else() {
        let text = json(MessageBody::Text("hi".into()));
        assert_eq!(text["kind"], "text");
        assert_eq!(text["text"], "hi");
        for absent in ["reply_to", "mentions", "target", "emoji", "system", "pts"] {
            assert!(text.get(absent).is_none(), "{absent} in {text}");
        }
        let reply = json(MessageBody::Rich(RichText {
            text: "yes".into(),
            reply_to: Some(3),
            mentions: vec![UserId(5)],
        }));
        assert_eq!(reply["kind"], "rich");
        assert_eq!(reply["reply_to"], 3);
        assert_eq!(reply["mentions"], serde_json::json!([5]));
        let removed = json(MessageBody::Reaction {
            target: 3,
            emoji: None,
        });
        assert_eq!(removed["target"], 3);
        assert_eq!(removed["emoji"], serde_json::Value::Null, "present, null");
        assert_eq!(removed["text"], "");
        let edit = json(MessageBody::Edit {
            target: 3,
            text: "fixed".into(),
        });
        assert_eq!(
            (&edit["kind"], &edit["text"]),
            (&"edit".into(), &"fixed".into())
        );
        let deleted = json(MessageBody::Deleted);
        assert_eq!(
            (&deleted["kind"], &deleted["text"]),
            (&"deleted".into(), &"".into())
        );
        let added = json(system(GroupChange::MembersAdded(vec![
            UserId(2),
            UserId(3),
        ])));
        assert_eq!(added["kind"], "system");
        assert_eq!(added["text"], "user 1 added user 2, user 3");
        assert_eq!(
            added["system"],
            serde_json::json!({"change": "members_added", "actor": 1, "users": [2, 3]})
        );
        let settings = json(system(GroupChange::SettingsChanged(
            GroupSettings::default(),
        )));
        assert_eq!(
            settings["system"]["settings"],
            serde_json::json!({
                "members_can_add": false,
                "members_can_edit_info": true,
                "announcement_only": false
            })
        );
    }

    #[test]
    fn people_read_what_happened() {
        assert_eq!(line(MessageBody::Text("hi".into())), "user 1 (me): hi");
        let reply = MessageBody::Rich(RichText {
            text: "yes".into(),
            reply_to: Some(3),
            mentions: vec![],
        });
        assert_eq!(line(reply), "user 1 (me) (reply to #3): yes");
        let react = MessageBody::Reaction {
            target: 3,
            emoji: Some("👍".into()),
        };
        assert_eq!(line(react), "user 1 (me) reacted 👍 to #3");
        assert_eq!(
            line(MessageBody::Delete { target: 3 }),
            "user 1 (me) deleted #3 for everyone"
        );
        assert_eq!(
            line(system(GroupChange::MemberRemoved(UserId(2)))),
            "user 1 removed user 2"
        );
        let info = GroupChange::InfoChanged {
            title: Some("Ops".into()),
            description: None,
        };
        assert_eq!(line(system(info)), "user 1 changed the title to \"Ops\"");
        assert_eq!(
            line(system(GroupChange::AdminInherited(UserId(3)))),
            "user 3 is now an admin (the group had no other admin left)"
        );
    }
}
