//! Chats on `chat_rows`: the record and `last_seq` statics, direct chats, appends (one
//! conditional batch per message), history reads with their per-viewer overlays, and
//! delete-for-me.

use tern_protocol::{ChatId, ChatInfo, ChatKind, Message, MessageBody, MessageId, Seq, UserId};

use super::log::{self, Pending, StoredUpdate};
use super::schema::{chat, user};
use super::users::user_row;
use super::{
    Db, MAX_TRIES, Vals, backoff, big, blob, contended, corrupt, decode, encode, random_id, tiny,
};
use crate::storage::rules::{self, Intervals};
use crate::storage::{Appended, ChatRecord, NewMessage, StorageError, StorageResult};

/// A chat as read: its record and last seq (the statics of its partition).
#[derive(Debug, Clone)]
pub(crate) struct ChatState {
    pub last_seq: Seq,
    pub record: ChatRecord,
    /// Every message up to this seq is in its members' logs (0 when never recorded).
    pub fanned_out: Seq,
}

/// Most earlier messages one append re-checks the fan-out of (see [`repair`]).
const MAX_REPAIR: u64 = 64;

/// Values for a `chat_rows` insert.
pub(crate) fn row(c: ChatId, kind: i8, a: u64, b: u64, cc: u64, v: Vec<u8>) -> Vals {
    vec![big(c.0), tiny(kind), big(a), big(b), big(cc), blob(v)]
}

/// Values naming one `chat_rows` row (a delete).
pub(crate) fn key(c: ChatId, kind: i8, a: u64, b: u64, cc: u64) -> Vals {
    vec![big(c.0), tiny(kind), big(a), big(b), big(cc)]
}

/// One row's value (`Some(empty)` for a marker row).
pub(crate) async fn get(
    db: &Db,
    c: ChatId,
    kind: i8,
    a: u64,
    b: u64,
    cc: u64,
) -> StorageResult<Option<Vec<u8>>> {
    let values = (c.0 as i64, kind, a as i64, b as i64, cc as i64);
    let found: Option<(Option<Vec<u8>>,)> = db.first(&db.st.cr_get, values).await?;
    Ok(found.map(|(v,)| v.unwrap_or_default()))
}

/// Rows `(a, b, v)` of a kind with `a` in `[from, to]`.
pub(crate) async fn range_a(
    db: &Db,
    c: ChatId,
    kind: i8,
    from: u64,
    to: u64,
    limit: usize,
) -> StorageResult<Vec<(u64, u64, Vec<u8>)>> {
    let limit = limit.min(i32::MAX as usize) as i32;
    let to = to.min(i64::MAX as u64);
    let rows: Vec<(i64, i64, Option<Vec<u8>>)> = db
        .rows(
            &db.st.cr_range_a,
            (c.0 as i64, kind, from as i64, to as i64, limit),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(a, b, v)| (a as u64, b as u64, v.unwrap_or_default()))
        .collect())
}

/// Rows `(b, v)` of a kind with this `a` and `b` in `[from, to]`.
pub(crate) async fn range_b(
    db: &Db,
    c: ChatId,
    kind: i8,
    a: u64,
    from: u64,
    to: u64,
    limit: usize,
) -> StorageResult<Vec<(u64, Vec<u8>)>> {
    let limit = limit.min(i32::MAX as usize) as i32;
    let to = to.min(i64::MAX as u64);
    let values = (c.0 as i64, kind, a as i64, from as i64, to as i64, limit);
    let rows: Vec<(i64, i64, Option<Vec<u8>>)> = db.rows(&db.st.cr_range_b, values).await?;
    Ok(rows
        .into_iter()
        .map(|(_, b, v)| (b as u64, v.unwrap_or_default()))
        .collect())
}

pub(crate) async fn load(db: &Db, c: ChatId) -> StorageResult<Option<ChatState>> {
    type Statics = (Option<i64>, Option<Vec<u8>>, Option<i64>);
    let found: Option<Statics> = db.first(&db.st.cr_statics, (c.0 as i64,)).await?;
    match found {
        Some((last, Some(state), fanned)) => Ok(Some(ChatState {
            last_seq: last.unwrap_or(0) as u64,
            record: decode("chats", &state)?,
            fanned_out: fanned.unwrap_or(0) as u64,
        })),
        _ => Ok(None),
    }
}

