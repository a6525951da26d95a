//! Keyed token buckets with time passed in and a bounded number of keys.
//!
//! Two layers: [`Bucket`] is one token bucket, and [`RateLimiter`] keeps buckets per key in one
//! map (used where one caller owns it, such as a shard's admission). The auth service uses
//! [`ShardedLimiter`], which spreads keys over independently locked shards so no lock or table is
//! shared by every login.
//!
//! Full tables evict instead of refusing: a table that refuses new keys when full is global state
//! an anonymous client can fill, which turns a limit into an outage for everyone. Eviction drops
//! refilled buckets first, then the least recently used ones in a batch, so pushing out one
//! particular key costs an attacker a whole table's worth of fresh keys.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many events a key may have: `burst` at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Quota {
    /// Bucket size.
    pub burst: u32,
    /// Refill rate, tokens per minute.
    pub per_minute: u32,
}

/// A slow budget: `burst` at once, refilled at `per_day`. For things counted in a day (wrong
/// codes, codes per identifier and source).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Allowance {
    /// Bucket size.
    pub burst: u32,
    /// Refill rate, tokens per day.
    pub per_day: u32,
}

/// A bucket's size and refill rate, whatever unit it was configured in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    burst: f64,
    per_s: f64,
}

impl From<Quota> for Rate {
    fn from(q: Quota) -> Self {
        Rate {
            burst: f64::from(q.burst),
            per_s: f64::from(q.per_minute) / 60.0,
        }
    }
}

impl From<Allowance> for Rate {
    fn from(a: Allowance) -> Self {
        Rate {
            burst: f64::from(a.burst),
            per_s: f64::from(a.per_day) / 86_400.0,
        }
    }
}

/// One token bucket. Starts full.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn full(rate: Rate, now: Instant) -> Self {
        Bucket {
            tokens: rate.burst,
            at: now,
        }
    }

    fn level(&self, rate: Rate, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * rate.per_s).min(rate.burst)
    }

    /// Whether a token is available, without taking it.
    pub fn allows(&self, rate: Rate, now: Instant) -> bool {
        self.level(rate, now) >= 1.0
    }

    /// Takes a token if there is one; `Err(wait)` says how long until there is.
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        let level = self.level(rate, now);
        self.at = now;
        if level >= 1.0 {
            self.tokens = level - 1.0;
            Ok(())
        } else {
            self.tokens = level;
            let wait = if rate.per_s > 0.0 {
                (1.0 - level) / rate.per_s
            } else {
                86_400.0
            };
            Err(Duration::from_secs_f64(wait.min(86_400.0)))
        }
    }

    /// Whether the bucket has refilled, so forgetting it changes nothing.
    pub fn is_full(&self, rate: Rate, now: Instant) -> bool {
        self.level(rate, now) >= rate.burst
    }

    /// When the bucket was last used.
    pub fn touched(&self) -> Instant {
        self.at
    }
}

/// Token buckets per key in one map. When `max_keys` buckets exist and a new key arrives,
/// refilled buckets are dropped, then the least recently used eighth.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: Rate,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter for `rate` holding at most `max_keys` buckets.
    pub fn new(rate: impl Into<Rate>, max_keys: usize) -> Self {
        RateLimiter {
            rate: rate.into(),
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    fn bucket(&mut self, key: &K, now: Instant) -> &mut Bucket {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            self.evict(now);
        }
        let rate = self.rate;
        self.buckets
            .entry(key.clone())
            .or_insert_with(|| Bucket::full(rate, now))
    }

    /// Whether `key` has a token, without taking it (and without creating state for it).
    pub fn allows(&self, key: &K, now: Instant) -> bool {
        self.buckets
            .get(key)
            .is_none_or(|b| b.allows(self.rate, now))
    }

    /// Takes one token for `key`; `Err(wait)` says how long until one is available.
    pub fn check(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.rate.burst < 1.0 {
            return Err(Duration::from_secs(60));
        }
        let rate = self.rate;
        self.bucket(key, now).take(rate, now)
    }

    /// Buckets held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn evict(&mut self, now: Instant) {
        let rate = self.rate;
        self.buckets.retain(|_, b| !b.is_full(rate, now));
        if self.buckets.len() >= self.max_keys {
            evict_oldest(&mut self.buckets, |b| b.touched());
        }
    }
}

/// Drops the least recently used eighth of `map` (at least one entry). Batching makes the scan
/// cost amortised over the next inserts.
pub(crate) fn evict_oldest<K: Hash + Eq + Clone, V>(
    map: &mut HashMap<K, V>,
    touched: impl Fn(&V) -> Instant,
) {
    let mut ages: Vec<(Instant, K)> = map.iter().map(|(k, v)| (touched(v), k.clone())).collect();
    let n = (ages.len() / 8).max(1).min(ages.len());
    if n == 0 {
        return;
    }
    ages.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
    for (_, k) in ages.into_iter().take(n) {
        map.remove(&k);
    }
}

/// [`RateLimiter`]s over independently locked shards, chosen by a per-process random hash so a
/// client cannot aim its keys at one shard. Bounded at `max_keys` in all.
#[derive(Debug)]
pub struct ShardedLimiter<K> {
    shards: Vec<Mutex<RateLimiter<K>>>,
    hasher: std::collections::hash_map::RandomState,
}

/// Shards per table: enough that logins on different cores rarely meet on a lock.
pub const SHARDS: usize = 64;

impl<K: Hash + Eq + Clone> ShardedLimiter<K> {
    /// A limiter for `rate` holding at most about `max_keys` buckets.
    pub fn new(rate: impl Into<Rate>, max_keys: usize) -> Self {
        let rate = rate.into();
        let per_shard = max_keys.div_ceil(SHARDS).max(1);
        ShardedLimiter {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(RateLimiter::new(rate, per_shard)))
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn shard(&self, key: &K) -> std::sync::MutexGuard<'_, RateLimiter<K>> {
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        // A poisoned shard only means a panic elsewhere mid-update; bucket state stays usable.
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `key` has a token, without taking it.
    pub fn allows(&self, key: &K, now: Instant) -> bool {
        self.shard(key).allows(key, now)
    }

    /// Takes one token for `key`.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        self.shard(key).check(key, now)
    }
}

#[cfg(test)]
mod tests;
