//! The router: which shards host which users' connections, and the path from committed updates to
//! those shards.
//!
//! A connection lives on exactly one shard (see [`crate::shard`]); the router never touches it.
//! It keeps a directory `user -> shards with at least one of the user's connections` and a
//! bounded delivery mailbox per shard. Storage hands every committed update to the router (it is
//! the [`UpdateSink`]); the router encodes it once and posts it to each hosting shard without
//! waiting. Mailboxes are bounded in entries and in bytes (an entry may be a 60 KiB message). A
//! full mailbox never blocks the caller: the router remembers the users it could not serve and
//! tells the shard, which closes their connections with `SlowConsumer`; those devices reconnect
//! and sync what they missed (everything delivered is durable, so nothing is lost).
//!
//! Besides committed updates, the router carries presence events to one watching connection
//! (reliable: a full mailbox closes that connection, which reconnects and re-watches) and typing
//! indicators to all of a user's connections. Typing is ephemeral and dropped first under load:
//! it is not queued at all when the mailbox is above half its byte budget or half its entries,
//! so hints never take room that durable updates need (counted as `dropped_load`).
//!
//! The router also counts each device's connections across shards and closes the oldest one
//! when a device goes over its cap: a phone on a bad network reconnects before its old
//! connection has timed out, so the newest connection is the one worth keeping.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use dashmap::DashMap;
use tern_protocol::{ChatId, DeviceId, ErrorCode, Seq, Update, UpdateKind, UserId, codec};
use tokio::sync::mpsc;

use crate::cluster::{Cluster, Outgoing};
use crate::metrics::Metrics;
use crate::presence::typing::EncodedTyping;
use crate::services::ConnRef;
use crate::storage::UpdateSink;

mod remote;

/// What a delivery carries, and so how the shard hands it over.
#[derive(Debug, Clone)]
pub enum DeliveryKind {
    /// A committed update, to every connection of the user.
    Update,
    /// A presence event, to one connection of the user (reliable).
    Presence {
        /// The watching connection.
        conn_id: u64,
    },
    /// A typing indicator, to every connection of the user (ephemeral): as this datagram
    /// where the connection takes it, else as `frame`.
    Typing {
        /// The encoded `Datagram::TypingEvent`.
        datagram: Bytes,
    },
}

impl DeliveryKind {
    /// Ephemeral deliveries (typing) may be dropped anywhere under load; the others may not.
    pub fn is_ephemeral(&self) -> bool {
        matches!(self, DeliveryKind::Typing { .. })
    }
}

/// An encoded frame for one user's connections on one shard.
#[derive(Debug)]
pub struct Delivery {
    /// Recipient.
    pub user: UserId,
    /// The encoded frame (`Event::Update`, `Event::Presence` or `Event::Typing`).
    pub frame: Bytes,
    /// What it is.
    pub kind: DeliveryKind,
    /// When storage committed it, for the delivery latency histogram.
    pub committed_at: Instant,
    /// Releases the delivery's bytes from its mailbox budget when dropped.
    _bytes: MailboxBytes,
}

/// A delivery's share of its shard mailbox's byte budget, released on drop.
#[derive(Debug)]
struct MailboxBytes {
    queued: Arc<AtomicUsize>,
    len: usize,
}

impl Drop for MailboxBytes {
    fn drop(&mut self) {
        self.queued.fetch_sub(self.len, Ordering::AcqRel);
    }
}

/// Rare messages to a shard; unbounded so they are never lost to a full mailbox.
#[derive(Debug)]
pub enum Control {
    /// Close a device's connections (revocation).
    CloseDevice {
        /// Owner.
        user: UserId,
        /// Device.
        device: DeviceId,
        /// Close code.
        code: ErrorCode,
    },
    /// Close one connection (its device went over the per-device cap).
    CloseConn {
        /// Owner.
        user: UserId,
        /// The connection.
        conn_id: u64,
        /// Close code.
        code: ErrorCode,
    },
    /// Deliveries were dropped for the users in the shard's overflow set.
    Overflow,
    /// Stop accepting, send `GoAway`, close every connection, drain, and stop.
    Shutdown {
        /// The encoded `GoAway` frame.
        go_away: Bytes,
    },
}

