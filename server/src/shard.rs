//! Shards: one thread per core, each with a single-threaded tokio runtime and its own QUIC
//! endpoint bound with `SO_REUSEPORT` to the shared UDP port. A shard owns the connections the
//! kernel hands its socket; nothing outside the shard touches them. Other threads reach them only
//! through the shard's mailboxes (see [`crate::router`]).
//!
//! Address changes: the kernel spreads datagrams over the shard sockets by 4-tuple, so a client
//! whose address changes (NAT rebinding, migration) may land on another shard. That shard does not
//! know the connection, recognises the connection id as ours (the CID key is shared and persisted)
//! and answers with a stateless reset; the client notices at once, reconnects and syncs. The loss
//! is fast and harmless rather than steered (steering by CID would need eBPF).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_protocol::{DeviceId, ErrorCode, UserId};
use tokio::sync::watch;

use crate::metrics::{Metrics, ShardLabel, ShardSeries};
use crate::router::{Control, Delivery, DeliveryKind, Router, ShardInbox};
use crate::transport::datagram::DatagramSender;
use crate::transport::outbound::Outbound;

/// A live connection as its shard sees it.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    /// Unique per process.
    pub conn_id: u64,
    /// The authenticated device (`DeviceId(0)` while anonymous).
    pub device_id: DeviceId,
    /// Encoded frames for the connection's writer, bounded in bytes.
    pub outbound: Outbound,
    /// Set to ask the connection to close with a code. A channel of its own, so a close is
    /// never queued behind data.
    pub close: watch::Sender<Option<ErrorCode>>,
    /// Hands it QUIC datagrams (typing); `None` for connections that have not logged in.
    pub datagrams: Option<DatagramSender>,
}

/// Per-connection settings the shard's connections follow.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time after `Hello` to authenticate.
    pub auth_timeout: Duration,
    /// Outbound queue budget of an authenticated connection, bytes.
    pub outbound_queue: usize,
    /// Outbound queue budget before authentication, bytes.
    pub anonymous_outbound_queue: usize,
}

/// One shard's state, shared by its accept loop, its connections and its mailbox loop (all on the
/// shard's own thread).
#[derive(Debug)]
pub struct Shard {
    /// Index, 0-based.
    pub index: usize,
    /// Its metrics label.
    pub label: ShardLabel,
    /// Its per-frame and per-request series, resolved once.
    pub series: ShardSeries,
    /// Open connections on this shard.
    pub open: AtomicUsize,
    /// The router, to attach and detach users.
    pub router: Arc<Router>,
    limits: ConnectionLimits,
    metrics: Metrics,
    /// Looked up for every pushed update; user ids are the server's own, so foldhash (not
    /// SipHash) is safe here.
    conns: Mutex<HashMap<UserId, Vec<ConnHandle>, foldhash::fast::RandomState>>,
    /// Connections that have not logged in, so shutdown reaches them too.
    anonymous: Mutex<HashMap<u64, ConnHandle>>,
}

impl Shard {
    /// A shard with no connections.
    pub fn new(
        index: usize,
        router: Arc<Router>,
        limits: ConnectionLimits,
        metrics: Metrics,
    ) -> Self {
        Shard {
            index,
            label: Metrics::shard(index),
            series: ShardSeries::new(&metrics, Metrics::shard(index)),
            open: AtomicUsize::new(0),
            router,
            limits,
            metrics,
            conns: Mutex::new(HashMap::default()),
            anonymous: Mutex::new(HashMap::new()),
        }
    }

    /// The settings connections on this shard follow.
    pub fn connection_limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Tracks a connection that has not authenticated (yet), for shutdown.
    pub fn register_anonymous(&self, handle: ConnHandle) {
        if let Ok(mut map) = self.anonymous.lock() {
            map.insert(handle.conn_id, handle);
        }
    }

    /// Starts routing `user`'s updates to `handle` (and stops tracking it as anonymous).
    pub fn register(&self, user: UserId, handle: ConnHandle) {
        if let Ok(mut anon) = self.anonymous.lock() {
            anon.remove(&handle.conn_id);
        }
        let (device, conn_id) = (handle.device_id, handle.conn_id);
        if let Ok(mut map) = self.conns.lock() {
            map.entry(user).or_default().push(handle);
            self.router.attach(user, self.index);
        }
        self.router.attach_device(user, device, conn_id, self.index);
    }

    /// Stops routing to connection `conn_id` (authenticated as `user`, or anonymous).
    pub fn unregister(&self, user: Option<UserId>, conn_id: u64) {
        if let Ok(mut anon) = self.anonymous.lock() {
            anon.remove(&conn_id);
        }
        let Some(user) = user else { return };
        let mut device = None;
        if let Ok(mut map) = self.conns.lock()
            && let Some(list) = map.get_mut(&user)
        {
            if let Some(pos) = list.iter().position(|h| h.conn_id == conn_id) {
                device = Some(list.swap_remove(pos).device_id);
                self.router.detach(user, self.index);
            }
            if list.is_empty() {
                map.remove(&user);
            }
        }
        if let Some(device) = device {
            self.router.detach_device(user, device, conn_id);
        }
    }