pub(crate) async fn message(db: &Db, c: ChatId, seq: Seq) -> StorageResult<Option<Message>> {
    match get(db, c, chat::MESSAGE, seq, 0, 0).await? {
        Some(v) => Ok(Some(decode("messages", &v)?)),
        None => Ok(None),
    }
}

/// The seq ranges `u` may read: closed past intervals and, while a member, the open one.
pub(crate) async fn visible(db: &Db, record: &ChatRecord, u: UserId) -> StorageResult<Intervals> {
    let mut out: Intervals = match get(db, record.chat_id, chat::INTERVALS, u.0, 0, 0).await? {
        Some(v) => decode("intervals", &v)?,
        None => Vec::new(),
    };
    if let Some(since) = record.since_seq(u) {
        out.push((since, Seq::MAX));
    }
    Ok(out)
}

/// Whether `a` blocked `b`.
pub(crate) async fn blocks(db: &Db, a: UserId, b: UserId) -> StorageResult<bool> {
    let values = (a.0 as i64, user::BLOCK, b.0 as i64, 0i64);
    let found: Option<(Option<Vec<u8>>,)> = db.first(&db.st.ur_get, values).await?;
    Ok(found.is_some())
}

/// The direct-chat block rule (see `fjall::social::withheld_from`): `Forbidden` if the sender
/// blocked the peer, else the peer to withhold from if they blocked the sender.
async fn withheld_from(
    db: &Db,
    record: &ChatRecord,
    sender: UserId,
) -> StorageResult<Option<UserId>> {
    if record.kind != ChatKind::Direct || record.group.is_some() {
        return Ok(None);
    }
    let Some(&peer) = record.members.iter().find(|&&m| m != sender) else {
        return Ok(None);
    };
    if blocks(db, sender, peer).await? {
        return Err(StorageError::Forbidden(
            "unblock this user to message them".into(),
        ));
    }
    Ok(blocks(db, peer, sender).await?.then_some(peer))
}

pub(crate) async fn direct_chat(db: &Db, a: UserId, b: UserId) -> StorageResult<Option<ChatId>> {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let found: Option<(Option<i64>,)> = db.first(&db.st.dc_get, (lo.0 as i64, hi.0 as i64)).await?;
    Ok(found.and_then(|(c,)| c).map(|c| ChatId(c as u64)))
}

pub(crate) async fn open_direct(
    db: &Db,
    a: UserId,
    b: UserId,
    now_ms: u64,
) -> StorageResult<ChatInfo> {
    db.writable()?;
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let existing = direct_chat(db, a, b).await?;
    let state = match existing {
        Some(c) => load(db, c).await?.ok_or(StorageError::ChatNotFound)?,
        None => create_direct(db, lo, hi, now_ms).await?,
    };
    // Idempotent: completes what a crash after the pair claim may have left undone.
    let info = state.record.info(0);
    for &m in &state.record.members {
        db.run(
            &db.st.ur_put,
            user_row(m, user::CHAT, state.record.chat_id.0, 0, Vec::new()),
        )
        .await?;
    }
    log::deliver_all(db, &state.record.members, Pending::joined(&info, 0)).await?;
    Ok(state.record.info(state.last_seq))
}

async fn create_direct(db: &Db, lo: UserId, hi: UserId, now_ms: u64) -> StorageResult<ChatState> {
    for _ in 0..MAX_TRIES {
        let c = ChatId(random_id()?);
        let mut members = vec![lo, hi];
        members.dedup();
        let record = ChatRecord {
            chat_id: c,
            kind: ChatKind::Direct,
            members,
            created_ms: now_ms,
            group: None,
        };
        if !db
            .cas(&db.st.cr_create, (c.0 as i64, 0i64, encode(&record)?))
            .await?
        {
            continue; // chat id collision: draw again
        }
        if db
            .cas(&db.st.dc_claim, (lo.0 as i64, hi.0 as i64, c.0 as i64))
            .await?
        {
            return Ok(ChatState {
                last_seq: 0,
                record,
                fanned_out: 0,
            });
        }
        // The pair was opened concurrently: theirs wins, ours goes.
        db.run(&db.st.cr_drop, (c.0 as i64,)).await?;
        if let Some(theirs) = direct_chat(db, lo, hi).await? {
            return load(db, theirs).await?.ok_or(StorageError::ChatNotFound);
        }
    }
    Err(contended("open_direct_chat"))
}

