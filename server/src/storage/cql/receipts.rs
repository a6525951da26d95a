//! Receipts on the `receipts` table (partition: chat): each member's watermarks, max-merged
//! with a compare-and-set of the whole row (`IF delivered = ? AND read_seq = ? AND published
//! = ?`, or `IF NOT EXISTS` for the first), so concurrent acks from several nodes never move
//! a watermark backwards; plus rows recording when each watermark moved. Audiences and the
//! publish rule are those of `fjall::writes`.

use tern_protocol::{ChatId, MemberReceipt, Message, MessageReceipts, Receipt, Seq, UserId};

use super::chats::{self, blocks};
use super::log::{self, Pending};
use super::schema::chat;
use super::{Db, MAX_TRIES, backoff, contended, decode};
use crate::storage::{ChatRecord, RECEIPT_SENDER_SCAN, ReceiptChange, StorageError, StorageResult};

const DELIVERED_TAG: i8 = 1;
const READ_TAG: i8 = 2;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Row {
    delivered: Seq,
    read: Seq,
    published: Seq,
}

/// The member's row, `None` if it never acked.
async fn row(db: &Db, c: ChatId, u: UserId) -> StorageResult<Option<Row>> {
    type Cols = (Option<i64>, Option<i64>, Option<i64>);
    let found: Option<Cols> = db.first(&db.st.rc_get, (c.0 as i64, u.0 as i64)).await?;
    Ok(found.map(|(d, r, p)| Row {
        delivered: d.unwrap_or(0) as u64,
        read: r.unwrap_or(0) as u64,
        published: p.unwrap_or(0) as u64,
    }))
}

