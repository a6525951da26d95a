//! What `tern` prints: one [`Record`] per result or event, as a line of text for people or as one
//! JSON object per line for scripts. The JSON field names are a stable interface, documented in
//! `docs/cli.md`: add fields, never rename or remove them.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tern_sdk::protocol::{
    ChatId, ChatInfo, ChatKind, DeviceInfo, GroupChange, GroupInfo, GroupSettings, MemberReceipt,
    Message, MessageBody, MessageReceipts, Receipt, RichText, Sent, Seq, SystemEvent,
};

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

impl SettingsRecord {
    fn text(&self) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        format!(
            "members can add: {}, members can edit info: {}, announcement only: {}",
            yes(self.members_can_add),
            yes(self.members_can_edit_info),
            yes(self.announcement_only)
        )
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

fn kind_name(kind: ChatKind) -> &'static str {
    match kind {
        ChatKind::Direct => "direct",
        ChatKind::Group => "group",
    }
}

/// The JSON `kind` of a message body.
fn body_kind(body: &MessageBody) -> &'static str {
    match body {
        MessageBody::Text(_) => "text",
        MessageBody::Rich(_) => "rich",
        MessageBody::Reaction { .. } => "reaction",
        MessageBody::Edit { .. } => "edit",
        MessageBody::Delete { .. } => "delete",
        MessageBody::Deleted => "deleted",
        MessageBody::System(_) => "system",
    }
}

/// The JSON `text` of a message: what it says (the new text of an edit, the emoji of a
/// reaction, a sentence for a group change), empty for deletes.
fn text_of(body: &MessageBody) -> String {
    match body {
        MessageBody::Text(t) | MessageBody::Edit { text: t, .. } => t.clone(),
        MessageBody::Rich(r) => r.text.clone(),
        MessageBody::Reaction { emoji, .. } => emoji.clone().unwrap_or_default(),
        MessageBody::Delete { .. } | MessageBody::Deleted => String::new(),
        MessageBody::System(e) => describe_change(e),
    }
}

fn extra_of(body: &MessageBody) -> MessageExtra {
    let mut extra = MessageExtra {
        target: body.target(),
        ..MessageExtra::default()
    };
    match body {
        MessageBody::Rich(RichText {
            reply_to, mentions, ..
        }) => {
            extra.reply_to = Some(*reply_to);
            extra.mentions = Some(mentions.iter().map(|u| u.0).collect());
        }
        MessageBody::Reaction { emoji, .. } => extra.emoji = Some(emoji.clone()),
        MessageBody::System(e) => extra.system = Some(system_record(e)),
        _ => {}
    }
    extra
}

fn change_name(change: &GroupChange) -> &'static str {
    match change {
        GroupChange::Created { .. } => "created",
        GroupChange::MembersAdded(_) => "members_added",
        GroupChange::MemberRemoved(_) => "member_removed",
        GroupChange::Left => "left",
        GroupChange::AdminPromoted(_) => "admin_promoted",
        GroupChange::AdminDemoted(_) => "admin_demoted",
        GroupChange::AdminInherited(_) => "admin_inherited",
        GroupChange::InfoChanged { .. } => "info_changed",
        GroupChange::SettingsChanged(_) => "settings_changed",
    }
}

fn system_record(e: &SystemEvent) -> SystemRecord {
    let mut r = SystemRecord {
        change: change_name(&e.change),
        actor: e.actor.0,
        users: None,
        user: None,
        title: None,
        description: None,
        settings: None,
    };
    match &e.change {
        GroupChange::Created { title } => r.title = Some(title.clone()),
        GroupChange::MembersAdded(users) => r.users = Some(users.iter().map(|u| u.0).collect()),
        GroupChange::MemberRemoved(u)
        | GroupChange::AdminPromoted(u)
        | GroupChange::AdminDemoted(u)
        | GroupChange::AdminInherited(u) => r.user = Some(u.0),
        GroupChange::Left => {}
        GroupChange::InfoChanged { title, description } => {
            r.title.clone_from(title);
            r.description.clone_from(description);
        }
        GroupChange::SettingsChanged(s) => r.settings = Some((*s).into()),
    }
    r
}

