//! Keyspaces of the embedded store, their key layouts and row encodings.
//!
//! Keys are big-endian so byte order is numeric order: `chat ++ seq` scans a chat in seq order,
//! `user ++ pts` scans a user's update log in pts order. Rows are postcard-encoded.

use std::sync::Arc;

use dashmap::DashMap;
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tern_protocol::{ChatId, ChatInfo, Receipt, Seq, UserId};

use crate::storage::record::LegacyChatRecord;
use crate::storage::{ChatRecord, StorageError, StorageResult};

/// Every keyspace, opened once.
#[derive(Clone)]
pub(crate) struct Tables {
    pub db: Database,
    /// identifier bytes -> user id (u64 BE)
    pub identifiers: Keyspace,
    /// user ++ device -> DeviceRecord
    pub devices: Keyspace,
    /// sha256(token) -> RefreshRecord
    pub refresh: Keyspace,
    /// user ++ device ++ sha256(token) -> (): a device's refresh tokens, to delete them with it
    pub device_refresh: Keyspace,
    /// chat -> ChatRecord
    pub chats: Keyspace,
    /// low user ++ high user -> chat id
    pub direct: Keyspace,
    /// user ++ chat -> ()
    pub user_chats: Keyspace,
    /// chat ++ seq -> Message
    pub messages: Keyspace,
    /// device ++ client_msg_id -> chat ++ seq
    pub idempotency: Keyspace,
    /// user ++ pts -> StoredUpdate
    pub updates: Keyspace,
    /// chat ++ user -> ReceiptRow
    pub receipts: Keyspace,
    /// tag ++ id -> u64 id allocators (devices, chats, messages; users before random ids)
    pub counters: Keyspace,
    /// user id (u64 BE) -> identifier bytes, for users with random ids. Users from before
    /// random allocation have no row: their ids are `1..=` the frozen `NextUser` counter.
    pub users: Keyspace,
    /// chat ++ user -> `Vec<(from, to)>`: a member's closed membership intervals (both ends
    /// inclusive); the open one is `since_seq` in the chat row.
    pub intervals: Keyspace,
    /// user ++ chat ++ seq -> (): messages the user deleted for themself.
    pub hidden: Keyspace,
    /// chat ++ target seq ++ edit seq -> (): the edits of a message, scrubbed when it is deleted
    /// for everyone.
    pub edits: Keyspace,
    /// chat ++ user ++ tag (`D`elivered/`R`ead) ++ seq -> ms: when a member's watermark moved to
    /// seq, so "message info" can say when a message was delivered and read.
    pub receipt_times: Keyspace,
    /// user -> u64 ms: when the user last went offline. Written in unsynced batches off the
    /// commit path (presence flushes every few seconds); a crash may lose the newest values.
    pub last_seen: Keyspace,
    /// user -> ProfileRecord
    pub profiles: Keyspace,
    /// normalised username bytes -> user id (u64 BE); changed in the commit of the profile
    pub usernames: Keyspace,
    /// owner ++ other -> (): `owner` has `other` as a contact
    pub contacts: Keyspace,
    /// other ++ owner -> (): the reverse of `contacts`, for the `ProfileChanged` recipients
    pub contact_of: Keyspace,
    /// owner ++ other -> (): `owner` blocked `other`
    pub blocks: Keyspace,
    /// user -> PrivacySettings (absent: the default)
    pub privacy: Keyspace,
    /// user ++ chat ++ seq -> (): a direct message from someone the user blocked, withheld
    pub withheld: Keyspace,
    /// user ++ chat ++ seq -> MessageBody: the body a blocker last saw of a direct message the
    /// user they blocked edited since (the edit is withheld, so the rewrite must be too)
    pub unedited: Keyspace,
    /// Committed chat rows, read on every send. Only the writer thread fills it (from committed
    /// rows, and with every chat row it commits), so a reader can never put back a stale row.
    chat_cache: Arc<DashMap<ChatId, ChatRecord>>,
}