/// The receiving ends of one shard's mailboxes.
#[derive(Debug)]
pub struct ShardInbox {
    /// Deliveries, bounded.
    pub deliveries: mpsc::Receiver<Delivery>,
    /// Control messages.
    pub control: mpsc::UnboundedReceiver<Control>,
}

#[derive(Debug)]
struct ShardLink {
    deliveries: mpsc::Sender<Delivery>,
    /// Bytes of the deliveries in the mailbox now.
    queued_bytes: Arc<AtomicUsize>,
    control: mpsc::UnboundedSender<Control>,
    overflow: Mutex<HashSet<UserId>>,
}

/// Router sizes.
#[derive(Debug, Clone, Copy)]
pub struct RouterLimits {
    /// Deliveries a shard mailbox holds.
    pub mailbox: usize,
    /// Bytes of deliveries a shard mailbox holds.
    pub mailbox_bytes: usize,
    /// Live connections per device; over it, the device's oldest connection is closed.
    pub connections_per_device: usize,
}

impl Default for RouterLimits {
    fn default() -> Self {
        RouterLimits {
            mailbox: 65_536,
            mailbox_bytes: 64 << 20,
            connections_per_device: 4,
        }
    }
}

/// Maps users to the shards hosting their connections.
#[derive(Debug)]
pub struct Router {
    directory: DashMap<UserId, Vec<(usize, u32)>>,
    /// `(user, device) -> [(conn_id, shard)]`, oldest first.
    devices: DashMap<(UserId, DeviceId), Vec<(u64, usize)>>,
    shards: Vec<ShardLink>,
    limits: RouterLimits,
    next_conn_id: AtomicU64,
    metrics: Metrics,
    /// Cluster mode: the remote directory and the bus outbox (see [`remote`]); unset on a
    /// single node, where every path below is the single-node one.
    cluster: OnceLock<Arc<Cluster>>,
}

