//! OTP state and the OTP limits in Redis, shared by every node of a cluster (DESIGN §7): a code
//! requested through one node verifies through any other, and no limit multiplies with the
//! number of nodes. The in-memory store ([`crate::auth::state::MemoryState`]) keeps the same
//! rules on one node; this is its [`AuthState`] twin, step for step.
//!
//! # Keys
//!
//! `{prefix}` defaults to `tern`. Identifiers, source prefixes and number prefixes appear only
//! as keyed hashes (HMAC-SHA256 under a key derived from the OTP secret, 128 bits, hex), so a
//! Redis dump names nobody; all nodes derive the same names because they share the secret file.
//! An identifier's keys share its hash tag, so each script touches one Redis Cluster slot.
//! - `{prefix}:auth:src:<h(source)>`: `OtpRequest`/`VerifyOtp` calls per source prefix;
//! - `{prefix}:auth:pfx:<h(prefix)>`: codes per number prefix or email domain;
//! - `{prefix}:auth:{<h(id)>}:req`: code requests per identifier;
//! - `{prefix}:auth:{<h(id)>}:pair:<h(source)>`: the pair's code requests, run of misses, lock;
//! - `{prefix}:auth:{<h(id)>}:otp`: the current and replaced codes' HMAC tags and expiries, and
//!   the identifier's failure budget.
//!
//! Every key has a TTL: a bucket's until it is full again, a code entry's at least twice the
//! code lifetime (at least a minute) so an expired code's digits still answer `OtpExpired`, a
//! pair's until its lock and its run of misses are over. Redis therefore holds only what is in
//! use, without the eviction rules the in-memory tables need.
//!
//! # Atomicity and the code
//!
//! Each step is one Lua script ([`lua`]). Only the code's tag is stored, never the digits. The
//! comparison happens on the node, in constant time (`ring::hmac::verify`, always two of them,
//! against a dummy tag when nothing is stored), so verifying is two scripts: [`lua::GATE`]
//! checks the lock and the failure budget and reserves one failure, the node compares, and
//! [`lua::SETTLE`] consumes the code (only if it is still the live current one), gives the
//! reserved failure back, or counts the miss. A node that dies in between has spent one
//! failure: the budget errs towards fewer guesses, never more.
//!
//! # Failing closed
//!
//! A script that fails, times out ([`RedisAuthSettings::timeout`]) or cannot be sent answers
//! [`AuthStateError::Unavailable`]; the service then refuses the request with `Overloaded`.
//! Nothing falls back to node-local state: that would give each node its own guess budget. The
//! connection is opened on first use and, after a failed attempt, not retried for
//! [`RedisAuthSettings::reconnect_after`], so an outage costs each login one fast refusal.

mod lua;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, RedisError};
use ring::hmac;
use ring::rand::SystemRandom;

use crate::auth::AuthConfig;
use crate::auth::otp::{code_tag, dummy_tag, mac_input, new_code};
use crate::auth::rate_limit::{Allowance, Quota};
use crate::auth::source::SourcePrefix;
use crate::auth::state::{AuthState, AuthStateError, Checked, FORGET_MISSES_AFTER};
use crate::cluster::RedisTarget;

/// Where the store lives and how long it waits.
#[derive(Debug, Clone)]
pub struct RedisAuthSettings {
    /// The Redis server or cluster (the same one the bus uses).
    pub target: RedisTarget,
    /// Key prefix (tests use their own, so they can share one Redis).
    pub prefix: String,
    /// Longest wait for one connection attempt or one script.
    pub timeout: Duration,
    /// After a failed connection attempt, refuse at once for this long before trying again.
    pub reconnect_after: Duration,
}

impl RedisAuthSettings {
    /// The defaults for `target`: prefix `tern`, 2 s timeout, 1 s between connection attempts.
    pub fn new(target: RedisTarget) -> Self {
        RedisAuthSettings {
            target,
            prefix: "tern".into(),
            timeout: Duration::from_secs(2),
            reconnect_after: Duration::from_secs(1),
        }
    }
}

/// A bucket as the scripts take it: size and tokens per millisecond.
#[derive(Debug, Clone, Copy)]
struct Lim {
    burst: f64,
    per_ms: f64,
}

impl From<Quota> for Lim {
    fn from(q: Quota) -> Self {
        Lim {
            burst: f64::from(q.burst),
            per_ms: f64::from(q.per_minute) / 60_000.0,
        }
    }
}

impl From<Allowance> for Lim {
    fn from(a: Allowance) -> Self {
        Lim {
            burst: f64::from(a.burst),
            per_ms: f64::from(a.per_day) / 86_400_000.0,
        }
    }
}

