//! A keyed token-bucket rate limiter with time passed in and a bounded number of keys.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How many events a key may have: `burst` at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Quota {
    /// Bucket size.
    pub burst: u32,
    /// Refill rate, tokens per minute.
    pub per_minute: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per key. When `max_keys` buckets exist and a new key arrives, full buckets are
/// dropped first; if none can be dropped the new key is refused (fail closed, bounded memory).
#[derive(Debug)]
pub struct RateLimiter<K> {
    quota: Quota,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter for `quota` holding at most `max_keys` buckets.
    pub fn new(quota: Quota, max_keys: usize) -> Self {
        RateLimiter {
            quota,
            max_keys,
            buckets: HashMap::new(),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * f64::from(self.quota.per_minute) / 60.0)
            .min(f64::from(self.quota.burst));
        b.at = now;
    }

    /// Takes one token for `key`; `Err(wait)` says how long until one is available.
    pub fn check(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.quota.burst == 0 {
            return Err(Duration::from_secs(60));
        }
        if !self.buckets.contains_key(key) {
            if self.buckets.len() >= self.max_keys {
                self.evict_full(now);
            }
            if self.buckets.len() >= self.max_keys {
                return Err(Duration::from_secs(1));
            }
            self.buckets.insert(
                key.clone(),
                Bucket {
                    tokens: f64::from(self.quota.burst),
                    at: now,
                },
            );
        }
        let quota = self.quota;
        let Some(mut bucket) = self.buckets.get(key).copied() else {
            return Err(Duration::from_secs(1));
        };
        self.refill(&mut bucket, now);
        let result = if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let per_sec = f64::from(quota.per_minute.max(1)) / 60.0;
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec))
        };
        self.buckets.insert(key.clone(), bucket);
        result
    }

    fn evict_full(&mut self, now: Instant) {
        let quota = self.quota;
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * f64::from(quota.per_minute) / 60.0 < f64::from(quota.burst)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(
            Quota {
                burst: 3,
                per_minute: 60,
            },
            10,
        );
        for _ in 0..3 {
            assert!(rl.check(&"k", t0).is_ok());
        }
        assert!(rl.check(&"k", t0).is_err(), "burst exhausted");
        assert!(rl.check(&"other", t0).is_ok(), "keys are independent");
        assert!(
            rl.check(&"k", t0 + Duration::from_millis(1100)).is_ok(),
            "one token per second refills"
        );
    }

    #[test]
    fn key_table_is_bounded() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(
            Quota {
                burst: 2,
                per_minute: 1,
            },
            2,
        );
        assert!(rl.check(&1, t0).is_ok());
        assert!(rl.check(&2, t0).is_ok());
        assert!(rl.check(&3, t0).is_err(), "no room and nothing evictable");
        assert!(
            rl.check(&3, t0 + Duration::from_secs(600)).is_ok(),
            "refilled buckets are evicted"
        );
    }
}