pub(crate) async fn user_chats_page(
    db: &Db,
    u: UserId,
    after: ChatId,
    limit: u32,
) -> StorageResult<Vec<ChatId>> {
    let Some(from) = after.0.checked_add(1) else {
        return Ok(Vec::new());
    };
    let limit = limit.min(i32::MAX as u32) as i32;
    let rows: Vec<(i64, i64, Option<Vec<u8>>)> = db
        .rows(
            &db.st.ur_range,
            (u.0 as i64, user::CHAT, from as i64, i64::MAX, limit),
        )
        .await?;
    Ok(rows.into_iter().map(|(c, _, _)| ChatId(c as u64)).collect())
}

/// Edit seqs of `target`.
async fn edits_of(db: &Db, c: ChatId, target: Seq) -> StorageResult<Vec<Seq>> {
    let rows = range_b(db, c, chat::EDIT, target, 0, u64::MAX, 1024).await?;
    Ok(rows.into_iter().map(|(b, _)| b).collect())
}

pub(crate) async fn append(db: &Db, new: NewMessage) -> StorageResult<Appended> {
    db.writable()?;
    let c = new.chat_id;
    let _local = db.chat_lock(c).lock().await;
    let idem = (new.sender.0, new.sender_device.0, new.client_msg_id);
    for attempt in 0..MAX_TRIES {
        let state = load(db, c).await?.ok_or(StorageError::ChatNotFound)?;
        if let Some(v) = get(db, c, chat::IDEMPOTENCY, idem.0, idem.1, idem.2).await? {
            let seq = seq_of(&v)?;
            let original = message(db, c, seq)
                .await?
                .ok_or_else(|| corrupt("messages", "idempotency key points nowhere"))?;
            complete_fanout(db, &state.record, &original).await?;
            return Ok(Appended {
                message: original,
                duplicate: true,
                withheld: false,
            });
        }
        let record = &state.record;
        if !record.has_member(new.sender) {
            return Err(StorageError::ChatNotFound);
        }
        let intervals = visible(db, record, new.sender).await?;
        let target_seq =
            rules::target_of(&new.body).filter(|&s| s != 0 && rules::covers(&intervals, s));
        let target = match target_seq {
            Some(s) => message(db, c, s).await?,
            None => None,
        };
        let edits = match (&new.body, target_seq) {
            (MessageBody::Edit { .. } | MessageBody::Delete { .. }, Some(s)) => {
                edits_of(db, c, s).await?
            }
            _ => Vec::new(),
        };
        rules::check(record, &new, &intervals, target.as_ref(), edits.len())?;
        let withheld = withheld_from(db, record, new.sender).await?;
        let seq = state.last_seq + 1;
        let message = Message {
            chat_id: c,
            seq,
            msg_id: MessageId(random_id()?),
            sender: new.sender,
            sender_device: new.sender_device,
            client_msg_id: new.client_msg_id,
            ts_ms: new.ts_ms,
            body: new.body.clone(),
        };
        let mut stmts = vec![
            (
                &db.st.cr_put_new,
                row(c, chat::MESSAGE, seq, 0, 0, encode(&message)?),
            ),
            (
                &db.st.cr_put,
                row(
                    c,
                    chat::IDEMPOTENCY,
                    idem.0,
                    idem.1,
                    idem.2,
                    seq.to_be_bytes().to_vec(),
                ),
            ),
            (&db.st.cr_set_seq, vec![big(seq), big(c.0)]),
        ];
        effects(db, record, &message, target, &edits, withheld, &mut stmts).await?;
        if let Some(blocker) = withheld {
            stmts.push((
                &db.st.cr_put,
                row(c, chat::WITHHELD, blocker.0, seq, 0, Vec::new()),
            ));
        }
        if db.batch_or_retry(stmts).await? {
            repair(db, &state, seq).await?;
            let to: Vec<UserId> = record
                .members
                .iter()
                .copied()
                .filter(|&m| Some(m) != withheld)
                .collect();
            log::deliver_all(db, &to, Pending::message(&message)).await?;
            fanned_out(db, c, seq).await?;
            return Ok(Appended {
                message,
                duplicate: false,
                withheld: withheld.is_some(),
            });
        }
        backoff(attempt).await;
    }
    Err(contended("append_message"))
}

