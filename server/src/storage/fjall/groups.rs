//! Group writes: creation and every membership or settings change, each recorded as a system
//! message in the chat's seq so every device replays the same history.
//!
//! Permissions are checked here, in the writer, against the state the change applies to: two
//! admins demoting each other at once cannot leave a group without an admin.

use tern_protocol::limits::MAX_CHAT_MEMBERS;
use tern_protocol::{
    ChatInfo, ChatKind, DeviceId, GroupChange, GroupMember, GroupSettings, Message, MessageBody,
    MessageId, SystemEvent, UpdateKind, UserId,
};

use super::features::end_interval;
use super::tables::{Counter, StoredUpdate, Table, encode, key2};
use super::writer::Txn;
use super::writes::push_update;
use crate::storage::{
    ChatRecord, GroupCommand, GroupOp, GroupState, NewGroup, StorageError, StorageResult,
};

fn too_large() -> StorageError {
    StorageError::TooLarge(format!("a chat has at most {MAX_CHAT_MEMBERS} members"))
}

fn invalid(why: &str) -> StorageError {
    StorageError::Invalid(why.to_owned())
}

fn forbidden(why: &str) -> StorageError {
    StorageError::Forbidden(why.to_owned())
}

fn put_record(txn: &mut Txn<'_>, record: &ChatRecord) -> StorageResult<()> {
    txn.put(
        Table::Chats,
        &record.chat_id.0.to_be_bytes(),
        encode(record)?,
    );
    Ok(())
}

/// Stores a system message and points every current member's log at it.
fn write_system(
    txn: &mut Txn<'_>,
    record: &ChatRecord,
    actor: UserId,
    actor_device: DeviceId,
    change: GroupChange,
    now_ms: u64,
) -> StorageResult<Message> {
    let chat = record.chat_id;
    let seq = txn.bump(Counter::ChatSeq(chat))?;
    let message = Message {
        chat_id: chat,
        seq,
        msg_id: MessageId(txn.bump(Counter::NextMessage)?),
        sender: actor,
        sender_device: actor_device,
        client_msg_id: 0,
        ts_ms: now_ms,
        body: MessageBody::System(SystemEvent { actor, change }),
    };
    txn.put(Table::Messages, &key2(chat.0, seq), encode(&message)?);
    super::writes::point_members_at(txn, record, &message, None)?;
    Ok(message)
}

/// Makes `users` members from `since` (the seq of the message that adds them) and tells each.
fn join(
    txn: &mut Txn<'_>,
    record: &mut ChatRecord,
    users: &[UserId],
    since: u64,
    now_ms: u64,
) -> StorageResult<()> {
    let Some(group) = record.group.as_mut() else {
        return Err(invalid("not a group"));
    };
    for &user in users {
        if let Err(at) = group.members.binary_search_by_key(&user, |m| m.user_id) {
            group.members.insert(
                at,
                GroupMember {
                    user_id: user,
                    admin: false,
                    since_seq: since,
                    joined_ms: now_ms,
                },
            );
        }
        if let Err(at) = record.members.binary_search(&user) {
            record.members.insert(at, user);
        }
    }
    let info = record.info(since.saturating_sub(1));
    for &user in users {
        txn.put(
            Table::UserChats,
            &key2(user.0, record.chat_id.0),
            Vec::new(),
        );
        push_update(
            txn,
            user,
            &StoredUpdate::ChatJoinedAt(info.clone()),
            UpdateKind::ChatJoined(info.clone()),
        )?;
    }
    Ok(())
}

pub(crate) fn create(txn: &mut Txn<'_>, new: NewGroup) -> StorageResult<ChatInfo> {
    if new.title.trim().is_empty() {
        return Err(invalid("a group needs a title"));
    }
    let mut others: Vec<UserId> = new
        .members
        .iter()
        .copied()
        .filter(|&u| u != new.creator)
        .collect();
    others.sort_unstable();
    others.dedup();
    if others.len() + 1 > MAX_CHAT_MEMBERS {
        return Err(too_large());
    }
    let chat = tern_protocol::ChatId(txn.bump(Counter::NextChat)?);
    let mut record = ChatRecord {
        chat_id: chat,
        kind: ChatKind::Group,
        members: Vec::new(),
        created_ms: new.now_ms,
        group: Some(Box::new(GroupState {
            title: new.title.clone(),
            description: String::new(),
            settings: GroupSettings::default(),
            created_by: new.creator,
            members: Vec::new(),
        })),
    };
    let mut everyone = others.clone();
    everyone.push(new.creator);
    everyone.sort_unstable();
    join(txn, &mut record, &everyone, 1, new.now_ms)?;
    if let Some(g) = record.group.as_mut()
        && let Ok(i) = g.members.binary_search_by_key(&new.creator, |m| m.user_id)
    {
        g.members[i].admin = true;
    }
    put_record(txn, &record)?;
    let created = GroupChange::Created { title: new.title };
    write_system(
        txn,
        &record,
        new.creator,
        new.creator_device,
        created,
        new.now_ms,
    )?;
    if !others.is_empty() {
        let added = GroupChange::MembersAdded(others);
        write_system(
            txn,
            &record,
            new.creator,
            new.creator_device,
            added,
            new.now_ms,
        )?;
    }
    let last = txn.counter(Counter::ChatSeq(chat))?;
    Ok(record.info(last))
}

