//! The per-user update log on `user_rows`: log rows `(LOG, pts)` and the static `last_pts`.
//!
//! An update is appended with one conditional batch on the user's partition: the log row at
//! `last_pts + 1` `IF NOT EXISTS` (log rows are dense and never deleted, so the condition is
//! "nobody appended since I read the pts"), `last_pts`, and, for updates about one chat event,
//! an index row `(kind, chat, seq)`. The index row is read first: an update already logged is
//! skipped, which makes a fan-out safe to repeat (a retried send completes the fan-out of the
//! original append without logging anything twice). Receipts, profile changes and
//! delete-for-me have no such key: each call is a new update, and a repeat after a lost
//! answer logs a second, harmless copy (receipts are watermark snapshots).

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tern_protocol::{ChatId, ChatInfo, MessageBody, Pts, Receipt, Seq, Update, UpdateKind, UserId};

use super::schema::{chat, user};
use super::users::user_row;
use super::{Db, MAX_TRIES, backoff, big, chats, contended, decode, encode};
use crate::storage::StorageResult;

/// Users whose logs one fan-out writes at once.
const FANOUT_PARALLELISM: usize = 32;

/// What a log row stores: references resolved at read time (a message is stored once), and
/// the join snapshot so sync returns exactly what was pushed live.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum StoredUpdate {
    Message { chat_id: ChatId, seq: Seq },
    Receipt(Receipt),
    ChatJoinedAt(ChatInfo),
    ChatLeft { chat_id: ChatId, at_seq: Seq },
    HiddenForMe { chat_id: ChatId, seqs: Vec<Seq> },
    ProfileChanged { user_id: UserId },
}

/// One update to log for one user.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// `(index kind, chat, seq)`: skip if already logged.
    pub index: Option<(i8, u64, u64)>,
    pub stored: StoredUpdate,
    pub kind: UpdateKind,
}

impl Pending {
    pub(crate) fn message(m: &tern_protocol::Message) -> Self {
        Pending {
            index: Some((user::SEEN_MESSAGE, m.chat_id.0, m.seq)),
            stored: StoredUpdate::Message {
                chat_id: m.chat_id,
                seq: m.seq,
            },
            kind: UpdateKind::Message(m.clone()),
        }
    }

    pub(crate) fn joined(info: &ChatInfo, since: Seq) -> Self {
        Pending {
            index: Some((user::SEEN_JOIN, info.chat_id.0, since)),
            stored: StoredUpdate::ChatJoinedAt(info.clone()),
            kind: UpdateKind::ChatJoined(info.clone()),
        }
    }

    pub(crate) fn left(chat_id: ChatId, at_seq: Seq) -> Self {
        Pending {
            index: Some((user::SEEN_LEFT, chat_id.0, at_seq)),
            stored: StoredUpdate::ChatLeft { chat_id, at_seq },
            kind: UpdateKind::ChatLeft { chat_id, at_seq },
        }
    }

    pub(crate) fn receipt(r: Receipt) -> Self {
        Pending {
            index: None,
            stored: StoredUpdate::Receipt(r),
            kind: UpdateKind::Receipt(r),
        }
    }
}

pub(crate) async fn latest_pts(db: &Db, u: UserId) -> StorageResult<Pts> {
    let row: Option<(Option<i64>,)> = db.first(&db.st.log_pts, (u.0 as i64,)).await?;
    Ok(row.and_then(|(p,)| p).map_or(0, |p| p as u64))
}

/// Logs one update unless its index row exists; the pts written, if any.
async fn append_one(db: &Db, u: UserId, p: &Pending) -> StorageResult<Option<Pts>> {
    let bytes = encode(&p.stored)?;
    for attempt in 0..MAX_TRIES {
        // The pts before the index row: the index row commits in the batch that moves the pts,
        // so if it is absent now, whoever logs it later moves the pts past the one read here
        // and this batch's condition fails (read the other way round, an update logged in
        // between would be logged twice).
        let pts = latest_pts(db, u).await? + 1;
        if let Some((kind, a, b)) = p.index {
            let seen: Option<(Option<Vec<u8>>,)> = db
                .first(&db.st.ur_get, (u.0 as i64, kind, a as i64, b as i64))
                .await?;
            if seen.is_some() {
                return Ok(None);
            }
        }
        let mut stmts = vec![(
            &db.st.ur_put_new,
            user_row(u, user::LOG, pts, 0, bytes.clone()),
        )];
        if let Some((kind, a, b)) = p.index {
            let mark = user_row(u, kind, a, b, pts.to_be_bytes().to_vec());
            stmts.push((&db.st.ur_put, mark));
        }
        stmts.push((&db.st.log_set_pts, vec![big(pts), big(u.0)]));
        if db.batch_or_retry(stmts).await? {
            return Ok(Some(pts));
        }
        backoff(attempt).await;
    }
    Err(contended("update log"))
}

