//! Users, devices and refresh tokens.
//!
//! Identifiers and user ids are both claimed with `INSERT ... IF NOT EXISTS`: first a random
//! id's user row (a collision draws again), then the identifier (a lost race deletes the
//! drawn row and returns the winner). Device ids count up per user (`max + 1`, claimed `IF NOT
//! EXISTS`), so a user's devices list in creation order. Refresh rotation is a compare-and-set
//! of the old token's record: of two concurrent rotations exactly one sees it unused.

use tern_protocol::{DeviceId, UserId};

use super::schema::{NAME_IDENTIFIER, user};
use super::{Db, MAX_TRIES, Vals, big, blob, contended, decode, encode, random_id, tiny};

/// Revoked devices kept per user, as the embedded store keeps them.
const REVOKED_DEVICES_KEPT: usize = 16;
use crate::storage::{DeviceRecord, RefreshRecord, Rotation, StorageResult};

/// A name's user (identifier or username).
pub(crate) async fn name(db: &Db, kind: i8, name: &str) -> StorageResult<Option<UserId>> {
    let row: Option<(i64,)> = db.first(&db.st.name_get, (kind, name)).await?;
    Ok(row.map(|(u,)| UserId(u as u64)))
}

pub(crate) async fn upsert_user(db: &Db, identifier: &str) -> StorageResult<UserId> {
    if let Some(u) = name(db, NAME_IDENTIFIER, identifier).await? {
        return Ok(u);
    }
    for _ in 0..16 {
        let id = random_id()?;
        let drawn = db
            .cas(
                &db.st.ur_put_new,
                (
                    id as i64,
                    user::USER,
                    0i64,
                    0i64,
                    identifier.as_bytes().to_vec(),
                ),
            )
            .await?;
        if !drawn {
            continue;
        }
        if db
            .cas(&db.st.name_claim, (NAME_IDENTIFIER, identifier, id as i64))
            .await?
        {
            return Ok(UserId(id));
        }
        // Someone registered the identifier at the same time: theirs wins.
        db.run(&db.st.ur_del, (id as i64, user::USER, 0i64, 0i64))
            .await?;
        if let Some(u) = name(db, NAME_IDENTIFIER, identifier).await? {
            return Ok(u);
        }
    }
    Err(super::StorageError::Backend(
        "no free random user id found".into(),
    ))
}

pub(crate) async fn user_exists(db: &Db, u: UserId) -> StorageResult<bool> {
    if u.0 == 0 {
        return Ok(false);
    }
    let row: Option<(Option<Vec<u8>>,)> = db
        .first(&db.st.ur_get, (u.0 as i64, user::USER, 0i64, 0i64))
        .await?;
    Ok(row.is_some())
}

pub(crate) async fn create_device(
    db: &Db,
    u: UserId,
    name: &str,
    now_ms: u64,
) -> StorageResult<DeviceRecord> {
    for _ in 0..MAX_TRIES {
        let last: Option<(i64,)> = db.first(&db.st.ur_last, (u.0 as i64, user::DEVICE)).await?;
        let id = last.map_or(0, |(a,)| a as u64) + 1;
        let record = DeviceRecord {
            user_id: u,
            device_id: DeviceId(id),
            name: name.to_owned(),
            created_ms: now_ms,
            revoked: false,
        };
        let values = (u.0 as i64, user::DEVICE, id as i64, 0i64, encode(&record)?);
        if db.cas(&db.st.ur_put_new, values).await? {
            return Ok(record);
        }
    }
    Err(contended("create_device"))
}

pub(crate) async fn device(db: &Db, u: UserId, d: DeviceId) -> StorageResult<Option<DeviceRecord>> {
    let row: Option<(Option<Vec<u8>>,)> = db
        .first(&db.st.ur_get, (u.0 as i64, user::DEVICE, d.0 as i64, 0i64))
        .await?;
    match row {
        Some((Some(v),)) => Ok(Some(decode("devices", &v)?)),
        _ => Ok(None),
    }
}

pub(crate) async fn devices_page(
    db: &Db,
    u: UserId,
    after: DeviceId,
    limit: u32,
) -> StorageResult<Vec<DeviceRecord>> {
    let Some(from) = after.0.checked_add(1) else {
        return Ok(Vec::new());
    };
    let rows: Vec<(i64, i64, Option<Vec<u8>>)> = db
        .rows(
            &db.st.ur_range,
            (
                u.0 as i64,
                user::DEVICE,
                from as i64,
                i64::MAX,
                limit.min(i32::MAX as u32) as i32,
            ),
        )
        .await?;
    rows.iter()
        .filter_map(|(_, _, v)| v.as_ref())
        .map(|v| decode("devices", v))
        .collect()
}