/// Ends `user`'s membership with the message `at` (already written) and tells their devices.
fn part(txn: &mut Txn<'_>, record: &mut ChatRecord, user: UserId, at: u64) -> StorageResult<()> {
    let since = record.since_seq(user).unwrap_or(1);
    end_interval(txn, record.chat_id, user, since, at)?;
    record.members.retain(|&m| m != user);
    if let Some(g) = record.group.as_mut() {
        g.members.retain(|m| m.user_id != user);
    }
    txn.remove(Table::UserChats, &key2(user.0, record.chat_id.0));
    let chat_id = record.chat_id;
    push_update(
        txn,
        user,
        &StoredUpdate::ChatLeft {
            chat_id,
            at_seq: at,
        },
        UpdateKind::ChatLeft {
            chat_id,
            at_seq: at,
        },
    )
}

/// After the last admin is gone, the longest-standing member (earliest interval start, then
/// lowest id) becomes admin.
fn inherit_admin(
    txn: &mut Txn<'_>,
    record: &mut ChatRecord,
    cmd: &GroupCommand,
) -> StorageResult<()> {
    let Some(g) = record.group.as_mut() else {
        return Ok(());
    };
    if g.members.is_empty() || g.members.iter().any(|m| m.admin) {
        return Ok(());
    }
    let Some(heir) = g
        .members
        .iter_mut()
        .min_by_key(|m| (m.since_seq, m.joined_ms, m.user_id))
    else {
        return Ok(());
    };
    heir.admin = true;
    let change = GroupChange::AdminInherited(heir.user_id);
    write_system(txn, record, cmd.actor, cmd.actor_device, change, cmd.now_ms)?;
    Ok(())
}

pub(crate) fn change(txn: &mut Txn<'_>, cmd: GroupCommand) -> StorageResult<Message> {
    let mut record = txn
        .chat(cmd.chat_id)?
        .filter(|r| r.has_member(cmd.actor))
        .ok_or(StorageError::ChatNotFound)?;
    let Some(group) = record.group.as_ref() else {
        return Err(invalid("not a group"));
    };
    let admin = record.is_admin(cmd.actor);
    let settings = group.settings;
    let system = |txn: &mut Txn<'_>, record: &ChatRecord, change| {
        write_system(txn, record, cmd.actor, cmd.actor_device, change, cmd.now_ms)
    };
    let message = match &cmd.op {
        GroupOp::Add(users) => {
            if !admin && !settings.members_can_add {
                return Err(forbidden("only admins may add members"));
            }
            let mut new: Vec<UserId> = users
                .iter()
                .copied()
                .filter(|&u| !record.has_member(u))
                .collect();
            new.sort_unstable();
            new.dedup();
            if new.is_empty() {
                return Err(invalid("they are members already"));
            }
            if record.members.len() + new.len() > MAX_CHAT_MEMBERS {
                return Err(too_large());
            }
            let at = txn.counter(Counter::ChatSeq(cmd.chat_id))? + 1;
            join(txn, &mut record, &new, at, cmd.now_ms)?;
            system(txn, &record, GroupChange::MembersAdded(new))?
        }
        GroupOp::Remove(user) => {
            if !admin {
                return Err(forbidden("only admins may remove members"));
            }
            if *user == cmd.actor {
                return Err(invalid("to leave, use LeaveGroup"));
            }
            if !record.has_member(*user) {
                return Err(invalid("not a member"));
            }
            let m = system(txn, &record, GroupChange::MemberRemoved(*user))?;
            part(txn, &mut record, *user, m.seq)?;
            inherit_admin(txn, &mut record, &cmd)?;
            m
        }
        GroupOp::Leave => {
            let m = system(txn, &record, GroupChange::Left)?;
            part(txn, &mut record, cmd.actor, m.seq)?;
            inherit_admin(txn, &mut record, &cmd)?;
            m
        }
        GroupOp::SetAdmin { user, admin: to } => {
            if !admin {
                return Err(forbidden("only admins may change admins"));
            }
            let Some(member) = record.member(*user).copied() else {
                return Err(invalid("not a member"));
            };
            if member.admin == *to {
                return Err(invalid(if *to {
                    "already an admin"
                } else {
                    "not an admin"
                }));
            }
            let admins = group.members.iter().filter(|m| m.admin).count();
            if !to && admins == 1 {
                return Err(invalid("a group needs an admin"));
            }
            if let Some(g) = record.group.as_mut()
                && let Ok(i) = g.members.binary_search_by_key(user, |m| m.user_id)
            {
                g.members[i].admin = *to;
            }
            let change = if *to {
                GroupChange::AdminPromoted(*user)
            } else {
                GroupChange::AdminDemoted(*user)
            };
            system(txn, &record, change)?
        }
        GroupOp::EditInfo { title, description } => {
            if !admin && !settings.members_can_edit_info {
                return Err(forbidden("only admins may edit the group info"));
            }
            if title.is_none() && description.is_none() {
                return Err(invalid("nothing to change"));
            }
            if title.as_ref().is_some_and(|t| t.trim().is_empty()) {
                return Err(invalid("a group needs a title"));
            }
            if let Some(g) = record.group.as_mut() {
                if let Some(t) = title {
                    g.title = t.clone();
                }
                if let Some(d) = description {
                    g.description = d.clone();
                }
            }
            let change = GroupChange::InfoChanged {
                title: title.clone(),
                description: description.clone(),
            };
            system(txn, &record, change)?
        }
        GroupOp::Settings(new) => {
            if !admin {
                return Err(forbidden("only admins may change the settings"));
            }
            if let Some(g) = record.group.as_mut() {
                g.settings = *new;
            }
            system(txn, &record, GroupChange::SettingsChanged(*new))?
        }
    };
    put_record(txn, &record)?;
    Ok(message)
}
