//! The write side of the embedded store: each function runs inside the writer thread on one
//! [`Txn`], validates first and writes after, so a failed validation leaves the batch untouched.

use tern_protocol::{
    ChatId, ChatInfo, ChatKind, DeviceId, Message, MessageId, Receipt, Seq, Update, UpdateKind,
    UserId,
};

use super::features;
use super::tables::{
    Counter, DELIVERED_TAG, READ_TAG, ReceiptRow, StoredUpdate, Table, decode, decode_receipt,
    encode, key2, key3, receipt_time_key, split_key2,
};
use super::writer::Txn;
use crate::storage::record::LegacyRefreshRecord;
use crate::storage::{
    Appended, ChatRecord, DeviceRecord, NewMessage, RECEIPT_SENDER_SCAN, ReceiptChange,
    RefreshRecord, Rotation, StorageError, StorageResult,
};

/// New user ids are random below this (2^53), so JSON and JavaScript clients keep them exact.
const USER_ID_BOUND: u64 = 1 << 53;
/// Draws before giving up on finding a free random id (each collides with odds users / 2^53).
const USER_ID_DRAWS: usize = 16;

pub(crate) fn upsert_user(txn: &mut Txn<'_>, identifier: &str) -> StorageResult<UserId> {
    if let Some(v) = txn.get(Table::Identifiers, identifier.as_bytes())? {
        return Ok(UserId(super::tables::decode_u64(&v)?));
    }
    // Random, not sequential: a counter lets anyone enumerate every user. Ids up to the frozen
    // legacy counter belong to users registered before, so they are never drawn again.
    let legacy = txn.counter(Counter::NextUser)?;
    let rng = ring::rand::SystemRandom::new();
    for _ in 0..USER_ID_DRAWS {
        let bytes: [u8; 8] = ring::rand::generate(&rng)
            .map_err(|_| StorageError::Backend("no system randomness".into()))?
            .expose();
        let id = u64::from_be_bytes(bytes) % USER_ID_BOUND;
        if id <= legacy || txn.get(Table::Users, &id.to_be_bytes())?.is_some() {
            continue;
        }
        txn.put(
            Table::Users,
            &id.to_be_bytes(),
            identifier.as_bytes().to_vec(),
        );
        txn.put(
            Table::Identifiers,
            identifier.as_bytes(),
            id.to_be_bytes().to_vec(),
        );
        return Ok(UserId(id));
    }
    Err(StorageError::Backend("no free random user id found".into()))
}

/// Whether a user id was issued: a users row (random ids) or the legacy sequential range.
pub(crate) fn user_exists(tables: &super::tables::Tables, user: UserId) -> StorageResult<bool> {
    if user.0 == 0 {
        return Ok(false);
    }
    if tables.get(Table::Users, &user.0.to_be_bytes())?.is_some() {
        return Ok(true);
    }
    Ok(user.0 <= tables.counter(Counter::NextUser)?)
}

pub(crate) fn create_device(
    txn: &mut Txn<'_>,
    user: UserId,
    name: &str,
    now_ms: u64,
) -> StorageResult<DeviceRecord> {
    let id = txn.bump(Counter::NextDevice)?;
    let record = DeviceRecord {
        user_id: user,
        device_id: DeviceId(id),
        name: name.to_owned(),
        created_ms: now_ms,
        revoked: false,
    };
    txn.put(Table::Devices, &key2(user.0, id), encode(&record)?);
    Ok(record)
}

pub(crate) fn revoke_device(
    txn: &mut Txn<'_>,
    user: UserId,
    device: DeviceId,
) -> StorageResult<bool> {
    let key = key2(user.0, device.0);
    let Some(bytes) = txn.get(Table::Devices, &key)? else {
        return Ok(false);
    };
    let mut record: DeviceRecord = decode("devices", &bytes)?;
    if !record.revoked {
        record.revoked = true;
        txn.put(Table::Devices, &key, encode(&record)?);
    }
    // A revoked device's tokens can never be used again: drop them now.
    delete_device_tokens(txn, user, device)?;
    prune_revoked(txn, user)?;
    Ok(true)
}

