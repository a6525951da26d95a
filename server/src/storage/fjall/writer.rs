//! The single writer thread: applies write jobs to one batch, commits the batch with one fsync
//! (group commit), then answers every job and hands the batch's updates to the sink in order.
//!
//! Being the only writer makes allocation (ids, seqs, pts) race-free without locks. Jobs read
//! through an in-batch overlay so a job sees what earlier jobs of the same batch wrote.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjall::{OwnedWriteBatch as WriteBatch, PersistMode};
use tern_protocol::{Update, UserId};
use tokio::sync::{mpsc, oneshot};

use super::tables::{Counter, Table, Tables, backend};
use crate::storage::{StorageError, StorageResult, UpdateSink};

/// The writer's maps hash small keys millions of times a second; SipHash was ~2% of the server's
/// instructions per message. foldhash is seeded per process, and a batch holds at most
/// [`MAX_BATCH_JOBS`] jobs' keys, so a client choosing colliding ids gains little.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Most jobs in one group commit.
const MAX_BATCH_JOBS: usize = 1024;

/// A job's answer, sent once the batch's commit outcome is known.
pub(crate) type Completion = Box<dyn FnOnce(Result<(), &StorageError>) + Send>;
/// A write job: applies itself to the transaction and returns how to answer.
pub(crate) type Job = Box<dyn FnOnce(&mut Txn<'_>) -> Completion + Send>;

pub(crate) enum Command {
    Job(Job),
    Close(oneshot::Sender<StorageResult<()>>),
}

/// Observes each group commit: jobs in it and how long the fsync'd commit took.
pub trait CommitObserver: Send + Sync + 'static {
    /// Called after every commit attempt.
    fn commit(&self, jobs: usize, elapsed: std::time::Duration, ok: bool);
}

/// Committed counter values (chat seqs, user pts, id allocators), kept by the writer so hot
/// counters are not read back from the LSM on every job. Only committed values enter it, so a
/// failed commit leaves it right; it is bounded by clearing (values are re-read on demand).
#[derive(Debug, Default)]
pub(crate) struct CounterCache {
    values: FastMap<[u8; 9], u64>,
}

/// Most counters kept before the cache is cleared.
const MAX_CACHED_COUNTERS: usize = 1_000_000;

/// One batch being built. Writes are staged, not yet in a fjall batch, so that a job that fails
/// half-way can be rolled back to its [`Savepoint`]: a job's rows commit together or not at all,
/// while the other jobs of the same group commit are unaffected.
pub(crate) struct Txn<'a> {
    tables: &'a Tables,
    counters: &'a CounterCache,
    /// Staged writes in order (`None` deletes); turned into one fjall batch at commit.
    ops: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
    /// What this batch wrote so far; `None` is a deletion.
    overlay: FastMap<Table, FastMap<Vec<u8>, Option<Vec<u8>>>>,
    /// Previous overlay entries, to undo a failed job's writes.
    overlay_undo: Vec<Undo>,
    pending_counters: FastMap<[u8; 9], u64>,
    /// Previous pending counter values, to undo a failed job's allocations.
    counter_undo: Vec<([u8; 9], Option<u64>)>,
    /// Updates produced by this batch, in order, for the sink.
    pub updates: Vec<(UserId, Update)>,
}

/// An overlay entry as it was before a write: `None` if the batch had not touched the key,
/// `Some(None)` if it had deleted it.
type Undo = (Table, Vec<u8>, Option<Option<Vec<u8>>>);

/// Where a job started in a [`Txn`]; [`Txn::rollback`] returns the batch to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Savepoint {
    ops: usize,
    overlay_undo: usize,
    counter_undo: usize,
    updates: usize,
}