/// The limits from [`AuthConfig`], in script units.
#[derive(Debug, Clone, Copy)]
struct Limits {
    per_source: Lim,
    per_pair: Lim,
    per_identifier: Lim,
    per_prefix: Lim,
    failures: Lim,
    code_ttl_ms: u64,
    free_misses: u32,
    first_lock_ms: u64,
    max_lock_ms: u64,
}

/// Longest lifetime of a bucket that never refills (a rate of 0).
const BUCKET_CAP_MS: u64 = 7 * 24 * 3600 * 1000;

/// A script and its SHA-1, for `EVALSHA` (the body is sent only when Redis does not know it).
#[derive(Debug)]
struct Script {
    body: String,
    sha: String,
}

impl Script {
    fn new(body: &str) -> Self {
        let body = format!("{}{body}", lua::PRELUDE);
        let sha = hex::encode(ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            body.as_bytes(),
        ));
        Script { body, sha }
    }
}

#[derive(Debug)]
struct Scripts {
    take: Script,
    request: Script,
    issue: Script,
    gate: Script,
    settle: Script,
}

/// A command connection to one Redis or a Redis Cluster (both reconnect by themselves once
/// opened).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

#[derive(Default)]
struct ConnSlot {
    conn: Option<Conn>,
    failed_at: Option<Instant>,
}

/// OTP codes, guess budgets and request quotas in Redis (see the module docs).
pub struct RedisAuthState {
    settings: RedisAuthSettings,
    slot: tokio::sync::Mutex<ConnSlot>,
    /// MACs the codes (the same key as the in-memory book: the OTP secret).
    tag_key: hmac::Key,
    /// Names the keys.
    name_key: hmac::Key,
    dummy: [u8; 32],
    rng: SystemRandom,
    limits: Limits,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisAuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAuthState")
            .field("target", &self.settings.target)
            .field("prefix", &self.settings.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> AuthStateError {
    AuthStateError::Unavailable(e.to_string())
}

impl RedisAuthState {
    /// A store on `settings.target` with the limits of `config`, codes MAC'd with `otp_secret`
    /// (every node must use the same). Does not connect yet, so a node starts while Redis is
    /// down (and refuses logins until it is back); only a malformed URL fails here.
    pub fn new(
        settings: RedisAuthSettings,
        config: &AuthConfig,
        otp_secret: &[u8],
    ) -> Result<Self, AuthStateError> {
        match &settings.target {
            RedisTarget::Single(u) => drop(redis::Client::open(u.as_str()).map_err(bad_url)?),
            RedisTarget::Cluster(seeds) => {
                drop(redis::cluster::ClusterClient::new(seeds.clone()).map_err(bad_url)?);
            }
        }
        let tag_key = hmac::Key::new(hmac::HMAC_SHA256, otp_secret);
        let name_secret = hmac::sign(&tag_key, b"tern auth redis key names");
        let c = config;
        Ok(RedisAuthState {
            slot: tokio::sync::Mutex::new(ConnSlot::default()),
            dummy: dummy_tag(&tag_key),
            name_key: hmac::Key::new(hmac::HMAC_SHA256, name_secret.as_ref()),
            tag_key,
            rng: SystemRandom::new(),
            limits: Limits {
                per_source: c.otp_per_address.into(),
                per_pair: c.otp_per_identifier_source.into(),
                per_identifier: c.otp_per_identifier.into(),
                per_prefix: c.otp_per_prefix.into(),
                failures: c.otp_failures_per_identifier.into(),
                code_ttl_ms: c.otp_ttl_s.saturating_mul(1000),
                free_misses: c.otp_free_misses,
                first_lock_ms: c.otp_first_lock_s.saturating_mul(1000),
                max_lock_ms: c.otp_max_lock_s.saturating_mul(1000),
            },
            scripts: Scripts {
                take: Script::new(lua::TAKE),
                request: Script::new(lua::REQUEST),
                issue: Script::new(lua::ISSUE),
                gate: Script::new(lua::GATE),
                settle: Script::new(lua::SETTLE),
            },
            settings,
        })
    }

    /// `kind` and `value` as a key name part: 128 bits of a keyed hash, in hex.
    fn name(&self, kind: &str, value: &str) -> String {
        let tag = hmac::sign(&self.name_key, &mac_input(kind, value));
        hex::encode(&tag.as_ref()[..16])
    }

    fn source_key(&self, source: SourcePrefix) -> String {
        let h = self.name("src", &source.addr().to_string());
        format!("{}:auth:src:{h}", self.settings.prefix)
    }

    fn prefix_key(&self, prefix: &str) -> String {
        format!(
            "{}:auth:pfx:{}",
            self.settings.prefix,
            self.name("pfx", prefix)
        )
    }

    /// The identifier's keys' common start, with its hash tag.
    fn id_base(&self, identifier: &str) -> String {
        format!(
            "{}:auth:{{{}}}",
            self.settings.prefix,
            self.name("id", identifier)
        )
    }

    fn pair_key(&self, base: &str, source: SourcePrefix) -> String {
        format!(
            "{base}:pair:{}",
            self.name("src", &source.addr().to_string())
        )
    }

    /// The open connection, or a new one; refuses at once shortly after a failed attempt.
    async fn conn(&self) -> Result<Conn, AuthStateError> {
        let mut slot = self.slot.lock().await;
        if let Some(c) = &slot.conn {
            return Ok(c.clone());
        }
        if let Some(at) = slot.failed_at
            && at.elapsed() < self.settings.reconnect_after
        {
            return Err(unavailable("Redis unreachable (retrying shortly)"));
        }
        let opened = tokio::time::timeout(self.settings.timeout, self.open()).await;
        match opened {
            Ok(Ok(c)) => {
                slot.failed_at = None;
                slot.conn = Some(c.clone());
                Ok(c)
            }
            Ok(Err(e)) => {
                slot.failed_at = Some(Instant::now());
                Err(unavailable(e))
            }
            Err(_) => {
                slot.failed_at = Some(Instant::now());
                Err(unavailable("connecting to Redis timed out"))
            }
        }
    }

    async fn open(&self) -> Result<Conn, RedisError> {
        let t = self.settings.timeout;
        Ok(match &self.settings.target {
            RedisTarget::Single(url) => {
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(t))
                    .set_response_timeout(Some(t))
                    .set_number_of_retries(1);
                let client = redis::Client::open(url.as_str())?;
                Conn::Single(ConnectionManager::new_with_config(client, cfg).await?)
            }
            RedisTarget::Cluster(seeds) => {
                let client = redis::cluster::ClusterClient::builder(seeds.clone())
                    .connection_timeout(t)
                    .response_timeout(t)
                    .build()?;
                Conn::Cluster(client.get_async_connection().await?)
            }
        })
    }

    /// Runs `script` (`EVALSHA`, then `EVAL` if Redis does not know it yet), within the timeout.
    async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[String],
    ) -> Result<T, AuthStateError> {
        let mut conn = self.conn().await?;
        let run = async {
            let cmd = |name: &str, what: &str| {
                let mut c = redis::cmd(name);
                c.arg(what).arg(keys.len()).arg(keys).arg(args);
                c
            };
            match query(&mut conn, &cmd("EVALSHA", &script.sha)).await {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    query(&mut conn, &cmd("EVAL", &script.body)).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(self.settings.timeout, run).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("Redis did not answer in time")),
        }
    }

