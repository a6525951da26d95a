//! The presence hub: this node's in-memory truth about who is online, who watches whom, and what
//! each watching connection was last told.
//!
//! One mutex guards it. It holds presence state only, never connection state: connections stay
//! on their shards and are reached through the router (a watcher is named by its [`ConnRef`]).
//! Every operation is O(watch set) at worst (≤ `max_watch`), so shard threads that report a
//! connect or disconnect hold the lock for microseconds; the slow parts (privacy checks,
//! storage reads) run outside it, and their results are committed with a compare-and-set
//! ([`Hub::commit_view`]) so nothing is sent twice or out of date.
//!
//! In cluster mode a user is online if they have a foreground connection here *or* another
//! node shows them online ([`Hub::set_remote`], fed from `cluster::presence`); the OR of the
//! two is what the debounce sees. This node's own transitions (first foreground connection,
//! last one gone) are collected for the bus ([`Hub::take_local_flips`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tern_protocol::{PresenceState, UserId};

use super::debounce::{Debounce, Shown};
use crate::services::ConnRef;

/// Users kept in memory while idle (offline, settled, unwatched) before they are forgotten and
/// re-read from storage when next needed.
pub const MAX_IDLE_USERS: usize = 100_000;

#[derive(Debug)]
struct UserEntry {
    debounce: Debounce,
    /// Foreground authenticated connections.
    foreground: u32,
    /// Whether storage was asked for the last seen of a user not seen since start.
    loaded: bool,
}

#[derive(Debug)]
struct ConnEntry {
    user: UserId,
    foreground: bool,
    /// Watched users and the view last sent (`None` until the snapshot is computed).
    watches: HashMap<UserId, Option<PresenceState>>,
    /// The snapshot answer has been queued: events may follow it.
    ready: bool,
}

#[derive(Debug, Default)]
struct State {
    users: HashMap<UserId, UserEntry>,
    conns: HashMap<ConnRef, ConnEntry>,
    watchers: HashMap<UserId, HashSet<ConnRef>>,
    /// Each user's connections (for [`Hub::reconsider`]).
    by_user: HashMap<UserId, Vec<ConnRef>>,
    timers: BTreeSet<(Instant, UserId)>,
    /// Users whose published state changed and whose watchers must hear of it.
    dirty: HashSet<UserId>,
    /// Connections whose snapshot just went out: compare each watched view once more.
    recheck: HashSet<ConnRef>,
    /// Last seen values not yet written to storage.
    unsaved: HashMap<UserId, u64>,
    /// Changes published since the last call to `take_published_count`.
    published: u64,
    /// Users another node shows online (cluster mode; empty otherwise).
    remote: HashSet<UserId>,
    /// Users whose local foreground count crossed zero since the last `take_local_flips`.
    local_flips: HashSet<UserId>,
}

/// One piece of fan-out work: a watched user's state and who should be told.
#[derive(Debug)]
pub struct Notify {
    /// The watched user.
    pub user: UserId,
    /// Their published state.
    pub shown: Shown,
    /// Each ready watching connection and its user.
    pub watchers: Vec<(ConnRef, UserId)>,
}

/// Counts, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubStats {
    /// Authenticated connections known.
    pub connections: usize,
    /// Distinct users watched by at least one connection.
    pub watched_users: usize,
    /// Users with at least one foreground connection.
    pub online_users: usize,
    /// Users held in memory.
    pub users: usize,
}

/// The hub. See the module docs.
#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    interval: Duration,
}

impl State {
    fn entry(&mut self, user: UserId) -> &mut UserEntry {
        let remote = self.remote.contains(&user);
        self.users.entry(user).or_insert_with(|| UserEntry {
            debounce: if remote {
                Debounce::new_online()
            } else {
                Debounce::new(None)
            },
            foreground: 0,
            loaded: false,
        })
    }

    /// Online as watchers should see it: here, or on another node.
    fn online(&self, user: UserId) -> bool {
        self.remote.contains(&user) || self.users.get(&user).is_some_and(|e| e.foreground > 0)
    }

    /// Runs `f` on `user`'s debounce and keeps the timer set, the dirty set and the unsaved
    /// last seen in step with what it did.
    fn update(&mut self, user: UserId, f: impl FnOnce(&mut Debounce) -> Option<Shown>) {
        let e = self.entry(user);
        let before = e.debounce.deadline();
        let last_seen = e.debounce.actual().last_seen_ms;
        let published = f(&mut e.debounce);
        let after = e.debounce.deadline();
        let new_last_seen = e.debounce.actual().last_seen_ms;
        if before != after {
            if let Some(d) = before {
                self.timers.remove(&(d, user));
            }
            if let Some(d) = after {
                self.timers.insert((d, user));
            }
        }
        if let Some(at) = new_last_seen
            && new_last_seen != last_seen
        {
            self.unsaved.insert(user, at);
        }
        if published.is_some() {
            self.published += 1;
            self.dirty.insert(user);
        }
    }

