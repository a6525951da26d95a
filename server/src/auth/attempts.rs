//! What one source prefix has done to one identifier: its code requests and its run of wrong
//! codes. Time is passed in.
//!
//! This is the layer that keeps a targeted owner able to log in. An attacker who knows a number
//! and hammers it from one source prefix runs into this prefix's own limits (a few code requests,
//! then a lock after consecutive wrong codes whose length doubles with every further miss) long
//! before it has spent the identifier-wide budgets that the owner, on another prefix, also draws
//! on. The identifier-wide budgets (in [`super::otp::OtpBook`] and the per-identifier request
//! bucket) stay the hard bound on brute force from many prefixes.
//!
//! Keys are a per-process keyed hash of the identifier plus the source prefix, so entries are
//! small and a client cannot aim them at one shard. Bounded like the other auth tables: a full
//! shard drops idle entries, then the least recently used eighth, keeping locked entries longest.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::rate_limit::{Allowance, Bucket, Rate, SHARDS};
use super::source::SourcePrefix;

type Key = (u64, SourcePrefix);

#[derive(Debug, Clone, Copy)]
struct Entry {
    requests: Bucket,
    /// Wrong codes in a row from this prefix for this identifier.
    misses: u32,
    locked_until: Option<Instant>,
    /// The last miss: a run is forgotten `forget_after` later.
    last_miss: Instant,
    /// The last use of any kind, for eviction.
    touched: Instant,
}

/// Sizes of the table and the lock schedule.
#[derive(Debug, Clone, Copy)]
pub struct AttemptLimits {
    /// Code requests per identifier and source prefix.
    pub requests: Allowance,
    /// Wrong codes in a row before the first lock.
    pub free_misses: u32,
    /// First lock; each further miss doubles it.
    pub first_lock: Duration,
    /// Longest lock.
    pub max_lock: Duration,
    /// A run of misses is forgotten after this long without one.
    pub forget_after: Duration,
    /// Most pairs held, over all shards.
    pub max_entries: usize,
}

/// Per identifier-and-source state.
#[derive(Debug)]
pub struct Attempts {
    limits: AttemptLimits,
    requests: Rate,
    shards: Vec<Mutex<HashMap<Key, Entry>>>,
    hasher: std::collections::hash_map::RandomState,
    per_shard: usize,
}

impl Attempts {
    /// An empty table.
    pub fn new(limits: AttemptLimits) -> Self {
        Attempts {
            limits,
            requests: limits.requests.into(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            per_shard: limits.max_entries.div_ceil(SHARDS).max(1),
        }
    }

    fn key(&self, identifier: &str, source: SourcePrefix) -> Key {
        (self.hasher.hash_one(identifier), source)
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, HashMap<Key, Entry>> {
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        // A poisoned shard only means a panic elsewhere mid-update; its entries stay usable.
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn idle(&self, e: &Entry, now: Instant) -> bool {
        let misses_forgotten =
            e.misses == 0 || now.saturating_duration_since(e.last_miss) >= self.limits.forget_after;
        misses_forgotten
            && e.locked_until.is_none_or(|t| t <= now)
            && e.requests.is_full(self.requests, now)
    }

    fn entry<'a>(&self, map: &'a mut HashMap<Key, Entry>, key: Key, now: Instant) -> &'a mut Entry {
        if !map.contains_key(&key) && map.len() >= self.per_shard {
            map.retain(|_, e| !self.idle(e, now));
            if map.len() >= self.per_shard {
                let mut ranked: Vec<((bool, Instant), Key)> = map
                    .iter()
                    .map(|(k, e)| ((e.locked_until.is_some_and(|t| t > now), e.touched), *k))
                    .collect();
                let n = (ranked.len() / 8).max(1);
                ranked.select_nth_unstable_by_key(n - 1, |(rank, _)| *rank);
                for (_, k) in ranked.into_iter().take(n) {
                    map.remove(&k);
                }
            }
        }
        let rate = self.requests;
        let e = map.entry(key).or_insert_with(|| Entry {
            requests: Bucket::full(rate, now),
            misses: 0,
            locked_until: None,
            last_miss: now,
            touched: now,
        });
        if e.misses > 0 && now.saturating_duration_since(e.last_miss) >= self.limits.forget_after {
            e.misses = 0;
        }
        e.touched = now;
        e
    }

    /// How long this prefix is still locked out of guessing for `identifier`.
    pub fn locked(&self, identifier: &str, source: SourcePrefix, now: Instant) -> Option<Duration> {
        let key = self.key(identifier, source);
        self.shard(&key)
            .get(&key)
            .and_then(|e| e.locked_until)
            .and_then(|t| t.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Records a wrong code; returns the lock it started, if any.
    pub fn missed(&self, identifier: &str, source: SourcePrefix, now: Instant) -> Option<Duration> {
        let key = self.key(identifier, source);
        let mut map = self.shard(&key);
        let e = self.entry(&mut map, key, now);
        e.misses = e.misses.saturating_add(1);
        e.last_miss = now;
        let over = e.misses.checked_sub(self.limits.free_misses)?;
        let lock = self
            .limits
            .first_lock
            .saturating_mul(1u32.checked_shl(over).unwrap_or(u32::MAX))
            .min(self.limits.max_lock);
        e.locked_until = Some(now + lock);
        Some(lock)
    }

    /// Records a right code: the run of misses ends.
    pub fn succeeded(&self, identifier: &str, source: SourcePrefix) {
        let key = self.key(identifier, source);
        if let Some(e) = self.shard(&key).get_mut(&key) {
            e.misses = 0;
            e.locked_until = None;
        }
    }

    /// Whether this prefix may ask for another code for `identifier`, without spending.
    pub fn may_request(&self, identifier: &str, source: SourcePrefix, now: Instant) -> bool {
        let key = self.key(identifier, source);
        self.shard(&key)
            .get(&key)
            .is_none_or(|e| e.requests.allows(self.requests, now))
    }

    /// Spends one code request.
    pub fn requested(&self, identifier: &str, source: SourcePrefix, now: Instant) {
        let key = self.key(identifier, source);
        let mut map = self.shard(&key);
        let rate = self.requests;
        let e = self.entry(&mut map, key, now);
        let _ = e.requests.take(rate, now);
    }
}

#[cfg(test)]
mod tests;
