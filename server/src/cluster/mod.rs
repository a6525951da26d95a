//! Cluster mode: several server nodes sharing storage and a Redis bus (DESIGN §7, issue 13).
//!
//! This module is Redis-free: the settings, the node id, the envelope exchanged between nodes
//! ([`envelope`]), the per-link sequence check ([`link`]) and [`Cluster`], the handle the router
//! asks "which other nodes host this user?" and hands cross-node traffic to. Only
//! [`redis`] (feature `cluster`) speaks to Redis (invariant 2).
//!
//! Why the split: the router's hot path (`UpdateSink::committed`) must never wait for the
//! network. It reads the remote directory from an in-memory cache and `try_send`s encoded
//! updates into a bounded outbox; the Redis tasks publish, subscribe, heartbeat and refresh
//! the cache in the background. When Redis is slow or gone, the outbox fills or publishes
//! fail; both are detected by the receiver as a per-link sequence gap and healed by a resync
//! from storage (I6: Redis is an accelerator only).

pub mod envelope;
pub mod link;
pub mod presence;
#[cfg(feature = "cluster")]
pub mod redis;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dashmap::DashMap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tern_protocol::{DeviceId, ErrorCode, UserId};
use tokio::sync::{Notify, mpsc};

use self::presence::PresenceBook;

/// A node's name in the cluster: the `--node-id`, or derived at start-up.
pub type NodeId = Arc<str>;

/// `[cluster]` settings (`--node-id`, `--cluster-redis`, `--advertise`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id; without it one is derived (hostname and QUIC port) and persisted in the
    /// data directory (`node.id`), so a restarted node keeps its name.
    pub node_id: Option<String>,
    /// The Redis bus: `redis://host:port[/db]` for one Redis (or a primary behind a proxy),
    /// `redis+cluster://host1:port,host2:port` for Redis Cluster. Unset: single-node mode.
    pub redis: Option<String>,
    /// The QUIC address clients of this node use, stored in the node registry for operators
    /// and redirects; default: the listen address.
    pub advertise: Option<String>,
}

/// Where the bus lives, parsed from [`ClusterConfig::redis`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis server (`redis://` or `rediss://`).
    Single(String),
    /// Redis Cluster: seed nodes as `redis://` URLs.
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// Parses `redis://…`, `rediss://…`, or `redis+cluster://h1:p1,h2:p2` (also
    /// `rediss+cluster://`). A comma-separated list of `redis://` URLs means a cluster too.
    pub fn parse(s: &str) -> Result<RedisTarget, String> {
        let s = s.trim();
        for (scheme, plain) in [
            ("redis+cluster://", "redis://"),
            ("rediss+cluster://", "rediss://"),
        ] {
            if let Some(rest) = s.strip_prefix(scheme) {
                let seeds: Vec<String> = rest
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(|h| format!("{plain}{h}"))
                    .collect();
                if seeds.is_empty() {
                    return Err(format!("{s:?} names no cluster node"));
                }
                return Ok(RedisTarget::Cluster(seeds));
            }
        }
        let urls: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty()
            || !urls
                .iter()
                .all(|u| u.starts_with("redis://") || u.starts_with("rediss://"))
        {
            return Err(format!(
                "--cluster-redis must be redis://HOST:PORT or redis+cluster://H1:P1,H2:P2, not {s:?}"
            ));
        }
        Ok(match urls.as_slice() {
            [one] => RedisTarget::Single((*one).to_owned()),
            many => RedisTarget::Cluster(many.iter().map(|u| (*u).to_owned()).collect()),
        })
    }
}

