//! The embedded default backend: fjall (a pure-Rust LSM store) in `--data-dir`.
//!
//! Reads go straight to fjall from the caller's thread (point reads and short range scans that hit
//! memtables and the block cache). Writes go to one writer thread that group-commits them: every
//! job in a batch shares one `fdatasync`, and nothing of the batch becomes visible to readers before
//! that sync has returned (fjall applies a batch to its memtables only after the journal write).

mod features;
mod groups;
mod social;
mod tables;
mod writer;
mod writes;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tern_protocol::limits::MAX_LIST_LEN;
use tern_protocol::{
    ChatId, ChatInfo, DeviceId, MemberReceipt, Message, MessageBody, MessageReceipts,
    PrivacySettings, Pts, Receipt, Seq, Update, UpdateKind, UserId,
};
use tokio::sync::{mpsc, oneshot};

use self::tables::{
    Counter, ReceiptRow, StoredUpdate, Table, Tables, backend, decode, key2, key3, split_key2,
};
use self::writer::{Command, Completion, Txn};
pub use self::writer::{CommitObserver, Durability, LINGER_UNTIL_JOBS, WriterOptions};
use super::{
    Appended, ChatRecord, DeviceRecord, EdgeChange, EdgeKind, GroupCommand, NewGroup, NewMessage,
    ProfileChange, ProfileRecord, ReceiptChange, RefreshRecord, Rotation, Storage, StorageError,
    StorageResult, UpdateSink,
};

/// The fjall-backed store. Cheap to share behind an `Arc`; one process per data directory.
#[derive(Debug)]
pub struct FjallStorage {
    tables: Tables,
    writer: mpsc::Sender<Command>,
}