pub(crate) async fn revoke_device(db: &Db, u: UserId, d: DeviceId) -> StorageResult<bool> {
    db.writable()?;
    let Some(mut record) = device(db, u, d).await? else {
        return Ok(false);
    };
    if !record.revoked {
        record.revoked = true;
        let values = (u.0 as i64, user::DEVICE, d.0 as i64, 0i64, encode(&record)?);
        db.run(&db.st.ur_put, values).await?;
    }
    delete_device_tokens(db, u, d).await?;
    // Keep the newest revoked devices only (ids grow with creation time).
    let all = devices_page(db, u, DeviceId(0), i32::MAX as u32).await?;
    let revoked: Vec<DeviceId> = all
        .iter()
        .filter(|r| r.revoked)
        .map(|r| r.device_id)
        .collect();
    let excess = revoked.len().saturating_sub(REVOKED_DEVICES_KEPT);
    for old in revoked.into_iter().take(excess) {
        delete_device_tokens(db, u, old).await?;
        db.run(
            &db.st.ur_del,
            (u.0 as i64, user::DEVICE, old.0 as i64, 0i64),
        )
        .await?;
    }
    Ok(true)
}

fn hash_prefix(hash: &[u8; 32]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash[..8]);
    i64::from_be_bytes(b)
}

async fn delete_device_tokens(db: &Db, u: UserId, d: DeviceId) -> StorageResult<()> {
    let rows: Vec<(i64, i64, Option<Vec<u8>>)> = db
        .rows(
            &db.st.ur_range_b,
            (u.0 as i64, user::TOKEN, d.0 as i64, 10_000i32),
        )
        .await?;
    for (_, prefix, hash) in rows {
        if let Some(h) = hash {
            db.run(&db.st.rt_del, (h,)).await?;
        }
        db.run(&db.st.ur_del, (u.0 as i64, user::TOKEN, d.0 as i64, prefix))
            .await?;
    }
    Ok(())
}

pub(crate) async fn put_refresh(
    db: &Db,
    hash: [u8; 32],
    record: &RefreshRecord,
) -> StorageResult<()> {
    db.run(&db.st.rt_put, (hash.to_vec(), encode(record)?))
        .await?;
    let values: (i64, i8, i64, i64, Vec<u8>) = (
        record.user_id.0 as i64,
        user::TOKEN,
        record.device_id.0 as i64,
        hash_prefix(&hash),
        hash.to_vec(),
    );
    db.run(&db.st.ur_put, values).await
}

async fn delete_refresh(db: &Db, record: &RefreshRecord, hash: &[u8; 32]) -> StorageResult<()> {
    db.run(&db.st.rt_del, (hash.to_vec(),)).await?;
    let key = (
        record.user_id.0 as i64,
        user::TOKEN,
        record.device_id.0 as i64,
        hash_prefix(hash),
    );
    db.run(&db.st.ur_del, key).await
}

/// A token's record and its stored bytes (the compare-and-set operand).
pub(crate) async fn refresh(
    db: &Db,
    hash: [u8; 32],
) -> StorageResult<Option<(RefreshRecord, Vec<u8>)>> {
    let row: Option<(Option<Vec<u8>>,)> = db.first(&db.st.rt_get, (hash.to_vec(),)).await?;
    match row {
        Some((Some(bytes),)) => Ok(Some((decode("refresh", &bytes)?, bytes))),
        _ => Ok(None),
    }
}

pub(crate) async fn rotate_refresh(
    db: &Db,
    old: [u8; 32],
    new: [u8; 32],
    record: &RefreshRecord,
    now_ms: u64,
    grace_ms: u64,
) -> StorageResult<Rotation> {
    db.writable()?;
    let mut wrote_new = false;
    for _ in 0..MAX_TRIES {
        let Some((before, bytes)) = refresh(db, old).await? else {
            return Ok(Rotation::Unknown);
        };
        if !before.used {
            // The successor first: if the exchange below fails, an unused, unreachable row is
            // left (deleted below), never a used token without its successor.
            let successor = RefreshRecord {
                predecessor: Some(old),
                ..record.clone()
            };
            put_refresh(db, new, &successor).await?;
            wrote_new = true;
            let after = RefreshRecord {
                used: true,
                used_ms: now_ms,
                successor: Some(new),
                ..before.clone()
            };
            if db
                .cas(&db.st.rt_cas, (encode(&after)?, old.to_vec(), bytes))
                .await?
            {
                if let Some(p) = before.predecessor {
                    delete_refresh(db, &before, &p).await?;
                }
                return Ok(Rotation::Rotated(before));
            }
            continue;
        }
        let in_grace = now_ms.saturating_sub(before.used_ms) < grace_ms;
        if in_grace && before.successor == Some(new) {
            let unused = refresh(db, new).await?.is_some_and(|(r, _)| !r.used);
            if unused {
                return Ok(Rotation::Replayed(before));
            }
        }
        if wrote_new && before.successor != Some(new) {
            // A concurrent rotation to another successor won: ours must not stay usable.
            delete_refresh(db, record, &new).await?;
        }
        return Ok(Rotation::Reused(before));
    }
    Err(contended("rotate_refresh_token"))
}

/// Values for a `user_rows` insert.
pub(crate) fn user_row(u: UserId, kind: i8, a: u64, b: u64, v: Vec<u8>) -> Vals {
    vec![big(u.0), tiny(kind), big(a), big(b), blob(v)]
}