/// Most chat rows cached before the cache is cleared.
const MAX_CACHED_CHATS: usize = 200_000;

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables").finish_non_exhaustive()
    }
}

/// Which keyspace; used as part of the in-batch overlay key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Table {
    Identifiers,
    Devices,
    Refresh,
    DeviceRefresh,
    Chats,
    Direct,
    UserChats,
    Messages,
    Idempotency,
    Updates,
    Receipts,
    Counters,
    Users,
    Intervals,
    Hidden,
    Edits,
    ReceiptTimes,
    LastSeen,
    Profiles,
    Usernames,
    Contacts,
    ContactOf,
    Blocks,
    Privacy,
    Withheld,
    Unedited,
}

impl Tables {
    pub fn open(db: Database) -> StorageResult<Self> {
        let ks = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(backend)
        };
        Ok(Tables {
            identifiers: ks("identifiers")?,
            devices: ks("devices")?,
            refresh: ks("refresh")?,
            device_refresh: ks("device_refresh")?,
            chats: ks("chats")?,
            direct: ks("direct")?,
            user_chats: ks("user_chats")?,
            messages: ks("messages")?,
            idempotency: ks("idempotency")?,
            updates: ks("updates")?,
            receipts: ks("receipts")?,
            counters: ks("counters")?,
            users: ks("users")?,
            intervals: ks("intervals")?,
            hidden: ks("hidden")?,
            edits: ks("edits")?,
            receipt_times: ks("receipt_times")?,
            last_seen: ks("last_seen")?,
            profiles: ks("profiles")?,
            usernames: ks("usernames")?,
            contacts: ks("contacts")?,
            contact_of: ks("contact_of")?,
            blocks: ks("blocks")?,
            privacy: ks("privacy")?,
            withheld: ks("withheld")?,
            unedited: ks("unedited")?,
            chat_cache: Arc::new(DashMap::new()),
            db,
        })
    }

    pub fn keyspace(&self, table: Table) -> &Keyspace {
        match table {
            Table::Identifiers => &self.identifiers,
            Table::Devices => &self.devices,
            Table::Refresh => &self.refresh,
            Table::DeviceRefresh => &self.device_refresh,
            Table::Chats => &self.chats,
            Table::Direct => &self.direct,
            Table::UserChats => &self.user_chats,
            Table::Messages => &self.messages,
            Table::Idempotency => &self.idempotency,
            Table::Updates => &self.updates,
            Table::Receipts => &self.receipts,
            Table::Counters => &self.counters,
            Table::Users => &self.users,
            Table::Intervals => &self.intervals,
            Table::Hidden => &self.hidden,
            Table::Edits => &self.edits,
            Table::ReceiptTimes => &self.receipt_times,
            Table::LastSeen => &self.last_seen,
            Table::Profiles => &self.profiles,
            Table::Usernames => &self.usernames,
            Table::Contacts => &self.contacts,
            Table::ContactOf => &self.contact_of,
            Table::Blocks => &self.blocks,
            Table::Privacy => &self.privacy,
            Table::Withheld => &self.withheld,
            Table::Unedited => &self.unedited,
        }
    }

    pub fn get(&self, table: Table, key: &[u8]) -> StorageResult<Option<Vec<u8>>> {
        Ok(self
            .keyspace(table)
            .get(key)
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    /// A committed chat row, through the chat cache (readers: never fills the cache).
    pub fn chat(&self, chat: ChatId) -> StorageResult<Option<ChatRecord>> {
        if let Some(r) = self.chat_cache.get(&chat) {
            return Ok(Some(r.clone()));
        }
        self.get(Table::Chats, &chat.0.to_be_bytes())?
            .map(|b| decode_chat(&b))
            .transpose()
    }

    /// A committed chat row, caching it: the writer thread only.
    pub fn chat_for_writer(&self, chat: ChatId) -> StorageResult<Option<ChatRecord>> {
        let record = self.chat(chat)?;
        if let Some(r) = &record {
            self.cache_chat(r.clone());
        }
        Ok(record)
    }

    /// Puts a committed chat row into the cache: the writer thread only, after its commit.
    pub fn cache_chat(&self, record: ChatRecord) {
        if self.chat_cache.len() >= MAX_CACHED_CHATS {
            self.chat_cache.clear();
        }
        self.chat_cache.insert(record.chat_id, record);
    }

    /// A counter's committed value (0 when absent).
    pub fn counter(&self, counter: Counter) -> StorageResult<u64> {
        match counter.derived_from() {
            // Dense sequences are read off their own rows: the last key of the partition.
            Some((table, id)) => match self.keyspace(table).prefix(id.to_be_bytes()).next_back() {
                Some(guard) => Ok(split_key2(&guard.key().map_err(backend)?)?.1),
                None => Ok(0),
            },
            None => Ok(self
                .get(Table::Counters, &counter.key())?
                .map(|v| decode_u64(&v))
                .transpose()?
                .unwrap_or(0)),
        }
    }

    /// Key-value pairs with keys in `[from, to]`, at most `limit`.
    pub fn scan(
        &self,
        table: Table,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> StorageResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for guard in self.keyspace(table).range(from..=to).take(limit) {
            let (k, v) = guard.into_inner().map_err(backend)?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

/// Counter row kinds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    /// Last seq of a chat (derived from the messages partition, never stored).
    ChatSeq(ChatId),
    /// Latest pts of a user (derived from the update-log partition, never stored).
    UserPts(u64),
    /// Last sequentially allocated user id (frozen: new users get random ids).
    NextUser,
    /// Last allocated device id.
    NextDevice,
    /// Last allocated chat id.
    NextChat,
    /// Last allocated message id.
    NextMessage,
}

impl Counter {
    /// Counters that are not stored as rows but read off the dense rows they number: a chat's
    /// last seq is its last message key, a user's pts the last update-log key. Saves a write per
    /// message and per recipient.
    pub fn derived_from(self) -> Option<(Table, u64)> {
        match self {
            Counter::ChatSeq(c) => Some((Table::Messages, c.0)),
            Counter::UserPts(u) => Some((Table::Updates, u)),
            _ => None,
        }
    }

    pub fn key(self) -> [u8; 9] {
        let (tag, id) = match self {
            Counter::ChatSeq(c) => (b'S', c.0),
            Counter::UserPts(u) => (b'P', u),
            Counter::NextUser => (b'u', 0),
            Counter::NextDevice => (b'd', 0),
            Counter::NextChat => (b'c', 0),
            Counter::NextMessage => (b'm', 0),
        };
        let mut k = [0u8; 9];
        k[0] = tag;
        k[1..].copy_from_slice(&id.to_be_bytes());
        k
    }
}

/// Point reads from committed rows (readers) or through a batch (the writer), so read logic
/// such as membership intervals is written once for both.
pub(crate) trait Rows {
    fn get(&self, table: Table, key: &[u8]) -> StorageResult<Option<Vec<u8>>>;
}

impl Rows for Tables {
    fn get(&self, table: Table, key: &[u8]) -> StorageResult<Option<Vec<u8>>> {
        Tables::get(self, table, key)
    }
}

/// What the update log stores: references, resolved at read time, so a message is stored once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum StoredUpdate {
    Message {
        chat_id: ChatId,
        seq: Seq,
    },
    Receipt(Receipt),
    /// A join from before snapshots were stored: resolved to the chat's current info.
    ChatJoined {
        chat_id: ChatId,
    },
    /// A join with the chat as it was when the user joined, so `Sync` returns exactly what was
    /// pushed live. Appended last: older rows keep decoding.
    ChatJoinedAt(ChatInfo),
    /// The user's membership of a group ended at this seq.
    ChatLeft {
        chat_id: ChatId,
        at_seq: Seq,
    },
    /// The user hid these messages for themself.
    HiddenForMe {
        chat_id: ChatId,
        seqs: Vec<Seq>,
    },
    /// A user's profile changed (appended last: older rows keep decoding).
    ProfileChanged {
        user_id: UserId,
    },
}

/// A member's receipt watermarks.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct ReceiptRow {
    pub delivered: Seq,
    pub read: Seq,
    /// The delivered watermark last published: the next publish tells the senders of the
    /// messages after it (groups).
    pub published: Seq,
}

/// The receipt row before `published`; still read from older data directories.
#[derive(Debug, Clone, Copy, Deserialize)]
struct LegacyReceiptRow {
    delivered: Seq,
    read: Seq,
}

pub(crate) fn decode_receipt(bytes: &[u8]) -> StorageResult<ReceiptRow> {
    decode::<ReceiptRow>("receipts", bytes).or_else(|e| {
        decode::<LegacyReceiptRow>("receipts", bytes)
            .map(|r| ReceiptRow {
                delivered: r.delivered,
                read: r.read,
                // Older rows were published to every member at each move already.
                published: r.delivered,
            })
            .map_err(|_| e)
    })
}

/// A chat row in the current layout or the one before groups.
pub(crate) fn decode_chat(bytes: &[u8]) -> StorageResult<ChatRecord> {
    decode::<ChatRecord>("chats", bytes).or_else(|e| {
        decode::<LegacyChatRecord>("chats", bytes)
            .map(ChatRecord::from)
            .map_err(|_| e)
    })
}

pub(crate) fn key3(a: u64, b: u64, c: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&a.to_be_bytes());
    k[8..16].copy_from_slice(&b.to_be_bytes());
    k[16..].copy_from_slice(&c.to_be_bytes());
    k
}