    fn unwatch_all(&mut self, conn: ConnRef) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        for (user, _) in c.watches.drain() {
            if let Some(set) = self.watchers.get_mut(&user) {
                set.remove(&conn);
                if set.is_empty() {
                    self.watchers.remove(&user);
                }
            }
        }
    }
}

impl Hub {
    /// An empty hub publishing at most one change per user per `interval`.
    pub fn new(interval: Duration) -> Self {
        Hub {
            state: Mutex::new(State::default()),
            interval,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // A panic elsewhere while holding the lock must not take presence down with it: the
        // state is a set of counters and maps that stay consistent operation by operation.
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// An authenticated connection of `user` (foreground by default).
    pub fn connected(&self, conn: ConnRef, user: UserId, now: Instant, wall_ms: u64) {
        let d = self.interval;
        self.with(|s| {
            if s.conns.contains_key(&conn) {
                return;
            }
            s.conns.insert(
                conn,
                ConnEntry {
                    user,
                    foreground: true,
                    watches: HashMap::new(),
                    ready: false,
                },
            );
            s.by_user.entry(user).or_default().push(conn);
            let e = s.entry(user);
            e.foreground += 1;
            if e.foreground == 1 {
                s.local_flips.insert(user);
                s.update(user, |m| m.set_online(true, now, wall_ms, d));
            }
        });
    }

    /// The connection ended: its watches go, and its user may go offline.
    pub fn disconnected(&self, conn: ConnRef, now: Instant, wall_ms: u64) {
        self.set_foreground(conn, false, now, wall_ms);
        self.with(|s| {
            s.unwatch_all(conn);
            if let Some(c) = s.conns.remove(&conn)
                && let Some(list) = s.by_user.get_mut(&c.user)
            {
                list.retain(|x| *x != conn);
                if list.is_empty() {
                    s.by_user.remove(&c.user);
                }
            }
            s.recheck.remove(&conn);
        });
    }

    /// What `users` may see of each other changed (a block, a contact, a privacy setting):
    /// each one's watchers hear their view again and each one's own connections recheck what
    /// they watch (privacy is reciprocal). A view that did not change is not sent
    /// ([`Hub::commit_view`]), so a block shows as whatever the policy now answers, at once,
    /// not at the blocker's next change. O(watchers + own connections).
    pub fn reconsider(&self, users: &[UserId]) {
        self.with(|s| {
            for u in users {
                if s.users.contains_key(u) && s.watchers.contains_key(u) {
                    s.dirty.insert(*u);
                }
                if let Some(conns) = s.by_user.get(u) {
                    let ready: Vec<ConnRef> = conns
                        .iter()
                        .filter(|c| s.conns.get(c).is_some_and(|e| e.ready))
                        .copied()
                        .collect();
                    s.recheck.extend(ready);
                }
            }
        });
    }

    /// Every view may be stale (another node's social writes may have been lost): every
    /// watched user's watchers and every ready connection are evaluated again. O(watches).
    pub fn reconsider_all(&self) {
        self.with(|s| {
            let watched: Vec<UserId> = s
                .watchers
                .keys()
                .filter(|u| s.users.contains_key(u))
                .copied()
                .collect();
            s.dirty.extend(watched);
            let ready: Vec<ConnRef> = s
                .conns
                .iter()
                .filter(|(_, c)| c.ready)
                .map(|(k, _)| *k)
                .collect();
            s.recheck.extend(ready);
        });
    }

    /// Every connection ended (server shutdown): each online user goes offline now, so their
    /// last seen is recorded and flushed even if a connection task was dropped mid-way.
    pub fn disconnect_all(&self, now: Instant, wall_ms: u64) {
        let conns: Vec<ConnRef> = self.with(|s| s.conns.keys().copied().collect());
        for conn in conns {
            self.disconnected(conn, now, wall_ms);
        }
    }

    /// `SetForeground` of one connection. False if the connection is unknown.
    pub fn set_foreground(&self, conn: ConnRef, fg: bool, now: Instant, wall_ms: u64) -> bool {
        let d = self.interval;
        self.with(|s| {
            let Some(c) = s.conns.get_mut(&conn) else {
                return false;
            };
            if c.foreground == fg {
                return true;
            }
            c.foreground = fg;
            let user = c.user;
            let e = s.entry(user);
            let was = e.foreground;
            e.foreground = if fg { was + 1 } else { was.saturating_sub(1) };
            if (was > 0) != (e.foreground > 0) {
                s.local_flips.insert(user);
                let online = s.online(user);
                s.update(user, |m| m.set_online(online, now, wall_ms, d));
            }
            true
        })
    }

    /// Other nodes' presence as `cluster::presence` now has it: `(user, online elsewhere)`.
    /// Users held here are debounced like a local change; others are only remembered, so a
    /// later watch starts from the right state.
    pub fn set_remote(&self, changes: &[(UserId, bool)], now: Instant, wall_ms: u64) {
        let d = self.interval;
        self.with(|s| {
            for &(user, remote) in changes {
                let moved = if remote {
                    s.remote.insert(user)
                } else {
                    s.remote.remove(&user)
                };
                if moved && s.users.contains_key(&user) {
                    let online = s.online(user);
                    s.update(user, |m| m.set_online(online, now, wall_ms, d));
                }
            }
        });
    }

    /// This node's transitions since the last call: `(user, foreground here now)`.
    pub fn take_local_flips(&self) -> Vec<(UserId, bool)> {
        self.with(|s| {
            let flips = std::mem::take(&mut s.local_flips);
            flips
                .into_iter()
                .map(|u| (u, s.users.get(&u).is_some_and(|e| e.foreground > 0)))
                .collect()
        })
    }

    /// Replaces the watch set of `conn` (the snapshot is pending until [`Hub::set_views`] and
    /// [`Hub::answered`]). Returns each user's published state and whether storage must be
    /// asked for their last seen. `None` if the connection is unknown.
    pub fn replace_watches(
        &self,
        conn: ConnRef,
        users: &[UserId],
    ) -> Option<Vec<(UserId, Shown, bool)>> {
        self.with(|s| {
            if !s.conns.contains_key(&conn) {
                return None;
            }
            s.unwatch_all(conn);
            s.recheck.remove(&conn);
            let mut out = Vec::with_capacity(users.len());
            for &u in users {
                s.watchers.entry(u).or_default().insert(conn);
                let e = s.entry(u);
                out.push((u, e.debounce.published(), !e.loaded));
            }
            if let Some(c) = s.conns.get_mut(&conn) {
                c.ready = false;
                c.watches = users.iter().map(|u| (*u, None)).collect();
            }
            Some(out)
        })
    }

    /// Users watched by nobody are forgotten once settled; tells the caller whether `user`
    /// still needs its stored last seen.
    pub fn needs_load(&self, user: UserId) -> bool {
        self.with(|s| s.users.get(&user).is_some_and(|e| !e.loaded))
    }

    /// The last seen storage had for `user` (read lazily); returns the published state after.
    pub fn learn_stored(&self, user: UserId, last_seen_ms: Option<u64>) -> Option<Shown> {
        self.with(|s| {
            let e = s.users.get_mut(&user)?;
            e.loaded = true;
            if let Some(at) = last_seen_ms {
                e.debounce.learn_stored(at);
            }
            Some(e.debounce.published())
        })
    }

    /// The published state of `user`, if held.
    pub fn shown(&self, user: UserId) -> Option<Shown> {
        self.with(|s| s.users.get(&user).map(|e| e.debounce.published()))
    }

    /// Records the snapshot views sent to `conn` (for users it still watches).
    pub fn set_views(&self, conn: ConnRef, views: &[(UserId, PresenceState)]) {
        self.with(|s| {
            if let Some(c) = s.conns.get_mut(&conn) {
                for (u, v) in views {
                    if let Some(slot) = c.watches.get_mut(u) {
                        *slot = Some(*v);
                    }
                }
            }
        });
    }

    /// The snapshot answer of `conn` is queued: events may follow, and each watched user is
    /// compared once more in case it changed while the snapshot was computed.
    pub fn answered(&self, conn: ConnRef) {
        self.with(|s| {
            if let Some(c) = s.conns.get_mut(&conn) {
                c.ready = true;
                s.recheck.insert(conn);
            }
        });
    }

    /// If `conn` watches `user` and was last told something else, records `view` as told and
    /// returns the watcher's user (the caller sends it); otherwise `None`.
    pub fn commit_view(&self, conn: ConnRef, user: UserId, view: PresenceState) -> Option<UserId> {
        self.with(|s| {
            let c = s.conns.get_mut(&conn)?;
            if !c.ready {
                return None;
            }
            let slot = c.watches.get_mut(&user)?;
            if *slot == Some(view) {
                return None;
            }
            *slot = Some(view);
            Some(c.user)
        })
    }

    /// Publishes every change due at `now`.
    pub fn poll(&self, now: Instant) {
        let d = self.interval;
        self.with(|s| {
            while let Some(&(at, user)) = s.timers.first() {
                if at > now {
                    break;
                }
                s.timers.remove(&(at, user));
                s.update(user, |m| m.poll(now, d));
            }
        });
    }

    /// When the next debounce deadline falls, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.with(|s| s.timers.first().map(|t| t.0))
    }

    /// Up to `max` users to fan out and `max` connections to recheck; `more` is true if work
    /// was left for the next round.
    pub fn take_work(&self, max: usize) -> (Vec<Notify>, Vec<Notify>, bool) {
        self.with(|s| {
            let users: Vec<UserId> = s.dirty.iter().take(max).copied().collect();
            let mut notify = Vec::with_capacity(users.len());
            for user in users {
                s.dirty.remove(&user);
                let Some(e) = s.users.get(&user) else {
                    continue;
                };
                let watchers = s
                    .watchers
                    .get(&user)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| s.conns.get(c).filter(|e| e.ready).map(|e| (*c, e.user)))
                    .collect();
                notify.push(Notify {
                    user,
                    shown: e.debounce.published(),
                    watchers,
                });
            }
            let conns: Vec<ConnRef> = s.recheck.iter().take(max).copied().collect();
            let mut recheck = Vec::new();
            for conn in conns {
                s.recheck.remove(&conn);
                let Some(c) = s.conns.get(&conn) else {
                    continue;
                };
                for u in c.watches.keys() {
                    if let Some(e) = s.users.get(u) {
                        recheck.push(Notify {
                            user: *u,
                            shown: e.debounce.published(),
                            watchers: vec![(conn, c.user)],
                        });
                    }
                }
            }
            let more = !s.dirty.is_empty() || !s.recheck.is_empty();
            (notify, recheck, more)
        })
    }

