//! Watches: the snapshot a `WatchPresence` is answered with, the per-watcher view of each
//! published change, and the background task that drives the debounce timers, the fan-out and
//! the last-seen flush.
//!
//! A change is evaluated per watcher (`social.visible(watcher, user, Online)` and `LastSeen`):
//! privacy is reciprocal and per pair, so one user's change may look different to each of
//! their watchers. What a watcher was last told is kept per (connection, watched user) in the
//! hub; a change that looks the same to it (Hidden → Hidden) is not sent.
//!
//! Ordering: a snapshot is computed outside the hub's lock, so a change may be published while
//! it is in flight. Events to a connection are held back until its snapshot answer is queued
//! (the transport calls [`PresenceService::watch_answered`]); then every watched user is
//! compared once more and anything that moved goes out as an event, after the answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_protocol::{Event, Frame, Presence, PresenceState, UserId, codec};
use tokio::sync::watch;

use super::PresenceService;
use super::debounce::Shown;
use super::hub::{MAX_IDLE_USERS, Notify};
use crate::policy::Attribute;
use crate::services::ConnRef;

/// How often changed last seen values are written to storage (one batch).
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// Users (and rechecked connections) fanned out per round of the driver, so one round's work
/// is bounded and the timers keep being served.
pub const FAN_OUT_BATCH: usize = 256;
/// The longest the driver sleeps without a deadline or a wake-up.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// Wall-clock milliseconds since the epoch (last seen is shown to people).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl PresenceService {
    /// What `watcher` may know of `user`, whose published state is `shown`.
    pub(super) async fn view(&self, watcher: UserId, user: UserId, shown: Shown) -> PresenceState {
        let social = &self.deps.social;
        if shown.online && social.visible(watcher, user, Attribute::Online).await {
            return PresenceState::Online;
        }
        match shown.last_seen_ms {
            Some(at_ms) if social.visible(watcher, user, Attribute::LastSeen).await => {
                PresenceState::LastSeen { at_ms }
            }
            _ => PresenceState::Hidden,
        }
    }

    /// `user`'s published state, with the stored last seen read first if this node has not
    /// asked storage yet (a user not seen since start).
    pub(super) async fn shown_loaded(&self, user: UserId, shown: Shown, load: bool) -> Shown {
        if !load {
            return shown;
        }
        let stored = match self.deps.storage.last_seen(user).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "reading a last seen failed; shown as unknown");
                None
            }
        };
        self.hub.learn_stored(user, stored).unwrap_or(shown)
    }

    /// The snapshot of `users` for `conn` (whose watch set was just replaced).
    pub(super) async fn snapshot(
        &self,
        watcher: UserId,
        conn: ConnRef,
        watched: Vec<(UserId, Shown, bool)>,
    ) -> Vec<Presence> {
        let mut out = Vec::with_capacity(watched.len());
        let mut views = Vec::with_capacity(watched.len());
        for (user, shown, load) in watched {
            let shown = self.shown_loaded(user, shown, load).await;
            let state = self.view(watcher, user, shown).await;
            views.push((user, state));
            out.push(Presence {
                user_id: user,
                state,
            });
        }
        self.hub.set_views(conn, &views);
        out
    }

    /// Sends each watcher in `work` its view of the user, if that view changed.
    async fn fan_out(&self, work: Vec<Notify>) {
        for n in work {
            let shown = if self.hub.needs_load(n.user) {
                self.shown_loaded(n.user, n.shown, true).await
            } else {
                n.shown
            };
            for (conn, watcher) in n.watchers {
                let state = self.view(watcher, n.user, shown).await;
                let Some(watcher) = self.hub.commit_view(conn, n.user, state) else {
                    continue;
                };
                let frame = Frame::Event(Event::Presence(Presence {
                    user_id: n.user,
                    state,
                }));
                match codec::encode_to_vec(&frame) {
                    Ok(bytes) => self
                        .deps
                        .router
                        .post_presence(conn, watcher, Bytes::from(bytes)),
                    Err(e) => tracing::error!(error = %e, "a presence event did not encode"),
                }
            }
        }
    }

    /// Writes the changed last seen values to storage in one batch (off the commit path: the
    /// storage method does not fsync per value). A failed write keeps them for the next flush.
    pub async fn flush_last_seen(&self) {
        let rows = self.hub.take_unsaved();
        if rows.is_empty() {
            return;
        }
        if let Err(e) = self.deps.storage.save_last_seen(rows.clone()).await {
            tracing::warn!(error = %e, rows = rows.len(), "saving last seen failed; retried later");
            self.hub.restore_unsaved(rows);
        }
    }

    /// Cluster mode: hands this node's transitions to the bus and takes the other nodes', and
    /// applies their social writes (all in memory; the bus tasks do the network). Outside
    /// cluster mode the flips are dropped.
    fn exchange_with_cluster(&self) {
        let flips = self.hub.take_local_flips();
        let Some(cluster) = self.deps.router.cluster() else {
            return;
        };
        if !flips.is_empty() {
            cluster.local_presence(&flips);
        }
        let remote = cluster.presence().take_dirty();
        if !remote.is_empty() {
            self.hub.set_remote(&remote, Instant::now(), wall_ms());
        }
        // Other nodes' social writes: the facts they invalidate go, the views are redone.
        let (users, all) = cluster.presence().take_social();
        if all {
            self.deps.social.forget_all_facts();
            self.hub.reconsider_all();
        } else if !users.is_empty() {
            self.deps.social.forget_facts(&users);
            self.hub.reconsider(&users);
        }
    }

    /// One round of the driver: publish what is due, fan out a bounded batch. True if work is
    /// left for another round at once.
    async fn round(&self) -> bool {
        self.exchange_with_cluster();
        self.hub.poll(Instant::now());
        let (notify, recheck, more) = self.hub.take_work(FAN_OUT_BATCH);
        let published = self.hub.take_published_count();
        self.deps.metrics.presence_changes.inc_by(published);
        self.fan_out(notify).await;
        self.fan_out(recheck).await;
        self.deps
            .metrics
            .presence_watched_users
            .set(self.hub.watched_users() as i64);
        more
    }

    /// Starts the background task: debounce timers, fan-out and the last-seen flush, until
    /// `stop` turns true (then it flushes once more and returns).
    pub fn spawn_driver(
        self: &Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let svc = self.clone();
        tokio::spawn(async move {
            let mut flush = tokio::time::interval(FLUSH_EVERY);
            flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                if *stop.borrow() {
                    break;
                }
                let more = svc.round().await;
                if more {
                    tokio::task::yield_now().await;
                    continue;
                }
                let wake = svc
                    .hub
                    .next_deadline()
                    .unwrap_or_else(|| Instant::now() + IDLE_WAKE);
                let remote = async {
                    match svc.deps.router.cluster() {
                        Some(c) => c.presence().wake.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    changed = stop.changed() => if changed.is_err() { break },
                    _ = svc.wake.notified() => {}
                    _ = remote => {}
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
                    _ = flush.tick() => {
                        svc.flush_last_seen().await;
                        svc.hub.evict(Instant::now(), MAX_IDLE_USERS);
                    }
                }
            }
            svc.flush_last_seen().await;
        })
    }
}