impl FjallStorage {
    /// Opens (or creates) the store in `dir`, sending committed updates to `sink`. Every
    /// commit is fsync'd.
    pub fn open(
        dir: &Path,
        sink: Arc<dyn UpdateSink>,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> StorageResult<Self> {
        Self::open_tuned(dir, sink, observer, WriterOptions::default())
    }

    /// Like [`FjallStorage::open`] with an explicit durability (benchmarks only use `Buffered`).
    pub fn open_with(
        dir: &Path,
        sink: Arc<dyn UpdateSink>,
        observer: Option<Arc<dyn CommitObserver>>,
        durability: Durability,
    ) -> StorageResult<Self> {
        let options = WriterOptions {
            durability,
            ..WriterOptions::default()
        };
        Self::open_tuned(dir, sink, observer, options)
    }

    /// Like [`FjallStorage::open`] with explicit writer options (the server's commit linger).
    pub fn open_tuned(
        dir: &Path,
        sink: Arc<dyn UpdateSink>,
        observer: Option<Arc<dyn CommitObserver>>,
        options: WriterOptions,
    ) -> StorageResult<Self> {
        let db = fjall::Database::builder(dir).open().map_err(backend)?;
        let tables = Tables::open(db)?;
        let writer = writer::spawn(tables.clone(), sink, observer, options)?;
        Ok(FjallStorage { tables, writer })
    }

    /// Runs `f` in the writer thread as part of the next group commit.
    async fn write<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Txn<'_>) -> StorageResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: writer::Job = Box::new(move |txn: &mut Txn<'_>| -> Completion {
            // All or nothing: a job that fails half-way leaves no row, counter or update behind.
            let start = txn.savepoint();
            let result = f(txn);
            if result.is_err() {
                txn.rollback(start);
            }
            Box::new(move |commit: Result<(), &StorageError>| {
                let answer = match commit {
                    Ok(()) => result,
                    Err(e) => Err(e.clone()),
                };
                let _ = tx.send(answer);
            })
        });
        self.writer
            .send(Command::Job(job))
            .await
            .map_err(|_| StorageError::Closed)?;
        rx.await.map_err(|_| StorageError::Closed)?
    }

    fn chat_info(&self, chat: ChatId) -> StorageResult<ChatInfo> {
        let record = self.chat_record(chat)?.ok_or(StorageError::ChatNotFound)?;
        Ok(record.info(self.tables.counter(Counter::ChatSeq(chat))?))
    }

    fn receipt_row(&self, chat: ChatId, member: UserId) -> StorageResult<ReceiptRow> {
        Ok(self
            .tables
            .get(Table::Receipts, &key2(chat.0, member.0))?
            .map(|b| tables::decode_receipt(&b))
            .transpose()?
            .unwrap_or_default())
    }

    /// When `member`'s watermark of kind `tag` first reached `seq` or beyond (0 if unrecorded,
    /// e.g. moved before times were kept).
    fn receipt_time(&self, chat: ChatId, member: UserId, tag: u8, seq: Seq) -> StorageResult<u64> {
        let rows = self.tables.scan(
            Table::ReceiptTimes,
            &tables::receipt_time_key(chat, member, tag, seq),
            &tables::receipt_time_key(chat, member, tag, Seq::MAX),
            1,
        )?;
        match rows.first() {
            Some((_, v)) => tables::decode_u64(v),
            None => Ok(0),
        }
    }

    /// Seqs in `[from, to]` of `chat` withheld from `viewer` (direct messages from a user they
    /// blocked).
    fn withheld(
        &self,
        viewer: UserId,
        chat: ChatId,
        from: Seq,
        to: Seq,
    ) -> StorageResult<Vec<Seq>> {
        let rows = self.tables.scan(
            Table::Withheld,
            &key3(viewer.0, chat.0, from),
            &key3(viewer.0, chat.0, to),
            usize::MAX,
        )?;
        rows.iter().map(|(k, _)| tables::key_tail(k)).collect()
    }

    /// Whether `record` is a direct chat with a block between its members, either way.
    fn direct_block(&self, record: &ChatRecord) -> StorageResult<bool> {
        if record.group.is_some() {
            return Ok(false);
        }
        let [a, b] = record.members[..] else {
            return Ok(false);
        };
        Ok(social::blocks(&self.tables, a, b)? || social::blocks(&self.tables, b, a)?)
    }

    /// Replaces the body of each message in `out` (seq order) that has a row in `table` for
    /// `viewer`: one range scan over the page's seqs.
    fn overlay(
        &self,
        table: Table,
        viewer: UserId,
        chat: ChatId,
        out: &mut [Message],
        body: impl Fn(&[u8]) -> StorageResult<MessageBody>,
    ) -> StorageResult<()> {
        let (Some(first), Some(last)) = (out.first().map(|m| m.seq), out.last().map(|m| m.seq))
        else {
            return Ok(());
        };
        let rows = self.tables.scan(
            table,
            &key3(viewer.0, chat.0, first),
            &key3(viewer.0, chat.0, last),
            out.len(),
        )?;
        for (k, v) in rows {
            let seq = tables::key_tail(&k)?;
            if let Some(m) = out.iter_mut().find(|m| m.seq == seq) {
                m.body = body(&v)?;
            }
        }
        Ok(())
    }

    fn chat_record(&self, chat: ChatId) -> StorageResult<Option<ChatRecord>> {
        self.tables.chat(chat)
    }

    fn stored_message(&self, chat: ChatId, seq: Seq) -> StorageResult<Message> {
        let bytes = self
            .tables
            .get(Table::Messages, &key2(chat.0, seq))?
            .ok_or_else(|| tables::corrupt("updates", "update refers to a missing message"))?;
        decode("messages", &bytes)
    }
}

#[async_trait]
impl Storage for FjallStorage {
    async fn upsert_user(&self, identifier: &str, _now_ms: u64) -> StorageResult<UserId> {
        if let Some(v) = self.tables.get(Table::Identifiers, identifier.as_bytes())? {
            return Ok(UserId(tables::decode_u64(&v)?));
        }
        let identifier = identifier.to_owned();
        self.write(move |txn| writes::upsert_user(txn, &identifier))
            .await
    }

    async fn user_by_identifier(&self, identifier: &str) -> StorageResult<Option<UserId>> {
        self.tables
            .get(Table::Identifiers, identifier.as_bytes())?
            .map(|v| tables::decode_u64(&v).map(UserId))
            .transpose()
    }

    async fn user_exists(&self, user: UserId) -> StorageResult<bool> {
        writes::user_exists(&self.tables, user)
    }

    async fn create_device(
        &self,
        user: UserId,
        name: &str,
        now_ms: u64,
    ) -> StorageResult<DeviceRecord> {
        let name = name.to_owned();
        self.write(move |txn| writes::create_device(txn, user, &name, now_ms))
            .await
    }