/// Writes each user's updates in order (users in parallel), then hands what was written to
/// the sink, per user in pts order. The first error is returned after every user was tried.
pub(crate) async fn deliver(db: &Db, plan: Vec<(UserId, Vec<Pending>)>) -> StorageResult<()> {
    let results: Vec<StorageResult<()>> = futures::stream::iter(plan)
        .map(|(u, pending)| async move {
            let _guard = db.user_lock(u).lock().await;
            let mut written = Vec::with_capacity(pending.len());
            let mut outcome = Ok(());
            for p in pending {
                match append_one(db, u, &p).await {
                    Ok(Some(pts)) => written.push((u, Update { pts, kind: p.kind })),
                    Ok(None) => {}
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            db.committed(&written);
            outcome
        })
        .buffer_unordered(FANOUT_PARALLELISM)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The same update to each of `to`.
pub(crate) async fn deliver_all(db: &Db, to: &[UserId], p: Pending) -> StorageResult<()> {
    deliver(db, to.iter().map(|&u| (u, vec![p.clone()])).collect()).await
}

pub(crate) async fn updates(
    db: &Db,
    u: UserId,
    after: Pts,
    limit: u32,
) -> StorageResult<Vec<Update>> {
    let Some(from) = after.checked_add(1) else {
        return Ok(Vec::new());
    };
    let limit = limit.min(i32::MAX as u32) as i32;
    let rows: Vec<(i64, i64, Option<Vec<u8>>)> = db
        .rows(
            &db.st.ur_range,
            (u.0 as i64, user::LOG, from as i64, i64::MAX, limit),
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (pts, _, v) in rows {
        let v = v.ok_or_else(|| super::corrupt("updates", "empty log row"))?;
        let kind = match decode::<StoredUpdate>("updates", &v)? {
            StoredUpdate::Message { chat_id, seq } => {
                let mut m = chats::message(db, chat_id, seq).await?.ok_or_else(|| {
                    super::corrupt("updates", "update refers to a missing message")
                })?;
                if let Some(body) = viewer_body(db, u, chat_id, seq).await? {
                    m.body = body;
                }
                UpdateKind::Message(m)
            }
            StoredUpdate::Receipt(r) => UpdateKind::Receipt(r),
            StoredUpdate::ChatJoinedAt(info) => UpdateKind::ChatJoined(info),
            StoredUpdate::ChatLeft { chat_id, at_seq } => UpdateKind::ChatLeft { chat_id, at_seq },
            StoredUpdate::HiddenForMe { chat_id, seqs } => {
                UpdateKind::HiddenForMe { chat_id, seqs }
            }
            StoredUpdate::ProfileChanged { user_id } => UpdateKind::ProfileChanged { user_id },
        };
        out.push(Update {
            pts: pts as u64,
            kind,
        });
    }
    Ok(out)
}

/// What `viewer` sees of a message instead of its stored body: `Deleted` if they hid it, the
/// body before an edit withheld from them, else nothing.
pub(crate) async fn viewer_body(
    db: &Db,
    viewer: UserId,
    chat_id: ChatId,
    seq: Seq,
) -> StorageResult<Option<MessageBody>> {
    let key = |kind: i8| (chat_id.0 as i64, kind, viewer.0 as i64, seq as i64, 0i64);
    let hidden: Option<(Option<Vec<u8>>,)> = db.first(&db.st.cr_get, key(chat::HIDDEN)).await?;
    if hidden.is_some() {
        return Ok(Some(MessageBody::Deleted));
    }
    let kept: Option<(Option<Vec<u8>>,)> = db.first(&db.st.cr_get, key(chat::UNEDITED)).await?;
    match kept {
        Some((Some(v),)) => Ok(Some(decode("unedited", &v)?)),
        _ => Ok(None),
    }
}
