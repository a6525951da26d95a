//! The CQL backend: ScyllaDB (or Apache Cassandra 4/5, which stands in for it in tests) through
//! the `scylla` driver. Same [`Storage`] contract and the same conformance suite as the
//! embedded store.
//!
//! # Consistency
//!
//! Every statement runs at `LOCAL_QUORUM`; the Paxos phase of lightweight transactions at
//! `LOCAL_SERIAL`. A write method returns only once its quorum write (or its Paxos commit) has
//! been acknowledged. Statements are prepared once at open and always bind the partition key,
//! so the driver's default token-aware policy sends each to a replica of its partition
//! (`local_dc` makes it prefer one data centre).
//!
//! # Serialisation domain = partition
//!
//! Conditional batches must touch one partition of one table, so everything that changes
//! atomically with a chat's seq lives in that chat's partition of `chat_rows` (schema in
//! `server/schema/tern.cql`): the message rows, the idempotency rows, edits, membership
//! intervals, withheld marks and kept bodies, with the chat record and `last_seq` as statics.
//! An append reads what it checks against, computes exactly what the embedded store would, and
//! writes one conditional batch whose condition is `INSERT` of the message row at
//! `last_seq + 1` `IF NOT EXISTS` (message rows are dense and never deleted, so "row s+1 is
//! absent" is "nobody appended since I read s"). When another node won, the append re-reads
//! and retries (bounded, with jitter). Seqs are therefore dense and unique however many
//! processes append into one chat, without a coordinator and without Redis. Within one
//! process appends to a chat are serialised by a striped local lock first, so a busy chat
//! costs one Paxos round per message instead of a storm of failed ones.
//!
//! The per-user update log is the same idea on `user_rows`: log row `last_pts + 1` `IF NOT
//! EXISTS`, together with an index row `(chat, seq)` that makes fanning one message out to
//! one user idempotent.
//!
//! # Idempotency and crashes
//!
//! The idempotency key is `(chat, sender, device, client_msg_id)`, kept in the chat's
//! partition so it commits in the message's batch. The embedded store keys it by
//! `(device, client_msg_id)` across chats: reusing a key in *another* chat returns the
//! original there and appends here (no conformance check covers it; clients draw ids at
//! random per send).
//!
//! A crash between the chat batch and the members' fan-out leaves a message in history
//! (`messages`) that some members' logs lack. Two things heal it. The sender got no answer,
//! so its SDK retries with the same `client_msg_id`: the retry finds the idempotency row and
//! completes the fan-out (idempotent thanks to the index rows) before it answers. And every
//! append first completes the fan-out of the messages after the chat's static `fanned_out`
//! watermark (at most 64; each append moves it to its own seq once its fan-out is done), so
//! the next message into the chat repairs the logs, in seq order, even if the sender never
//! retries. Known limitations: a member who left the group in between is not repaired, nor is
//! a group change's `ChatJoined`/`ChatLeft` (group changes have no idempotency key), nor a
//! gap older than 64 messages; devices that see a seq gap fetch the range (`GetMessages`).
//!
//! Other limits relative to the embedded store, all from the lack of multi-partition
//! transactions: a block committed while an append to the same direct chat is in flight may
//! not withhold that one message; the edge bound `max` can be exceeded by concurrent adds; a
//! username claim, the profile row and the release of the old name are three writes; two
//! nodes appending into one chat at once may log those messages to a member in either order
//! (each node's own appends stay in seq order).
//!
//! # Choices
//!
//! - The condition is "the next row is absent" rather than `IF last_seq = ?` (and a state
//!   version): it needs no null comparison for a new chat or log, and every change of the chat
//!   record (a group change) writes a system message row, so it is serialised by the same
//!   condition.
//! - A conditional write that times out is ambiguous; the append and the log treat it as not
//!   applied and re-read, which finds it if it did apply (`db.rs`, `batch_or_retry`).
//! - Device ids count per user (`max + 1`, `IF NOT EXISTS`), not globally as in the embedded
//!   store: the conformance suite wants them increasing per user, and every key that names a
//!   device names its user too.
//! - The message checks are a copy of the embedded store's (see `rules.rs` for why).

mod chats;
mod db;
mod groups;
mod log;
mod receipts;
mod schema;
mod social;
mod users;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::CqlValue;
use tern_protocol::{
    ChatId, ChatInfo, DeviceId, Message, MessageReceipts, PrivacySettings, Pts, Receipt, Seq,
    Update, UserId,
};
use tokio::sync::Mutex;