    /// Changes published since the last call.
    pub fn take_published_count(&self) -> u64 {
        self.with(|s| std::mem::take(&mut s.published))
    }

    /// Last seen values to write to storage (taken: a failed write puts them back).
    pub fn take_unsaved(&self) -> Vec<(UserId, u64)> {
        self.with(|s| s.unsaved.drain().collect())
    }

    /// Puts back values a failed write did not save (newer values win).
    pub fn restore_unsaved(&self, rows: Vec<(UserId, u64)>) {
        self.with(|s| {
            for (u, at) in rows {
                s.unsaved.entry(u).or_insert(at);
            }
        });
    }

    /// Forgets idle users (offline, settled, unwatched, saved) while more than `keep` are held.
    pub fn evict(&self, now: Instant, keep: usize) {
        let d = self.interval;
        self.with(|s| {
            if s.users.len() <= keep {
                return;
            }
            let State {
                users,
                watchers,
                unsaved,
                dirty,
                remote,
                ..
            } = s;
            users.retain(|u, e| {
                e.foreground > 0
                    || remote.contains(u)
                    || !e.debounce.settled(now, d)
                    || watchers.contains_key(u)
                    || unsaved.contains_key(u)
                    || dirty.contains(u)
            });
        });
    }

    /// Distinct users watched now (O(1), for the gauge).
    pub fn watched_users(&self) -> usize {
        self.with(|s| s.watchers.len())
    }