/// Revoked devices kept per user (for the device list); older revoked rows are deleted.
pub(crate) const REVOKED_DEVICES_KEPT: usize = 16;

fn device_refresh_key(user: UserId, device: DeviceId, hash: &[u8; 32]) -> [u8; 48] {
    let mut k = [0u8; 48];
    k[..16].copy_from_slice(&key2(user.0, device.0));
    k[16..].copy_from_slice(hash);
    k
}

pub(crate) fn put_refresh(
    txn: &mut Txn<'_>,
    hash: [u8; 32],
    record: &RefreshRecord,
) -> StorageResult<()> {
    txn.put(Table::Refresh, &hash, encode(record)?);
    txn.put(
        Table::DeviceRefresh,
        &device_refresh_key(record.user_id, record.device_id, &hash),
        Vec::new(),
    );
    Ok(())
}

fn delete_refresh(txn: &mut Txn<'_>, user: UserId, device: DeviceId, hash: &[u8; 32]) {
    txn.remove(Table::Refresh, hash);
    txn.remove(
        Table::DeviceRefresh,
        &device_refresh_key(user, device, hash),
    );
}

/// Deletes every refresh token of a device.
fn delete_device_tokens(txn: &mut Txn<'_>, user: UserId, device: DeviceId) -> StorageResult<()> {
    let from = device_refresh_key(user, device, &[0; 32]);
    let to = device_refresh_key(user, device, &[0xff; 32]);
    loop {
        let rows = txn.scan(Table::DeviceRefresh, &from, &to, 256)?;
        if rows.is_empty() {
            return Ok(());
        }
        for (k, _) in rows {
            let hash: [u8; 32] = k
                .get(16..)
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| super::tables::corrupt("device_refresh", "bad key"))?;
            delete_refresh(txn, user, device, &hash);
        }
    }
}

/// Deletes the oldest revoked devices of `user` beyond [`REVOKED_DEVICES_KEPT`], with their
/// tokens, so logging in again and again does not grow the user's rows without bound.
fn prune_revoked(txn: &mut Txn<'_>, user: UserId) -> StorageResult<()> {
    let rows = txn.scan(
        Table::Devices,
        &key2(user.0, 0),
        &key2(user.0, u64::MAX),
        usize::MAX,
    )?;
    let mut revoked = Vec::new();
    for (_, v) in rows {
        let d: DeviceRecord = decode("devices", &v)?;
        if d.revoked {
            revoked.push(d.device_id);
        }
    }
    // Device ids grow with creation time: the front is the oldest.
    let excess = revoked.len().saturating_sub(REVOKED_DEVICES_KEPT);
    for device in revoked.into_iter().take(excess) {
        delete_device_tokens(txn, user, device)?;
        txn.remove(Table::Devices, &key2(user.0, device.0));
    }
    Ok(())
}

/// A refresh row in the current layout or the one before it.
pub(crate) fn decode_refresh(bytes: &[u8]) -> StorageResult<RefreshRecord> {
    decode::<RefreshRecord>("refresh", bytes).or_else(|e| {
        decode::<LegacyRefreshRecord>("refresh", bytes)
            .map(RefreshRecord::from)
            .map_err(|_| e)
    })
}

pub(crate) fn rotate_refresh(
    txn: &mut Txn<'_>,
    old: [u8; 32],
    new: [u8; 32],
    record: &RefreshRecord,
    now_ms: u64,
    grace_ms: u64,
) -> StorageResult<Rotation> {
    let Some(bytes) = txn.get(Table::Refresh, &old)? else {
        return Ok(Rotation::Unknown);
    };
    let before = decode_refresh(&bytes)?;
    if !before.used {
        let after = RefreshRecord {
            used: true,
            used_ms: now_ms,
            successor: Some(new),
            ..before.clone()
        };
        txn.put(Table::Refresh, &old, encode(&after)?);
        if let Some(p) = before.predecessor {
            delete_refresh(txn, before.user_id, before.device_id, &p);
        }
        let record = RefreshRecord {
            predecessor: Some(old),
            ..record.clone()
        };
        put_refresh(txn, new, &record)?;
        return Ok(Rotation::Rotated(before));
    }
    let in_grace = now_ms.saturating_sub(before.used_ms) < grace_ms;
    if in_grace && before.successor == Some(new) {
        let successor_unused = match txn.get(Table::Refresh, &new)? {
            Some(b) => !decode_refresh(&b)?.used,
            None => false,
        };
        if successor_unused {
            return Ok(Rotation::Replayed(before));
        }
    }
    Ok(Rotation::Reused(before))
}

