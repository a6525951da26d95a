//! Building [`Record`]s from what the SDK returns: the JSON `kind`, `text` and kind-specific
//! fields of a message body, a group change as JSON, and one constructor per result or event.
//!
//! It exists apart from the records' definitions so the mapping from protocol types (which may
//! grow) to the stable JSON fields is in one place.

use tern_sdk::protocol::{
    Audience, ChatId, ChatInfo, ChatKind, DeviceInfo, GroupChange, GroupInfo, Message, MessageBody,
    MessageReceipts, Presence, PresenceState, PrivacySettings, Profile, Receipt, RichText, Sent,
    Seq, SystemEvent,
};

use super::text::{change_phrase, describe_change};
use super::{MemberRecord, MessageExtra, Record, SystemRecord};

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
        MessageBody::Media(_) => "media",
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
        MessageBody::Media(m) => match &m.caption {
            Some(c) => format!("[{} {}] {c}", m.kind.name(), m.media.to_hex()),
            None => format!("[{} {}]", m.kind.name(), m.media.to_hex()),
        },
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
        MessageBody::Media(m) => {
            extra.media = Some(Box::new(super::MediaRecord {
                id: m.media.to_hex(),
                kind: m.kind.name(),
                mime: m.mime.clone(),
                size: m.size,
                dimensions: m.dimensions,
            }))
        }
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

    /// A profile as the SDK returned it.
    pub fn profile(p: &Profile) -> Record {
        Record::Profile {
            user_id: p.user_id.0,
            username: p.username.clone(),
            display_name: p.display_name.clone(),
            about: p.about.clone(),
            avatar: p
                .avatar
                .map(|a| a.0.iter().map(|b| format!("{b:02x}")).collect()),
            updated_ms: p.updated_ms,
        }
    }

    /// A presence as the SDK returned it.
    pub fn presence(p: &Presence) -> Record {
        let (state, last_seen_ms) = match p.state {
            PresenceState::Online => ("online", None),
            PresenceState::LastSeen { at_ms } => ("last_seen", Some(at_ms)),
            _ => ("hidden", None),
        };
        Record::Presence {
            user_id: p.user_id.0,
            state,
            last_seen_ms,
        }
    }

    /// Privacy settings, each audience as `tern privacy` takes it.
    pub fn privacy(p: &PrivacySettings) -> Record {
        Record::Privacy {
            last_seen: audience_name(&p.last_seen),
            online: audience_name(&p.online),
            photo: audience_name(&p.photo),
            about: audience_name(&p.about),
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
}

/// An audience as `tern privacy` spells it.
pub fn audience_name(a: &Audience) -> String {
    match a {
        Audience::Everyone => "everyone".into(),
        Audience::Contacts => "contacts".into(),
        Audience::ContactsExcept(ids) => format!(
            "contacts_except:{}",
            ids.iter()
                .map(|u| u.0.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        _ => "nobody".into(),
    }
}