/// Work for the publisher task: it assigns per-link sequence numbers, so that anything lost
/// after this point (a failed publish) shows up at the receiver as a gap.
#[derive(Debug)]
pub enum Outgoing {
    /// Encoded `Event::Update` frames of one commit for users hosted on `node`.
    Updates {
        /// The receiving node.
        node: NodeId,
        /// `(recipient, frame)`, in commit order.
        items: Vec<(UserId, Bytes)>,
    },
    /// A typing indicator for users hosted on `node`.
    Typing {
        /// The receiving node.
        node: NodeId,
        /// Recipients.
        users: Vec<UserId>,
        /// `Datagram::TypingEvent`.
        datagram: Bytes,
        /// `Frame::Event(Event::Typing)`.
        frame: Bytes,
    },
    /// A committed social write concerning `users`: sent to every live node.
    SocialChanged {
        /// Users whose facts or relations changed.
        users: Vec<UserId>,
    },
    /// Close a device's connections wherever they are (revocation): sent to every live node.
    CloseDevice {
        /// Owner.
        user: UserId,
        /// Device.
        device: DeviceId,
        /// Close code.
        code: ErrorCode,
    },
}

/// Most entries waiting for the publisher; beyond it cross-node traffic is dropped and the
/// receivers are told through a sequence gap.
pub const OUTBOX: usize = 65_536;

/// The bus's counters (`tern_cluster_*`).
#[derive(Debug, Clone, Default)]
pub struct ClusterMetrics {
    /// Envelopes by direction (`published`, `received`).
    pub envelopes: Family<DirLabel, Counter>,
    /// Per-link sequence gaps detected (lost envelopes, a lost tail, a sender restart).
    pub gaps: Counter,
    /// Times this node marked all its local users for resync.
    pub resyncs: Counter,
    /// Failed Redis operations.
    pub redis_errors: Counter,
    /// 1 while the bus is connected and subscribed, else 0.
    pub bus_up: Gauge,
    /// Cross-node entries dropped before publishing (outbox full).
    pub dropped: Counter,
}

/// Label of [`ClusterMetrics::envelopes`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct DirLabel {
    /// `published` or `received`.
    pub dir: String,
}

impl ClusterMetrics {
    /// Registers the series in `r` (prefix `tern_cluster_`).
    pub fn register(r: &mut Registry) -> Self {
        let m = ClusterMetrics::default();
        let r = r.sub_registry_with_prefix("cluster");
        r.register(
            "envelopes",
            "Envelopes on the node bus, by direction",
            m.envelopes.clone(),
        );
        r.register("gaps", "Per-link sequence gaps detected", m.gaps.clone());
        r.register(
            "resyncs",
            "Times local users were marked for resync",
            m.resyncs.clone(),
        );
        r.register(
            "redis_errors",
            "Failed Redis operations",
            m.redis_errors.clone(),
        );
        r.register(
            "bus_up",
            "1 while connected and subscribed to the bus",
            m.bus_up.clone(),
        );
        r.register(
            "dropped",
            "Cross-node entries dropped before publishing",
            m.dropped.clone(),
        );
        m
    }

    /// Counts one envelope in direction `dir`.
    pub fn envelope(&self, dir: &'static str) {
        self.envelopes
            .get_or_create(&DirLabel { dir: dir.into() })
            .inc();
    }
}

/// The router's side of cluster mode: the remote directory cache and the outbox.
#[derive(Debug)]
pub struct Cluster {
    node: NodeId,
    /// `user -> other nodes hosting a connection of the user` (never this node).
    remote: DashMap<UserId, Vec<NodeId>>,
    /// The same, per node, so a refresh can replace one node's set.
    by_node: Mutex<HashMap<NodeId, HashSet<UserId>>>,
    out: mpsc::Sender<Outgoing>,
    /// Set when an entry was dropped before it got a sequence number: the publisher then skips
    /// one number on every link, so every receiver sees a gap and resyncs.
    lost: AtomicBool,
    /// Users whose first connection attached or last detached here, for the registry task.
    changed: Mutex<HashSet<UserId>>,
    /// Wakes the registry task.
    pub(crate) wake: Notify,
    /// Set when the registry should refresh the directory at once (a link gap may have cost
    /// presence transitions; the full refresh restores them from Redis).
    refresh_soon: AtomicBool,
    /// Who is online here and on the other nodes.
    presence: PresenceBook,
    metrics: ClusterMetrics,
}

