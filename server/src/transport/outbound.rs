//! A connection's outbound queue, bounded in bytes.
//!
//! Frames range from a few bytes to [`tern_protocol::limits::MAX_FRAME_LEN`], so a bound in frames
//! says little about memory: 1,024 queued sync pages are 60 MiB. This queue counts the bytes it
//! holds and never waits: a push that would go over the budget fails, and the caller sheds the
//! client (closes it with `SlowConsumer`; it reconnects and syncs, nothing is lost because
//! everything pushed is durable). Nobody ever waits for room, so the reader loop, the shard
//! mailbox and the storage commit path never stall behind a slow reader, and close signals
//! (slow consumer, revocation, shutdown) travel on their own channel, never behind data.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

/// The queue is over its byte budget; the frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbound queue full")]
pub struct Full;

/// Frames kept allocated in an emptied queue; a burst's larger buffer is given back once the
/// writer has taken it all, so an idle connection holds a few slots, not its busiest moment.
const IDLE_SLOTS: usize = 4;

/// Why not `tokio::sync::mpsc`: its unbounded channel allocates a block of 32 slots up front
/// (about 1.5 KiB per connection with its header) and keeps it while idle; with 100k idle
/// connections that is 150 MB for nothing. A locked deque holds nothing until a frame is
/// queued and shrinks back when emptied; the lock is taken once per push and once per batch.
#[derive(Debug)]
struct Shared {
    queue: Mutex<VecDeque<Bytes>>,
    /// Wakes the writer (a permit is kept when it is not waiting, so no push is missed).
    ready: Notify,
    queued: AtomicUsize,
    limit: AtomicUsize,
    /// Live [`Outbound`] handles: the writer ends once none is left and the queue is empty.
    senders: AtomicUsize,
    /// The writer is gone: frames pushed now are dropped (the connection is closing).
    closed: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Bytes>> {
        // A queue of frames stays consistent operation by operation.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side; cheap to clone (shards and in-flight requests hold clones).
#[derive(Debug)]
pub struct Outbound {
    shared: Arc<Shared>,
}

impl Clone for Outbound {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::AcqRel);
        Outbound {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.ready.notify_one();
        }
    }
}

/// The writer's side: frames in order, each released from the budget once taken.
#[derive(Debug)]
pub struct OutboundRx {
    shared: Arc<Shared>,
}

/// A queue that holds at most `limit` bytes.
pub fn channel(limit: usize) -> (Outbound, OutboundRx) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        ready: Notify::new(),
        queued: AtomicUsize::new(0),
        limit: AtomicUsize::new(limit),
        senders: AtomicUsize::new(1),
        closed: AtomicBool::new(false),
    });
    (
        Outbound {
            shared: shared.clone(),
        },
        OutboundRx { shared },
    )
}

impl Outbound {
    /// Queues `frame` unless that would exceed the budget. A frame larger than the whole budget
    /// is still accepted into an empty queue, so every single frame can be sent.
    pub fn push(&self, frame: Bytes) -> Result<(), Full> {
        let len = frame.len();
        let limit = self.shared.limit.load(Ordering::Relaxed);
        let before = self.shared.queued.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > limit {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            return Err(Full);
        }
        let mut q = self.shared.lock();
        if self.shared.closed.load(Ordering::Acquire) {
            drop(q);
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            return Ok(());
        }
        q.push_back(frame);
        drop(q);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Changes the budget (raised once a session authenticates).
    pub fn set_limit(&self, limit: usize) {
        self.shared.limit.store(limit, Ordering::Relaxed);
    }

    /// The budget now, bytes.
    pub fn limit(&self) -> usize {
        self.shared.limit.load(Ordering::Relaxed)
    }

    /// Whether more than half the budget is queued: ephemeral frames (typing) are not queued
    /// then, so they never push a connection into `SlowConsumer`.
    pub fn over_half(&self) -> bool {
        self.queued() > self.limit() / 2
    }

    /// Bytes queued now.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }
}

impl Drop for OutboundRx {
    fn drop(&mut self) {
        let mut q = self.shared.lock();
        self.shared.closed.store(true, Ordering::Release);
        let bytes: usize = q.iter().map(Bytes::len).sum();
        q.clear();
        q.shrink_to_fit();
        self.shared.queued.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl OutboundRx {
    /// Up to `max` frames, waiting for the first; 0 once every sender is gone and the queue is
    /// empty.
    pub async fn recv_many(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        loop {
            {
                let mut q = self.shared.lock();
                if !q.is_empty() {
                    let n = q.len().min(max);
                    let bytes: usize = q.iter().take(n).map(Bytes::len).sum();
                    out.extend(q.drain(..n));
                    if q.is_empty() {
                        q.shrink_to(IDLE_SLOTS);
                    }
                    drop(q);
                    self.shared.queued.fetch_sub(bytes, Ordering::AcqRel);
                    return n;
                }
                if self.shared.senders.load(Ordering::Acquire) == 0 {
                    return 0;
                }
            }
            self.shared.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_writer_ends_once_every_sender_is_gone_and_the_queue_is_drained() {
        let (tx, mut rx) = channel(1_000);
        let tx2 = tx.clone();
        tx.push(Bytes::from_static(b"a")).unwrap();
        drop(tx);
        tx2.push(Bytes::from_static(b"b")).unwrap();
        let writer = tokio::spawn(async move {
            let mut got = Vec::new();
            while rx.recv_many(&mut got, 1).await > 0 {}
            got
        });
        tokio::task::yield_now().await;
        tx2.push(Bytes::from_static(b"c")).unwrap();
        drop(tx2);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), writer)
            .await
            .expect("the writer ended")
            .expect("no panic");
        assert_eq!(
            got,
            vec![&b"a"[..], &b"b"[..], &b"c"[..]],
            "in order, nothing lost"
        );
    }

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
    fn frames_pushed_after_the_writer_is_gone_are_dropped() {
        let (tx, rx) = channel(10);
        tx.push(Bytes::from(vec![0; 8])).unwrap();
        drop(rx);
        for _ in 0..100 {
            assert_eq!(
                tx.push(Bytes::from(vec![0; 8])),
                Ok(()),
                "not held, not refused"
            );
        }
        assert_eq!(tx.queued(), 0, "the writer's end released what it held");
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