    /// Takes one token of the per-user budget `what` of `user`, shared by every node (the
    /// cluster-wide [`crate::chat::limits::SharedBudget`]): key `{prefix}:lim:{what}:{user}`,
    /// the same bucket script as the OTP quotas.
    pub async fn take_user_budget(
        &self,
        what: &str,
        user: u64,
        burst: u32,
        per_ms: f64,
    ) -> Result<bool, AuthStateError> {
        let slug: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let key = format!("{}:lim:{slug}:{user}", self.settings.prefix);
        self.take(
            &key,
            Lim {
                burst: f64::from(burst),
                per_ms,
            },
        )
        .await
    }

    /// Takes one token from the bucket at `key` ([`lua::TAKE`]).
    async fn take(&self, key: &str, l: Lim) -> Result<bool, AuthStateError> {
        let [b, r] = Self::bucket_args(l);
        let taken: i64 = self
            .eval(
                &self.scripts.take,
                &[key],
                &[b, r, BUCKET_CAP_MS.to_string()],
            )
            .await?;
        Ok(taken == 1)
    }

    fn bucket_args(l: Lim) -> [String; 2] {
        [l.burst.to_string(), l.per_ms.to_string()]
    }

    /// Decodes a stored tag; anything else (nothing stored, garbage) compares as the dummy.
    fn tag_or_dummy(&self, hex_tag: &str) -> ([u8; 32], bool) {
        let mut out = [0u8; 32];
        match hex::decode_to_slice(hex_tag, &mut out) {
            Ok(()) => (out, true),
            Err(_) => (self.dummy, false),
        }
    }
}

async fn query<T: FromRedisValue>(conn: &mut Conn, cmd: &redis::Cmd) -> Result<T, RedisError> {
    match conn {
        Conn::Single(c) => cmd.query_async(c).await,
        Conn::Cluster(c) => cmd.query_async(c).await,
    }
}

