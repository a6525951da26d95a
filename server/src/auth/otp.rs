//! One-time codes: six random digits, stored only as an HMAC, compared in constant time, valid for
//! five minutes; a new code voids the old one. Time is passed in.
//!
//! The book also holds each identifier's budget of wrong codes, counted across every code issued
//! for it: asking for a new code does not give fresh tries, so the number of guesses against an
//! identifier per day is bounded by that budget alone (see the module docs of [`crate::auth`]).
//!
//! Answers do not depend on whether a code is pending: a guess for an identifier with no code, an
//! unknown identifier, or a wrong code all answer [`Verdict::Wrong`], cost one failure, and do the
//! same work (two HMAC comparisons, against dummy tags when nothing is stored). Only presenting the
//! right digits of an expired or replaced code answers [`Verdict::Expired`], which an observer
//! cannot do without knowing the code.
//!
//! Memory: entries live in [`SHARDS`] independently locked maps chosen by a per-process random
//! hash, each bounded; a full shard drops idle entries, then the least recently used eighth,
//! keeping entries with a spent failure budget longest. There is no global cap to fill.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tern_protocol::ErrorCode;

use super::rate_limit::{Allowance, Bucket, Rate, SHARDS};

/// How long a code is valid by default.
pub const OTP_TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Code {
    /// HMAC-SHA256 of identifier and code (32 bytes, not a `hmac::Tag`, which reserves 64).
    tag: [u8; 32],
    expires: Instant,
}

#[derive(Debug)]
struct Entry {
    /// The code that works.
    current: Option<Code>,
    /// The code it replaced (or the one just consumed), to answer `Expired` for its digits.
    replaced: Option<Code>,
    /// Wrong codes left for this identifier, across all codes and sources.
    failures: Bucket,
    touched: Instant,
}

impl Entry {
    fn idle(&self, rate: Rate, now: Instant) -> bool {
        let live = |c: &Option<Code>| c.as_ref().is_some_and(|c| c.expires > now);
        !live(&self.current) && !live(&self.replaced) && self.failures.is_full(rate, now)
    }
}

/// What a presented code is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The current code: consumed now.
    Ok,
    /// Not a code of this identifier (or none is pending); one failure was counted.
    Wrong,
    /// The right digits of a code that expired or was replaced; nothing was counted.
    Expired,
    /// The identifier's failure budget is spent; nothing was compared.
    Exhausted,
}

/// Sizes of the book.
#[derive(Debug, Clone, Copy)]
pub struct OtpLimits {
    /// Code lifetime.
    pub ttl: Duration,
    /// Wrong codes per identifier.
    pub failures: Allowance,
    /// Most identifiers held, over all shards.
    pub max_entries: usize,
}

/// Outstanding codes and failure budgets by identifier.
#[derive(Debug)]
pub struct OtpBook {
    key: hmac::Key,
    rng: SystemRandom,
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    hasher: std::collections::hash_map::RandomState,
    per_shard: usize,
    ttl: Duration,
    failures: Rate,
    /// Compared against when nothing is stored, so every verification does the same work.
    dummy: [u8; 32],
}

