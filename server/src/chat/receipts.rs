//! Coalesced delivered receipts. Every `Ack` max-merges the member's delivered watermark in its
//! receipts row at once (durable, visible through `GetReceipts`), but publishing it into the
//! other members' update logs waits up to `receipt_delay_ms`: all ack steps of a member in a chat
//! within that window become one log row. The log thus grows with messages, not with acks.
//!
//! The trade-off is receipt latency: a sender sees "delivered" up to the delay late. Read
//! receipts are not delayed. What is published is read from the row inside the storage writer,
//! so a published receipt never moves backwards (I4), whatever order flushes run in.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_protocol::{ChatId, UserId};

use crate::storage::Storage;

/// (chat, member) pairs whose delivered watermark moved since it was last published.
#[derive(Debug)]
pub struct ReceiptCoalescer {
    storage: Arc<dyn Storage>,
    pending: Mutex<HashSet<(ChatId, UserId)>>,
    max_pending: usize,
    delay: Duration,
}

impl ReceiptCoalescer {
    /// A coalescer publishing through `storage`, holding at most `max_pending` pairs.
    pub fn new(storage: Arc<dyn Storage>, delay: Duration, max_pending: usize) -> Self {
        ReceiptCoalescer {
            storage,
            pending: Mutex::new(HashSet::new()),
            max_pending,
            delay,
        }
    }

    /// Notes that `user`'s delivered watermark in `chat` moved. When the pending table is full
    /// (or the delay is zero) the receipt is published at once instead: memory stays bounded and
    /// nothing is dropped.
    pub async fn moved(&self, chat: ChatId, user: UserId) {
        let held = match self.pending.lock() {
            Ok(mut pending) if !self.delay.is_zero() => {
                pending.contains(&(chat, user))
                    || (pending.len() < self.max_pending && pending.insert((chat, user)))
            }
            _ => false,
        };
        if !held {
            publish(self.storage.as_ref(), chat, user).await;
        }
    }

    /// Publishes everything pending (run every `delay`, and once at shutdown before storage
    /// closes).
    pub async fn flush(&self) {
        let batch: Vec<(ChatId, UserId)> = match self.pending.lock() {
            Ok(mut pending) => pending.drain().collect(),
            Err(_) => Vec::new(),
        };
        // All at once, so the storage writer group-commits them (one fsync for the whole flush
        // rather than one per pair).
        let mut tasks = tokio::task::JoinSet::new();
        for (chat, user) in batch {
            let storage = Arc::clone(&self.storage);
            tasks.spawn(async move { publish(storage.as_ref(), chat, user).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Flushes every `delay` until the returned task is aborted.
    pub fn spawn_flusher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.delay.max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.flush().await;
            }
        })
    }
}

async fn publish(storage: &dyn Storage, chat: ChatId, user: UserId) {
    if let Err(e) = storage.publish_receipt(chat, user).await {
        // The watermark itself is durable; only its push is lost, and `GetReceipts` or the next
        // ack step still show it.
        tracing::warn!(error = %e, %chat, %user, "publishing a delivered receipt failed");
    }
}