fn bad_url(e: RedisError) -> AuthStateError {
    AuthStateError::Unavailable(format!("bad Redis URL: {e}"))
}

fn reply_error(what: &str, reply: &[String]) -> AuthStateError {
    AuthStateError::Protocol(format!("{what}: {reply:?}"))
}

#[async_trait]
impl AuthState for RedisAuthState {
    async fn take_source(&self, source: SourcePrefix, _: Instant) -> Result<bool, AuthStateError> {
        let key = self.source_key(source);
        self.take(&key, self.limits.per_source).await
    }

    async fn take_request(
        &self,
        identifier: &str,
        source: SourcePrefix,
        _: Instant,
    ) -> Result<bool, AuthStateError> {
        let base = self.id_base(identifier);
        let pair = self.pair_key(&base, source);
        let req = format!("{base}:req");
        let [pb, pr] = Self::bucket_args(self.limits.per_pair);
        let [ib, ir] = Self::bucket_args(self.limits.per_identifier);
        let args = [pb, pr, ib, ir, BUCKET_CAP_MS.to_string()];
        let taken: i64 = self
            .eval(&self.scripts.request, &[&pair, &req], &args)
            .await?;
        Ok(taken == 1)
    }

    async fn take_prefix(&self, prefix: &str, _: Instant) -> Result<bool, AuthStateError> {
        let key = self.prefix_key(prefix);
        self.take(&key, self.limits.per_prefix).await
    }

    async fn issue(&self, identifier: &str, _: Instant) -> Result<String, AuthStateError> {
        let code = new_code(&self.rng).map_err(|_| AuthStateError::Random)?;
        let tag = hex::encode(code_tag(&self.tag_key, identifier, &code));
        let ttl = self.limits.code_ttl_ms;
        let keep = ttl.saturating_mul(2).max(60_000);
        let key = format!("{}:otp", self.id_base(identifier));
        let args = [tag, ttl.to_string(), keep.to_string()];
        let _: i64 = self.eval(&self.scripts.issue, &[&key], &args).await?;
        Ok(code)
    }

    async fn verify(
        &self,
        identifier: &str,
        code: &str,
        source: SourcePrefix,
        _: Instant,
    ) -> Result<Checked, AuthStateError> {
        let base = self.id_base(identifier);
        let pair = self.pair_key(&base, source);
        let otp = format!("{base}:otp");
        let keys = [pair.as_str(), otp.as_str()];
        let [fb, fr] = Self::bucket_args(self.limits.failures);
        let cap = BUCKET_CAP_MS.to_string();
        let gate: Vec<String> = self
            .eval(
                &self.scripts.gate,
                &keys,
                &[fb.clone(), fr.clone(), cap.clone()],
            )
            .await?;
        let (current_hex, live, replaced_hex) = match gate.as_slice() {
            [s] if s == "locked" || s == "exhausted" => return Ok(Checked::TooMany),
            [s, c, live, r] if s == "open" => (c.clone(), live == "1", r.clone()),
            _ => return Err(reply_error("gate", &gate)),
        };
        // Both comparisons always run, in constant time, against the dummy when nothing is
        // stored: the work does not tell whether a code is pending.
        let input = mac_input(identifier, code);
        let (current_tag, has_current) = self.tag_or_dummy(&current_hex);
        let (replaced_tag, has_replaced) = self.tag_or_dummy(&replaced_hex);
        let is_current = hmac::verify(&self.tag_key, &input, &current_tag).is_ok() && has_current;
        let is_replaced =
            hmac::verify(&self.tag_key, &input, &replaced_tag).is_ok() && has_replaced;
        let outcome = if is_current && live {
            "ok"
        } else if is_current || is_replaced {
            "expired"
        } else {
            "wrong"
        };
        let l = self.limits;
        let args = [
            outcome.to_owned(),
            current_hex,
            fb,
            fr,
            cap,
            l.free_misses.to_string(),
            l.first_lock_ms.to_string(),
            l.max_lock_ms.to_string(),
            FORGET_MISSES_AFTER.as_millis().to_string(),
        ];
        let settled: Vec<String> = self.eval(&self.scripts.settle, &keys, &args).await?;
        match settled.as_slice() {
            [s] if s == "ok" => Ok(Checked::Ok),
            [s] if s == "expired" => Ok(Checked::Expired),
            [s, locked, left] if s == "wrong" => Ok(if locked == "1" || left != "1" {
                Checked::TooMany
            } else {
                Checked::Wrong
            }),
            _ => Err(reply_error("settle", &settled)),
        }
    }
}