impl Cluster {
    /// A handle for node `node` and the receiving end of its outbox (for the publisher).
    pub fn new(node: NodeId, metrics: ClusterMetrics) -> (Arc<Cluster>, mpsc::Receiver<Outgoing>) {
        let (out, rx) = mpsc::channel(OUTBOX);
        let c = Cluster {
            node,
            remote: DashMap::new(),
            by_node: Mutex::new(HashMap::new()),
            out,
            lost: AtomicBool::new(false),
            changed: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            refresh_soon: AtomicBool::new(false),
            presence: PresenceBook::default(),
            metrics,
        };
        (Arc::new(c), rx)
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The bus's counters.
    pub fn metrics(&self) -> &ClusterMetrics {
        &self.metrics
    }

    /// Other nodes hosting a connection of `user` (by the cache; empty if none).
    pub fn remote_nodes(&self, user: UserId) -> Vec<NodeId> {
        self.remote
            .get(&user)
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// Whether any other node hosts `user` (by the cache).
    pub fn is_remote(&self, user: UserId) -> bool {
        self.remote.contains_key(&user)
    }

    /// Queues `o` for the publisher without waiting; a full outbox drops it and arranges a gap.
    pub fn send(&self, o: Outgoing) {
        if self.out.try_send(o).is_err() {
            self.metrics.dropped.inc();
            self.lost.store(true, Ordering::Release);
        }
    }

    /// Whether the outbox is over half full (typing is not queued then: dropped first).
    pub fn busy(&self) -> bool {
        self.out.capacity() < self.out.max_capacity() / 2
    }

    /// Takes the "an entry was dropped" flag (the publisher then skips a sequence number).
    pub fn take_lost(&self) -> bool {
        self.lost.swap(false, Ordering::AcqRel)
    }

    /// The user's first local connection attached, or the last detached (the registry task
    /// reads which from the router).
    pub fn local_changed(&self, user: UserId) {
        if let Ok(mut c) = self.changed.lock() {
            c.insert(user);
        }
        self.wake.notify_one();
    }

    /// Users changed since the last call.
    pub fn take_changed(&self) -> HashSet<UserId> {
        self.changed
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }

    /// `node` announced that it now hosts `attached` and no longer hosts `detached`.
    pub fn learn(&self, node: &NodeId, attached: &[UserId], detached: &[UserId]) {
        if *node == self.node {
            return;
        }
        let Ok(mut by_node) = self.by_node.lock() else {
            return;
        };
        let set = by_node.entry(node.clone()).or_default();
        for u in attached {
            if set.insert(*u) {
                let mut e = self.remote.entry(*u).or_default();
                if !e.contains(node) {
                    e.push(node.clone());
                }
            }
        }
        for u in detached {
            if set.remove(u) {
                self.unlink(*u, node);
            }
        }
    }

    fn unlink(&self, user: UserId, node: &NodeId) {
        let empty = match self.remote.get_mut(&user) {
            Some(mut e) => {
                e.retain(|n| n != node);
                e.is_empty()
            }
            None => false,
        };
        if empty {
            self.remote.remove_if(&user, |_, v| v.is_empty());
        }
    }

    /// Replaces what the cache holds for `node` with `users` (a full refresh from Redis).
    pub fn replace(&self, node: &NodeId, users: HashSet<UserId>) {
        if *node == self.node {
            return;
        }
        let old = self
            .by_node
            .lock()
            .map(|mut m| m.remove(node).unwrap_or_default())
            .unwrap_or_default();
        for u in old.difference(&users) {
            self.unlink(*u, node);
        }
        let added: Vec<UserId> = users.into_iter().collect();
        self.learn(node, &added, &[]);
    }

    /// Forgets `node` (its registry entry expired: dead, or partitioned from Redis; or it said
    /// goodbye): its users are neither reachable nor online there.
    pub fn forget(&self, node: &NodeId) {
        self.forget_presence(node);
        let users = self
            .by_node
            .lock()
            .map(|mut m| m.remove(node).unwrap_or_default())
            .unwrap_or_default();
        for u in users {
            self.unlink(u, node);
        }
    }

    /// Who is online here and elsewhere.
    pub fn presence(&self) -> &PresenceBook {
        &self.presence
    }

    /// The presence hub's local transitions `(user, online here now)`: written to Redis and
    /// announced to every peer by the registry task, which this wakes.
    pub fn local_presence(&self, flips: &[(UserId, bool)]) {
        if self.presence.set_local(flips) {
            self.wake.notify_one();
        }
    }

    /// `node` announced presence transitions of its users.
    pub fn learn_presence(&self, node: &NodeId, online: &[UserId], offline: &[UserId]) {
        if *node != self.node && self.presence.learn(node, online, offline) {
            self.presence.wake.notify_one();
        }
    }

    /// Replaces what `node` shows online (a full refresh from Redis).
    pub fn replace_presence(&self, node: &NodeId, users: &HashSet<UserId>) {
        if *node != self.node && self.presence.replace(node, users) {
            self.presence.wake.notify_one();
        }
    }

    /// `node` went silent: its users are no longer online there (its directory entries stay
    /// until the registry says it is gone, so deliveries still try it).
    pub fn forget_presence(&self, node: &NodeId) {
        if self.presence.forget(node) {
            self.presence.wake.notify_one();
        }
    }

    /// This node committed a social write concerning `users`: every other node drops its
    /// cached facts of them (a dropped entry is a gap, which drops all cached facts).
    pub fn social_changed(&self, users: &[UserId]) {
        self.send(Outgoing::SocialChanged {
            users: users.to_vec(),
        });
    }

    /// Another node committed a social write concerning `users`.
    pub fn learn_social(&self, users: &[UserId]) {
        self.presence.social_changed(users);
        self.presence.wake.notify_one();
    }

    /// The bus may have lost a social change: every cached fact must go.
    pub fn social_lost(&self) {
        self.presence.social_lost();
        self.presence.wake.notify_one();
    }

    /// Asks the registry for a full refresh now.
    pub fn request_refresh(&self) {
        self.refresh_soon.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Takes the refresh request.
    pub fn take_refresh_request(&self) -> bool {
        self.refresh_soon.swap(false, Ordering::AcqRel)
    }

    /// Nodes the cache knows of (other than this one).
    pub fn known_nodes(&self) -> Vec<NodeId> {
        self.by_node
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// This node's id: the configured one, else the one kept in `data_dir/node.id`, else
/// `{hostname}-{port}` (written there, so a restarted node keeps its name and its peers see
/// a restart of the same node, not a new one).
pub fn node_id(
    config: &ClusterConfig,
    data_dir: &std::path::Path,
    port: u16,
) -> std::io::Result<String> {
    if let Some(id) = config.node_id.as_ref().filter(|s| !s.trim().is_empty()) {
        return Ok(id.trim().to_owned());
    }
    let path = data_dir.join("node.id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_owned());
        }
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let id = format!("{host}-{port}");
    std::fs::write(&path, &id)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_targets_parse() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:6399"),
            Ok(RedisTarget::Single("redis://127.0.0.1:6399".into()))
        );
        assert_eq!(
            RedisTarget::parse("redis+cluster://a:7000, b:7001"),
            Ok(RedisTarget::Cluster(vec![
                "redis://a:7000".into(),
                "redis://b:7001".into()
            ]))
        );
        assert_eq!(
            RedisTarget::parse("redis://a:1,redis://b:2"),
            Ok(RedisTarget::Cluster(vec![
                "redis://a:1".into(),
                "redis://b:2".into()
            ]))
        );
        assert!(RedisTarget::parse("http://a").is_err());
        assert!(RedisTarget::parse("redis+cluster://").is_err());
    }

    #[test]
    fn the_cache_follows_announcements_and_refreshes() {
        let (c, _rx) = Cluster::new("a".into(), ClusterMetrics::default());
        let b: NodeId = "b".into();
        c.learn(&b, &[UserId(1), UserId(2)], &[]);
        assert_eq!(c.remote_nodes(UserId(1)), vec![b.clone()]);
        c.learn(&"a".into(), &[UserId(3)], &[]);
        assert!(!c.is_remote(UserId(3)), "this node is never remote");
        c.replace(&b, [UserId(2), UserId(4)].into_iter().collect());
        assert!(!c.is_remote(UserId(1)));
        assert!(c.is_remote(UserId(4)));
        c.forget(&b);
        assert!(!c.is_remote(UserId(2)) && !c.is_remote(UserId(4)));
    }
}
