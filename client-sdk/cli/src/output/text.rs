//! The text mode: each [`Record`] as the line a person reads, and group changes and message
//! bodies as sentences ("user 1 added user 2, user 3", "user 5 reacted 👍 to #3").
//!
//! It exists apart from the records because it is for people, while the records' JSON fields are
//! the stable interface for scripts; the one overlap is a group change's sentence, which is also
//! the JSON `text` of a system message.

use std::time::{Duration, SystemTime};

use tern_sdk::protocol::{GroupChange, SystemEvent};

use super::{MemberReceiptRecord, MessageExtra, Record, SettingsRecord};

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
pub(super) fn change_phrase(change: &GroupChange) -> String {
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
    /// The line a person reads.
    pub(super) fn text(&self) -> String {
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
            Record::Profile {
                user_id,
                username,
                display_name,
                about,
                avatar,
                ..
            } => {
                let mut line = format!("user {user_id}");
                if let Some(u) = username {
                    line.push_str(&format!(" @{u}"));
                }
                if !display_name.is_empty() {
                    line.push_str(&format!(" {display_name:?}"));
                }
                if let Some(a) = about.as_ref().filter(|a| !a.is_empty()) {
                    line.push_str(&format!(" about {a:?}"));
                }
                if avatar.is_some() {
                    line.push_str(" (has a photo)");
                }
                line
            }
            Record::NotFound { query } => format!("nobody found for {query:?}"),
            Record::Contact { user_id, contact } => {
                let what = if *contact {
                    "is now a contact"
                } else {
                    "is no longer a contact"
                };
                format!("user {user_id} {what}")
            }
            Record::Blocked { user_id, blocked } => {
                let what = if *blocked { "blocked" } else { "not blocked" };
                format!("user {user_id} {what}")
            }
            Record::Privacy {
                last_seen,
                online,
                photo,
                about,
            } => {
                format!("last seen: {last_seen}, online: {online}, photo: {photo}, about: {about}")
            }
            Record::Presence {
                user_id,
                state,
                last_seen_ms,
            } => match last_seen_ms {
                Some(ms) => format!("user {user_id} last seen {}", time(*ms)),
                None if *state == "online" => format!("user {user_id} is online"),
                None => format!("user {user_id}: presence hidden"),
            },
            Record::Typing {
                chat_id,
                user_id,
                typing,
                ..
            } => {
                let what = if *typing {
                    "is typing"
                } else {
                    "stopped typing"
                };
                format!("chat {chat_id}: user {user_id} {what}")
            }
            Record::Uploaded {
                media,
                kind,
                mime,
                size,
                resumed_from,
                ..
            } => {
                let resumed = if resumed_from.is_empty() {
                    String::new()
                } else {
                    format!(", resumed at {resumed_from:?}")
                };
                format!("uploaded {kind} {media} ({mime}, {size} bytes{resumed})")
            }
            Record::Downloaded {
                media, path, size, ..
            } => format!("downloaded {media} to {path} ({size} bytes)"),
            Record::TypingSent { chat_id, typing } => {
                let what = if *typing {
                    "are typing"
                } else {
                    "stopped typing"
                };
                format!("chat {chat_id}: told the members you {what}")
            }
            Record::ChatLeft {
                chat_id, at_seq, ..
            } => format!("left chat {chat_id} at #{at_seq}: nothing after it arrives"),
            Record::ProfileChanged { user_id, .. } => {
                format!("user {user_id} changed their profile (tern profile {user_id})")
            }
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
