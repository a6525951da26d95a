//! The publisher (outbox -> per-link sequenced envelopes -> `PUBLISH`) and the registry
//! (heartbeat, directory writes, announcements, full refresh, re-registration after Redis lost
//! us).
//!
//! Both fail open: with Redis down the publisher drops what it cannot publish (its sequence
//! numbers are spent, so receivers see the gap once Redis is back) and the registry retries
//! with backoff; local delivery never waits for either.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::RedisResult;
use tern_protocol::UserId;
use tokio::sync::{mpsc, watch};

use super::{Conn, Ctl, Shared};
use crate::cluster::envelope::Body;
use crate::cluster::{NodeId, Outgoing};

/// Longest wait between two attempts while Redis is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Users per `SADD`.
const CHUNK: usize = 1_000;

impl Conn {
    /// Publishes `msgs` (channel, payload) in one round trip where the connection allows it.
    async fn publish_all(&mut self, msgs: &[(String, Vec<u8>)]) -> RedisResult<()> {
        match self {
            Conn::Single(c) => {
                let mut p = redis::pipe();
                for (ch, payload) in msgs {
                    p.cmd("PUBLISH").arg(ch).arg(payload).ignore();
                }
                p.query_async::<()>(c).await
            }
            Conn::Cluster(_) => {
                for (ch, payload) in msgs {
                    self.run::<i64>(redis::cmd("PUBLISH").arg(ch).arg(payload))
                        .await?;
                }
                Ok(())
            }
        }
    }
}

/// Per-link sequence numbers and the envelopes of one round.
struct Links<'a> {
    sh: &'a Shared,
    seqs: HashMap<NodeId, u64>,
    msgs: Vec<(String, Vec<u8>)>,
}

impl Links<'_> {
    fn data(&mut self, to: &NodeId, body: Body) {
        let seq = self.seqs.entry(to.clone()).or_insert(0);
        *seq += 1;
        let seq = *seq;
        self.push(to, seq, body);
    }

    fn control(&mut self, to: &NodeId, body: Body) {
        let seq = self.seqs.get(to).copied().unwrap_or(0);
        self.push(to, seq, body);
    }

    fn push(&mut self, to: &NodeId, seq: u64, body: Body) {
        if let Some(bytes) = self.sh.envelope(seq, body) {
            self.msgs.push((self.sh.settings.channel(to), bytes));
        }
    }

    fn outgoing(&mut self, o: Outgoing) {
        match o {
            Outgoing::Updates { node, items } => {
                let items = items.into_iter().map(|(u, b)| (u.0, b.to_vec())).collect();
                self.data(&node, Body::Updates(items));
            }
            Outgoing::Typing {
                node,
                users,
                datagram,
                frame,
            } => {
                let body = Body::Typing {
                    users: users.into_iter().map(|u| u.0).collect(),
                    datagram: datagram.to_vec(),
                    frame: frame.to_vec(),
                };
                self.data(&node, body);
            }
            Outgoing::SocialChanged { users } => {
                let users: Vec<u64> = users.into_iter().map(|u| u.0).collect();
                for peer in self.sh.peers() {
                    self.data(
                        &peer,
                        Body::SocialChanged {
                            users: users.clone(),
                        },
                    );
                }
            }
            Outgoing::CloseDevice { user, device, code } => {
                for peer in self.sh.peers() {
                    let body = Body::CloseDevice {
                        user: user.0,
                        device: device.0,
                        code: code.as_u16(),
                    };
                    self.data(&peer, body);
                }
            }
        }
    }
}

