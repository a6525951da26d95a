//! The social rows of the embedded store: profiles and the username index, contacts (with a
//! reverse index), blocks, privacy settings, withheld direct messages, and last seen.
//!
//! Profile changes, contacts, blocks and settings go through the writer like every other
//! write, so a username is claimed and a block takes effect in the same commit as whatever
//! depends on it (a message appended after the block's commit is withheld; one before is not).
//! Last seen is the exception: presence hints written off the commit path.

use std::collections::BTreeSet;

use tern_protocol::limits::MAX_LIST_LEN;
use tern_protocol::{ChatId, ChatKind, PrivacySettings, UpdateKind, UserId};

use super::tables::split_key2;
use super::tables::{Rows, StoredUpdate, Table, Tables, backend, decode, decode_u64, encode, key2};
use super::writer::Txn;
use super::writes::push_update;
use crate::storage::{
    ChatRecord, EdgeChange, EdgeKind, ProfileChange, ProfileRecord, StorageError, StorageResult,
};

/// Most `ProfileChanged` rows one profile change writes. The recipients are the user, their
/// direct-chat peers, everyone who has them as a contact, then their group peers, in that
/// order; beyond the cap the rest are not told (they see the change at their next
/// `GetProfile`). Profile changes are rate-limited per user, so the cap bounds the write
/// amplification of one account at a few commits' worth of rows per day.
pub(crate) const MAX_PROFILE_RECIPIENTS: usize = 20_000;
/// Most of the user's chats looked at for the recipients of a profile change.
const MAX_SCANNED_CHATS: usize = 4 * MAX_LIST_LEN;

fn user_key(user: UserId) -> [u8; 8] {
    user.0.to_be_bytes()
}

/// The key range `first ++ *` of a pair table (contacts, blocks, user chats).
fn pair_range(first: UserId) -> ([u8; 16], [u8; 16]) {
    (key2(first.0, 0), key2(first.0, u64::MAX))
}

/// The second ids of scanned pair-table rows, in key (id) order.
fn pair_ids(rows: Vec<(Vec<u8>, Vec<u8>)>) -> StorageResult<Vec<UserId>> {
    rows.iter()
        .map(|(k, _)| split_key2(k).map(|(_, b)| UserId(b)))
        .collect()
}

/// `owner`'s rows of a pair table through a batch, at most `limit`.
fn pair_scan(
    txn: &Txn<'_>,
    table: Table,
    owner: UserId,
    limit: usize,
) -> StorageResult<Vec<UserId>> {
    let (from, to) = pair_range(owner);
    pair_ids(txn.scan(table, &from, &to, limit)?)
}

pub(crate) fn table_of(kind: EdgeKind) -> Table {
    match kind {
        EdgeKind::Contact => Table::Contacts,
        EdgeKind::Block => Table::Blocks,
    }
}

// --- reads ---

pub(crate) fn profile(rows: &dyn Rows, user: UserId) -> StorageResult<Option<ProfileRecord>> {
    rows.get(Table::Profiles, &user_key(user))?
        .map(|b| decode("profiles", &b))
        .transpose()
}

pub(crate) fn user_by_username(tables: &Tables, name: &str) -> StorageResult<Option<UserId>> {
    tables
        .get(Table::Usernames, name.as_bytes())?
        .map(|v| decode_u64(&v).map(UserId))
        .transpose()
}

pub(crate) fn edges(tables: &Tables, owner: UserId, kind: EdgeKind) -> StorageResult<Vec<UserId>> {
    let (from, to) = pair_range(owner);
    pair_ids(tables.scan(table_of(kind), &from, &to, MAX_LIST_LEN)?)
}

pub(crate) fn privacy(tables: &Tables, user: UserId) -> StorageResult<Option<PrivacySettings>> {
    tables
        .get(Table::Privacy, &user_key(user))?
        .map(|b| decode("privacy", &b))
        .transpose()
}

/// Whether `a` blocked `b`.
pub(crate) fn blocks(rows: &dyn Rows, a: UserId, b: UserId) -> StorageResult<bool> {
    Ok(rows.get(Table::Blocks, &key2(a.0, b.0))?.is_some())
}

// --- writes (writer thread) ---

fn taken() -> StorageError {
    StorageError::Invalid("username is taken".into())
}

pub(crate) fn change_profile(
    txn: &mut Txn<'_>,
    change: ProfileChange,
) -> StorageResult<ProfileRecord> {
    let user = change.user;
    let mut record = profile(txn, user)?.unwrap_or_default();
    if let Some(name) = change.username
        && name != record.username
    {
        if let Some(new) = &name {
            if let Some(holder) = txn.get(Table::Usernames, new.as_bytes())?
                && decode_u64(&holder)? != user.0
            {
                return Err(taken());
            }
            txn.put(Table::Usernames, new.as_bytes(), user_key(user).to_vec());
        }
        if let Some(old) = &record.username {
            txn.remove(Table::Usernames, old.as_bytes());
        }
        record.username = name;
    }
    if let Some(n) = change.display_name {
        record.display_name = n;
    }
    if let Some(a) = change.about {
        record.about = a;
    }
    if let Some(a) = change.avatar {
        record.avatar = a;
    }
    record.updated_ms = change.now_ms;
    txn.put(Table::Profiles, &user_key(user), encode(&record)?);
    push_profile_changed(txn, user)?;
    Ok(record)
}

/// A `ProfileChanged` update to everyone in [`profile_audience`].
fn push_profile_changed(txn: &mut Txn<'_>, user: UserId) -> StorageResult<()> {
    let stored = StoredUpdate::ProfileChanged { user_id: user };
    for to in profile_audience(txn, user)? {
        push_update(
            txn,
            to,
            &stored,
            UpdateKind::ProfileChanged { user_id: user },
        )?;
    }
    Ok(())
}

