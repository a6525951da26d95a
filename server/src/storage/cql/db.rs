//! The session and its helpers: typed reads, plain writes, lightweight transactions and
//! single-partition batches, each mapped to [`StorageError::Backend`] with the driver's message,
//! plus the striped local locks that serialise one process's writes to a chat or a user log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use tern_protocol::{ChatId, Update, UserId};
use tokio::sync::Mutex;

use super::schema::Statements;
use super::{STRIPES, Vals, backend, corrupt};
use crate::storage::fjall::CommitObserver;
use crate::storage::{StorageError, StorageResult, UpdateSink};

/// The session, the statements, and local state shared by every operation.
pub(crate) struct Db {
    pub(super) session: Session,
    /// The keyspace (a validated name).
    pub(super) keyspace: String,
    pub st: Statements,
    pub(super) sink: Arc<dyn UpdateSink>,
    pub(super) observer: Option<Arc<dyn CommitObserver>>,
    pub(super) closed: AtomicBool,
    pub(super) chat_locks: Vec<Mutex<()>>,
    pub(super) user_locks: Vec<Mutex<()>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

fn stripe(id: u64) -> usize {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize % STRIPES
}

impl Db {
    /// Refuses writes after [`Storage::close`].
    pub(crate) fn writable(&self) -> StorageResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    pub(crate) fn chat_lock(&self, chat: ChatId) -> &Mutex<()> {
        &self.chat_locks[stripe(chat.0)]
    }

    pub(crate) fn user_lock(&self, user: UserId) -> &Mutex<()> {
        &self.user_locks[stripe(user.0)]
    }

    /// Hands written updates to the sink.
    pub(crate) fn committed(&self, updates: &[(UserId, Update)]) {
        if !updates.is_empty() {
            self.sink.committed(updates);
        }
    }

    fn observe(&self, started: Instant, ok: bool) {
        if let Some(o) = &self.observer {
            o.commit(1, started.elapsed(), ok);
        }
    }

    /// Every row of a query.
    pub(crate) async fn rows<R>(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> StorageResult<Vec<R>>
    where
        R: for<'f> DeserializeRow<'f, 'f>,
    {
        let result = self
            .session
            .execute_unpaged(st, values)
            .await
            .map_err(backend)?
            .into_rows_result()
            .map_err(backend)?;
        let rows = result.rows::<R>().map_err(backend)?;
        rows.collect::<Result<Vec<R>, _>>().map_err(backend)
    }

    /// The first row of a query, if any.
    pub(crate) async fn first<R>(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> StorageResult<Option<R>>
    where
        R: for<'f> DeserializeRow<'f, 'f>,
    {
        Ok(self.rows::<R>(st, values).await?.into_iter().next())
    }

    /// A plain write.
    pub(crate) async fn run(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> StorageResult<()> {
        self.writable()?;
        let started = Instant::now();
        let result = self.session.execute_unpaged(st, values).await;
        self.observe(started, result.is_ok());
        result.map(|_| ()).map_err(backend)
    }

    /// A lightweight transaction: whether it applied.
    pub(crate) async fn cas(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> StorageResult<bool> {
        self.writable()?;
        let started = Instant::now();
        let result = self.session.execute_unpaged(st, values).await;
        self.observe(started, result.is_ok());
        applied(result.map_err(backend)?)
    }

    /// One batch on one partition; conditional if any statement has an `IF`. Whether it
    /// applied (always true for an unconditional batch).
    pub(crate) async fn batch(
        &self,
        stmts: Vec<(&PreparedStatement, Vals)>,
    ) -> StorageResult<bool> {
        self.writable()?;
        if stmts.is_empty() {
            return Ok(true);
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut values = Vec::with_capacity(stmts.len());
        for (st, v) in stmts {
            batch.append_statement(st.clone());
            values.push(v);
        }
        let started = Instant::now();
        let result = self.session.batch(&batch, values).await;
        self.observe(started, result.is_ok());
        applied(result.map_err(backend)?)
    }
}

/// Whether an error leaves a write's outcome unknown or known-unapplied but retryable (a
/// timeout, an overloaded or unavailable replica set): see [`Db::batch_or_retry`].
fn retryable(e: &scylla::errors::ExecutionError) -> bool {
    use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
    match e {
        ExecutionError::RequestTimeout(_) => true,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => matches!(
            db,
            DbError::WriteTimeout { .. }
                | DbError::ReadTimeout { .. }
                | DbError::Unavailable { .. }
                | DbError::Overloaded
        ),
        _ => false,
    }
}

impl Db {
    /// Like [`Db::batch`], but a timeout (or an unavailable or overloaded coordinator) reads as
    /// "not applied". Only for callers that re-read before they try again, so that a batch
    /// that did apply is found on the re-read (the append finds its idempotency row, the log
    /// its index row) instead of failing the request: Paxos timeouts under load are expected.
    pub(crate) async fn batch_or_retry(
        &self,
        stmts: Vec<(&PreparedStatement, Vals)>,
    ) -> StorageResult<bool> {
        self.writable()?;
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut values = Vec::with_capacity(stmts.len());
        for (st, v) in stmts {
            batch.append_statement(st.clone());
            values.push(v);
        }
        let started = Instant::now();
        let result = self.session.batch(&batch, values).await;
        self.observe(started, result.is_ok());
        match result {
            Ok(r) => applied(r),
            Err(e) if retryable(&e) => {
                tracing::warn!(error = %e, "a conditional CQL write timed out: re-reading");
                Ok(false)
            }
            Err(e) => Err(backend(e)),
        }
    }
}

/// The `[applied]` column of a conditional write's answer (true when there is none).
fn applied(result: scylla::response::query_result::QueryResult) -> StorageResult<bool> {
    if !result.is_rows() {
        return Ok(true);
    }
    let rows = result.into_rows_result().map_err(backend)?;
    match rows.maybe_first_row::<Row>().map_err(backend)? {
        Some(row) => match row.columns.first() {
            Some(Some(CqlValue::Boolean(b))) => Ok(*b),
            _ => Err(corrupt("lwt", "no [applied] column")),
        },
        None => Ok(true),
    }
}
