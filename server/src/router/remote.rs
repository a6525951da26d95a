//! The router's cluster side: what leaves for other nodes, and what arrives from them.
//!
//! Outbound, `UpdateSink::committed` collects the encoded frames of one commit per remote node
//! ([`Batch`]) and hands each node's batch to the bus outbox as one entry: one envelope per
//! node per commit. Inbound, the bus hands the router frames for local users, which go into
//! the same bounded shard mailboxes as local deliveries, with the same overflow behaviour.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tern_protocol::UserId;

use super::Router;
use crate::cluster::{Cluster, NodeId, Outgoing};
use crate::presence::typing::EncodedTyping;

/// One commit's frames for other nodes, grouped by node (in commit order within a node).
#[derive(Debug, Default)]
pub(super) struct Batch {
    by_node: HashMap<NodeId, Vec<(UserId, Bytes)>>,
}

impl Batch {
    /// Adds `frame` for `user` to the batch of each of `nodes`.
    pub(super) fn add(&mut self, nodes: Vec<NodeId>, user: UserId, frame: &Bytes) {
        for node in nodes {
            self.by_node
                .entry(node)
                .or_default()
                .push((user, frame.clone()));
        }
    }

    /// Queues one entry per node on the bus (never waits).
    pub(super) fn send(self, cluster: &Cluster) {
        for (node, items) in self.by_node {
            cluster.send(Outgoing::Updates { node, items });
        }
    }
}

/// Sends a typing indicator to the other nodes hosting `user`, unless the outbox is over half
/// full: typing is dropped first, as in the shard mailboxes.
pub(super) fn forward_typing(cluster: &Cluster, user: UserId, typing: &EncodedTyping) {
    let nodes = cluster.remote_nodes(user);
    if nodes.is_empty() {
        return;
    }
    if cluster.busy() {
        return;
    }
    for node in nodes {
        cluster.send(Outgoing::Typing {
            node,
            users: vec![user],
            datagram: typing.datagram.clone(),
            frame: typing.frame.clone(),
        });
    }
}

impl Router {
    /// Turns on cluster mode (once, before the shards start).
    pub fn set_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The cluster handle, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// Committed updates from another node for users of this one: into the local shards'
    /// mailboxes like local ones (a full mailbox resyncs the user).
    pub fn deliver_remote(&self, items: &[(UserId, Bytes)]) {
        let now = Instant::now();
        for (user, frame) in items {
            self.post(*user, frame, now);
        }
    }

    /// Users with at least one connection on this node.
    pub fn local_users(&self) -> Vec<UserId> {
        self.directory.iter().map(|e| *e.key()).collect()
    }

    /// Whether `user` has a connection on this node (not asking the cluster).
    pub fn is_local(&self, user: UserId) -> bool {
        self.directory.contains_key(&user)
    }

    /// Marks every local user for resync (the bus lost something, or may have): each shard
    /// closes their connections with `SlowConsumer` and the devices reconnect and sync from
    /// storage, exactly as after a mailbox overflow. Returns how many users were marked.
    pub fn resync_all(&self) -> usize {
        let mut n = 0;
        for entry in self.directory.iter() {
            n += 1;
            for (shard, _) in entry.value() {
                if let Some(link) = self.shards.get(*shard) {
                    Self::mark_overflow(link, *entry.key());
                }
            }
        }
        n
    }
}
