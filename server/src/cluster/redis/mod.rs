//! The only code that speaks to Redis (invariant 2): the node registry, the user directory,
//! and the node -> node pub/sub links.
//!
//! Keys (`{prefix}` defaults to `tern`; the `{node}` hash tag keeps a node's keys in one slot
//! of a Redis Cluster):
//! - `{prefix}:{node}:alive`: the registry entry, `advertise` address as the value, TTL
//!   [`BusSettings::node_ttl`], refreshed every [`BusSettings::heartbeat`] with `SET … XX`: a
//!   refresh that finds the key gone means Redis lost it (restarted empty, flushed, or this
//!   node was cut off longer than the TTL), and the node registers everything again;
//! - `{prefix}:{node}:users`: the set of users with a connection on the node (added when the
//!   first connection attaches, removed when the last detaches), same TTL, so a killed node's
//!   directory vanishes with it;
//! - `{prefix}:{node}:online`: the users with a foreground connection on the node (presence;
//!   same TTL), read by every refresh so a lost presence envelope heals;
//! - `{prefix}:nodes`: the set of node ids, pruned of ids whose `alive` key is gone.
//!
//! Channel `{prefix}:ch:{node}` carries the [`Envelope`]s for one node (pub/sub is not
//! sharded, so it works the same on Redis Cluster). Commands go through a
//! [`redis::aio::ConnectionManager`] (one server) or a cluster connection (Redis Cluster); the
//! subscriber uses its own connection to one server (for a cluster, the first seed: classic
//! pub/sub messages reach every cluster node).
//!
//! The tasks live in [`tasks`]; the receiving side in [`inbound`].

pub mod auth_state;
pub mod budget;
mod inbound;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, RedisResult};
use tokio::sync::{mpsc, watch};

use super::envelope::Envelope;
use super::{Cluster, ClusterMetrics, NodeId, RedisTarget};
use crate::router::Router;

/// How the bus runs; the defaults are what `--cluster-redis` uses.
#[derive(Debug, Clone)]
pub struct BusSettings {
    /// This node's id.
    pub node: NodeId,
    /// Where Redis is.
    pub target: RedisTarget,
    /// The QUIC address clients of this node use (stored in the registry).
    pub advertise: String,
    /// Key and channel prefix (tests use their own).
    pub prefix: String,
    /// Registry heartbeat and change flush interval.
    pub heartbeat: Duration,
    /// TTL of the registry entry and the user set.
    pub node_ttl: Duration,
    /// Per-link heartbeat interval (tail-loss detection).
    pub link_heartbeat: Duration,
    /// A link silent this long without a `Bye` is a dead sender.
    pub silent_after: Duration,
    /// Full refresh of the directory cache.
    pub refresh: Duration,
}

impl BusSettings {
    /// The defaults for `node` on `target`.
    pub fn new(node: NodeId, target: RedisTarget, advertise: String) -> Self {
        BusSettings {
            node,
            target,
            advertise,
            prefix: "tern".into(),
            heartbeat: Duration::from_secs(2),
            node_ttl: Duration::from_secs(6),
            link_heartbeat: Duration::from_secs(1),
            silent_after: Duration::from_secs(4),
            refresh: Duration::from_secs(10),
        }
    }

    fn alive_key(&self, node: &str) -> String {
        format!("{}:{{{node}}}:alive", self.prefix)
    }

    fn users_key(&self, node: &str) -> String {
        format!("{}:{{{node}}}:users", self.prefix)
    }

    fn online_key(&self, node: &str) -> String {
        format!("{}:{{{node}}}:online", self.prefix)
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    fn channel(&self, node: &str) -> String {
        format!("{}:ch:{node}", self.prefix)
    }
}

/// The bus could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The Redis URL or client setup was refused.
    #[error("cluster bus: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A command connection to one Redis or to a Redis Cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server, reconnecting by itself.
    Single(ConnectionManager),
    /// Redis Cluster.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Single(_) => "Conn::Single",
            Conn::Cluster(_) => "Conn::Cluster",
        })
    }
}

impl Conn {
    async fn open(target: &RedisTarget) -> RedisResult<Conn> {
        Ok(match target {
            RedisTarget::Single(url) => {
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(2));
                let client = redis::Client::open(url.as_str())?;
                Conn::Single(ConnectionManager::new_with_config(client, cfg).await?)
            }
            RedisTarget::Cluster(seeds) => {
                let client = redis::cluster::ClusterClient::builder(seeds.clone())
                    .connection_timeout(Duration::from_secs(2))
                    .response_timeout(Duration::from_secs(2))
                    .build()?;
                Conn::Cluster(client.get_async_connection().await?)
            }
        })
    }

    /// Runs one command.
    pub(crate) async fn run<T: FromRedisValue>(&mut self, cmd: &redis::Cmd) -> RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

/// The URL the subscriber connects to.
fn subscriber_url(target: &RedisTarget) -> &str {
    match target {
        RedisTarget::Single(u) => u,
        RedisTarget::Cluster(seeds) => seeds.first().map(String::as_str).unwrap_or_default(),
    }
}

