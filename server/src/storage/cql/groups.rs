//! Group writes through the chat partition: the new record (static `state`), the system
//! messages and closed intervals go in one conditional batch, conditioned like an append on
//! the first new message row being absent, so a change is checked against exactly the state
//! it applies to (two admins demoting each other cannot both pass). Memberships (`user_rows`)
//! and the members' logs follow once the batch is committed. Rules and order of effects are
//! those of `fjall::groups`.

use scylla::statement::prepared::PreparedStatement;
use tern_protocol::limits::MAX_CHAT_MEMBERS;
use tern_protocol::{
    ChatId, ChatInfo, ChatKind, DeviceId, GroupChange, GroupMember, GroupSettings, Message,
    MessageBody, MessageId, Seq, SystemEvent, UserId,
};

use super::chats::{self, row};
use super::log::{self, Pending};
use super::schema::{chat, user};
use super::users::user_row;
use super::{Db, MAX_TRIES, Vals, backoff, big, blob, contended, decode, encode, random_id};
use crate::storage::{
    ChatRecord, GroupCommand, GroupOp, GroupState, MAX_PAST_INTERVALS, NewGroup, StorageError,
    StorageResult,
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

/// One group write being built.
struct Change<'a> {
    db: &'a Db,
    record: ChatRecord,
    /// The seq the next system message gets.
    next: Seq,
    stmts: Vec<(&'a PreparedStatement, Vals)>,
    /// Log updates in commit order, with their recipients.
    events: Vec<(Vec<UserId>, Pending)>,
    joined: Vec<UserId>,
    parted: Vec<UserId>,
}

impl<'a> Change<'a> {
    fn new(db: &'a Db, record: ChatRecord, last_seq: Seq) -> Self {
        Change {
            db,
            record,
            next: last_seq + 1,
            stmts: Vec::new(),
            events: Vec::new(),
            joined: Vec::new(),
            parted: Vec::new(),
        }
    }

    fn chat(&self) -> ChatId {
        self.record.chat_id
    }

    /// A system message, pointed at from every current member's log.
    fn system(
        &mut self,
        actor: UserId,
        device: DeviceId,
        change: GroupChange,
        now_ms: u64,
    ) -> StorageResult<Message> {
        let seq = self.next;
        self.next += 1;
        let message = Message {
            chat_id: self.chat(),
            seq,
            msg_id: MessageId(random_id()?),
            sender: actor,
            sender_device: device,
            client_msg_id: 0,
            ts_ms: now_ms,
            body: MessageBody::System(SystemEvent { actor, change }),
        };
        let v = encode(&message)?;
        self.stmts.push((
            &self.db.st.cr_put_new,
            row(self.chat(), chat::MESSAGE, seq, 0, 0, v),
        ));
        self.events
            .push((self.record.members.clone(), Pending::message(&message)));
        Ok(message)
    }

    /// Makes `users` members from `since` and tells each.
    fn join(&mut self, users: &[UserId], since: Seq, now_ms: u64) -> StorageResult<()> {
        let Some(group) = self.record.group.as_mut() else {
            return Err(invalid("not a group"));
        };
        for &u in users {
            if let Err(at) = group.members.binary_search_by_key(&u, |m| m.user_id) {
                group.members.insert(
                    at,
                    GroupMember {
                        user_id: u,
                        admin: false,
                        since_seq: since,
                        joined_ms: now_ms,
                    },
                );
            }
            if let Err(at) = self.record.members.binary_search(&u) {
                self.record.members.insert(at, u);
            }
        }
        let info = self.record.info(since.saturating_sub(1));
        for &u in users {
            self.joined.push(u);
            self.events.push((vec![u], Pending::joined(&info, since)));
        }
        Ok(())
    }

    /// Ends `u`'s membership at the message `at` (already added) and tells their devices.
    async fn part(&mut self, u: UserId, at: Seq) -> StorageResult<()> {
        let since = self.record.since_seq(u).unwrap_or(1);
        let c = self.chat();
        let mut past: Vec<(Seq, Seq)> =
            match chats::get(self.db, c, chat::INTERVALS, u.0, 0, 0).await? {
                Some(v) => decode("intervals", &v)?,
                None => Vec::new(),
            };
        past.push((since, at));
        let excess = past.len().saturating_sub(MAX_PAST_INTERVALS);
        past.drain(..excess);
        self.stmts.push((
            &self.db.st.cr_put,
            row(c, chat::INTERVALS, u.0, 0, 0, encode(&past)?),
        ));
        self.record.members.retain(|&m| m != u);
        if let Some(g) = self.record.group.as_mut() {
            g.members.retain(|m| m.user_id != u);
        }
        self.parted.push(u);
        self.events.push((vec![u], Pending::left(c, at)));
        Ok(())
    }

    /// After the last admin is gone, the longest-standing member becomes admin.
    fn inherit_admin(&mut self, cmd: &GroupCommand) -> StorageResult<()> {
        let Some(g) = self.record.group.as_mut() else {
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
        self.system(cmd.actor, cmd.actor_device, change, cmd.now_ms)?;
        Ok(())
    }

    /// Commits the batch; on success writes memberships and logs. False: someone else
    /// appended first (nothing was written).
    async fn commit(mut self, guard: Option<Vals>) -> StorageResult<bool> {
        let db = self.db;
        let c = self.chat();
        if let Some(meta) = guard {
            self.stmts.insert(0, (&db.st.cr_put_new, meta));
        }
        let state = encode(&self.record)?;
        self.stmts.push((
            &db.st.cr_set_statics,
            vec![big(self.next - 1), blob(state), big(c.0)],
        ));
        if !db.batch(self.stmts).await? {
            return Ok(false);
        }
        for &u in &self.joined {
            db.run(&db.st.ur_put, user_row(u, user::CHAT, c.0, 0, Vec::new()))
                .await?;
        }
        for &u in &self.parted {
            db.run(&db.st.ur_del, (u.0 as i64, user::CHAT, c.0 as i64, 0i64))
                .await?;
        }
        let mut users: Vec<UserId> = self
            .events
            .iter()
            .flat_map(|(to, _)| to.iter().copied())
            .collect();
        users.sort_unstable();
        users.dedup();
        let plan = users
            .into_iter()
            .map(|u| {
                let mine = self
                    .events
                    .iter()
                    .filter(|(to, _)| to.contains(&u))
                    .map(|(_, p)| p.clone())
                    .collect();
                (u, mine)
            })
            .collect();
        log::deliver(db, plan).await?;
        chats::fanned_out(db, c, self.next - 1).await?;
        Ok(true)
    }
}

pub(crate) async fn create(db: &Db, new: NewGroup) -> StorageResult<ChatInfo> {
    db.writable()?;
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
    for _ in 0..MAX_TRIES {
        let c = ChatId(random_id()?);
        let record = ChatRecord {
            chat_id: c,
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
        let mut tx = Change::new(db, record, 0);
        let mut everyone = others.clone();
        everyone.push(new.creator);
        everyone.sort_unstable();
        tx.join(&everyone, 1, new.now_ms)?;
        if let Some(g) = tx.record.group.as_mut()
            && let Ok(i) = g.members.binary_search_by_key(&new.creator, |m| m.user_id)
        {
            g.members[i].admin = true;
        }
        let created = GroupChange::Created {
            title: new.title.clone(),
        };
        tx.system(new.creator, new.creator_device, created, new.now_ms)?;
        if !others.is_empty() {
            let added = GroupChange::MembersAdded(others.clone());
            tx.system(new.creator, new.creator_device, added, new.now_ms)?;
        }
        let last = tx.next - 1;
        let info = tx.record.info(last);
        // The existence guard: a colliding random chat id fails the batch and draws again.
        if tx
            .commit(Some(row(c, chat::META, 0, 0, 0, Vec::new())))
            .await?
        {
            return Ok(info);
        }
    }
    Err(contended("create_group"))
}

pub(crate) async fn change(db: &Db, cmd: GroupCommand) -> StorageResult<Message> {
    db.writable()?;
    let _local = db.chat_lock(cmd.chat_id).lock().await;
    for attempt in 0..MAX_TRIES {
        let state = chats::load(db, cmd.chat_id)
            .await?
            .filter(|s| s.record.has_member(cmd.actor))
            .ok_or(StorageError::ChatNotFound)?;
        let mut tx = Change::new(db, state.record, state.last_seq);
        let message = apply(&mut tx, &cmd).await?;
        if tx.commit(None).await? {
            return Ok(message);
        }
        backoff(attempt).await;
    }
    Err(contended("change_group"))
}

/// The checks and effects of one operation (see `fjall::groups::change`).
async fn apply(tx: &mut Change<'_>, cmd: &GroupCommand) -> StorageResult<Message> {
    let Some(group) = tx.record.group.as_ref() else {
        return Err(invalid("not a group"));
    };
    let admin = tx.record.is_admin(cmd.actor);
    let settings = group.settings;
    let admins = group.members.iter().filter(|m| m.admin).count();
    let (actor, device, now) = (cmd.actor, cmd.actor_device, cmd.now_ms);
    let message = match &cmd.op {
        GroupOp::Add(users) => {
            if !admin && !settings.members_can_add {
                return Err(forbidden("only admins may add members"));
            }
            let mut new: Vec<UserId> = users
                .iter()
                .copied()
                .filter(|&u| !tx.record.has_member(u))
                .collect();
            new.sort_unstable();
            new.dedup();
            if new.is_empty() {
                return Err(invalid("they are members already"));
            }
            if tx.record.members.len() + new.len() > MAX_CHAT_MEMBERS {
                return Err(too_large());
            }
            let at = tx.next;
            tx.join(&new, at, now)?;
            tx.system(actor, device, GroupChange::MembersAdded(new), now)?
        }
        GroupOp::Remove(u) => {
            if !admin {
                return Err(forbidden("only admins may remove members"));
            }
            if *u == actor {
                return Err(invalid("to leave, use LeaveGroup"));
            }
            if !tx.record.has_member(*u) {
                return Err(invalid("not a member"));
            }
            let m = tx.system(actor, device, GroupChange::MemberRemoved(*u), now)?;
            tx.part(*u, m.seq).await?;
            tx.inherit_admin(cmd)?;
            m
        }
        GroupOp::Leave => {
            let m = tx.system(actor, device, GroupChange::Left, now)?;
            tx.part(actor, m.seq).await?;
            tx.inherit_admin(cmd)?;
            m
        }
        GroupOp::SetAdmin { user: u, admin: to } => {
            if !admin {
                return Err(forbidden("only admins may change admins"));
            }
            let Some(member) = tx.record.member(*u).copied() else {
                return Err(invalid("not a member"));
            };
            if member.admin == *to {
                return Err(invalid(if *to {
                    "already an admin"
                } else {
                    "not an admin"
                }));
            }
            if !to && admins == 1 {
                return Err(invalid("a group needs an admin"));
            }
            if let Some(g) = tx.record.group.as_mut()
                && let Ok(i) = g.members.binary_search_by_key(u, |m| m.user_id)
            {
                g.members[i].admin = *to;
            }
            let change = if *to {
                GroupChange::AdminPromoted(*u)
            } else {
                GroupChange::AdminDemoted(*u)
            };
            tx.system(actor, device, change, now)?
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
            if let Some(g) = tx.record.group.as_mut() {
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
            tx.system(actor, device, change, now)?
        }
        GroupOp::Settings(new) => {
            if !admin {
                return Err(forbidden("only admins may change the settings"));
            }
            if let Some(g) = tx.record.group.as_mut() {
                g.settings = *new;
            }
            tx.system(actor, device, GroupChange::SettingsChanged(*new), now)?
        }
    };
    Ok(message)
}