impl OtpBook {
    /// A book whose codes are MAC'd with `secret`.
    pub fn new(secret: &[u8], limits: OtpLimits) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let dummy = dummy_tag(&key);
        OtpBook {
            key,
            rng: SystemRandom::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            per_shard: limits.max_entries.div_ceil(SHARDS).max(1),
            ttl: limits.ttl,
            failures: limits.failures.into(),
            dummy,
        }
    }

    fn shard(&self, identifier: &str) -> MutexGuard<'_, HashMap<String, Entry>> {
        let i = (self.hasher.hash_one(identifier) as usize) % self.shards.len();
        // A poisoned shard only means a panic elsewhere mid-update; its entries stay usable.
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry for `identifier`, made room for if needed.
    fn entry<'a>(
        &self,
        map: &'a mut HashMap<String, Entry>,
        identifier: &str,
        now: Instant,
    ) -> &'a mut Entry {
        if !map.contains_key(identifier) && map.len() >= self.per_shard {
            self.evict(map, now);
        }
        let rate = self.failures;
        let e = map.entry(identifier.to_owned()).or_insert_with(|| Entry {
            current: None,
            replaced: None,
            failures: Bucket::full(rate, now),
            touched: now,
        });
        e.touched = now;
        e
    }

    fn evict(&self, map: &mut HashMap<String, Entry>, now: Instant) {
        let rate = self.failures;
        map.retain(|_, e| !e.idle(rate, now));
        if map.len() < self.per_shard {
            return;
        }
        // Entries with a spent failure budget go last: evicting one would hand its identifier
        // fresh guesses.
        let mut ranked: Vec<((bool, Instant), String)> = map
            .iter()
            .map(|(k, e)| ((!e.failures.is_full(rate, now), e.touched), k.clone()))
            .collect();
        let n = (ranked.len() / 8).max(1);
        ranked.select_nth_unstable_by_key(n - 1, |(rank, _)| *rank);
        for (_, k) in ranked.into_iter().take(n) {
            map.remove(&k);
        }
    }

    /// Issues a fresh code for `identifier`; the previous one stops working.
    pub fn issue(&self, identifier: &str, now: Instant) -> Result<String, ErrorCode> {
        let code = new_code(&self.rng)?;
        let tag = code_tag(&self.key, identifier, &code);
        let mut map = self.shard(identifier);
        let e = self.entry(&mut map, identifier, now);
        let new = Code {
            tag,
            expires: now + self.ttl,
        };
        if let Some(old) = e.current.replace(new)
            && old.expires > now
        {
            e.replaced = Some(old);
        }
        Ok(code)
    }

    /// Whether `identifier` has wrong codes left, without spending one.
    pub fn failures_left(&self, identifier: &str, now: Instant) -> bool {
        self.shard(identifier)
            .get(identifier)
            .is_none_or(|e| e.failures.allows(self.failures, now))
    }

    /// Checks a code; see [`Verdict`].
    pub fn verify(&self, identifier: &str, code: &str, now: Instant) -> Verdict {
        let input = mac_input(identifier, code);
        let mut map = self.shard(identifier);
        if let Some(e) = map.get(identifier)
            && !e.failures.allows(self.failures, now)
        {
            return Verdict::Exhausted;
        }
        let stored = map.get(identifier);
        let current = stored.and_then(|e| e.current.as_ref());
        let replaced = stored.and_then(|e| e.replaced.as_ref());
        // hmac::verify compares in constant time; both comparisons always run.
        let dummy = &self.dummy[..];
        let current_tag = current.map_or(dummy, |c| &c.tag[..]);
        let replaced_tag = replaced.map_or(dummy, |c| &c.tag[..]);
        let is_current = hmac::verify(&self.key, &input, current_tag).is_ok() && current.is_some();
        let is_replaced =
            hmac::verify(&self.key, &input, replaced_tag).is_ok() && replaced.is_some();
        let current_live = current.is_some_and(|c| c.expires > now);
        let e = self.entry(&mut map, identifier, now);
        if is_current && current_live {
            // Kept as the replaced code, so presenting it again answers `Expired`.
            e.replaced = e.current.take();
            Verdict::Ok
        } else if is_current || is_replaced {
            Verdict::Expired
        } else {
            let _ = e.failures.take(self.failures, now);
            Verdict::Wrong
        }
    }
}

/// Six random digits. Shared with the cluster store, so both hand out the same kind of code.
pub(crate) fn new_code(rng: &SystemRandom) -> Result<String, ErrorCode> {
    let mut bytes = [0u8; 4];
    rng.fill(&mut bytes).map_err(|_| ErrorCode::Internal)?;
    Ok(format!("{:06}", u32::from_le_bytes(bytes) % 1_000_000))
}

/// What a code is MAC'd over: the identifier binds the tag to it, so a tag copied to another
/// identifier's entry verifies nothing.
pub(crate) fn mac_input(identifier: &str, code: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(identifier.len() + code.len() + 1);
    v.extend_from_slice(identifier.as_bytes());
    v.push(0);
    v.extend_from_slice(code.as_bytes());
    v
}

/// The stored form of a code: HMAC-SHA256(secret, identifier NUL code).
pub(crate) fn code_tag(key: &hmac::Key, identifier: &str, code: &str) -> [u8; 32] {
    tag32(&hmac::sign(key, &mac_input(identifier, code)))
}

/// The tag compared against when nothing is stored, so every verification does the same work.
pub(crate) fn dummy_tag(key: &hmac::Key) -> [u8; 32] {
    tag32(&hmac::sign(key, b"tern otp dummy tag"))
}

fn tag32(tag: &hmac::Tag) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, t) in out.iter_mut().zip(tag.as_ref()) {
        *o = *t;
    }
    out
}

#[cfg(test)]
mod tests;