/// The last 8 bytes of a key as a big-endian u64.
pub(crate) fn key_tail(k: &[u8]) -> StorageResult<u64> {
    let tail: [u8; 8] = k
        .len()
        .checked_sub(8)
        .and_then(|at| k[at..].try_into().ok())
        .ok_or_else(|| corrupt("key", "key shorter than 8 bytes"))?;
    Ok(u64::from_be_bytes(tail))
}

/// Tags of [`Tables::receipt_times`] rows.
pub(crate) const DELIVERED_TAG: u8 = b'D';
pub(crate) const READ_TAG: u8 = b'R';

pub(crate) fn receipt_time_key(chat: ChatId, user: UserId, tag: u8, seq: Seq) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[..8].copy_from_slice(&chat.0.to_be_bytes());
    k[8..16].copy_from_slice(&user.0.to_be_bytes());
    k[16] = tag;
    k[17..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn key2(a: u64, b: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_be_bytes());
    k[8..].copy_from_slice(&b.to_be_bytes());
    k
}

pub(crate) fn split_key2(k: &[u8]) -> StorageResult<(u64, u64)> {
    let bytes: [u8; 16] = k
        .try_into()
        .map_err(|_| corrupt("key", "key is not 16 bytes"))?;
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&bytes[..8]);
    b.copy_from_slice(&bytes[8..]);
    Ok((u64::from_be_bytes(a), u64::from_be_bytes(b)))
}

pub(crate) fn decode_u64(v: &[u8]) -> StorageResult<u64> {
    let bytes: [u8; 8] = v
        .try_into()
        .map_err(|_| corrupt("counter", "value is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> StorageResult<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| corrupt("encode", &e.to_string()))
}

pub(crate) fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> StorageResult<T> {
    postcard::from_bytes(bytes).map_err(|e| corrupt(what, &e.to_string()))
}

pub(crate) fn backend(e: fjall::Error) -> StorageError {
    StorageError::Backend(e.to_string())
}

pub(crate) fn corrupt(what: &'static str, detail: &str) -> StorageError {
    StorageError::Corrupt {
        what,
        detail: detail.to_owned(),
    }
}
