//! Keyspaces of the embedded store, their key layouts and row encodings.
//!
//! Keys are big-endian so byte order is numeric order: `chat ++ seq` scans a chat in seq order,
//! `user ++ pts` scans a user's update log in pts order. Rows are postcard-encoded.

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tern_protocol::{ChatId, Receipt, Seq};

use crate::storage::{StorageError, StorageResult};

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
    /// tag ++ id -> u64 counter (chat last seq, user pts, id allocators)
    pub counters: Keyspace,
}

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
    Chats,
    Direct,
    UserChats,
    Messages,
    Idempotency,
    Updates,
    Receipts,
    Counters,
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
            chats: ks("chats")?,
            direct: ks("direct")?,
            user_chats: ks("user_chats")?,
            messages: ks("messages")?,
            idempotency: ks("idempotency")?,
            updates: ks("updates")?,
            receipts: ks("receipts")?,
            counters: ks("counters")?,
            db,
        })
    }

    pub fn keyspace(&self, table: Table) -> &Keyspace {
        match table {
            Table::Identifiers => &self.identifiers,
            Table::Devices => &self.devices,
            Table::Refresh => &self.refresh,
            Table::Chats => &self.chats,
            Table::Direct => &self.direct,
            Table::UserChats => &self.user_chats,
            Table::Messages => &self.messages,
            Table::Idempotency => &self.idempotency,
            Table::Updates => &self.updates,
            Table::Receipts => &self.receipts,
            Table::Counters => &self.counters,
        }
    }

    pub fn get(&self, table: Table, key: &[u8]) -> StorageResult<Option<Vec<u8>>> {
        Ok(self
            .keyspace(table)
            .get(key)
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    /// Reads a counter row (0 when absent).
    pub fn counter(&self, key: &[u8]) -> StorageResult<u64> {
        Ok(self
            .get(Table::Counters, key)?
            .map(|v| decode_u64(&v))
            .transpose()?
            .unwrap_or(0))
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
    /// Last seq of a chat.
    ChatSeq(ChatId),
    /// Latest pts of a user.
    UserPts(u64),
    /// Last allocated user id.
    NextUser,
    /// Last allocated device id.
    NextDevice,
    /// Last allocated chat id.
    NextChat,
    /// Last allocated message id.
    NextMessage,
}

impl Counter {
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

/// What the update log stores: references, resolved at read time, so a message is stored once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum StoredUpdate {
    Message { chat_id: ChatId, seq: Seq },
    Receipt(Receipt),
    ChatJoined { chat_id: ChatId },
}

/// A member's receipt watermarks.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct ReceiptRow {
    pub delivered: Seq,
    pub read: Seq,
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