    async fn device(&self, user: UserId, device: DeviceId) -> StorageResult<Option<DeviceRecord>> {
        self.tables
            .get(Table::Devices, &key2(user.0, device.0))?
            .map(|b| decode("devices", &b))
            .transpose()
    }

    async fn devices(&self, user: UserId) -> StorageResult<Vec<DeviceRecord>> {
        self.devices_page(user, DeviceId(0), MAX_LIST_LEN as u32)
            .await
    }

    async fn devices_page(
        &self,
        user: UserId,
        after: DeviceId,
        limit: u32,
    ) -> StorageResult<Vec<DeviceRecord>> {
        let Some(from) = after.0.checked_add(1) else {
            return Ok(Vec::new());
        };
        let rows = self.tables.scan(
            Table::Devices,
            &key2(user.0, from),
            &key2(user.0, u64::MAX),
            limit as usize,
        )?;
        rows.iter().map(|(_, v)| decode("devices", v)).collect()
    }

    async fn revoke_device(&self, user: UserId, device: DeviceId) -> StorageResult<bool> {
        self.write(move |txn| writes::revoke_device(txn, user, device))
            .await
    }

    async fn put_refresh_token(&self, hash: [u8; 32], record: RefreshRecord) -> StorageResult<()> {
        self.write(move |txn| writes::put_refresh(txn, hash, &record))
            .await
    }

    async fn refresh_token(&self, hash: [u8; 32]) -> StorageResult<Option<RefreshRecord>> {
        self.tables
            .get(Table::Refresh, &hash)?
            .map(|b| writes::decode_refresh(&b))
            .transpose()
    }

    async fn rotate_refresh_token(
        &self,
        old: [u8; 32],
        new: [u8; 32],
        record: RefreshRecord,
        now_ms: u64,
        grace_ms: u64,
    ) -> StorageResult<Rotation> {
        self.write(move |txn| writes::rotate_refresh(txn, old, new, &record, now_ms, grace_ms))
            .await
    }

    async fn open_direct_chat(&self, a: UserId, b: UserId, now_ms: u64) -> StorageResult<ChatInfo> {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        if let Some(v) = self.tables.get(Table::Direct, &key2(lo.0, hi.0))? {
            return self.chat_info(ChatId(tables::decode_u64(&v)?));
        }
        self.write(move |txn| writes::open_direct(txn, a, b, now_ms))
            .await
    }

    async fn chat(&self, chat: ChatId) -> StorageResult<Option<ChatRecord>> {
        self.chat_record(chat)
    }

    async fn user_chats(&self, user: UserId) -> StorageResult<Vec<ChatId>> {
        self.user_chats_page(user, ChatId(0), MAX_LIST_LEN as u32)
            .await
    }

    async fn user_chats_page(
        &self,
        user: UserId,
        after: ChatId,
        limit: u32,
    ) -> StorageResult<Vec<ChatId>> {
        let Some(from) = after.0.checked_add(1) else {
            return Ok(Vec::new());
        };
        let rows = self.tables.scan(
            Table::UserChats,
            &key2(user.0, from),
            &key2(user.0, u64::MAX),
            limit as usize,
        )?;
        rows.iter()
            .map(|(k, _)| split_key2(k).map(|(_, c)| ChatId(c)))
            .collect()
    }

    async fn direct_chat(&self, a: UserId, b: UserId) -> StorageResult<Option<ChatId>> {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        self.tables
            .get(Table::Direct, &key2(lo.0, hi.0))?
            .map(|v| tables::decode_u64(&v).map(ChatId))
            .transpose()
    }

    async fn last_seq(&self, chat: ChatId) -> StorageResult<Seq> {
        self.tables.counter(Counter::ChatSeq(chat))
    }

    async fn append_message(&self, message: NewMessage) -> StorageResult<Appended> {
        self.write(move |txn| writes::append(txn, message)).await
    }

    async fn create_group(&self, group: NewGroup) -> StorageResult<ChatInfo> {
        self.write(move |txn| groups::create(txn, group)).await
    }

    async fn change_group(&self, command: GroupCommand) -> StorageResult<Message> {
        self.write(move |txn| groups::change(txn, command)).await
    }

