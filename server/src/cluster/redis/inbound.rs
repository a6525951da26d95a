//! The subscriber: this node's channel, the per-link sequence check, and the hand-over of
//! what arrives to the router.
//!
//! Every (re)subscription after the first resyncs the local devices: while unsubscribed this
//! node may have missed anything. The node also heartbeats to itself; hearing nothing at all
//! (not even itself) for [`super::BusSettings::silent_after`] means the subscription is dead
//! even if the socket is not, and it is re-established.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tern_protocol::{DeviceId, ErrorCode, UserId};
use tokio::sync::watch;

use super::{Shared, subscriber_url};
use crate::cluster::NodeId;
use crate::cluster::envelope::{Body, Envelope};
use crate::cluster::link::{LinkTable, Verdict};
use crate::presence::typing::EncodedTyping;

/// Subscribes to this node's channel and handles envelopes until stopped.
pub(super) async fn subscriber(sh: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut links = LinkTable::new(sh.settings.silent_after);
    let mut first = true;
    let mut backoff = Duration::from_millis(100);
    let channel = sh.settings.channel(&sh.settings.node);
    loop {
        let subscribed = async {
            let client = redis::Client::open(subscriber_url(&sh.settings.target))?;
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        let ps = match tokio::time::timeout(Duration::from_secs(2), subscribed).await {
            Ok(Ok(ps)) => ps,
            Ok(Err(e)) => {
                sh.redis_error("subscribe", &e);
                if sleep_or_stop(&mut stop, &mut backoff).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                sh.metrics.redis_errors.inc();
                tracing::warn!("cluster bus: subscribing took over 2 s; retrying");
                if sleep_or_stop(&mut stop, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        sh.metrics.bus_up.set(1);
        links.reset();
        if !first {
            sh.resync("the bus subscription was re-established");
        }
        first = false;
        // `send_replace`: `send` stores nothing while no receiver exists, and the registry may
        // not have subscribed yet (it would then wait for a value that never came).
        sh.subscribed.send_replace(true);
        let mut stream = ps.into_on_message();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {
                    sh.metrics.bus_up.set(0);
                    return;
                }
                m = stream.next() => match m {
                    Some(msg) => {
                        heard = Instant::now();
                        handle(&sh, &mut links, msg.get_payload_bytes());
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    let dead = links.expire(now);
                    if !dead.is_empty() {
                        sh.metrics.gaps.inc_by(dead.len() as u64);
                        for node in &dead {
                            // A silent node shows nobody online; a live one that was only
                            // partitioned is restored by the refresh after its next envelope.
                            sh.cluster.forget_presence(&NodeId::from(node.as_str()));
                        }
                        sh.resync("a peer went silent without saying goodbye");
                    }
                    if now.saturating_duration_since(heard) > sh.settings.silent_after {
                        tracing::warn!("cluster bus: nothing heard, not even this node's own heartbeat; resubscribing");
                        break;
                    }
                }
            }
        }
        sh.metrics.bus_up.set(0);
        sh.metrics.redis_errors.inc();
        sh.subscribed.send_replace(false);
        tracing::warn!("cluster bus: subscription lost; reconnecting");
    }
}

/// Sleeps for the backoff (doubling it); true if told to stop meanwhile.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    tokio::select! {
        _ = stop.wait_for(|s| *s) => true,
        _ = tokio::time::sleep(wait) => false,
    }
}

/// Checks and applies one published payload.
fn handle(sh: &Shared, links: &mut LinkTable, payload: &[u8]) {
    let env = match Envelope::decode(payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(error = %e, "cluster bus: dropped an undecodable envelope");
            return;
        }
    };
    if env.from == *sh.settings.node {
        return;
    }
    sh.metrics.envelope("received");
    let from: NodeId = Arc::from(env.from.as_str());
    let bye = matches!(env.body, Body::Bye);
    if !bye && sh.add_peer(&from) {
        // A peer we had not heard of: tell it who is here, so it can reach them at once.
        sh.greet(&from);
    }
    match links.check(
        &env.from,
        env.boot,
        env.seq,
        env.body.is_data(),
        bye,
        Instant::now(),
    ) {
        Verdict::Duplicate => return,
        Verdict::Gap => {
            sh.metrics.gaps.inc();
            sh.resync("a gap on a node link");
            // Presence transitions may have been in the gap: Redis holds every node's set.
            sh.cluster.request_refresh();
        }
        Verdict::Apply => {}
    }
    match env.body {
        Body::Updates(items) => {
            let items: Vec<(UserId, Bytes)> = items
                .into_iter()
                .map(|(u, b)| (UserId(u), Bytes::from(b)))
                .collect();
            sh.router.deliver_remote(&items);
        }
        Body::Typing {
            users,
            datagram,
            frame,
        } => {
            let typing = EncodedTyping {
                datagram: Bytes::from(datagram),
                frame: Bytes::from(frame),
            };
            for u in users {
                sh.router.post_typing_here(UserId(u), &typing);
            }
        }
        Body::CloseDevice { user, device, code } => {
            sh.router
                .close_device_here(UserId(user), DeviceId(device), ErrorCode::from(code));
        }
        Body::Announce { attached, detached } => {
            let a: Vec<UserId> = attached.into_iter().map(UserId).collect();
            let d: Vec<UserId> = detached.into_iter().map(UserId).collect();
            sh.cluster.learn(&from, &a, &d);
        }
        Body::Presence { online, offline } => {
            let on: Vec<UserId> = online.into_iter().map(UserId).collect();
            let off: Vec<UserId> = offline.into_iter().map(UserId).collect();
            sh.cluster.learn_presence(&from, &on, &off);
        }
        Body::SocialChanged { users } => {
            let users: Vec<UserId> = users.into_iter().map(UserId).collect();
            sh.cluster.learn_social(&users);
        }
        Body::Heartbeat => {}
        Body::Bye => {
            sh.cluster.forget(&from);
            sh.remove_peer(&from);
        }
    }
}
