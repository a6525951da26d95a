//! The facts the visibility rule needs, per user, in a bounded in-memory cache: privacy
//! settings, the user's contacts and the users they blocked.
//!
//! Presence evaluates `visible` for every watcher of every published change, so the facts must
//! not cost storage reads each time. Each user's facts are one entry, loaded on a miss from
//! storage and dropped by the social service's own writes (contacts, blocks, settings) right
//! after their commit; the cache is bounded by entries and cleared when full.
//!
//! In cluster mode another node may commit a social write: it publishes the users concerned
//! on the bus after the commit and every node drops their entries ([`FactsCache::invalidate`]);
//! when the bus may have lost such a message (a link gap, a resubscription) the node drops
//! everything ([`FactsCache::clear`]), so a block or a stricter privacy setting is never
//! ignored for longer than the bus takes to notice the loss.
//!
//! A load racing an invalidation must not put back a stale entry: a load remembers the
//! invalidation epoch before it reads storage and inserts only if no invalidation happened
//! since (the same rule as the chat-row cache: only committed state gets in).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tern_protocol::{PrivacySettings, UserId};

use crate::storage::{EdgeKind, Storage, StorageResult};

/// One user's facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFacts {
    /// Privacy settings (the default when never set).
    pub privacy: PrivacySettings,
    /// The user's contacts, sorted.
    pub contacts: Vec<UserId>,
    /// The users they blocked, sorted.
    pub blocked: Vec<UserId>,
}

impl UserFacts {
    /// Whether `other` is in the user's contacts.
    pub fn has_contact(&self, other: UserId) -> bool {
        self.contacts.binary_search(&other).is_ok()
    }

    /// Whether the user blocked `other`.
    pub fn blocks(&self, other: UserId) -> bool {
        self.blocked.binary_search(&other).is_ok()
    }
}

/// The bounded cache.
#[derive(Debug)]
pub struct FactsCache {
    entries: Mutex<HashMap<UserId, Arc<UserFacts>>>,
    epoch: AtomicU64,
    max_entries: usize,
}

impl FactsCache {
    /// A cache of at most `max_entries` users (at least one).
    pub fn new(max_entries: usize) -> Self {
        FactsCache {
            entries: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            max_entries: max_entries.max(1),
        }
    }

    fn cached(&self, user: UserId) -> Option<Arc<UserFacts>> {
        self.entries.lock().ok()?.get(&user).cloned()
    }

    /// A user's facts, from the cache or storage.
    pub async fn get(&self, storage: &dyn Storage, user: UserId) -> StorageResult<Arc<UserFacts>> {
        if let Some(f) = self.cached(user) {
            return Ok(f);
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let mut contacts = storage.edges(user, EdgeKind::Contact).await?;
        let mut blocked = storage.edges(user, EdgeKind::Block).await?;
        contacts.sort_unstable();
        blocked.sort_unstable();
        let facts = Arc::new(UserFacts {
            privacy: storage.privacy(user).await?.unwrap_or_default(),
            contacts,
            blocked,
        });
        if let Ok(mut entries) = self.entries.lock()
            && self.epoch.load(Ordering::Acquire) == epoch
        {
            if entries.len() >= self.max_entries {
                entries.clear();
            }
            entries.insert(user, facts.clone());
        }
        Ok(facts)
    }

    /// Drops `user`'s entry: call after each committed write of their facts.
    pub fn invalidate(&self, user: UserId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&user);
        }
    }

    /// Drops every entry (the bus may have lost an invalidation).
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    /// Users cached now.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use tern_protocol::{Audience, PrivacySettings};

    use super::FactsCache;
    use crate::storage::fjall::FjallStorage;
    use crate::storage::{EdgeChange, EdgeKind, NoSink, Storage};

    #[tokio::test]
    async fn writes_invalidate_and_the_cache_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStorage::open(dir.path(), Arc::new(NoSink), None).unwrap();
        let a = store.upsert_user("a@example.org", 1).await.unwrap();
        let b = store.upsert_user("b@example.org", 1).await.unwrap();
        let cache = FactsCache::new(1);
        assert!(cache.get(&store, a).await.unwrap().contacts.is_empty());
        let add = EdgeChange {
            kind: EdgeKind::Contact,
            owner: a,
            other: b,
            on: true,
            max: 10,
        };
        store.set_edge(add).await.unwrap();
        assert!(
            cache.get(&store, a).await.unwrap().contacts.is_empty(),
            "cached until invalidated"
        );
        cache.invalidate(a);
        assert!(cache.get(&store, a).await.unwrap().has_contact(b));
        let hidden = PrivacySettings {
            photo: Audience::Nobody,
            ..PrivacySettings::default()
        };
        store.set_privacy(b, hidden.clone()).await.unwrap();
        assert_eq!(cache.get(&store, b).await.unwrap().privacy, hidden);
        assert_eq!(cache.len(), 1, "bounded at one entry");
    }
}