impl Router {
    /// A router for `shards` shards with mailboxes sized by `limits`, and the inboxes the shards
    /// will read.
    pub fn new(shards: usize, limits: RouterLimits, metrics: Metrics) -> (Router, Vec<ShardInbox>) {
        let mut links = Vec::with_capacity(shards);
        let mut inboxes = Vec::with_capacity(shards);
        for _ in 0..shards.max(1) {
            let (dtx, drx) = mpsc::channel(limits.mailbox.max(1));
            let (ctx, crx) = mpsc::unbounded_channel();
            links.push(ShardLink {
                deliveries: dtx,
                queued_bytes: Arc::new(AtomicUsize::new(0)),
                control: ctx,
                overflow: Mutex::new(HashSet::new()),
            });
            inboxes.push(ShardInbox {
                deliveries: drx,
                control: crx,
            });
        }
        let router = Router {
            directory: DashMap::new(),
            devices: DashMap::new(),
            shards: links,
            limits,
            next_conn_id: AtomicU64::new(1),
            metrics,
            cluster: OnceLock::new(),
        };
        (router, inboxes)
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// A fresh connection id, unique in this process.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Records that `shard` hosts one more connection of `user`.
    pub fn attach(&self, user: UserId, shard: usize) {
        let first = {
            let mut entry = self.directory.entry(user).or_default();
            let first = entry.is_empty();
            match entry.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, n)) => *n += 1,
                None => entry.push((shard, 1)),
            }
            first
        };
        if first && let Some(c) = self.cluster.get() {
            c.local_changed(user);
        }
    }

    /// Records that `shard` hosts one connection fewer of `user`.
    pub fn detach(&self, user: UserId, shard: usize) {
        let empty = match self.directory.get_mut(&user) {
            Some(mut entry) => {
                if let Some(pos) = entry.iter().position(|(s, _)| *s == shard) {
                    entry[pos].1 = entry[pos].1.saturating_sub(1);
                    if entry[pos].1 == 0 {
                        entry.swap_remove(pos);
                    }
                }
                entry.is_empty()
            }
            None => false,
        };
        if empty
            && self
                .directory
                .remove_if(&user, |_, v| v.is_empty())
                .is_some()
            && let Some(c) = self.cluster.get()
        {
            c.local_changed(user);
        }
    }

    /// Records connection `conn_id` of a device on `shard`. If the device is now over its cap,
    /// asks the shard hosting its oldest connection to close that one.
    pub fn attach_device(&self, user: UserId, device: DeviceId, conn_id: u64, shard: usize) {
        let evicted = {
            let mut conns = self.devices.entry((user, device)).or_default();
            conns.push((conn_id, shard));
            if conns.len() > self.limits.connections_per_device.max(1) {
                Some(conns.remove(0))
            } else {
                None
            }
        };
        if let Some((old, old_shard)) = evicted
            && let Some(link) = self.shards.get(old_shard)
        {
            let _ = link.control.send(Control::CloseConn {
                user,
                conn_id: old,
                code: ErrorCode::TooManyConnections,
            });
        }
    }

    /// Forgets connection `conn_id` of a device.
    pub fn detach_device(&self, user: UserId, device: DeviceId, conn_id: u64) {
        let key = (user, device);
        let empty = match self.devices.get_mut(&key) {
            Some(mut conns) => {
                conns.retain(|(c, _)| *c != conn_id);
                conns.is_empty()
            }
            None => false,
        };
        if empty {
            self.devices.remove_if(&key, |_, v| v.is_empty());
        }
    }

    fn hosting(&self, user: UserId) -> Vec<usize> {
        self.directory
            .get(&user)
            .map(|e| e.iter().map(|(s, _)| *s).collect())
            .unwrap_or_default()
    }

    /// Asks every live connection of a device to close with `code`.
    pub fn close_device(&self, user: UserId, device: DeviceId, code: ErrorCode) {
        // The device may be connected to another node: every node is told (a lost one shows
        // there as a gap, whose resync closes every connection; a revoked device cannot log
        // back in).
        if let Some(c) = self.cluster.get() {
            c.send(Outgoing::CloseDevice { user, device, code });
        }
        self.close_device_here(user, device, code);
    }

    /// [`Router::close_device`] for this node's connections only.
    pub fn close_device_here(&self, user: UserId, device: DeviceId, code: ErrorCode) {
        for shard in self.hosting(user) {
            if let Some(link) = self.shards.get(shard) {
                let _ = link
                    .control
                    .send(Control::CloseDevice { user, device, code });
            }
        }
    }

    /// Tells every shard to shut down with `go_away`.
    pub fn shutdown_all(&self, go_away: Bytes) {
        for link in &self.shards {
            let _ = link.control.send(Control::Shutdown {
                go_away: go_away.clone(),
            });
        }
    }

    /// Users whose deliveries to `shard` were dropped since the last call.
    pub fn take_overflow(&self, shard: usize) -> HashSet<UserId> {
        self.shards
            .get(shard)
            .and_then(|l| l.overflow.lock().ok().map(|mut g| std::mem::take(&mut *g)))
            .unwrap_or_default()
    }

    /// Whether any connection of `user` is live, on this node or (cluster mode) another.
    pub fn is_connected(&self, user: UserId) -> bool {
        self.directory.contains_key(&user) || self.cluster.get().is_some_and(|c| c.is_remote(user))
    }

    fn post(&self, user: UserId, frame: &Bytes, committed_at: Instant) {
        for shard in self.hosting(user) {
            self.post_to(shard, user, frame, DeliveryKind::Update, committed_at);
        }
    }

    /// Queues a presence event for one watching connection. Presence is state: a full mailbox
    /// closes that connection (`SlowConsumer`); it reconnects, watches again and gets a fresh
    /// snapshot.
    pub fn post_presence(&self, conn: ConnRef, user: UserId, frame: Bytes) {
        let kind = DeliveryKind::Presence {
            conn_id: conn.conn_id,
        };
        self.post_to(conn.shard, user, &frame, kind, Instant::now());
    }

    /// Queues a typing indicator for every connection of `user`, on each hosting shard whose
    /// mailbox is at most half full (else dropped and counted).
    pub fn post_typing(&self, user: UserId, typing: &EncodedTyping) {
        if let Some(c) = self.cluster.get() {
            remote::forward_typing(c, user, typing);
        }
        self.post_typing_here(user, typing);
    }

    /// [`Router::post_typing`] for this node's connections only.
    pub fn post_typing_here(&self, user: UserId, typing: &EncodedTyping) {
        for shard in self.hosting(user) {
            let Some(link) = self.shards.get(shard) else {
                continue;
            };
            let bytes = link.queued_bytes.load(Ordering::Acquire);
            let free = link.deliveries.capacity();
            let max = link.deliveries.max_capacity();
            if bytes > self.limits.mailbox_bytes / 2 || free < max.div_ceil(2) {
                self.metrics.typing("dropped_load");
                continue;
            }
            let kind = DeliveryKind::Typing {
                datagram: typing.datagram.clone(),
            };
            let len = typing.frame.len() + typing.datagram.len();
            link.queued_bytes.fetch_add(len, Ordering::AcqRel);
            let delivery = Delivery {
                user,
                frame: typing.frame.clone(),
                kind,
                committed_at: Instant::now(),
                _bytes: MailboxBytes {
                    queued: link.queued_bytes.clone(),
                    len,
                },
            };
            if link.deliveries.try_send(delivery).is_err() {
                self.metrics.typing("dropped_load");
            }
        }
    }

    fn post_to(
        &self,
        shard: usize,
        user: UserId,
        frame: &Bytes,
        kind: DeliveryKind,
        committed_at: Instant,
    ) {
        let Some(link) = self.shards.get(shard) else {
            return;
        };
        let close_one = match &kind {
            DeliveryKind::Presence { conn_id } => Some(*conn_id),
            _ => None,
        };
        let len = frame.len();
        let before = link.queued_bytes.fetch_add(len, Ordering::AcqRel);
        let bytes = MailboxBytes {
            queued: link.queued_bytes.clone(),
            len,
        };
        let over_bytes = before > 0 && before + len > self.limits.mailbox_bytes;
        let full = over_bytes || {
            let delivery = Delivery {
                user,
                frame: frame.clone(),
                kind,
                committed_at,
                _bytes: bytes,
            };
            matches!(
                link.deliveries.try_send(delivery),
                Err(mpsc::error::TrySendError::Full(_))
            )
        };
        if !full {
            return;
        }
        self.metrics
            .mailbox_overflows
            .get_or_create(&Metrics::shard(shard))
            .inc();
        if let Some(conn_id) = close_one {
            let _ = link.control.send(Control::CloseConn {
                user,
                conn_id,
                code: ErrorCode::SlowConsumer,
            });
            return;
        }
        Self::mark_overflow(link, user);
    }

    /// Puts `user` in `link`'s overflow set: the shard closes the user's connections with
    /// `SlowConsumer`, and the devices reconnect and sync from storage.
    fn mark_overflow(link: &ShardLink, user: UserId) {
        let first = link.overflow.lock().map(|mut g| {
            let was_empty = g.is_empty();
            g.insert(user);
            was_empty
        });
        if first.unwrap_or(false) {
            let _ = link.control.send(Control::Overflow);
        }
    }
}

