//! The router: which live connections belong to which user and device, and the delivery path
//! from committed updates to those connections.
//!
//! Connection state lives with the connection task; the router only holds a handle with a bounded
//! outbound queue and a close signal. Delivery never blocks: a full queue means the client cannot
//! keep up, so its connection is closed with `SlowConsumer` and it syncs what it missed on
//! reconnect (everything delivered is durable, so nothing is lost).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tern_protocol::{DeviceId, ErrorCode, Event, Frame, Update, UserId, codec};
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::storage::UpdateSink;

/// A live connection as the router sees it.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    /// Unique per process.
    pub conn_id: u64,
    /// The authenticated device.
    pub device_id: DeviceId,
    /// Encoded frames for the connection's writer.
    pub outbound: mpsc::Sender<Bytes>,
    /// Set to ask the connection to close with a code.
    pub close: watch::Sender<Option<ErrorCode>>,
}

/// Maps users to their live connections.
#[derive(Debug)]
pub struct Router {
    by_user: Mutex<HashMap<UserId, Vec<ConnHandle>>>,
    next_conn_id: AtomicU64,
    metrics: Metrics,
}

impl Router {
    /// An empty router.
    pub fn new(metrics: Metrics) -> Self {
        Router {
            by_user: Mutex::new(HashMap::new()),
            next_conn_id: AtomicU64::new(1),
            metrics,
        }
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Starts routing `user`'s updates to `handle`.
    pub fn register(&self, user: UserId, handle: ConnHandle) {
        if let Ok(mut map) = self.by_user.lock() {
            map.entry(user).or_default().push(handle);
        }
    }

    /// Stops routing to connection `conn_id`.
    pub fn unregister(&self, user: UserId, conn_id: u64) {
        if let Ok(mut map) = self.by_user.lock()
            && let Some(list) = map.get_mut(&user)
        {
            list.retain(|h| h.conn_id != conn_id);
            if list.is_empty() {
                map.remove(&user);
            }
        }
    }

    /// Asks every live connection of a device to close with `code`.
    pub fn close_device(&self, user: UserId, device: DeviceId, code: ErrorCode) {
        if let Ok(map) = self.by_user.lock() {
            for h in map
                .get(&user)
                .into_iter()
                .flatten()
                .filter(|h| h.device_id == device)
            {
                let _ = h.close.send(Some(code));
            }
        }
    }

    /// Asks every live connection to close with `code` (shutdown).
    pub fn close_all(&self, code: ErrorCode) {
        if let Ok(map) = self.by_user.lock() {
            for h in map.values().flatten() {
                let _ = h.close.send(Some(code));
            }
        }
    }

    /// Queues a frame on every connection without waiting (shutdown notices).
    pub fn broadcast(&self, frame: Bytes) {
        if let Ok(map) = self.by_user.lock() {
            for h in map.values().flatten() {
                let _ = h.outbound.try_send(frame.clone());
            }
        }
    }

    /// Number of routed connections.
    pub fn connection_count(&self) -> usize {
        self.by_user
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    fn push(&self, user: UserId, frame: &Bytes) {
        let Ok(map) = self.by_user.lock() else { return };
        let Some(handles) = map.get(&user) else {
            return;
        };
        let shard = Metrics::shard(0);
        for h in handles {
            match h.outbound.try_send(frame.clone()) {
                Ok(()) => {
                    self.metrics.deliveries.get_or_create(&shard).inc();
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.metrics.slow_consumers.get_or_create(&shard).inc();
                    let _ = h.close.send(Some(ErrorCode::SlowConsumer));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

impl UpdateSink for Router {
    fn committed(&self, updates: &[(UserId, Update)]) {
        for (user, update) in updates {
            let frame = Frame::Event(Event::Update(update.clone()));
            match codec::encode_to_vec(&frame) {
                Ok(bytes) => self.push(*user, &Bytes::from(bytes)),
                Err(e) => {
                    tracing::error!(error = %e, "an update did not encode; the device will sync it")
                }
            }
        }
    }
}
