//! What `tern` prints: one [`Record`] per result or event, as a line of text for people or as one
//! JSON object per line for scripts. The JSON field names are a stable interface, documented in
//! `docs/cli.md`: add fields, never rename or remove them.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tern_sdk::protocol::{ChatInfo, ChatKind, DeviceInfo, Message, MessageBody, Receipt, Sent};

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
    /// A message (`history`, `tail`). `pts` is set by `tail` only.
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
}

fn kind_name(kind: ChatKind) -> &'static str {
    match kind {
        ChatKind::Direct => "direct",
        ChatKind::Group => "group",
    }
}

fn text_of(body: &MessageBody) -> String {
    match body {
        MessageBody::Text(t) => t.clone(),
        other => format!("{other:?}"),
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
                ..
            } => format!(
                "{} chat {chat_id} #{seq} user {sender}{}: {text}",
                time(*ts_ms),
                if *own { " (me)" } else { "" }
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