fn chat_record(txn: &Txn<'_>, chat: ChatId) -> StorageResult<Option<ChatRecord>> {
    txn.chat(chat)
}

/// Appends an update to `user`'s log and queues it for the sink.
pub(crate) fn push_update(
    txn: &mut Txn<'_>,
    user: UserId,
    stored: &StoredUpdate,
    kind: UpdateKind,
) -> StorageResult<()> {
    let pts = txn.bump(Counter::UserPts(user.0))?;
    txn.put_unread(Table::Updates, &key2(user.0, pts), encode(stored)?);
    txn.updates.push((user, Update { pts, kind }));
    Ok(())
}

pub(crate) fn open_direct(
    txn: &mut Txn<'_>,
    a: UserId,
    b: UserId,
    now_ms: u64,
) -> StorageResult<ChatInfo> {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let pair = key2(lo.0, hi.0);
    if let Some(v) = txn.get(Table::Direct, &pair)? {
        let chat = ChatId(super::tables::decode_u64(&v)?);
        let record = chat_record(txn, chat)?.ok_or(StorageError::ChatNotFound)?;
        let last = txn.counter(Counter::ChatSeq(chat))?;
        return Ok(record.info(last));
    }
    let chat = ChatId(txn.bump(Counter::NextChat)?);
    let mut members = vec![lo, hi];
    members.dedup();
    let record = ChatRecord {
        chat_id: chat,
        kind: ChatKind::Direct,
        members,
        created_ms: now_ms,
        group: None,
    };
    txn.put(Table::Chats, &chat.0.to_be_bytes(), encode(&record)?);
    txn.put(Table::Direct, &pair, chat.0.to_be_bytes().to_vec());
    let info = record.info(0);
    for &member in &record.members {
        txn.put(Table::UserChats, &key2(member.0, chat.0), Vec::new());
        push_update(
            txn,
            member,
            &StoredUpdate::ChatJoinedAt(info.clone()),
            UpdateKind::ChatJoined(info.clone()),
        )?;
    }
    Ok(info)
}

pub(crate) fn append(txn: &mut Txn<'_>, new: NewMessage) -> StorageResult<Appended> {
    let idem_key = key2(new.sender_device.0, new.client_msg_id);
    if let Some(v) = txn.get(Table::Idempotency, &idem_key)? {
        let (chat, seq) = split_key2(&v)?;
        let bytes = txn
            .get(Table::Messages, &key2(chat, seq))?
            .ok_or_else(|| super::tables::corrupt("messages", "idempotency key points nowhere"))?;
        return Ok(Appended {
            message: decode("messages", &bytes)?,
            duplicate: true,
            withheld: false,
        });
    }
    let record = chat_record(txn, new.chat_id)?.ok_or(StorageError::ChatNotFound)?;
    if !record.has_member(new.sender) {
        return Err(StorageError::ChatNotFound);
    }
    features::check(txn, &record, &new)?;
    let withheld = super::social::withheld_from(txn, &record, new.sender)?;
    let seq = txn.bump(Counter::ChatSeq(new.chat_id))?;
    let msg_id = MessageId(txn.bump(Counter::NextMessage)?);
    let message = Message {
        chat_id: new.chat_id,
        seq,
        msg_id,
        sender: new.sender,
        sender_device: new.sender_device,
        client_msg_id: new.client_msg_id,
        ts_ms: new.ts_ms,
        body: new.body,
    };
    txn.put(
        Table::Messages,
        &key2(new.chat_id.0, seq),
        encode(&message)?,
    );
    txn.put(
        Table::Idempotency,
        &idem_key,
        key2(new.chat_id.0, seq).to_vec(),
    );
    features::apply(txn, &record, &message, withheld)?;
    if let Some(blocker) = withheld {
        txn.put(
            Table::Withheld,
            &key3(blocker.0, new.chat_id.0, seq),
            Vec::new(),
        );
    }
    point_members_at(txn, &record, &message, withheld)?;
    Ok(Appended {
        message,
        duplicate: false,
        withheld: withheld.is_some(),
    })
}