    async fn messages(
        &self,
        viewer: UserId,
        chat: ChatId,
        from: Seq,
        limit: u32,
    ) -> StorageResult<Vec<Message>> {
        let record = self.chat_record(chat)?.ok_or(StorageError::ChatNotFound)?;
        let intervals = features::visible(&self.tables, &record, viewer)?;
        let mut out: Vec<Message> = Vec::new();
        for (a, b) in intervals {
            let want = (limit as usize).saturating_sub(out.len());
            if want == 0 {
                break;
            }
            if b < from {
                continue;
            }
            // Withheld seqs are gaps like those between intervals: scan on past them until
            // the page is full or the interval ends.
            let mut start = a.max(from);
            while start <= b && out.len() < limit as usize {
                let want = limit as usize - out.len();
                let rows = self.tables.scan(
                    Table::Messages,
                    &key2(chat.0, start),
                    &key2(chat.0, b),
                    want,
                )?;
                let Some(last) = rows.last().map(|(k, _)| tables::key_tail(k)).transpose()? else {
                    break;
                };
                let withheld = self.withheld(viewer, chat, start, last)?;
                for (k, v) in &rows {
                    if !withheld.contains(&tables::key_tail(k)?) {
                        out.push(decode("messages", v)?);
                    }
                }
                if rows.len() < want || last == Seq::MAX {
                    break;
                }
                start = last + 1;
            }
        }
        // What this viewer sees of them: the text before a withheld edit, then delete-for-me
        // on top (hidden wins).
        self.overlay(Table::Unedited, viewer, chat, &mut out, |v| {
            decode("unedited", v)
        })?;
        self.overlay(Table::Hidden, viewer, chat, &mut out, |_| {
            Ok(MessageBody::Deleted)
        })?;
        Ok(out)
    }

    async fn hide_messages(&self, user: UserId, chat: ChatId, seqs: Vec<Seq>) -> StorageResult<()> {
        self.write(move |txn| writes::hide(txn, chat, user, seqs))
            .await
    }

    async fn message(&self, chat: ChatId, seq: Seq) -> StorageResult<Option<Message>> {
        self.tables
            .get(Table::Messages, &key2(chat.0, seq))?
            .map(|b| decode("messages", &b))
            .transpose()
    }

    async fn updates(&self, user: UserId, after: Pts, limit: u32) -> StorageResult<Vec<Update>> {
        let Some(from) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let rows = self.tables.scan(
            Table::Updates,
            &key2(user.0, from),
            &key2(user.0, u64::MAX),
            limit as usize,
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let (_, pts) = split_key2(&k)?;
            let kind = match decode::<StoredUpdate>("updates", &v)? {
                StoredUpdate::Message { chat_id, seq } => {
                    let mut m = self.stored_message(chat_id, seq)?;
                    let key = key3(user.0, chat_id.0, seq);
                    if self.tables.get(Table::Hidden, &key)?.is_some() {
                        m.body = MessageBody::Deleted;
                    } else if let Some(body) = self.tables.get(Table::Unedited, &key)? {
                        m.body = decode("unedited", &body)?;
                    }
                    UpdateKind::Message(m)
                }
                StoredUpdate::ChatLeft { chat_id, at_seq } => {
                    UpdateKind::ChatLeft { chat_id, at_seq }
                }
                StoredUpdate::HiddenForMe { chat_id, seqs } => {
                    UpdateKind::HiddenForMe { chat_id, seqs }
                }
                StoredUpdate::Receipt(r) => UpdateKind::Receipt(r),
                StoredUpdate::ChatJoined { chat_id } => {
                    UpdateKind::ChatJoined(self.chat_info(chat_id)?)
                }
                StoredUpdate::ChatJoinedAt(info) => UpdateKind::ChatJoined(info),
                StoredUpdate::ProfileChanged { user_id } => UpdateKind::ProfileChanged { user_id },
            };
            out.push(Update { pts, kind });
        }
        Ok(out)
    }

    async fn latest_pts(&self, user: UserId) -> StorageResult<Pts> {
        self.tables.counter(Counter::UserPts(user.0))
    }

    async fn ack(&self, chat: ChatId, user: UserId, upto: Seq) -> StorageResult<ReceiptChange> {
        self.write(move |txn| writes::receipt(txn, chat, user, upto, false))
            .await
    }

    async fn mark_read(
        &self,
        chat: ChatId,
        user: UserId,
        upto: Seq,
    ) -> StorageResult<ReceiptChange> {
        self.write(move |txn| writes::receipt(txn, chat, user, upto, true))
            .await
    }

