//! A connection's outbound queue, bounded in bytes.
//!
//! Frames range from a few bytes to [`tern_protocol::limits::MAX_FRAME_LEN`], so a bound in frames
//! says little about memory: 1,024 queued sync pages are 60 MiB. This queue counts the bytes it
//! holds and never waits: a push that would go over the budget fails, and the caller sheds the
//! client (closes it with `SlowConsumer`; it reconnects and syncs, nothing is lost because
//! everything pushed is durable). Nobody ever waits for room, so the reader loop, the shard
//! mailbox and the storage commit path never stall behind a slow reader, and close signals
//! (slow consumer, revocation, shutdown) travel on their own channel, never behind data.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

/// The queue is over its byte budget; the frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbound queue full")]
pub struct Full;

#[derive(Debug)]
struct Budget {
    queued: AtomicUsize,
    limit: AtomicUsize,
}

/// The sending side; cheap to clone (shards and in-flight requests hold clones).
#[derive(Debug, Clone)]
pub struct Outbound {
    tx: mpsc::UnboundedSender<Bytes>,
    budget: Arc<Budget>,
}

/// The writer's side: frames in order, each released from the budget once taken.
#[derive(Debug)]
pub struct OutboundRx {
    rx: mpsc::UnboundedReceiver<Bytes>,
    budget: Arc<Budget>,
}

/// A queue that holds at most `limit` bytes.
pub fn channel(limit: usize) -> (Outbound, OutboundRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = Arc::new(Budget {
        queued: AtomicUsize::new(0),
        limit: AtomicUsize::new(limit),
    });
    (
        Outbound {
            tx,
            budget: budget.clone(),
        },
        OutboundRx { rx, budget },
    )
}

impl Outbound {
    /// Queues `frame` unless that would exceed the budget. A frame larger than the whole budget
    /// is still accepted into an empty queue, so every single frame can be sent.
    pub fn push(&self, frame: Bytes) -> Result<(), Full> {
        let len = frame.len();
        let limit = self.budget.limit.load(Ordering::Relaxed);
        let before = self.budget.queued.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > limit {
            self.budget.queued.fetch_sub(len, Ordering::AcqRel);
            return Err(Full);
        }
        if self.tx.send(frame).is_err() {
            self.budget.queued.fetch_sub(len, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Changes the budget (raised once a session authenticates).
    pub fn set_limit(&self, limit: usize) {
        self.budget.limit.store(limit, Ordering::Relaxed);
    }

    /// The budget now, bytes.
    pub fn limit(&self) -> usize {
        self.budget.limit.load(Ordering::Relaxed)
    }

    /// Whether more than half the budget is queued: ephemeral frames (typing) are not queued
    /// then, so they never push a connection into `SlowConsumer`.
    pub fn over_half(&self) -> bool {
        self.queued() > self.limit() / 2
    }

    /// Bytes queued now.
    pub fn queued(&self) -> usize {
        self.budget.queued.load(Ordering::Relaxed)
    }
}

impl OutboundRx {
    /// Up to `max` frames, waiting for the first; 0 once every sender is gone and the queue is
    /// empty.
    pub async fn recv_many(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        let n = self.rx.recv_many(out, max).await;
        let bytes: usize = out[out.len() - n..].iter().map(Bytes::len).sum();
        self.budget.queued.fetch_sub(bytes, Ordering::AcqRel);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_budget_counts_bytes_and_frees_them_when_taken() {
        let (tx, mut rx) = channel(100);
        tx.push(Bytes::from(vec![0; 60])).unwrap();
        tx.push(Bytes::from(vec![0; 40])).unwrap();
        assert_eq!(tx.push(Bytes::from(vec![0; 1])), Err(Full));
        assert_eq!(tx.queued(), 100);
        let mut out = Vec::new();
        assert_eq!(rx.recv_many(&mut out, 1).await, 1);
        assert_eq!(tx.queued(), 40);
        tx.push(Bytes::from(vec![0; 60])).unwrap();
        assert_eq!(tx.push(Bytes::from(vec![0; 1])), Err(Full));
    }

    #[test]
    fn over_half_is_where_ephemeral_frames_stop() {
        let (tx, _rx) = channel(100);
        tx.push(Bytes::from(vec![0; 50])).unwrap();
        assert!(!tx.over_half(), "exactly half still takes a typing event");
        tx.push(Bytes::from(vec![0; 1])).unwrap();
        assert!(tx.over_half());
        assert_eq!(tx.limit(), 100);
    }

    #[tokio::test]
    async fn one_oversized_frame_fits_an_empty_queue() {
        let (tx, mut rx) = channel(10);
        tx.push(Bytes::from(vec![0; 50])).unwrap();
        assert_eq!(tx.push(Bytes::from(vec![0; 1])), Err(Full));
        let mut out = Vec::new();
        rx.recv_many(&mut out, 8).await;
        assert_eq!(tx.queued(), 0);
        tx.set_limit(1000);
        for _ in 0..20 {
            tx.push(Bytes::from(vec![0; 50])).unwrap();
        }
        assert_eq!(tx.push(Bytes::from(vec![0; 1])), Err(Full));
    }
}