/// Appends a pointer to `message` (stored once) to every current member's log but `skip`'s
/// (a blocker the message is withheld from): one small row per member in the same group
/// commit, no copy of the body.
pub(crate) fn point_members_at(
    txn: &mut Txn<'_>,
    record: &ChatRecord,
    message: &Message,
    skip: Option<UserId>,
) -> StorageResult<()> {
    let stored = encode(&StoredUpdate::Message {
        chat_id: message.chat_id,
        seq: message.seq,
    })?;
    for &member in record.members.iter().filter(|&&m| Some(m) != skip) {
        let pts = txn.bump(Counter::UserPts(member.0))?;
        txn.put_unread(Table::Updates, &key2(member.0, pts), stored.clone());
        txn.updates.push((
            member,
            Update {
                pts,
                kind: UpdateKind::Message(message.clone()),
            },
        ));
    }
    Ok(())
}

pub(crate) fn receipt(
    txn: &mut Txn<'_>,
    chat: ChatId,
    user: UserId,
    upto: Seq,
    read: bool,
) -> StorageResult<ReceiptChange> {
    let record = chat_record(txn, chat)?.ok_or(StorageError::ChatNotFound)?;
    if !record.has_member(user) {
        return Err(StorageError::ChatNotFound);
    }
    let last = txn.counter(Counter::ChatSeq(chat))?;
    if upto > last {
        return Err(StorageError::SeqOutOfRange { seq: upto, last });
    }
    let key = key2(chat.0, user.0);
    let before = receipt_row(txn, chat, user)?;
    let mut after = before;
    after.delivered = after.delivered.max(upto);
    if read {
        after.read = after.read.max(upto);
    }
    let receipt = Receipt {
        chat_id: chat,
        user_id: user,
        delivered_seq: after.delivered,
        read_seq: after.read,
    };
    let changed = after.delivered != before.delivered || after.read != before.read;
    if !changed {
        return Ok(ReceiptChange { receipt, changed });
    }
    let now = now_ms();
    if after.delivered != before.delivered {
        txn.put(
            Table::ReceiptTimes,
            &receipt_time_key(chat, user, DELIVERED_TAG, after.delivered),
            now.to_be_bytes().to_vec(),
        );
    }
    if after.read != before.read {
        txn.put(
            Table::ReceiptTimes,
            &receipt_time_key(chat, user, READ_TAG, after.read),
            now.to_be_bytes().to_vec(),
        );
        // A read is published at once (the reader's other devices clear their unread state);
        // delivered-only moves are published coalesced by `publish_receipt`.
        let to = receipt_audience(txn, &record, user, before.read, after.read)?;
        push_receipt(txn, receipt, to.into_iter())?;
    }
    txn.put(Table::Receipts, &key, encode(&after)?);
    Ok(ReceiptChange { receipt, changed })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Who is told that `user`'s watermark moved from `from` to `to`. A direct chat: both members
/// (the reader's own devices too), but not a peer blocked either way (see
/// [`direct_receipt_peers`]). A group: the reader and the distinct senders of the messages
/// newly covered, looking at the last [`RECEIPT_SENDER_SCAN`] of them, so a read in a large
/// group costs a few log rows, not one per member.
fn receipt_audience(
    txn: &Txn<'_>,
    record: &ChatRecord,
    user: UserId,
    from: Seq,
    to: Seq,
) -> StorageResult<Vec<UserId>> {
    if record.group.is_none() {
        let mut out = vec![user];
        out.extend(direct_receipt_peers(txn, record, user)?);
        return Ok(out);
    }
    let mut out = vec![user];
    out.extend(senders_between(txn, record, user, from, to)?);
    Ok(out)
}

/// The other member of a direct chat, unless a block stands between them either way: while
/// it does, neither learns when the other stores or reads (receipts are activity, hidden
/// across a block like presence), and the blocked sender's withheld messages never look
/// delivered. The watermarks themselves still move; the next publish after an unblock
/// carries them.
fn direct_receipt_peers(
    txn: &Txn<'_>,
    record: &ChatRecord,
    user: UserId,
) -> StorageResult<Vec<UserId>> {
    let mut out = Vec::new();
    for &peer in record.members.iter().filter(|&&m| m != user) {
        if !super::social::blocks(txn, user, peer)? && !super::social::blocks(txn, peer, user)? {
            out.push(peer);
        }
    }
    Ok(out)
}

/// Distinct current members other than `user` who sent content in `(from, to]` (the last
/// [`RECEIPT_SENDER_SCAN`] messages of it).
fn senders_between(
    txn: &Txn<'_>,
    record: &ChatRecord,
    user: UserId,
    from: Seq,
    to: Seq,
) -> StorageResult<Vec<UserId>> {
    if to <= from {
        return Ok(Vec::new());
    }
    let start = (from + 1).max(to.saturating_sub(RECEIPT_SENDER_SCAN - 1));
    let rows = txn.scan(
        Table::Messages,
        &key2(record.chat_id.0, start),
        &key2(record.chat_id.0, to),
        RECEIPT_SENDER_SCAN as usize,
    )?;
    let mut senders = Vec::new();
    for (_, v) in rows {
        let m: Message = decode("messages", &v)?;
        if m.sender != user && m.body.is_content() && record.has_member(m.sender) {
            senders.push(m.sender);
        }
    }
    senders.sort_unstable();
    senders.dedup();
    Ok(senders)
}

/// A member's watermarks as of this batch (0/0 if it never acked).
fn receipt_row(txn: &Txn<'_>, chat: ChatId, user: UserId) -> StorageResult<ReceiptRow> {
    Ok(txn
        .get(Table::Receipts, &key2(chat.0, user.0))?
        .map(|b| decode_receipt(&b))
        .transpose()?
        .unwrap_or_default())
}

/// Appends `user`'s current watermarks to the logs of those who should see it.
pub(crate) fn publish_receipt(
    txn: &mut Txn<'_>,
    chat: ChatId,
    user: UserId,
) -> StorageResult<Option<Receipt>> {
    let Some(record) = chat_record(txn, chat)? else {
        return Ok(None);
    };
    if !record.has_member(user) {
        return Ok(None);
    }
    let mut row = receipt_row(txn, chat, user)?;
    let receipt = Receipt {
        chat_id: chat,
        user_id: user,
        delivered_seq: row.delivered,
        read_seq: row.read,
    };
    let to = if record.group.is_some() {
        senders_between(txn, &record, user, row.published, row.delivered)?
    } else {
        direct_receipt_peers(txn, &record, user)?
    };
    push_receipt(txn, receipt, to.into_iter())?;
    if row.published != row.delivered {
        row.published = row.delivered;
        txn.put(Table::Receipts, &key2(chat.0, user.0), encode(&row)?);
    }
    Ok(Some(receipt))
}

/// Appends a receipt update to each recipient's log.
fn push_receipt(
    txn: &mut Txn<'_>,
    receipt: Receipt,
    to: impl Iterator<Item = UserId>,
) -> StorageResult<()> {
    for member in to {
        push_update(
            txn,
            member,
            &StoredUpdate::Receipt(receipt),
            UpdateKind::Receipt(receipt),
        )?;
    }
    Ok(())
}

/// Hides messages for `user` and tells their devices.
pub(crate) fn hide(
    txn: &mut Txn<'_>,
    chat: ChatId,
    user: UserId,
    seqs: Vec<Seq>,
) -> StorageResult<()> {
    let record = chat_record(txn, chat)?
        .filter(|r| r.has_member(user))
        .ok_or(StorageError::ChatNotFound)?;
    let mut seqs = seqs;
    seqs.sort_unstable();
    seqs.dedup();
    features::hide(txn, &record, user, &seqs)?;
    push_update(
        txn,
        user,
        &StoredUpdate::HiddenForMe {
            chat_id: chat,
            seqs: seqs.clone(),
        },
        UpdateKind::HiddenForMe {
            chat_id: chat,
            seqs,
        },
    )
}