    async fn publish_receipt(&self, chat: ChatId, user: UserId) -> StorageResult<Option<Receipt>> {
        self.write(move |txn| writes::publish_receipt(txn, chat, user))
            .await
    }

    async fn receipts(&self, viewer: UserId, chat: ChatId) -> StorageResult<Vec<Receipt>> {
        let record = self.chat_record(chat)?.ok_or(StorageError::ChatNotFound)?;
        let mut out = Vec::with_capacity(record.members.len());
        let blocked = self.direct_block(&record)?;
        for member in record.members {
            if blocked && member != viewer {
                continue;
            }
            let row = self.receipt_row(chat, member)?;
            out.push(Receipt {
                chat_id: chat,
                user_id: member,
                delivered_seq: row.delivered,
                read_seq: row.read,
            });
        }
        Ok(out)
    }

    async fn message_receipts(&self, chat: ChatId, seq: Seq) -> StorageResult<MessageReceipts> {
        let record = self.chat_record(chat)?.ok_or(StorageError::ChatNotFound)?;
        let message = self
            .stored_message(chat, seq)
            .map_err(|_| StorageError::Invalid("no such message".into()))?;
        let mut out = MessageReceipts {
            chat_id: chat,
            seq,
            delivered: Vec::new(),
            read: Vec::new(),
            pending: 0,
        };
        let blocked = self.direct_block(&record)?;
        for &member in &record.members {
            if member == message.sender || record.since_seq(member).is_none_or(|s| s > seq) {
                continue;
            }
            let row = self.receipt_row(chat, member)?;
            let withheld = self
                .tables
                .get(Table::Withheld, &key3(member.0, chat.0, seq))?
                .is_some();
            if row.delivered < seq || withheld || blocked {
                out.pending += 1;
                continue;
            }
            out.delivered.push(MemberReceipt {
                user_id: member,
                at_ms: self.receipt_time(chat, member, tables::DELIVERED_TAG, seq)?,
            });
            if row.read >= seq {
                out.read.push(MemberReceipt {
                    user_id: member,
                    at_ms: self.receipt_time(chat, member, tables::READ_TAG, seq)?,
                });
            }
        }
        Ok(out)
    }

    async fn profile(&self, user: UserId) -> StorageResult<Option<ProfileRecord>> {
        social::profile(&self.tables, user)
    }

    async fn change_profile(&self, change: ProfileChange) -> StorageResult<ProfileRecord> {
        self.write(move |txn| social::change_profile(txn, change))
            .await
    }

    async fn user_by_username(&self, username: &str) -> StorageResult<Option<UserId>> {
        social::user_by_username(&self.tables, username)
    }

    async fn set_edge(&self, change: EdgeChange) -> StorageResult<()> {
        // Users are never deleted, so this check cannot go stale before the write.
        if change.on
            && (change.owner == change.other || !writes::user_exists(&self.tables, change.other)?)
        {
            return Err(StorageError::UserNotFound);
        }
        self.write(move |txn| social::set_edge(txn, change)).await
    }

    async fn edges(&self, owner: UserId, kind: EdgeKind) -> StorageResult<Vec<UserId>> {
        social::edges(&self.tables, owner, kind)
    }

    async fn privacy(&self, user: UserId) -> StorageResult<Option<PrivacySettings>> {
        social::privacy(&self.tables, user)
    }

    async fn set_privacy(&self, user: UserId, settings: PrivacySettings) -> StorageResult<()> {
        self.write(move |txn| social::set_privacy(txn, user, &settings))
            .await
    }

    async fn save_last_seen(&self, rows: Vec<(UserId, u64)>) -> StorageResult<()> {
        if self.writer.is_closed() {
            return Err(StorageError::Closed);
        }
        let tables = self.tables.clone();
        social::blocking(move || social::save_last_seen(&tables, &rows)).await
    }

    async fn last_seen(&self, user: UserId) -> StorageResult<Option<u64>> {
        social::last_seen(&self.tables, user)
    }

    async fn close(&self) -> StorageResult<()> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(Command::Close(tx))
            .await
            .map_err(|_| StorageError::Closed)?;
        rx.await.map_err(|_| StorageError::Closed)?
    }
}

#[cfg(test)]
mod tests;
