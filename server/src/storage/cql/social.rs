//! Profiles and usernames, contacts and blocks, privacy settings, last seen: rows of the
//! user's partition of `user_rows`, plus the `names` table for usernames.
//!
//! A username is claimed with `INSERT ... IF NOT EXISTS` before the profile row is written
//! and the old name released (`DELETE ... IF user_id = me`) after, so a name is never held by
//! two users; a crash in between can leave the old name reserved to the same user. The
//! `ProfileChanged` recipients are those of `fjall::social::profile_audience`.

use std::collections::BTreeSet;

use tern_protocol::limits::MAX_LIST_LEN;
use tern_protocol::{ChatId, ChatKind, PrivacySettings, UpdateKind, UserId};

use super::chats::{self, blocks};
use super::log::{self, Pending, StoredUpdate};
use super::schema::{NAME_USERNAME, user};
use super::users::user_row;
use super::{Db, decode, encode};
use crate::storage::{
    EdgeChange, EdgeKind, ProfileChange, ProfileRecord, StorageError, StorageResult,
};

/// Most `ProfileChanged` rows one change writes (as the embedded store).
const MAX_PROFILE_RECIPIENTS: usize = 20_000;
/// Most of the user's chats looked at for the recipients of a profile change.
const MAX_SCANNED_CHATS: usize = 4 * MAX_LIST_LEN;

async fn one(db: &Db, u: UserId, kind: i8) -> StorageResult<Option<Vec<u8>>> {
    let found: Option<(Option<Vec<u8>>,)> = db
        .first(&db.st.ur_get, (u.0 as i64, kind, 0i64, 0i64))
        .await?;
    Ok(found.map(|(v,)| v.unwrap_or_default()))
}

/// The `a` column of a user's rows of a kind, in order, at most `limit`.
pub(crate) async fn ids(db: &Db, u: UserId, kind: i8, limit: usize) -> StorageResult<Vec<UserId>> {
    let limit = limit.min(i32::MAX as usize) as i32;
    let rows: Vec<(i64, i64, Option<Vec<u8>>)> = db
        .rows(&db.st.ur_range, (u.0 as i64, kind, 0i64, i64::MAX, limit))
        .await?;
    Ok(rows.into_iter().map(|(a, _, _)| UserId(a as u64)).collect())
}

pub(crate) async fn profile(db: &Db, u: UserId) -> StorageResult<Option<ProfileRecord>> {
    match one(db, u, user::PROFILE).await? {
        Some(v) => Ok(Some(decode("profiles", &v)?)),
        None => Ok(None),
    }
}