impl Txn<'_> {
    /// Reads through the batch overlay.
    pub fn get(&self, table: Table, key: &[u8]) -> StorageResult<Option<Vec<u8>>> {
        if let Some(v) = self.overlay.get(&table).and_then(|m| m.get(key)) {
            return Ok(v.clone());
        }
        self.tables.get(table, key)
    }

    pub fn put(&mut self, table: Table, key: &[u8], value: Vec<u8>) {
        let previous = self
            .overlay
            .entry(table)
            .or_default()
            .insert(key.to_vec(), Some(value.clone()));
        self.overlay_undo.push((table, key.to_vec(), previous));
        self.ops.push((table, key.to_vec(), Some(value)));
    }

    /// Stages a row that no job reads back within a batch (update-log rows: jobs read a user's
    /// pts through the counters, never the rows). Skips the overlay and its undo entry, which
    /// is most of a row's cost when a group message writes one per member; a rollback still
    /// drops it with the staged ops.
    pub fn put_unread(&mut self, table: Table, key: &[u8], value: Vec<u8>) {
        self.ops.push((table, key.to_vec(), Some(value)));
    }

    /// Deletes a row as part of the batch.
    pub fn remove(&mut self, table: Table, key: &[u8]) {
        let previous = self
            .overlay
            .entry(table)
            .or_default()
            .insert(key.to_vec(), None);
        self.overlay_undo.push((table, key.to_vec(), previous));
        self.ops.push((table, key.to_vec(), None));
    }

    /// Marks the start of a job.
    pub fn savepoint(&self) -> Savepoint {
        Savepoint {
            ops: self.ops.len(),
            overlay_undo: self.overlay_undo.len(),
            counter_undo: self.counter_undo.len(),
            updates: self.updates.len(),
        }
    }

    /// Undoes everything written since `sp`: staged rows, overlay entries, counter values and
    /// updates, so nothing of a failed job reaches the disk, the caches or the sink.
    pub fn rollback(&mut self, sp: Savepoint) {
        self.ops.truncate(sp.ops);
        self.updates.truncate(sp.updates);
        while self.overlay_undo.len() > sp.overlay_undo {
            let Some((table, key, previous)) = self.overlay_undo.pop() else {
                break;
            };
            let map = self.overlay.entry(table).or_default();
            match previous {
                Some(v) => map.insert(key, v),
                None => map.remove(&key),
            };
        }
        while self.counter_undo.len() > sp.counter_undo {
            let Some((key, previous)) = self.counter_undo.pop() else {
                break;
            };
            match previous {
                Some(v) => self.pending_counters.insert(key, v),
                None => self.pending_counters.remove(&key),
            };
        }
    }

    /// Committed rows with keys in `[from, to]` (at most `limit`), with this batch's writes and
    /// deletions applied over them.
    pub fn scan(
        &self,
        table: Table,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> StorageResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut rows: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = self
            .tables
            .scan(table, from, to, limit)?
            .into_iter()
            .collect();
        if let Some(m) = self.overlay.get(&table) {
            for (k, v) in m {
                if k.as_slice() >= from && k.as_slice() <= to {
                    match v {
                        Some(v) => rows.insert(k.clone(), v.clone()),
                        None => rows.remove(k),
                    };
                }
            }
        }
        Ok(rows.into_iter().take(limit).collect())
    }

    /// A chat row: from this batch, else from the shared (committed) chat cache or disk.
    pub fn chat(
        &self,
        chat: tern_protocol::ChatId,
    ) -> StorageResult<Option<crate::storage::ChatRecord>> {
        match self
            .overlay
            .get(&Table::Chats)
            .and_then(|m| m.get(&chat.0.to_be_bytes()[..]))
        {
            Some(Some(bytes)) => super::tables::decode_chat(bytes).map(Some),
            Some(None) => Ok(None),
            None => self.tables.chat_for_writer(chat),
        }
    }

    pub fn counter(&self, counter: Counter) -> StorageResult<u64> {
        let key = counter.key();
        if let Some(v) = self
            .pending_counters
            .get(&key)
            .or_else(|| self.counters.values.get(&key))
        {
            return Ok(*v);
        }
        self.tables.counter(counter)
    }

    /// Sets a counter for the rest of the batch; allocators are also written as rows, derived
    /// counters only live in the cache (their rows are the data they number).
    pub fn set_counter(&mut self, counter: Counter, value: u64) {
        let key = counter.key();
        if counter.derived_from().is_none() {
            self.ops.push((
                Table::Counters,
                key.to_vec(),
                Some(value.to_be_bytes().to_vec()),
            ));
        }
        let previous = self.pending_counters.insert(key, value);
        self.counter_undo.push((key, previous));
    }

    /// Increments a counter and returns the new value.
    pub fn bump(&mut self, counter: Counter) -> StorageResult<u64> {
        let next = self.counter(counter)? + 1;
        self.set_counter(counter, next);
        Ok(next)
    }
}

impl super::tables::Rows for Txn<'_> {
    fn get(&self, table: Table, key: &[u8]) -> StorageResult<Option<Vec<u8>>> {
        Txn::get(self, table, key)
    }
}

/// Whether a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `fdatasync` every group commit before answering (the server always uses this).
    #[default]
    Fsync,
    /// Write to the OS page cache only: a crash can lose acknowledged writes. For benchmarks
    /// that isolate the cost of the sync.
    Buffered,
}

/// How the writer thread commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterOptions {
    /// Whether commits are fsync'd.
    pub durability: Durability,
    /// After the jobs waiting have been taken, how long to wait for more before committing,
    /// when fewer than [`LINGER_UNTIL_JOBS`] are in hand. Zero: commit at once. A short linger
    /// trades that much latency for fewer fsyncs (and writer wake-ups) per job at paced load,
    /// where a commit otherwise covers only the few jobs that arrived during the last fsync.
    pub linger: Duration,
}

/// A batch this large commits without lingering.
pub const LINGER_UNTIL_JOBS: usize = 32;