/// Replaces `before` with `after`; false if the row changed since it was read.
async fn swap(
    db: &Db,
    c: ChatId,
    u: UserId,
    before: Option<Row>,
    after: Row,
) -> StorageResult<bool> {
    let (d, r, p) = (
        after.delivered as i64,
        after.read as i64,
        after.published as i64,
    );
    match before {
        None => {
            db.cas(&db.st.rc_new, (c.0 as i64, u.0 as i64, d, r, p))
                .await
        }
        Some(b) => {
            let old = (b.delivered as i64, b.read as i64, b.published as i64);
            db.cas(
                &db.st.rc_cas,
                (d, r, p, c.0 as i64, u.0 as i64, old.0, old.1, old.2),
            )
            .await
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) async fn receipt(
    db: &Db,
    c: ChatId,
    u: UserId,
    upto: Seq,
    read: bool,
) -> StorageResult<ReceiptChange> {
    db.writable()?;
    let state = chats::load(db, c)
        .await?
        .ok_or(StorageError::ChatNotFound)?;
    if !state.record.has_member(u) {
        return Err(StorageError::ChatNotFound);
    }
    if upto > state.last_seq {
        return Err(StorageError::SeqOutOfRange {
            seq: upto,
            last: state.last_seq,
        });
    }
    for attempt in 0..MAX_TRIES {
        let stored = row(db, c, u).await?;
        let before = stored.unwrap_or_default();
        let mut after = before;
        after.delivered = after.delivered.max(upto);
        if read {
            after.read = after.read.max(upto);
        }
        let receipt = Receipt {
            chat_id: c,
            user_id: u,
            delivered_seq: after.delivered,
            read_seq: after.read,
        };
        let changed = after.delivered != before.delivered || after.read != before.read;
        if !changed {
            return Ok(ReceiptChange { receipt, changed });
        }
        if !swap(db, c, u, stored, after).await? {
            backoff(attempt).await;
            continue;
        }
        let now = now_ms() as i64;
        if after.delivered != before.delivered {
            let values = (
                c.0 as i64,
                u.0 as i64,
                DELIVERED_TAG,
                after.delivered as i64,
                now,
            );
            db.run(&db.st.rc_time_put, values).await?;
        }
        if after.read != before.read {
            let values = (c.0 as i64, u.0 as i64, READ_TAG, after.read as i64, now);
            db.run(&db.st.rc_time_put, values).await?;
            // A read is published at once; delivered-only moves coalesced by `publish`.
            let mut to = vec![u];
            if state.record.group.is_none() {
                to.extend(direct_peers(db, &state.record, u).await?);
            } else {
                to.extend(senders_between(db, &state.record, u, before.read, after.read).await?);
            }
            log::deliver_all(db, &to, Pending::receipt(receipt)).await?;
        }
        return Ok(ReceiptChange { receipt, changed });
    }
    Err(contended("receipt"))
}

/// The other member of a direct chat, unless a block stands between them either way.
async fn direct_peers(db: &Db, record: &ChatRecord, u: UserId) -> StorageResult<Vec<UserId>> {
    let mut out = Vec::new();
    for &peer in record.members.iter().filter(|&&m| m != u) {
        if !blocks(db, u, peer).await? && !blocks(db, peer, u).await? {
            out.push(peer);
        }
    }
    Ok(out)
}

/// Distinct current members other than `u` who sent content in `(from, to]` (the last
/// [`RECEIPT_SENDER_SCAN`] messages of it).
async fn senders_between(
    db: &Db,
    record: &ChatRecord,
    u: UserId,
    from: Seq,
    to: Seq,
) -> StorageResult<Vec<UserId>> {
    if to <= from {
        return Ok(Vec::new());
    }
    let start = (from + 1).max(to.saturating_sub(RECEIPT_SENDER_SCAN - 1));
    let rows = chats::range_a(
        db,
        record.chat_id,
        chat::MESSAGE,
        start,
        to,
        RECEIPT_SENDER_SCAN as usize,
    )
    .await?;
    let mut senders = Vec::new();
    for (_, _, v) in rows {
        let m: Message = decode("messages", &v)?;
        if m.sender != u && m.body.is_content() && record.has_member(m.sender) {
            senders.push(m.sender);
        }
    }
    senders.sort_unstable();
    senders.dedup();
    Ok(senders)
}

pub(crate) async fn publish(db: &Db, c: ChatId, u: UserId) -> StorageResult<Option<Receipt>> {
    db.writable()?;
    let Some(state) = chats::load(db, c).await? else {
        return Ok(None);
    };
    if !state.record.has_member(u) {
        return Ok(None);
    }
    for attempt in 0..MAX_TRIES {
        let stored = row(db, c, u).await?;
        let current = stored.unwrap_or_default();
        let receipt = Receipt {
            chat_id: c,
            user_id: u,
            delivered_seq: current.delivered,
            read_seq: current.read,
        };
        if current.published != current.delivered {
            let after = Row {
                published: current.delivered,
                ..current
            };
            if !swap(db, c, u, stored, after).await? {
                backoff(attempt).await;
                continue;
            }
        }
        let to = if state.record.group.is_some() {
            senders_between(db, &state.record, u, current.published, current.delivered).await?
        } else {
            direct_peers(db, &state.record, u).await?
        };
        log::deliver_all(db, &to, Pending::receipt(receipt)).await?;
        return Ok(Some(receipt));
    }
    Err(contended("publish_receipt"))
}

/// Whether a block stands either way in a direct chat.
async fn direct_block(db: &Db, record: &ChatRecord) -> StorageResult<bool> {
    if record.group.is_some() {
        return Ok(false);
    }
    let [a, b] = record.members[..] else {
        return Ok(false);
    };
    Ok(blocks(db, a, b).await? || blocks(db, b, a).await?)
}

pub(crate) async fn receipts(db: &Db, viewer: UserId, c: ChatId) -> StorageResult<Vec<Receipt>> {
    let state = chats::load(db, c)
        .await?
        .ok_or(StorageError::ChatNotFound)?;
    let blocked = direct_block(db, &state.record).await?;
    let mut out = Vec::with_capacity(state.record.members.len());
    for &m in &state.record.members {
        if blocked && m != viewer {
            continue;
        }
        let r = row(db, c, m).await?.unwrap_or_default();
        out.push(Receipt {
            chat_id: c,
            user_id: m,
            delivered_seq: r.delivered,
            read_seq: r.read,
        });
    }
    Ok(out)
}

/// When `u`'s watermark of kind `tag` first reached `seq` or beyond (0 if unrecorded).
async fn moved_at(db: &Db, c: ChatId, u: UserId, tag: i8, seq: Seq) -> StorageResult<u64> {
    let values = (c.0 as i64, u.0 as i64, tag, seq as i64);
    let found: Option<(Option<i64>,)> = db.first(&db.st.rc_time_first, values).await?;
    Ok(found.and_then(|(t,)| t).map_or(0, |t| t as u64))
}

pub(crate) async fn message_receipts(
    db: &Db,
    c: ChatId,
    seq: Seq,
) -> StorageResult<MessageReceipts> {
    let state = chats::load(db, c)
        .await?
        .ok_or(StorageError::ChatNotFound)?;
    let message = chats::message(db, c, seq)
        .await?
        .ok_or_else(|| StorageError::Invalid("no such message".into()))?;
    let mut out = MessageReceipts {
        chat_id: c,
        seq,
        delivered: Vec::new(),
        read: Vec::new(),
        pending: 0,
    };
    let record = &state.record;
    let blocked = direct_block(db, record).await?;
    for &m in &record.members {
        if m == message.sender || record.since_seq(m).is_none_or(|s| s > seq) {
            continue;
        }
        let r = row(db, c, m).await?.unwrap_or_default();
        let withheld = chats::get(db, c, chat::WITHHELD, m.0, seq, 0)
            .await?
            .is_some();
        if r.delivered < seq || withheld || blocked {
            out.pending += 1;
            continue;
        }
        out.delivered.push(MemberReceipt {
            user_id: m,
            at_ms: moved_at(db, c, m, DELIVERED_TAG, seq).await?,
        });
        if r.read >= seq {
            out.read.push(MemberReceipt {
                user_id: m,
                at_ms: moved_at(db, c, m, READ_TAG, seq).await?,
            });
        }
    }
    Ok(out)
}