/// Control messages for the publisher that must not be dropped with the bounded outbox.
#[derive(Debug)]
pub(crate) enum Ctl {
    /// Announce users to `to` (every peer when `None`).
    Announce {
        to: Option<NodeId>,
        attached: Vec<u64>,
        detached: Vec<u64>,
    },
    /// Announce presence transitions to `to` (every peer when `None`).
    Presence {
        to: Option<NodeId>,
        online: Vec<u64>,
        offline: Vec<u64>,
    },
    /// Publish `Bye` to every peer, then stop.
    Bye(tokio::sync::oneshot::Sender<()>),
}

/// State the bus tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: BusSettings,
    pub(crate) boot: u64,
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) router: Arc<Router>,
    pub(crate) metrics: ClusterMetrics,
    /// Nodes to send heartbeats, announcements and revocations to.
    pub(crate) peers: Mutex<HashSet<NodeId>>,
    pub(crate) ctl: mpsc::UnboundedSender<Ctl>,
    /// True while the subscriber is subscribed; the registry announces nothing before.
    pub(crate) subscribed: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn peers(&self) -> Vec<NodeId> {
        self.peers
            .lock()
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn add_peer(&self, node: &NodeId) -> bool {
        *node != self.settings.node && self.peers.lock().is_ok_and(|mut p| p.insert(node.clone()))
    }

    pub(crate) fn remove_peer(&self, node: &NodeId) {
        if let Ok(mut p) = self.peers.lock() {
            p.remove(node);
        }
    }

    /// Marks every local user for resync (counted).
    pub(crate) fn resync(&self, why: &str) {
        let users = self.router.resync_all();
        // Whatever was lost may have included a social write (a block, a privacy change).
        self.cluster.social_lost();
        self.metrics.resyncs.inc();
        tracing::warn!(why, users, "cluster bus: local devices resync from storage");
    }

    /// Tells a peer this node had not heard of who is here and who is online here.
    pub(crate) fn greet(&self, node: &NodeId) {
        let all: Vec<u64> = self.router.local_users().into_iter().map(|u| u.0).collect();
        let _ = self.ctl.send(Ctl::Announce {
            to: Some(node.clone()),
            attached: all,
            detached: Vec::new(),
        });
        let online = self.cluster.presence().local_online();
        let online: Vec<u64> = online.into_iter().map(|u| u.0).collect();
        let _ = self.ctl.send(Ctl::Presence {
            to: Some(node.clone()),
            online,
            offline: Vec::new(),
        });
    }

    pub(crate) fn redis_error(&self, what: &str, e: &redis::RedisError) {
        self.metrics.redis_errors.inc();
        tracing::warn!(what, error = %e, "cluster bus: Redis operation failed");
    }

    fn envelope(&self, seq: u64, body: super::envelope::Body) -> Option<Vec<u8>> {
        Envelope {
            from: self.settings.node.to_string(),
            boot: self.boot,
            seq,
            body,
        }
        .encode()
        .ok()
    }
}

/// A running bus: its tasks and the way to stop them.
#[derive(Debug)]
pub struct Bus {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn boot_id() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u64::from_le_bytes(b)
}

impl Bus {
    /// Turns on cluster mode for `router` and starts the bus tasks. Returns at once even when
    /// Redis is down (the node then runs alone and keeps retrying); only a malformed URL fails.
    pub fn start(
        settings: BusSettings,
        router: Arc<Router>,
        metrics: ClusterMetrics,
    ) -> Result<Bus, BusError> {
        // Refuse a bad URL now rather than retrying it forever.
        match &settings.target {
            RedisTarget::Single(u) => drop(redis::Client::open(u.as_str())?),
            RedisTarget::Cluster(seeds) => drop(redis::cluster::ClusterClient::new(seeds.clone())?),
        }
        let (cluster, outbox) = Cluster::new(settings.node.clone(), metrics.clone());
        router.set_cluster(cluster.clone());
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            settings,
            boot: boot_id(),
            cluster,
            router,
            metrics,
            peers: Mutex::new(HashSet::new()),
            ctl,
            subscribed: watch::channel(false).0,
        });
        let (stop, stop_rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(tasks::publisher(shared.clone(), outbox, ctl_rx)),
            tokio::spawn(inbound::subscriber(shared.clone(), stop_rx.clone())),
            tokio::spawn(tasks::registry(shared.clone(), stop_rx)),
        ];
        Ok(Bus {
            shared,
            stop,
            tasks,
        })
    }

    /// The router-facing handle.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.shared.cluster
    }

    /// This node's peers as the bus knows them now.
    pub fn peers(&self) -> Vec<NodeId> {
        self.shared.peers()
    }

    /// Stops every task at once, saying nothing: a `kill -9` as the peers see it.
    #[cfg(test)]
    pub(crate) fn kill(self) {
        for t in self.tasks {
            t.abort();
        }
    }

    /// Clean stop: `Bye` to every peer (so they know no tail is missing), the registry entry
    /// and user set removed, tasks ended. Bounded: gives up after two seconds.
    pub async fn shutdown(self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.shared.ctl.send(Ctl::Bye(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}