fn users(ids: &[u64]) -> String {
    ids.iter()
        .map(|u| format!("user {u}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A group change as a sentence: "user 1 added user 2, user 3".
pub fn describe_change(e: &SystemEvent) -> String {
    match &e.change {
        GroupChange::AdminInherited(u) => {
            format!("user {u} is now an admin (the group had no other admin left)")
        }
        change => format!("user {} {}", e.actor, change_phrase(change)),
    }
}

/// What a change does, without who did it: "added user 2, user 3".
fn change_phrase(change: &GroupChange) -> String {
    match change {
        GroupChange::Created { title } => format!("created the group {title:?}"),
        GroupChange::MembersAdded(added) => {
            let ids: Vec<u64> = added.iter().map(|u| u.0).collect();
            format!("added {}", users(&ids))
        }
        GroupChange::MemberRemoved(u) => format!("removed user {u}"),
        GroupChange::Left => "left".into(),
        GroupChange::AdminPromoted(u) => format!("made user {u} an admin"),
        GroupChange::AdminDemoted(u) => format!("took admin rights from user {u}"),
        GroupChange::AdminInherited(u) => format!("passed admin rights on to user {u}"),
        GroupChange::InfoChanged { title, description } => {
            let mut parts = Vec::new();
            if let Some(t) = title {
                parts.push(format!("the title to {t:?}"));
            }
            if let Some(d) = description {
                parts.push(format!("the description to {d:?}"));
            }
            format!("changed {}", parts.join(" and "))
        }
        GroupChange::SettingsChanged(s) => {
            format!("changed the settings: {}", SettingsRecord::from(*s).text())
        }
    }
}

/// What a message says, for people: `user 5 (me): hello`, `user 5 reacted 👍 to #3`, ...
fn message_line(sender: u64, own: bool, kind: &str, text: &str, extra: &MessageExtra) -> String {
    let who = format!("user {sender}{}", if own { " (me)" } else { "" });
    let target = extra.target.unwrap_or_default();
    match kind {
        "rich" => match extra.reply_to.flatten() {
            Some(to) => format!("{who} (reply to #{to}): {text}"),
            None => format!("{who}: {text}"),
        },
        "reaction" => match extra.emoji.as_ref().and_then(Option::as_deref) {
            Some(emoji) => format!("{who} reacted {emoji} to #{target}"),
            None => format!("{who} removed their reaction to #{target}"),
        },
        "edit" => format!("{who} edited #{target}: {text}"),
        "delete" => format!("{who} deleted #{target} for everyone"),
        "deleted" => format!("{who}: (deleted)"),
        "system" => text.to_owned(),
        _ => format!("{who}: {text}"),
    }
}

impl Record {
    /// A message as `viewer` sees it.
    pub fn message(m: &Message, viewer: Option<u64>, pts: Option<u64>) -> Record {
        Record::Message {
            chat_id: m.chat_id.0,
            seq: m.seq,
            msg_id: m.msg_id.0,
            sender: m.sender.0,
            sender_device: m.sender_device.0,
            own: viewer == Some(m.sender.0),
            text: text_of(&m.body),
            ts_ms: m.ts_ms,
            pts,
            kind: body_kind(&m.body),
            extra: extra_of(&m.body),
        }
    }

    /// A group's state.
    pub fn group(g: &GroupInfo) -> Record {
        Record::Group {
            chat_id: g.chat_id.0,
            title: g.title.clone(),
            description: g.description.clone(),
            settings: g.settings.into(),
            created_by: g.created_by.0,
            created_ms: g.created_ms,
            members: g
                .members
                .iter()
                .map(|m| MemberRecord {
                    user_id: m.user_id.0,
                    admin: m.admin,
                    since_seq: m.since_seq,
                    joined_ms: m.joined_ms,
                })
                .collect(),
            last_seq: g.last_seq,
        }
    }

    /// One message's receipts.
    pub fn message_receipts(r: &MessageReceipts) -> Record {
        Record::MessageReceipts {
            chat_id: r.chat_id.0,
            seq: r.seq,
            delivered: r.delivered.iter().map(Into::into).collect(),
            read: r.read.iter().map(Into::into).collect(),
            pending: r.pending,
        }
    }

    /// The answer to a group change (as asked for: the system message may say less, e.g.
    /// without members who were already in).
    pub fn group_changed(s: &Sent, change: &GroupChange) -> Record {
        Record::GroupChanged {
            chat_id: s.chat_id.0,
            seq: s.seq,
            msg_id: s.msg_id.0,
            ts_ms: s.ts_ms,
            change: change_name(change),
            what: change_phrase(change),
        }
    }

    /// Messages hidden for this user.
    pub fn hidden_for_me(chat_id: ChatId, seqs: &[Seq], pts: Option<u64>) -> Record {
        Record::HiddenForMe {
            chat_id: chat_id.0,
            seqs: seqs.to_vec(),
            pts,
        }
    }

    /// A receipt.
    pub fn receipt(r: &Receipt, pts: Option<u64>) -> Record {
        Record::Receipt {
            chat_id: r.chat_id.0,
            user_id: r.user_id.0,
            delivered_seq: r.delivered_seq,
            read_seq: r.read_seq,
            pts,
        }
    }

    /// A chat.
    pub fn chat(c: &ChatInfo) -> Record {
        Record::Chat {
            chat_id: c.chat_id.0,
            kind: kind_name(c.kind),
            members: c.members.iter().map(|u| u.0).collect(),
            last_seq: c.last_seq,
        }
    }

    /// A joined chat, as `tail` prints it.
    pub fn chat_joined(c: &ChatInfo, pts: u64) -> Record {
        Record::ChatJoined {
            chat_id: c.chat_id.0,
            kind: kind_name(c.kind),
            members: c.members.iter().map(|u| u.0).collect(),
            pts,
        }
    }

    /// A device; `current` marks the one this profile is.
    pub fn device(d: &DeviceInfo, current: bool) -> Record {
        Record::Device {
            device_id: d.device_id.0,
            name: d.name.clone(),
            created_ms: d.created_ms,
            revoked: d.revoked,
            current,
        }
    }

    /// A send's answer.
    pub fn sent(s: &Sent) -> Record {
        Record::Sent {
            chat_id: s.chat_id.0,
            seq: s.seq,
            msg_id: s.msg_id.0,
            ts_ms: s.ts_ms,
        }
    }

    /// The line a person reads.
    fn text(&self) -> String {
        match self {
            Record::LoggedIn {
                profile,
                identifier,
                user_id,
                device_id,
                server,
            } => format!(
                "logged in as {identifier}: user {user_id}, device {device_id} on {server} \
                 (profile {profile})"
            ),
            Record::LoggedOut { profile } => format!("logged out (profile {profile})"),
            Record::Whoami {
                profile,
                logged_in: false,
                ..
            } => format!("profile {profile}: not logged in"),
            Record::Whoami {
                profile,
                identifier,
                user_id,
                device_id,
                server,
                cursor,
                ..
            } => format!(
                "{}: user {}, device {} on {} (profile {profile}, cursor {cursor})",
                identifier.as_deref().unwrap_or("?"),
                opt(*user_id),
                opt(*device_id),
                server.as_deref().unwrap_or("?"),
            ),
            Record::Device {
                device_id,
                name,
                created_ms,
                revoked,
                current,
            } => format!(
                "device {device_id}  {name}  since {}{}{}",
                time(*created_ms),
                if *current { "  (this device)" } else { "" },
                if *revoked { "  revoked" } else { "" },
            ),
            Record::Revoked { device_id } => format!("device {device_id} revoked"),
            Record::Chat {
                chat_id,
                kind,
                members,
                last_seq,
            } => format!(
                "chat {chat_id}  {kind}  members {}  last seq {last_seq}",
                join(members)
            ),
            Record::Sent {
                chat_id,
                seq,
                ts_ms,
                ..
            } => format!("sent to chat {chat_id} as seq {seq} at {}", time(*ts_ms)),
            Record::Message {
                chat_id,
                seq,
                sender,
                own,
                text,
                ts_ms,
                kind,
                extra,
                ..
            } => format!(
                "{} chat {chat_id} #{seq} {}",
                time(*ts_ms),
                message_line(*sender, *own, kind, text, extra)
            ),
            Record::Receipt {
                chat_id,
                user_id,
                delivered_seq,
                read_seq,
                ..
            } => format!(
                "chat {chat_id} user {user_id}: delivered up to #{delivered_seq}, read up to \
                 #{read_seq}"
            ),
            Record::ChatJoined {
                chat_id,
                kind,
                members,
                ..
            } => format!(
                "joined {kind} chat {chat_id} with members {}",
                join(members)
            ),
            Record::Read { chat_id, seq } => format!("chat {chat_id} read up to #{seq}"),
            Record::ChatLeft {
                chat_id, at_seq, ..
            } => format!("left chat {chat_id} at #{at_seq}: nothing after it arrives"),
            Record::HiddenForMe { chat_id, seqs, .. } => format!(
                "chat {chat_id}: hid {} for me",
                seqs.iter()
                    .map(|s| format!("#{s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Record::GroupChanged {
                chat_id, seq, what, ..
            } => format!("chat {chat_id} #{seq}: {what}"),
            Record::Group {
                chat_id,
                title,
                description,
                settings,
                created_by,
                created_ms,
                members,
                last_seq,
            } => {
                let mut lines = vec![format!(
                    "group chat {chat_id} {title:?}, created by user {created_by} at {}, \
                     last seq {last_seq}",
                    time(*created_ms)
                )];
                if !description.is_empty() {
                    lines.push(format!("  description: {description}"));
                }
                lines.push(format!("  settings: {}", settings.text()));
                for m in members {
                    lines.push(format!(
                        "  member user {}{} since #{} ({})",
                        m.user_id,
                        if m.admin { " (admin)" } else { "" },
                        m.since_seq,
                        time(m.joined_ms)
                    ));
                }
                lines.join("\n")
            }
            Record::MessageReceipts {
                chat_id,
                seq,
                delivered,
                read,
                pending,
            } => {
                let list = |rs: &[MemberReceiptRecord]| {
                    if rs.is_empty() {
                        return "nobody".to_owned();
                    }
                    rs.iter()
                        .map(|r| format!("user {} at {}", r.user_id, time(r.at_ms)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!(
                    "chat {chat_id} #{seq}: delivered to {}; read by {}; {pending} pending",
                    list(delivered),
                    list(read)
                )
            }
        }
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "?".into(), |v| v.to_string())
}

fn join(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn time(ms: u64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
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
    use tern_sdk::protocol::{DeviceId, MessageId, UserId};

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