pub(crate) async fn change_profile(db: &Db, change: ProfileChange) -> StorageResult<ProfileRecord> {
    db.writable()?;
    let u = change.user;
    let _local = db.user_lock(u).lock().await;
    let mut record = profile(db, u).await?.unwrap_or_default();
    let mut release = None;
    if let Some(name) = change.username
        && name != record.username
    {
        if let Some(new) = &name
            && !db
                .cas(&db.st.name_claim, (NAME_USERNAME, new.as_str(), u.0 as i64))
                .await?
            && super::users::name(db, NAME_USERNAME, new).await? != Some(u)
        {
            return Err(StorageError::Invalid("username is taken".into()));
        }
        release = record.username.take();
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
    db.run(
        &db.st.ur_put,
        user_row(u, user::PROFILE, 0, 0, encode(&record)?),
    )
    .await?;
    if let Some(old) = release {
        db.cas(
            &db.st.name_release,
            (NAME_USERNAME, old.as_str(), u.0 as i64),
        )
        .await?;
    }
    drop(_local);
    push_profile_changed(db, u).await?;
    Ok(record)
}

async fn push_profile_changed(db: &Db, u: UserId) -> StorageResult<()> {
    let to = profile_audience(db, u).await?;
    let p = Pending {
        index: None,
        stored: StoredUpdate::ProfileChanged { user_id: u },
        kind: UpdateKind::ProfileChanged { user_id: u },
    };
    log::deliver_all(db, &to, p).await
}

/// The user, direct-chat peers, those who have the user as a contact, group peers (capped),
/// minus users blocked either way; each once, in id order.
async fn profile_audience(db: &Db, u: UserId) -> StorageResult<Vec<UserId>> {
    let mut records = Vec::new();
    for c in ids(db, u, user::CHAT, MAX_SCANNED_CHATS).await? {
        if let Some(s) = chats::load(db, ChatId(c.0)).await?
            && s.record.has_member(u)
        {
            records.push(s.record);
        }
    }
    let mut out = BTreeSet::from([u]);
    let add = |out: &mut BTreeSet<UserId>, members: &[UserId]| {
        for &m in members {
            if out.len() >= MAX_PROFILE_RECIPIENTS {
                break;
            }
            out.insert(m);
        }
    };
    for r in records.iter().filter(|r| r.kind == ChatKind::Direct) {
        add(&mut out, &r.members);
    }
    let room = MAX_PROFILE_RECIPIENTS.saturating_sub(out.len());
    out.extend(ids(db, u, user::CONTACT_OF, room).await?);
    for r in records.iter().filter(|r| r.kind != ChatKind::Direct) {
        add(&mut out, &r.members);
    }
    let blocked: BTreeSet<UserId> = ids(db, u, user::BLOCK, usize::MAX)
        .await?
        .into_iter()
        .collect();
    let mut kept = Vec::with_capacity(out.len());
    for to in out {
        if to != u && (blocked.contains(&to) || blocks(db, to, u).await?) {
            continue;
        }
        kept.push(to);
    }
    Ok(kept)
}

fn kind_of(kind: EdgeKind) -> i8 {
    match kind {
        EdgeKind::Contact => user::CONTACT,
        EdgeKind::Block => user::BLOCK,
    }
}

pub(crate) async fn edges(db: &Db, owner: UserId, kind: EdgeKind) -> StorageResult<Vec<UserId>> {
    ids(db, owner, kind_of(kind), MAX_LIST_LEN).await
}

pub(crate) async fn set_edge(db: &Db, change: EdgeChange) -> StorageResult<()> {
    db.writable()?;
    let EdgeChange {
        kind,
        owner,
        other,
        on,
        max,
    } = change;
    if on && (owner == other || !super::users::user_exists(db, other).await?) {
        return Err(StorageError::UserNotFound);
    }
    let k = kind_of(kind);
    let key = (owner.0 as i64, k, other.0 as i64, 0i64);
    let found: Option<(Option<Vec<u8>>,)> = db.first(&db.st.ur_get, key).await?;
    if found.is_some() == on {
        return Ok(());
    }
    let reverse = (kind == EdgeKind::Contact).then_some((
        other.0 as i64,
        user::CONTACT_OF,
        owner.0 as i64,
        0i64,
    ));
    if !on {
        db.run(&db.st.ur_del, key).await?;
        if let Some(r) = reverse {
            db.run(&db.st.ur_del, r).await?;
        }
        return Ok(());
    }
    if ids(db, owner, k, max as usize + 1).await?.len() >= max as usize {
        let what = if kind == EdgeKind::Contact {
            "contacts"
        } else {
            "blocked users"
        };
        return Err(StorageError::TooLarge(format!("at most {max} {what}")));
    }
    db.run(&db.st.ur_put, user_row(owner, k, other.0, 0, Vec::new()))
        .await?;
    if reverse.is_some() {
        db.run(
            &db.st.ur_put,
            user_row(other, user::CONTACT_OF, owner.0, 0, Vec::new()),
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn privacy(db: &Db, u: UserId) -> StorageResult<Option<PrivacySettings>> {
    match one(db, u, user::PRIVACY).await? {
        Some(v) => Ok(Some(decode("privacy", &v)?)),
        None => Ok(None),
    }
}

pub(crate) async fn set_privacy(
    db: &Db,
    u: UserId,
    settings: PrivacySettings,
) -> StorageResult<()> {
    db.writable()?;
    let before = privacy(db, u).await?.unwrap_or_default();
    db.run(
        &db.st.ur_put,
        user_row(u, user::PRIVACY, 0, 0, encode(&settings)?),
    )
    .await?;
    if before.photo != settings.photo || before.about != settings.about {
        push_profile_changed(db, u).await?;
    }
    Ok(())
}

/// Plain (non-conditional) writes: presence hints, never on a Paxos path.
pub(crate) async fn save_last_seen(db: &Db, rows: Vec<(UserId, u64)>) -> StorageResult<()> {
    use futures::StreamExt;
    db.writable()?;
    let results: Vec<StorageResult<()>> = futures::stream::iter(rows)
        .map(|(u, at)| async move {
            db.run(
                &db.st.ur_put,
                user_row(u, user::LAST_SEEN, 0, 0, at.to_be_bytes().to_vec()),
            )
            .await
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}

pub(crate) async fn last_seen(db: &Db, u: UserId) -> StorageResult<Option<u64>> {
    match one(db, u, user::LAST_SEEN).await? {
        Some(v) => {
            let b: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| super::corrupt("last_seen", "value is not 8 bytes"))?;
            Ok(Some(u64::from_be_bytes(b)))
        }
        None => Ok(None),
    }
}