/// Completes the fan-out of the messages between the chat's `fanned_out` watermark and `seq`
/// (the one being appended), at most [`MAX_REPAIR`] of them, before `seq`'s own: a crash
/// between an earlier append and its fan-out (whose sender never retried) heals with the next
/// message, and the members' logs keep seq order. Normally there is nothing to do: each
/// append moves the watermark to its seq once its fan-out is done.
async fn repair(db: &Db, state: &ChatState, seq: Seq) -> StorageResult<()> {
    let from = state.fanned_out.max(seq.saturating_sub(MAX_REPAIR + 1)) + 1;
    for s in from..seq {
        if let Some(m) = message(db, state.record.chat_id, s).await? {
            complete_fanout(db, &state.record, &m).await?;
        }
    }
    Ok(())
}

/// Records that every message up to `seq` is in its members' logs. A plain write: two nodes
/// may set it out of order, which only makes the next append re-check a few seqs.
pub(crate) async fn fanned_out(db: &Db, c: ChatId, seq: Seq) -> StorageResult<()> {
    db.run(&db.st.cr_set_fanned, (seq as i64, c.0 as i64)).await
}

fn seq_of(v: &[u8]) -> StorageResult<Seq> {
    let bytes: [u8; 8] = v
        .try_into()
        .map_err(|_| corrupt("idempotency", "value is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// A retried send: log the original to every member who should have it (the index rows skip
/// those who do), so a crash between the append and its fan-out heals on the retry.
async fn complete_fanout(db: &Db, record: &ChatRecord, m: &Message) -> StorageResult<()> {
    let mut to = Vec::with_capacity(record.members.len());
    for &u in &record.members {
        if record.since_seq(u).is_some_and(|s| s > m.seq) {
            continue;
        }
        if get(db, m.chat_id, chat::WITHHELD, u.0, m.seq, 0)
            .await?
            .is_some()
        {
            continue;
        }
        to.push(u);
    }
    log::deliver_all(db, &to, Pending::message(m)).await
}

/// What a message does to earlier ones, as rows of its batch (see `fjall::features::apply`):
/// an edit rewrites its target (keeping the old body for a blocker it is withheld from), a
/// delete for everyone blanks the target and its edits.
async fn effects<'a>(
    db: &'a Db,
    record: &ChatRecord,
    message: &Message,
    target: Option<Message>,
    edits: &[Seq],
    withheld: Option<UserId>,
    stmts: &mut Vec<(&'a scylla::statement::prepared::PreparedStatement, Vals)>,
) -> StorageResult<()> {
    let c = message.chat_id;
    let drop_unedited = |stmts: &mut Vec<_>, t: Seq| {
        if record.group.is_none() {
            for &m in record.members.iter().filter(|&&m| m != message.sender) {
                stmts.push((&db.st.cr_del, key(c, chat::UNEDITED, m.0, t, 0)));
            }
        }
    };
    match (&message.body, target) {
        (MessageBody::Edit { target: t, text }, Some(mut old)) => {
            match withheld {
                Some(blocker) => {
                    let kept = get(db, c, chat::UNEDITED, blocker.0, *t, 0)
                        .await?
                        .is_some();
                    let hidden = get(db, c, chat::WITHHELD, blocker.0, *t, 0)
                        .await?
                        .is_some();
                    if !kept && !hidden {
                        let v = encode(&old.body)?;
                        stmts.push((&db.st.cr_put, row(c, chat::UNEDITED, blocker.0, *t, 0, v)));
                    }
                }
                None => drop_unedited(stmts, *t),
            }
            match &mut old.body {
                MessageBody::Text(x) => *x = text.clone(),
                MessageBody::Rich(r) => r.text = text.clone(),
                MessageBody::Media(m) => m.caption = Some(text.clone()),
                _ => {}
            }
            stmts.push((
                &db.st.cr_put,
                row(c, chat::MESSAGE, *t, 0, 0, encode(&old)?),
            ));
            stmts.push((
                &db.st.cr_put,
                row(c, chat::EDIT, *t, message.seq, 0, Vec::new()),
            ));
        }
        (MessageBody::Delete { target: t }, Some(mut old)) => {
            drop_unedited(stmts, *t);
            old.body = MessageBody::Deleted;
            stmts.push((
                &db.st.cr_put,
                row(c, chat::MESSAGE, *t, 0, 0, encode(&old)?),
            ));
            for &e in edits {
                if let Some(mut edit) = self::message(db, c, e).await? {
                    if let MessageBody::Edit { text, .. } = &mut edit.body {
                        text.clear();
                    }
                    stmts.push((
                        &db.st.cr_put,
                        row(c, chat::MESSAGE, e, 0, 0, encode(&edit)?),
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

pub(crate) async fn messages(
    db: &Db,
    viewer: UserId,
    c: ChatId,
    from: Seq,
    limit: u32,
) -> StorageResult<Vec<Message>> {
    let state = load(db, c).await?.ok_or(StorageError::ChatNotFound)?;
    let intervals = visible(db, &state.record, viewer).await?;
    let limit = limit as usize;
    let mut out: Vec<Message> = Vec::new();
    for (a, b) in intervals {
        if out.len() >= limit {
            break;
        }
        if b < from {
            continue;
        }
        let b = b.min(state.last_seq);
        let mut start = a.max(from);
        while start <= b && out.len() < limit {
            let want = limit - out.len();
            let rows = range_a(db, c, chat::MESSAGE, start, b, want).await?;
            let Some(last) = rows.last().map(|r| r.0) else {
                break;
            };
            let withheld: Vec<Seq> =
                range_b(db, c, chat::WITHHELD, viewer.0, start, last, usize::MAX)
                    .await?
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect();
            for (seq, _, v) in &rows {
                if !withheld.contains(seq) {
                    out.push(decode("messages", v)?);
                }
            }
            if rows.len() < want || last >= b {
                break;
            }
            start = last + 1;
        }
    }
    overlay(db, viewer, c, &mut out).await?;
    Ok(out)
}

/// The viewer's kept bodies, then delete-for-me on top (hidden wins).
async fn overlay(db: &Db, viewer: UserId, c: ChatId, out: &mut [Message]) -> StorageResult<()> {
    let (Some(first), Some(last)) = (out.first().map(|m| m.seq), out.last().map(|m| m.seq)) else {
        return Ok(());
    };
    for kind in [chat::UNEDITED, chat::HIDDEN] {
        for (seq, v) in range_b(db, c, kind, viewer.0, first, last, out.len()).await? {
            if let Some(m) = out.iter_mut().find(|m| m.seq == seq) {
                m.body = if kind == chat::HIDDEN {
                    MessageBody::Deleted
                } else {
                    decode("unedited", &v)?
                };
            }
        }
    }
    Ok(())
}

pub(crate) async fn hide(db: &Db, u: UserId, c: ChatId, seqs: Vec<Seq>) -> StorageResult<()> {
    db.writable()?;
    let state = load(db, c)
        .await?
        .filter(|s| s.record.has_member(u))
        .ok_or(StorageError::ChatNotFound)?;
    let mut seqs = seqs;
    seqs.sort_unstable();
    seqs.dedup();
    let intervals = visible(db, &state.record, u).await?;
    if seqs.is_empty() {
        return Err(StorageError::Invalid("no messages named".into()));
    }
    let mut stmts = Vec::with_capacity(seqs.len());
    for &seq in &seqs {
        if seq == 0 || seq > state.last_seq || !rules::covers(&intervals, seq) {
            return Err(rules::no_such_message());
        }
        stmts.push((&db.st.cr_put, row(c, chat::HIDDEN, u.0, seq, 0, Vec::new())));
    }
    db.batch(stmts).await?;
    let p = Pending {
        index: None,
        stored: StoredUpdate::HiddenForMe {
            chat_id: c,
            seqs: seqs.clone(),
        },
        kind: tern_protocol::UpdateKind::HiddenForMe { chat_id: c, seqs },
    };
    log::deliver_all(db, &[u], p).await
}
