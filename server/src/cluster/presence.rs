//! Presence across nodes: which users are online (a foreground connection) on this node, and
//! which are online on each other node, as the bus last told us.
//!
//! The presence hub counts only this node's connections; a watcher on node A must also see a
//! user whose phone is connected to node B. Each node therefore publishes its users' local
//! transitions (first foreground connection here, last one gone) and keeps, per other node, the
//! set of users that node shows online. A user is *remotely online* while at least one other
//! node shows them online; the hub ORs that with its own count and debounces the result like
//! any local change (so a device hopping between nodes shows nothing).
//!
//! Why this converges when the bus loses something (I6 for presence): the transitions are
//! also kept in Redis (one set per node, refreshed with the node's other keys), and every full
//! refresh replaces a node's set with what Redis holds; a link gap asks for a refresh at once;
//! a peer that says `Bye`, goes silent or expires takes its users' remote online with it.
//! Nothing here is durable and nothing needs to be: presence is a view of the present.
//!
//! It also carries other nodes' social writes (contacts, blocks, privacy) to the presence
//! driver, which drops the cached facts they invalidate and evaluates the views again: a
//! block committed on node B must hide the blocker on node A too.
//!
//! Redis-free and clock-free: the bus tasks and the presence driver call it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tern_protocol::UserId;
use tokio::sync::Notify;

use super::NodeId;

#[derive(Debug, Default)]
struct Book {
    /// Users with a foreground connection on this node (as the presence hub reported).
    local: HashSet<UserId>,
    /// Users whose local state changed since the registry last wrote and announced them.
    local_changed: HashSet<UserId>,
    /// Per other node, the users it shows online.
    remote: HashMap<NodeId, HashSet<UserId>>,
    /// Per user, how many other nodes show them online (absent = none).
    counts: HashMap<UserId, u32>,
    /// Users whose remote online state may have changed since the hub last asked.
    dirty: HashSet<UserId>,
    /// Users another node committed a social write of, not yet applied here.
    social: HashSet<UserId>,
    /// The bus may have lost a social write: drop every cached fact.
    social_lost: bool,
}

impl Book {
    fn add(&mut self, node: &NodeId, user: UserId) {
        if self.remote.entry(node.clone()).or_default().insert(user) {
            *self.counts.entry(user).or_insert(0) += 1;
            self.dirty.insert(user);
        }
    }

    fn remove(&mut self, node: &NodeId, user: UserId) {
        let Some(set) = self.remote.get_mut(node) else {
            return;
        };
        if !set.remove(&user) {
            return;
        }
        if let Some(n) = self.counts.get_mut(&user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.counts.remove(&user);
            }
        }
        self.dirty.insert(user);
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct PresenceBook {
    book: Mutex<Book>,
    /// Wakes the presence driver when a remote change arrived.
    pub wake: Notify,
}

impl PresenceBook {
    fn with<R>(&self, f: impl FnOnce(&mut Book) -> R) -> R {
        // Sets of ids stay consistent operation by operation: a poisoned lock is still usable.
        let mut g = self.book.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// The hub's report of local transitions: `(user, online here now)`. Returns whether
    /// anything changed (the registry is then woken to write and announce it).
    pub fn set_local(&self, flips: &[(UserId, bool)]) -> bool {
        self.with(|b| {
            let mut changed = false;
            for &(user, online) in flips {
                let moved = if online {
                    b.local.insert(user)
                } else {
                    b.local.remove(&user)
                };
                if moved {
                    b.local_changed.insert(user);
                    changed = true;
                }
            }
            changed
        })
    }

    /// Local changes since the last call, split into (online, offline) by the state now.
    pub fn take_local_changes(&self) -> (Vec<UserId>, Vec<UserId>) {
        self.with(|b| {
            let changed = std::mem::take(&mut b.local_changed);
            changed.into_iter().partition(|u| b.local.contains(u))
        })
    }

    /// Every user online on this node (for a registration or a new peer). Pending changes
    /// stay pending: an offline among them is still announced by the next flush.
    pub fn local_online(&self) -> Vec<UserId> {
        self.with(|b| b.local.iter().copied().collect())
    }

    /// `node` says `online` came online there and `offline` went offline. True if a user's
    /// remote state may have changed (the caller wakes the driver).
    pub fn learn(&self, node: &NodeId, online: &[UserId], offline: &[UserId]) -> bool {
        self.with(|b| {
            for u in online {
                b.add(node, *u);
            }
            for u in offline {
                b.remove(node, *u);
            }
            !b.dirty.is_empty()
        })
    }

    /// Replaces what `node` shows online with `users` (a full refresh from Redis).
    pub fn replace(&self, node: &NodeId, users: &HashSet<UserId>) -> bool {
        self.with(|b| {
            let old = b.remote.get(node).cloned().unwrap_or_default();
            for u in old.difference(users) {
                b.remove(node, *u);
            }
            for u in users.difference(&old) {
                b.add(node, *u);
            }
            if users.is_empty() {
                b.remote.remove(node);
            }
            !b.dirty.is_empty()
        })
    }

    /// `node` is gone (a `Bye`, silence, an expired registry entry): none of its users is
    /// online there any more.
    pub fn forget(&self, node: &NodeId) -> bool {
        self.with(|b| {
            let users = b.remote.remove(node).unwrap_or_default();
            for u in &users {
                if let Some(n) = b.counts.get_mut(u) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        b.counts.remove(u);
                    }
                }
                b.dirty.insert(*u);
            }
            !b.dirty.is_empty()
        })
    }