    fn each(&self, user: Option<UserId>, mut f: impl FnMut(&ConnHandle)) {
        let Ok(map) = self.conns.lock() else { return };
        match user {
            Some(u) => map.get(&u).into_iter().flatten().for_each(&mut f),
            None => map.values().flatten().for_each(&mut f),
        }
    }

    fn push(&self, user: UserId, frame: &Bytes) {
        self.each(Some(user), |h| match h.outbound.push(frame.clone()) {
            Ok(()) => {
                self.metrics.deliveries.get_or_create(&self.label).inc();
                self.series.frame_out("event");
            }
            Err(_full) => {
                self.metrics.slow_consumers.get_or_create(&self.label).inc();
                let _ = h.close.send(Some(ErrorCode::SlowConsumer));
            }
        });
    }

    /// Hands one mailbox delivery to its connections.
    fn deliver(&self, d: &Delivery) {
        match &d.kind {
            DeliveryKind::Update => self.push(d.user, &d.frame),
            DeliveryKind::Presence { conn_id } => self.each(Some(d.user), |h| {
                if h.conn_id != *conn_id {
                    return;
                }
                match h.outbound.push(d.frame.clone()) {
                    Ok(()) => {
                        self.metrics
                            .presence_events
                            .get_or_create(&self.label)
                            .inc();
                        self.series.frame_out("event");
                    }
                    Err(_full) => {
                        self.metrics.slow_consumers.get_or_create(&self.label).inc();
                        let _ = h.close.send(Some(ErrorCode::SlowConsumer));
                    }
                }
            }),
            DeliveryKind::Typing { datagram } => {
                self.each(Some(d.user), |h| self.typing(h, datagram, &d.frame));
            }
        }
    }

    /// Typing to one connection: as a datagram when it fits, else on the control stream; not at
    /// all when the connection's queue is over half full (a hint never sheds a client).
    fn typing(&self, h: &ConnHandle, datagram: &Bytes, frame: &Bytes) {
        if h.outbound.over_half() {
            self.metrics.typing("dropped_load");
            return;
        }
        if let Some(tx) = &h.datagrams
            && tx.fits(datagram.len())
        {
            if tx.send(datagram.clone()).is_ok() {
                self.metrics.datagram(&self.label, "out", "ok");
                self.metrics.typing("delivered");
                return;
            }
            self.metrics.datagram(&self.label, "out", "failed");
        }
        match h.outbound.push(frame.clone()) {
            Ok(()) => {
                self.series.frame_out("event");
                self.metrics.typing("delivered");
            }
            Err(_full) => self.metrics.typing("dropped_load"),
        }
    }

    /// Handles the shard's mailboxes until it is told to shut down; then sends `GoAway`, closes
    /// every connection and returns.
    pub async fn run_mailbox(
        self: Arc<Self>,
        mut inbox: ShardInbox,
        stop_accepting: impl FnOnce(),
    ) {
        let mut batch = Vec::with_capacity(64);
        loop {
            tokio::select! {
                biased;
                control = inbox.control.recv() => match control {
                    Some(Control::CloseDevice { user, device, code }) => self.each(Some(user), |h| {
                        if h.device_id == device {
                            let _ = h.close.send(Some(code));
                        }
                    }),
                    Some(Control::CloseConn { user, conn_id, code }) => self.each(Some(user), |h| {
                        if h.conn_id == conn_id {
                            let _ = h.close.send(Some(code));
                        }
                    }),
                    Some(Control::Overflow) => {
                        for user in self.router.take_overflow(self.index) {
                            self.each(Some(user), |h| {
                                let _ = h.close.send(Some(ErrorCode::SlowConsumer));
                            });
                        }
                    }
                    Some(Control::Shutdown { go_away }) => {
                        stop_accepting();
                        // Drain what is already queued, then tell everyone to go.
                        while let Ok(d) = inbox.deliveries.try_recv() {
                            self.deliver(&d);
                        }
                        let go = |h: &ConnHandle| {
                            let _ = h.outbound.push(go_away.clone());
                            let _ = h.close.send(Some(ErrorCode::ShuttingDown));
                        };
                        self.each(None, go);
                        if let Ok(anon) = self.anonymous.lock() {
                            anon.values().for_each(go);
                        }
                        return;
                    }
                    None => return,
                },
                n = inbox.deliveries.recv_many(&mut batch, 64) => {
                    if n == 0 {
                        return;
                    }
                    let now = Instant::now();
                    for d in batch.drain(..) {
                        if matches!(d.kind, DeliveryKind::Update) {
                            self.metrics
                                .delivery_seconds
                                .get_or_create(&self.label)
                                .observe(now.saturating_duration_since(d.committed_at).as_secs_f64());
                        }
                        self.deliver(&d);
                    }
                    self.metrics.mailbox_depth.get_or_create(&self.label).set(inbox.deliveries.len() as i64);
                }
            }
        }
    }

    /// Open connections on this shard.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// How long a shard waits for its connections to close at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