    /// Counts (O(users): for tests and rare reports, not per event).
    pub fn stats(&self) -> HubStats {
        self.with(|s| HubStats {
            connections: s.conns.len(),
            watched_users: s.watchers.len(),
            online_users: s.users.values().filter(|e| e.foreground > 0).count(),
            users: s.users.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(3);

    fn conn(n: u64) -> ConnRef {
        ConnRef {
            shard: 0,
            conn_id: n,
        }
    }

    #[test]
    fn connections_count_foreground_and_leave_nothing_behind() {
        let hub = Hub::new(D);
        let t = Instant::now();
        let (alice, bob) = (UserId(1), UserId(2));
        hub.connected(conn(1), alice, t, 1);
        hub.connected(conn(2), alice, t, 1);
        hub.connected(conn(3), bob, t, 1);
        assert_eq!(hub.stats().online_users, 2);
        assert!(hub.set_foreground(conn(1), false, t, 2));
        assert!(hub.shown(alice).is_some_and(|s| s.online));
        assert!(hub.set_foreground(conn(2), false, t, 3));
        hub.poll(t + D);
        assert_eq!(hub.shown(alice).map(|s| s.online), Some(false));
        assert!(hub.replace_watches(conn(3), &[alice, UserId(9)]).is_some());
        assert_eq!(hub.stats().watched_users, 2);
        hub.answered(conn(3));
        let (_, recheck, _) = hub.take_work(16);
        assert_eq!(recheck.len(), 2);
        assert_eq!(
            hub.commit_view(conn(3), alice, PresenceState::Hidden),
            Some(bob)
        );
        assert_eq!(hub.commit_view(conn(3), alice, PresenceState::Hidden), None);
        for c in 1..=3 {
            hub.disconnected(conn(c), t + D, 4);
        }
        let stats = hub.stats();
        assert_eq!(
            (stats.connections, stats.watched_users, stats.online_users),
            (0, 0, 0)
        );
        assert!(!hub.take_unsaved().is_empty());
        hub.poll(t + 3 * D);
        let _ = hub.take_work(16);
        hub.evict(t + 10 * D, 0);
        assert_eq!(hub.stats().users, 0, "idle users are forgotten");
    }

    #[test]
    fn views_wait_for_the_snapshot_and_unknown_connections_are_refused() {
        let hub = Hub::new(D);
        let t = Instant::now();
        assert!(hub.replace_watches(conn(1), &[UserId(2)]).is_none());
        hub.connected(conn(1), UserId(1), t, 1);
        let w = hub
            .replace_watches(conn(1), &[UserId(2)])
            .unwrap_or_default();
        assert!(
            w[0].2,
            "a user not seen since start needs its stored last seen"
        );
        assert_eq!(
            hub.commit_view(conn(1), UserId(2), PresenceState::Hidden),
            None
        );
        hub.set_views(conn(1), &[(UserId(2), PresenceState::Hidden)]);
        hub.answered(conn(1));
        assert_eq!(
            hub.commit_view(conn(1), UserId(2), PresenceState::Hidden),
            None
        );
        hub.connected(conn(2), UserId(2), t, 1);
        let (notify, _, _) = hub.take_work(16);
        assert_eq!(notify.len(), 2, "both users came online");
        let n = notify.iter().find(|n| n.user == UserId(2)).unwrap();
        assert_eq!(n.watchers, vec![(conn(1), UserId(1))]);
    }

    #[test]
    fn another_nodes_presence_is_ored_with_this_nodes_and_debounced() {
        let hub = Hub::new(D);
        let t = Instant::now();
        let (alice, bob, carol) = (UserId(1), UserId(2), UserId(3));
        hub.set_remote(&[(bob, true)], t, 1);
        hub.connected(conn(1), alice, t, 1);
        let w = hub.replace_watches(conn(1), &[bob]).unwrap_or_default();
        assert!(w[0].1.online, "first heard of while online elsewhere");
        assert_eq!(hub.take_local_flips(), vec![(alice, true)]);
        hub.connected(conn(2), bob, t, 1);
        assert_eq!(hub.take_local_flips(), vec![(bob, true)]);
        hub.set_remote(&[(bob, false)], t, 2);
        assert!(
            hub.shown(bob).is_some_and(|s| s.online),
            "still online here"
        );
        hub.disconnected(conn(2), t, 3);
        assert_eq!(hub.take_local_flips(), vec![(bob, false)]);
        hub.poll(t + D);
        assert_eq!(
            hub.shown(bob),
            Some(Shown {
                online: false,
                last_seen_ms: Some(3)
            }),
            "offline everywhere: published after the debounce"
        );
        hub.set_remote(&[(carol, true)], t + D, 4);
        assert!(
            hub.shown(carol).is_none(),
            "unwatched users only remembered"
        );
        hub.replace_watches(conn(1), &[carol]);
        hub.answered(conn(1));
        hub.set_remote(&[(carol, false)], t + D, 5);
        assert!(hub.shown(carol).is_some_and(|s| s.online), "debounced");
        hub.poll(t + 2 * D);
        assert_eq!(hub.shown(carol).map(|s| s.online), Some(false));
        let (notify, _, _) = hub.take_work(16);
        assert!(
            notify
                .iter()
                .any(|n| n.user == carol && n.watchers == vec![(conn(1), alice)]),
            "its watcher hears it"
        );
    }
}