    /// Whether another node shows `user` online.
    pub fn remote_online(&self, user: UserId) -> bool {
        self.with(|b| b.counts.contains_key(&user))
    }

    /// Users whose remote state may have changed since the last call, with that state now.
    pub fn take_dirty(&self) -> Vec<(UserId, bool)> {
        self.with(|b| {
            let dirty = std::mem::take(&mut b.dirty);
            dirty
                .into_iter()
                .map(|u| (u, b.counts.contains_key(&u)))
                .collect()
        })
    }

    /// Another node committed a social write concerning `users`.
    pub fn social_changed(&self, users: &[UserId]) {
        self.with(|b| b.social.extend(users.iter().copied()));
    }

    /// The bus may have lost a social write.
    pub fn social_lost(&self) {
        self.with(|b| b.social_lost = true);
    }

    /// Social changes to apply: the users, and whether everything must be dropped.
    pub fn take_social(&self) -> (Vec<UserId>, bool) {
        self.with(|b| {
            let users = std::mem::take(&mut b.social).into_iter().collect();
            (users, std::mem::take(&mut b.social_lost))
        })
    }

    /// Users other nodes show online, counted once each (for tests and reports).
    pub fn remote_count(&self) -> usize {
        self.with(|b| b.counts.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_remotely_online_while_any_other_node_shows_them() {
        let book = PresenceBook::default();
        let (b, c): (NodeId, NodeId) = ("b".into(), "c".into());
        let u = UserId(7);
        assert!(book.learn(&b, &[u], &[]));
        assert!(book.learn(&c, &[u], &[]));
        assert_eq!(book.take_dirty(), vec![(u, true)]);
        book.learn(&b, &[], &[u]);
        assert!(book.remote_online(u), "still online on c");
        book.learn(&b, &[], &[u]);
        assert!(
            book.remote_online(u),
            "a repeated offline does not count twice"
        );
        assert!(book.forget(&c));
        assert!(!book.remote_online(u));
        assert_eq!(book.take_dirty(), vec![(u, false)]);
        assert_eq!(book.remote_count(), 0);
    }

    #[test]
    fn a_refresh_replaces_one_nodes_set() {
        let book = PresenceBook::default();
        let b: NodeId = "b".into();
        book.learn(&b, &[UserId(1), UserId(2)], &[]);
        let _ = book.take_dirty();
        book.replace(&b, &[UserId(2), UserId(3)].into_iter().collect());
        let mut dirty = book.take_dirty();
        dirty.sort();
        assert_eq!(dirty, vec![(UserId(1), false), (UserId(3), true)]);
        assert!(book.remote_online(UserId(2)));
        book.replace(&b, &HashSet::new());
        assert_eq!(book.remote_count(), 0);
    }

    #[test]
    fn local_changes_are_coalesced_by_their_state_now() {
        let book = PresenceBook::default();
        let (a, b) = (UserId(1), UserId(2));
        assert!(book.set_local(&[(a, true), (b, true)]));
        assert!(book.set_local(&[(b, false)]));
        assert!(
            !book.set_local(&[(b, false)]),
            "no change, nothing to announce"
        );
        let (on, off) = book.take_local_changes();
        assert_eq!((on, off), (vec![a], vec![b]));
        assert_eq!(book.take_local_changes(), (vec![], vec![]));
        book.set_local(&[(b, true)]);
        let mut all = book.local_online();
        all.sort();
        assert_eq!(all, vec![a, b]);
        assert_eq!(
            book.take_local_changes(),
            (vec![b], vec![]),
            "still pending"
        );
    }
}