pub(crate) use self::db::Db;
pub use self::schema::Replication;
use self::schema::Statements;
use super::fjall::CommitObserver;
use super::{
    Appended, ChatRecord, DeviceRecord, EdgeChange, EdgeKind, GroupCommand, NewGroup, NewMessage,
    ProfileChange, ProfileRecord, ReceiptChange, RefreshRecord, Rotation, Storage, StorageError,
    StorageResult, UpdateSink,
};

/// Where the CQL store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CqlConfig {
    /// Contact points, `host:port`.
    pub hosts: Vec<String>,
    /// Keyspace (created with the tables if missing).
    pub keyspace: String,
    /// Replication of a keyspace created at open.
    pub replication: Replication,
    /// Data centre whose replicas are preferred (`LOCAL_*` consistency is relative to it).
    pub local_dc: Option<String>,
}

impl TryFrom<&super::StorageConfig> for CqlConfig {
    type Error = StorageError;

    /// The CQL settings of a `[storage]` table (`Invalid` for the embedded store or a bad
    /// replication string).
    fn try_from(config: &super::StorageConfig) -> Result<Self, Self::Error> {
        match config {
            super::StorageConfig::Cql {
                hosts,
                keyspace,
                replication,
                local_dc,
            } => Ok(CqlConfig {
                hosts: hosts.clone(),
                keyspace: keyspace.clone(),
                replication: replication.parse()?,
                local_dc: local_dc.clone(),
            }),
            super::StorageConfig::Fjall => {
                Err(StorageError::Invalid("not a CQL storage config".into()))
            }
        }
    }
}

/// Conditional writes tried before an append or log write gives up under contention.
const MAX_TRIES: u32 = 64;
/// Striped local locks (per chat, per user).
const STRIPES: usize = 256;

/// One value of a batch statement.
pub(crate) type Vals = Vec<Option<CqlValue>>;

pub(crate) fn big(x: u64) -> Option<CqlValue> {
    Some(CqlValue::BigInt(x as i64))
}

pub(crate) fn tiny(x: i8) -> Option<CqlValue> {
    Some(CqlValue::TinyInt(x))
}

pub(crate) fn blob(x: Vec<u8>) -> Option<CqlValue> {
    Some(CqlValue::Blob(x))
}