impl UpdateSink for Router {
    fn committed(&self, updates: &[(UserId, Update)]) {
        let now = Instant::now();
        let cluster = self.cluster.get();
        let mut remote = remote::Batch::default();
        // A message reaches each member with its own pts but the same body: encode the body
        // once per message (consecutive updates of one commit), not once per member.
        let mut shared: Option<(ChatId, Seq, Vec<u8>)> = None;
        for (user, update) in updates {
            let local = self.directory.contains_key(user);
            let nodes = cluster.map(|c| c.remote_nodes(*user)).unwrap_or_default();
            if !local && nodes.is_empty() {
                continue;
            }
            let encoded = match &update.kind {
                UpdateKind::Message(m) => {
                    let fresh =
                        !matches!(&shared, Some((c, s, _)) if *c == m.chat_id && *s == m.seq);
                    if fresh {
                        match codec::encode_update_kind(&update.kind) {
                            Ok(kind) => shared = Some((m.chat_id, m.seq, kind)),
                            Err(e) => {
                                tracing::error!(error = %e, "an update did not encode; the device will sync it");
                                continue;
                            }
                        }
                    }
                    match &shared {
                        Some((_, _, kind)) => codec::encode_update_event_parts(update.pts, kind),
                        None => codec::encode_update_event(update),
                    }
                }
                _ => codec::encode_update_event(update),
            };
            match encoded {
                Ok(bytes) => {
                    let bytes = Bytes::from(bytes);
                    remote.add(nodes, *user, &bytes);
                    if local {
                        self.post(*user, &bytes, now);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "an update did not encode; the device will sync it")
                }
            }
        }
        if let Some(c) = cluster {
            remote.send(c);
        }
    }
}

#[cfg(test)]
mod tests;