/// Who is told that `user`'s profile changed: themself, direct-chat peers, those who have
/// them as a contact, group peers (capped at [`MAX_PROFILE_RECIPIENTS`], in that order), minus
/// users they blocked or who blocked them; each once, in id order.
fn profile_audience(txn: &Txn<'_>, user: UserId) -> StorageResult<Vec<UserId>> {
    let mut chats = Vec::new();
    for c in pair_scan(txn, Table::UserChats, user, MAX_SCANNED_CHATS)? {
        if let Some(record) = txn.chat(ChatId(c.0))?
            && record.has_member(user)
        {
            chats.push(record);
        }
    }
    let mut out = BTreeSet::from([user]);
    let add_members = |out: &mut BTreeSet<UserId>, r: &ChatRecord| {
        for &m in &r.members {
            if out.len() >= MAX_PROFILE_RECIPIENTS {
                break;
            }
            out.insert(m);
        }
    };
    for r in chats.iter().filter(|r| r.kind == ChatKind::Direct) {
        add_members(&mut out, r);
    }
    let room = MAX_PROFILE_RECIPIENTS.saturating_sub(out.len());
    out.extend(pair_scan(txn, Table::ContactOf, user, room)?);
    for r in chats.iter().filter(|r| r.kind != ChatKind::Direct) {
        add_members(&mut out, r);
    }
    let blocked: BTreeSet<UserId> = pair_scan(txn, Table::Blocks, user, usize::MAX)?
        .into_iter()
        .collect();
    let mut kept = Vec::with_capacity(out.len());
    for to in out {
        if to != user && (blocked.contains(&to) || blocks(txn, to, user)?) {
            continue;
        }
        kept.push(to);
    }
    Ok(kept)
}

/// Applies an [`EdgeChange`] idempotently; contacts also keep their reverse row.
pub(crate) fn set_edge(txn: &mut Txn<'_>, change: EdgeChange) -> StorageResult<()> {
    let EdgeChange {
        kind,
        owner,
        other,
        on,
        max,
    } = change;
    let table = table_of(kind);
    let key = key2(owner.0, other.0);
    if txn.get(table, &key)?.is_some() == on {
        return Ok(());
    }
    let reverse = (table == Table::Contacts).then(|| key2(other.0, owner.0));
    if !on {
        txn.remove(table, &key);
        if let Some(r) = reverse {
            txn.remove(Table::ContactOf, &r);
        }
        return Ok(());
    }
    let count = pair_scan(txn, table, owner, max as usize + 1)?.len();
    if count >= max as usize {
        let what = if table == Table::Contacts {
            "contacts"
        } else {
            "blocked users"
        };
        return Err(StorageError::TooLarge(format!("at most {max} {what}")));
    }
    txn.put(table, &key, Vec::new());
    if let Some(r) = reverse {
        txn.put(Table::ContactOf, &r, Vec::new());
    }
    Ok(())
}

pub(crate) fn set_privacy(
    txn: &mut Txn<'_>,
    user: UserId,
    settings: &PrivacySettings,
) -> StorageResult<()> {
    let before = match txn.get(Table::Privacy, &user_key(user))? {
        Some(b) => decode::<PrivacySettings>("privacy", &b)?,
        None => PrivacySettings::default(),
    };
    txn.put(Table::Privacy, &user_key(user), encode(settings)?);
    if before.photo != settings.photo || before.about != settings.about {
        // What others see of the profile changed: they re-read it like after an edit.
        push_profile_changed(txn, user)?;
    }
    Ok(())
}

/// The block rule of a direct chat, for a message `sender` appends: `Forbidden` if the sender
/// blocked the other member (they know they did), else the member to withhold it from, if
/// that member blocked the sender. Groups: no effect.
pub(crate) fn withheld_from(
    txn: &Txn<'_>,
    record: &ChatRecord,
    sender: UserId,
) -> StorageResult<Option<UserId>> {
    if record.kind != ChatKind::Direct || record.group.is_some() {
        return Ok(None);
    }
    let Some(&peer) = record.members.iter().find(|&&m| m != sender) else {
        return Ok(None);
    };
    if blocks(txn, sender, peer)? {
        return Err(StorageError::Forbidden(
            "unblock this user to message them".into(),
        ));
    }
    Ok(blocks(txn, peer, sender)?.then_some(peer))
}

// --- last seen (off the commit path) ---

/// Writes last-seen values in one unsynced batch, outside the writer thread: these rows are
/// presence hints, not acknowledged data, so they never wait for (or add to) a group commit's
/// fsync. The next synced commit, or close, makes them durable.
pub(crate) fn save_last_seen(tables: &Tables, rows: &[(UserId, u64)]) -> StorageResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut batch = tables.db.batch().durability(None);
    for &(user, at_ms) in rows {
        batch.insert(
            tables.keyspace(Table::LastSeen),
            user_key(user),
            at_ms.to_be_bytes(),
        );
    }
    batch.commit().map_err(backend)
}

/// A user's saved last-seen time.
pub(crate) fn last_seen(tables: &Tables, user: UserId) -> StorageResult<Option<u64>> {
    tables
        .get(Table::LastSeen, &user_key(user))?
        .map(|v| decode_u64(&v))
        .transpose()
}

/// Runs a blocking store operation on tokio's blocking pool, so a shard's runtime thread never
/// waits on the journal.
pub(crate) async fn blocking<T, F>(f: F) -> StorageResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StorageResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Backend(format!("a storage task failed: {e}")))?
}