/// Publishes everything the router and the registry hand over, and a heartbeat per link
/// (and to this node itself, so its subscriber notices a dead subscription).
pub(super) async fn publisher(
    sh: Arc<Shared>,
    mut outbox: mpsc::Receiver<Outgoing>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
) {
    let mut links = Links {
        sh: &sh,
        seqs: HashMap::new(),
        msgs: Vec::new(),
    };
    let mut conn: Option<Conn> = None;
    let mut retry_at = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let mut tick = tokio::time::interval(sh.settings.link_heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(64);
    let mut done = None;
    loop {
        tokio::select! {
            biased;
            c = ctl.recv() => match c {
                None => return,
                Some(Ctl::Bye(tx)) => {
                    for peer in sh.peers() {
                        links.control(&peer, Body::Bye);
                    }
                    done = Some(tx);
                }
                Some(Ctl::Announce { to, attached, detached }) => {
                    let targets = to.map(|t| vec![t]).unwrap_or_else(|| sh.peers());
                    for t in targets {
                        let body = Body::Announce { attached: attached.clone(), detached: detached.clone() };
                        links.data(&t, body);
                    }
                }
                Some(Ctl::Presence { to, online, offline }) => {
                    let targets = to.map(|t| vec![t]).unwrap_or_else(|| sh.peers());
                    for t in targets {
                        let body = Body::Presence { online: online.clone(), offline: offline.clone() };
                        links.data(&t, body);
                    }
                }
            },
            n = outbox.recv_many(&mut batch, 64) => {
                if n == 0 {
                    return;
                }
                for o in batch.drain(..) {
                    links.outgoing(o);
                }
            }
            _ = tick.tick() => {
                let me = sh.settings.node.clone();
                links.control(&me, Body::Heartbeat);
                for peer in sh.peers() {
                    links.control(&peer, Body::Heartbeat);
                }
            }
        }
        if sh.cluster.take_lost() {
            // Something was dropped before it had a number: skip one on every link, so every
            // receiver sees a gap and resyncs.
            for seq in links.seqs.values_mut() {
                *seq += 1;
            }
        }
        let msgs = std::mem::take(&mut links.msgs);
        if !msgs.is_empty() && Instant::now() >= retry_at {
            if conn.is_none() {
                match tokio::time::timeout(Duration::from_secs(2), Conn::open(&sh.settings.target))
                    .await
                {
                    Ok(Ok(c)) => conn = Some(c),
                    Ok(Err(e)) => sh.redis_error("connect (publisher)", &e),
                    Err(_) => {
                        sh.metrics.redis_errors.inc();
                    }
                }
            }
            if let Some(c) = conn.as_mut() {
                match c.publish_all(&msgs).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        for _ in &msgs {
                            sh.metrics.envelope("published");
                        }
                    }
                    Err(e) => {
                        sh.redis_error("publish", &e);
                        retry_at = Instant::now() + backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            } else {
                retry_at = Instant::now() + backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        if let Some(tx) = done.take() {
            let _ = tx.send(());
            return;
        }
    }
}

/// Registers the node, keeps its entries alive, writes directory changes, refreshes the cache,
/// and re-registers (and resyncs local devices) after Redis lost it or failed.
pub(super) async fn registry(sh: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut subscribed = sh.subscribed.subscribe();
    tokio::select! {
        _ = subscribed.wait_for(|s| *s) => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    let mut conn: Option<Conn> = None;
    let mut registered = false;
    let mut ever = false;
    let mut backoff = Duration::from_millis(100);
    let mut next_refresh = Instant::now();
    loop {
        let round = async {
            if conn.is_none() {
                conn = Some(Conn::open(&sh.settings.target).await?);
            }
            let Some(c) = conn.as_mut() else {
                return Ok(false);
            };
            if !registered {
                register(&sh, c).await?;
                refresh(&sh, c).await?;
                next_refresh = Instant::now() + sh.settings.refresh;
                let all: Vec<u64> = sh.router.local_users().into_iter().map(|u| u.0).collect();
                // Devices that attached before the first registration were unknown to the
                // other nodes, which sent them nothing: they resync like after a Redis loss.
                let early = !ever && !all.is_empty();
                let _ = sh.ctl.send(Ctl::Announce {
                    to: None,
                    attached: all,
                    detached: Vec::new(),
                });
                if early {
                    sh.resync("devices attached before this node was registered");
                }
                if ever {
                    // Other nodes could not reach our users while Redis had lost us.
                    sh.resync("Redis lost this node's registration or failed");
                }
                registered = true;
                ever = true;
                return Ok(true);
            }
            let ttl = sh.settings.node_ttl.as_millis() as u64;
            let alive: Option<String> = c
                .run(
                    redis::cmd("SET")
                        .arg(sh.settings.alive_key(&sh.settings.node))
                        .arg(&sh.settings.advertise)
                        .arg("PX")
                        .arg(ttl)
                        .arg("XX"),
                )
                .await?;
            if alive.is_none() {
                tracing::warn!(
                    "cluster bus: this node's registry entry vanished (Redis restarted empty or flushed?); registering again"
                );
                registered = false;
                return Ok(false);
            }
            flush_changes(&sh, c).await?;
            flush_presence(&sh, c).await?;
            if Instant::now() >= next_refresh || sh.cluster.take_refresh_request() {
                refresh(&sh, c).await?;
                next_refresh = Instant::now() + sh.settings.refresh;
            }
            Ok::<bool, redis::RedisError>(true)
        };
        let wait = match round.await {
            Ok(true) => {
                backoff = Duration::from_millis(100);
                sh.settings.heartbeat
            }
            Ok(false) => Duration::ZERO,
            Err(e) => {
                sh.redis_error("registry", &e);
                registered = false;
                let b = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                b
            }
        };
        let stopped = tokio::select! {
            r = stop.wait_for(|s| *s) => r.is_ok(),
            _ = tokio::time::sleep(wait) => false,
            _ = sh.cluster.wake.notified(), if registered => false,
        };
        if stopped || stop.has_changed().is_err() {
            if let Some(c) = conn.as_mut() {
                let _ = deregister(&sh, c).await;
            }
            return;
        }
    }
}

async fn register(sh: &Shared, c: &mut Conn) -> RedisResult<()> {
    let s = &sh.settings;
    let ttl = s.node_ttl.as_millis() as u64;
    let _ = sh.cluster.take_changed();
    c.run::<()>(
        redis::cmd("SET")
            .arg(s.alive_key(&s.node))
            .arg(&s.advertise)
            .arg("PX")
            .arg(ttl),
    )
    .await?;
    c.run::<i64>(redis::cmd("SADD").arg(s.nodes_key()).arg(&*s.node))
        .await?;
    let users = ids(sh.router.local_users());
    replace_set(c, &s.users_key(&s.node), &users, s.node_ttl).await?;
    let online = ids(sh.cluster.presence().local_online());
    replace_set(c, &s.online_key(&s.node), &online, s.node_ttl).await?;
    tracing::info!(node = %s.node, users = users.len(), online = online.len(), "cluster bus: registered");
    Ok(())
}

async fn deregister(sh: &Shared, c: &mut Conn) -> RedisResult<()> {
    let s = &sh.settings;
    c.run::<i64>(redis::cmd("DEL").arg(s.alive_key(&s.node)))
        .await?;
    c.run::<i64>(redis::cmd("DEL").arg(s.users_key(&s.node)))
        .await?;
    c.run::<i64>(redis::cmd("DEL").arg(s.online_key(&s.node)))
        .await?;
    c.run::<i64>(redis::cmd("SREM").arg(s.nodes_key()).arg(&*s.node))
        .await?;
    Ok(())
}

/// Adds `add` to and removes `remove` from the set at `key`, and refreshes its TTL.
async fn write_set(
    c: &mut Conn,
    key: &str,
    add: &[u64],
    remove: &[u64],
    ttl: Duration,
) -> RedisResult<()> {
    for chunk in add.chunks(CHUNK) {
        c.run::<i64>(redis::cmd("SADD").arg(key).arg(chunk)).await?;
    }
    for chunk in remove.chunks(CHUNK) {
        c.run::<i64>(redis::cmd("SREM").arg(key).arg(chunk)).await?;
    }
    c.run::<i64>(redis::cmd("PEXPIRE").arg(key).arg(ttl.as_millis() as u64))
        .await?;
    Ok(())
}

/// Replaces the set at `key` with `members` (with a TTL).
async fn replace_set(c: &mut Conn, key: &str, members: &[u64], ttl: Duration) -> RedisResult<()> {
    c.run::<i64>(redis::cmd("DEL").arg(key)).await?;
    write_set(c, key, members, &[], ttl).await
}

fn ids(users: impl IntoIterator<Item = UserId>) -> Vec<u64> {
    users.into_iter().map(|u| u.0).collect()
}

/// Writes the users whose first connection attached or last detached since the last round,
/// announces them to every peer, and refreshes the user set's TTL.
async fn flush_changes(sh: &Shared, c: &mut Conn) -> RedisResult<()> {
    let s = &sh.settings;
    let (attached, detached): (Vec<UserId>, Vec<UserId>) = sh
        .cluster
        .take_changed()
        .into_iter()
        .partition(|u| sh.router.is_local(*u));
    let (attached, detached) = (ids(attached), ids(detached));
    write_set(c, &s.users_key(&s.node), &attached, &detached, s.node_ttl).await?;
    if !attached.is_empty() || !detached.is_empty() {
        let _ = sh.ctl.send(Ctl::Announce {
            to: None,
            attached,
            detached,
        });
    }
    Ok(())
}

/// Writes and announces the presence transitions the hub reported since the last round, and
/// refreshes the online set's TTL. The set in Redis is what a refresh of every other node
/// reads, so a transition whose envelope was lost still arrives within a refresh.
async fn flush_presence(sh: &Shared, c: &mut Conn) -> RedisResult<()> {
    let s = &sh.settings;
    let (online, offline) = sh.cluster.presence().take_local_changes();
    let (online, offline) = (ids(online), ids(offline));
    write_set(c, &s.online_key(&s.node), &online, &offline, s.node_ttl).await?;
    if !online.is_empty() || !offline.is_empty() {
        let _ = sh.ctl.send(Ctl::Presence {
            to: None,
            online,
            offline,
        });
    }
    Ok(())
}

/// Rebuilds the directory cache from Redis: live nodes and their user sets. Dead nodes (no
/// `alive` key) are pruned from the node set and forgotten.
async fn refresh(sh: &Shared, c: &mut Conn) -> RedisResult<()> {
    let s = &sh.settings;
    let nodes: Vec<String> = c.run(redis::cmd("SMEMBERS").arg(s.nodes_key())).await?;
    let mut live = HashSet::new();
    for n in nodes {
        if *n == *s.node {
            continue;
        }
        let node: NodeId = Arc::from(n.as_str());
        let alive: Option<String> = c.run(redis::cmd("GET").arg(s.alive_key(&n))).await?;
        if alive.is_none() {
            c.run::<i64>(redis::cmd("SREM").arg(s.nodes_key()).arg(&n))
                .await?;
            continue;
        }
        let users: Vec<u64> = c.run(redis::cmd("SMEMBERS").arg(s.users_key(&n))).await?;
        sh.cluster
            .replace(&node, users.into_iter().map(UserId).collect());
        let online: Vec<u64> = c.run(redis::cmd("SMEMBERS").arg(s.online_key(&n))).await?;
        sh.cluster
            .replace_presence(&node, &online.into_iter().map(UserId).collect());
        if sh.add_peer(&node) {
            // A node we had not heard of: tell it who is here.
            sh.greet(&node);
        }
        live.insert(node);
    }
    for node in sh.cluster.known_nodes().into_iter().chain(sh.peers()) {
        if !live.contains(&node) {
            sh.cluster.forget(&node);
            sh.remove_peer(&node);
        }
    }
    Ok(())
}