pub(crate) fn backend(e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(e.to_string())
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> StorageResult<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| StorageError::Corrupt {
        what: "encode",
        detail: e.to_string(),
    })
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> StorageResult<T> {
    postcard::from_bytes(bytes).map_err(|e| StorageError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

pub(crate) fn corrupt(what: &'static str, detail: &str) -> StorageError {
    StorageError::Corrupt {
        what,
        detail: detail.to_owned(),
    }
}

/// A random id in `1..2^53` (exact in JSON numbers).
pub(crate) fn random_id() -> StorageResult<u64> {
    let rng = ring::rand::SystemRandom::new();
    let bytes: [u8; 8] = ring::rand::generate(&rng)
        .map_err(|_| StorageError::Backend("no system randomness".into()))?
        .expose();
    Ok((u64::from_be_bytes(bytes) % ((1 << 53) - 1)) + 1)
}

/// Sleeps a little before the next try of a lost compare-and-set, growing with `attempt`.
pub(crate) async fn backoff(attempt: u32) {
    let cap = 1u64 << attempt.min(6);
    let jitter = random_id().unwrap_or(1) % cap;
    tokio::time::sleep(Duration::from_millis(1 + jitter)).await;
}

pub(crate) fn contended(what: &str) -> StorageError {
    StorageError::Backend(format!("{what}: still contended after {MAX_TRIES} tries"))
}

/// The CQL-backed store. Cheap to share behind an `Arc`; any number of processes may open
/// the same keyspace at once.
#[derive(Debug, Clone)]
pub struct CqlStorage {
    db: Arc<Db>,
}

impl CqlStorage {
    /// Connects, creates the keyspace and tables if needed, prepares every statement.
    /// `observer` hears of every write (one "job" each) as it would of a fjall commit.
    pub async fn open(
        config: &CqlConfig,
        sink: Arc<dyn UpdateSink>,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> StorageResult<Self> {
        let mut policy = DefaultPolicy::builder().token_aware(true);
        if let Some(dc) = &config.local_dc {
            policy = policy
                .prefer_datacenter(dc.clone())
                .permit_dc_failover(false);
        }
        let profile = ExecutionProfile::builder()
            .consistency(Consistency::LocalQuorum)
            .serial_consistency(Some(SerialConsistency::LocalSerial))
            .load_balancing_policy(policy.build())
            .request_timeout(Some(Duration::from_secs(10)))
            .build();
        let session = SessionBuilder::new()
            .known_nodes(&config.hosts)
            .default_execution_profile_handle(profile.into_handle())
            .build()
            .await
            .map_err(backend)?;
        schema::create(&session, &config.keyspace, &config.replication).await?;
        let st = Statements::prepare(&session, &config.keyspace).await?;
        Ok(CqlStorage {
            db: Arc::new(Db {
                session,
                keyspace: config.keyspace.clone(),
                st,
                sink,
                observer,
                closed: AtomicBool::new(false),
                chat_locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
                user_locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            }),
        })
    }

    /// Empties every table of the store's keyspace (tests: a fresh store per conformance
    /// check, much faster than a new keyspace).
    pub async fn truncate_all(&self) -> StorageResult<()> {
        for table in schema::TABLES {
            let statement = format!("TRUNCATE {}.{table}", self.db.keyspace);
            self.db
                .session
                .query_unpaged(statement, &[])
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    /// Drops the store's keyspace (tests: every conformance check gets a fresh one).
    pub async fn drop_keyspace(&self, keyspace: &str) -> StorageResult<()> {
        if !schema::is_name(keyspace, false) {
            return Err(StorageError::Invalid("bad keyspace name".into()));
        }
        self.db
            .session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), &[])
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl Storage for CqlStorage {
    async fn upsert_user(&self, identifier: &str, _now_ms: u64) -> StorageResult<UserId> {
        users::upsert_user(&self.db, identifier).await
    }

    async fn user_by_identifier(&self, identifier: &str) -> StorageResult<Option<UserId>> {
        users::name(&self.db, schema::NAME_IDENTIFIER, identifier).await
    }

    async fn user_exists(&self, user: UserId) -> StorageResult<bool> {
        users::user_exists(&self.db, user).await
    }

    async fn create_device(
        &self,
        user: UserId,
        name: &str,
        now_ms: u64,
    ) -> StorageResult<DeviceRecord> {
        users::create_device(&self.db, user, name, now_ms).await
    }

    async fn device(&self, user: UserId, device: DeviceId) -> StorageResult<Option<DeviceRecord>> {
        users::device(&self.db, user, device).await
    }

    async fn devices(&self, user: UserId) -> StorageResult<Vec<DeviceRecord>> {
        let max = tern_protocol::limits::MAX_LIST_LEN as u32;
        users::devices_page(&self.db, user, DeviceId(0), max).await
    }

    async fn devices_page(
        &self,
        user: UserId,
        after: DeviceId,
        limit: u32,
    ) -> StorageResult<Vec<DeviceRecord>> {
        users::devices_page(&self.db, user, after, limit).await
    }

    async fn revoke_device(&self, user: UserId, device: DeviceId) -> StorageResult<bool> {
        users::revoke_device(&self.db, user, device).await
    }

    async fn put_refresh_token(&self, hash: [u8; 32], record: RefreshRecord) -> StorageResult<()> {
        users::put_refresh(&self.db, hash, &record).await
    }

    async fn refresh_token(&self, hash: [u8; 32]) -> StorageResult<Option<RefreshRecord>> {
        Ok(users::refresh(&self.db, hash).await?.map(|(r, _)| r))
    }

    async fn rotate_refresh_token(
        &self,
        old: [u8; 32],
        new: [u8; 32],
        record: RefreshRecord,
        now_ms: u64,
        grace_ms: u64,
    ) -> StorageResult<Rotation> {
        users::rotate_refresh(&self.db, old, new, &record, now_ms, grace_ms).await
    }

    async fn open_direct_chat(&self, a: UserId, b: UserId, now_ms: u64) -> StorageResult<ChatInfo> {
        chats::open_direct(&self.db, a, b, now_ms).await
    }

    async fn chat(&self, chat: ChatId) -> StorageResult<Option<ChatRecord>> {
        Ok(chats::load(&self.db, chat).await?.map(|c| c.record))
    }

    async fn user_chats(&self, user: UserId) -> StorageResult<Vec<ChatId>> {
        let max = tern_protocol::limits::MAX_LIST_LEN as u32;
        chats::user_chats_page(&self.db, user, ChatId(0), max).await
    }

    async fn user_chats_page(
        &self,
        user: UserId,
        after: ChatId,
        limit: u32,
    ) -> StorageResult<Vec<ChatId>> {
        chats::user_chats_page(&self.db, user, after, limit).await
    }

    async fn direct_chat(&self, a: UserId, b: UserId) -> StorageResult<Option<ChatId>> {
        chats::direct_chat(&self.db, a, b).await
    }

    async fn last_seq(&self, chat: ChatId) -> StorageResult<Seq> {
        Ok(chats::load(&self.db, chat).await?.map_or(0, |c| c.last_seq))
    }

    async fn create_group(&self, group: NewGroup) -> StorageResult<ChatInfo> {
        groups::create(&self.db, group).await
    }

    async fn change_group(&self, command: GroupCommand) -> StorageResult<Message> {
        groups::change(&self.db, command).await
    }

    async fn append_message(&self, message: NewMessage) -> StorageResult<Appended> {
        chats::append(&self.db, message).await
    }

    async fn messages(
        &self,
        viewer: UserId,
        chat: ChatId,
        from: Seq,
        limit: u32,
    ) -> StorageResult<Vec<Message>> {
        chats::messages(&self.db, viewer, chat, from, limit).await
    }

    async fn hide_messages(&self, user: UserId, chat: ChatId, seqs: Vec<Seq>) -> StorageResult<()> {
        chats::hide(&self.db, user, chat, seqs).await
    }

    async fn message(&self, chat: ChatId, seq: Seq) -> StorageResult<Option<Message>> {
        chats::message(&self.db, chat, seq).await
    }

    async fn updates(&self, user: UserId, after: Pts, limit: u32) -> StorageResult<Vec<Update>> {
        log::updates(&self.db, user, after, limit).await
    }

    async fn latest_pts(&self, user: UserId) -> StorageResult<Pts> {
        log::latest_pts(&self.db, user).await
    }

    async fn ack(&self, chat: ChatId, user: UserId, upto: Seq) -> StorageResult<ReceiptChange> {
        receipts::receipt(&self.db, chat, user, upto, false).await
    }

    async fn publish_receipt(&self, chat: ChatId, user: UserId) -> StorageResult<Option<Receipt>> {
        receipts::publish(&self.db, chat, user).await
    }

    async fn mark_read(
        &self,
        chat: ChatId,
        user: UserId,
        upto: Seq,
    ) -> StorageResult<ReceiptChange> {
        receipts::receipt(&self.db, chat, user, upto, true).await
    }

    async fn receipts(&self, viewer: UserId, chat: ChatId) -> StorageResult<Vec<Receipt>> {
        receipts::receipts(&self.db, viewer, chat).await
    }

    async fn message_receipts(&self, chat: ChatId, seq: Seq) -> StorageResult<MessageReceipts> {
        receipts::message_receipts(&self.db, chat, seq).await
    }

    async fn profile(&self, user: UserId) -> StorageResult<Option<ProfileRecord>> {
        social::profile(&self.db, user).await
    }

    async fn change_profile(&self, change: ProfileChange) -> StorageResult<ProfileRecord> {
        social::change_profile(&self.db, change).await
    }

    async fn user_by_username(&self, username: &str) -> StorageResult<Option<UserId>> {
        users::name(&self.db, schema::NAME_USERNAME, username).await
    }

    async fn set_edge(&self, change: EdgeChange) -> StorageResult<()> {
        social::set_edge(&self.db, change).await
    }

    async fn edges(&self, owner: UserId, kind: EdgeKind) -> StorageResult<Vec<UserId>> {
        social::edges(&self.db, owner, kind).await
    }

    async fn privacy(&self, user: UserId) -> StorageResult<Option<PrivacySettings>> {
        social::privacy(&self.db, user).await
    }

    async fn set_privacy(&self, user: UserId, settings: PrivacySettings) -> StorageResult<()> {
        social::set_privacy(&self.db, user, settings).await
    }

    async fn save_last_seen(&self, rows: Vec<(UserId, u64)>) -> StorageResult<()> {
        social::save_last_seen(&self.db, rows).await
    }

    async fn last_seen(&self, user: UserId) -> StorageResult<Option<u64>> {
        social::last_seen(&self.db, user).await
    }

    async fn close(&self) -> StorageResult<()> {
        // Every write already returned after its quorum acknowledgement: nothing to flush.
        self.db.closed.store(true, Ordering::Release);
        Ok(())
    }
}
