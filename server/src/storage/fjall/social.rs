//! The social rows of the embedded store: last seen (written off the commit path), and later
//! profiles, the username index, contacts, blocks, privacy settings and withheld messages.

use tern_protocol::UserId;

use super::tables::{Table, Tables, backend, decode_u64};
use crate::storage::{StorageError, StorageResult};

/// Writes last-seen values in one unsynced batch, outside the writer thread: these rows are
/// presence hints, not acknowledged data, so they never wait for (or add to) a group commit's
/// fsync. The next synced commit, or close, makes them durable.
pub(crate) fn save_last_seen(tables: &Tables, rows: &[(UserId, u64)]) -> StorageResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut batch = tables.db.batch().durability(None);
    for &(user, at_ms) in rows {
        batch.insert(
            tables.keyspace(Table::LastSeen),
            user.0.to_be_bytes(),
            at_ms.to_be_bytes(),
        );
    }
    batch.commit().map_err(backend)
}

/// A user's saved last-seen time.
pub(crate) fn last_seen(tables: &Tables, user: UserId) -> StorageResult<Option<u64>> {
    tables
        .get(Table::LastSeen, &user.0.to_be_bytes())?
        .map(|v| decode_u64(&v))
        .transpose()
}

/// Runs a blocking store operation on tokio's blocking pool, so a shard's runtime thread never
/// waits on the journal.
pub(crate) async fn blocking<T, F>(f: F) -> StorageResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StorageResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Backend(format!("a storage task failed: {e}")))?
}