pub(crate) fn spawn(
    tables: Tables,
    sink: Arc<dyn UpdateSink>,
    observer: Option<Arc<dyn CommitObserver>>,
    options: WriterOptions,
) -> StorageResult<mpsc::Sender<Command>> {
    let (tx, rx) = mpsc::channel(4096);
    let mode = match options.durability {
        Durability::Fsync => Some(PersistMode::SyncData),
        Durability::Buffered => None,
    };
    let linger = options.linger;
    std::thread::Builder::new()
        .name("tern-storage-writer".into())
        .spawn(move || run(tables, rx, sink, observer, mode, linger))
        .map_err(|e| StorageError::Backend(format!("spawning the writer thread: {e}")))?;
    Ok(tx)
}

fn run(
    tables: Tables,
    mut rx: mpsc::Receiver<Command>,
    sink: Arc<dyn UpdateSink>,
    observer: Option<Arc<dyn CommitObserver>>,
    mode: Option<PersistMode>,
    linger: Duration,
) {
    let mut pending_close = None;
    let mut counters = CounterCache::default();
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = Vec::with_capacity(16);
        match first {
            Command::Job(j) => jobs.push(j),
            Command::Close(reply) => pending_close = Some(reply),
        }
        drain(&mut rx, &mut jobs, &mut pending_close);
        if !linger.is_zero() && pending_close.is_none() && jobs.len() < LINGER_UNTIL_JOBS {
            std::thread::sleep(linger);
            drain(&mut rx, &mut jobs, &mut pending_close);
        }
        if !jobs.is_empty() {
            commit_batch(
                &tables,
                jobs,
                sink.as_ref(),
                observer.as_deref(),
                mode,
                &mut counters,
            );
        }
        if let Some(reply) = pending_close.take() {
            let result = tables.db.persist(PersistMode::SyncAll).map_err(backend);
            rx.close();
            // Answer jobs queued behind the close: they were never applied.
            while let Ok(cmd) = rx.try_recv() {
                if let Command::Job(job) = cmd {
                    let mut txn = new_txn(&tables, &counters);
                    job(&mut txn)(Err(&StorageError::Closed));
                }
            }
            let _ = reply.send(result);
            return;
        }
    }
}

/// Takes what is waiting, up to [`MAX_BATCH_JOBS`] jobs or a close.
fn drain(
    rx: &mut mpsc::Receiver<Command>,
    jobs: &mut Vec<Job>,
    pending_close: &mut Option<oneshot::Sender<StorageResult<()>>>,
) {
    while pending_close.is_none() && jobs.len() < MAX_BATCH_JOBS {
        match rx.try_recv() {
            Ok(Command::Job(j)) => jobs.push(j),
            Ok(Command::Close(reply)) => *pending_close = Some(reply),
            Err(_) => break,
        }
    }
}

fn new_txn<'a>(tables: &'a Tables, counters: &'a CounterCache) -> Txn<'a> {
    Txn {
        tables,
        counters,
        ops: Vec::new(),
        overlay: FastMap::default(),
        overlay_undo: Vec::new(),
        pending_counters: FastMap::default(),
        counter_undo: Vec::new(),
        updates: Vec::new(),
    }
}

fn commit_batch(
    tables: &Tables,
    jobs: Vec<Job>,
    sink: &dyn UpdateSink,
    observer: Option<&dyn CommitObserver>,
    mode: Option<PersistMode>,
    counters: &mut CounterCache,
) {
    let mut txn = new_txn(tables, counters);
    let count = jobs.len();
    let completions: Vec<Completion> = jobs.into_iter().map(|job| job(&mut txn)).collect();
    let Txn {
        ops,
        updates,
        pending_counters,
        ..
    } = txn;
    let mut batch: WriteBatch = tables.db.batch().durability(mode);
    // Chat rows this batch writes: the cache gets them once they are committed.
    let mut chats = Vec::new();
    for (table, key, value) in ops {
        if table == Table::Chats
            && let Some(v) = &value
        {
            chats.push(v.clone());
        }
        match value {
            Some(v) => batch.insert(tables.keyspace(table), key, v),
            None => batch.remove(tables.keyspace(table), key),
        }
    }
    let started = Instant::now();
    let outcome = batch.commit().map_err(backend);
    if let Some(obs) = observer {
        obs.commit(count, started.elapsed(), outcome.is_ok());
    }
    match &outcome {
        Ok(()) => {
            if counters.values.len() + pending_counters.len() > MAX_CACHED_COUNTERS {
                counters.values.clear();
            }
            counters.values.extend(pending_counters);
            for bytes in chats {
                match super::tables::decode_chat(&bytes) {
                    Ok(record) => tables.cache_chat(record),
                    Err(e) => tracing::error!(error = %e, "a committed chat row did not decode"),
                }
            }
            // The sink first: when a write call returns, its updates are already on their way.
            if !updates.is_empty() {
                sink.committed(&updates);
            }
            for complete in completions {
                complete(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, jobs = count, "storage commit failed");
            for complete in completions {
                complete(Err(e));
            }
        }
    }
}
