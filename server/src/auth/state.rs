//! Where OTP state and the OTP rate limits live: the seam between [`super::AuthService`] and its
//! tables.
//!
//! One node keeps everything in memory ([`MemoryState`]: the [`OtpBook`], the [`Attempts`] table
//! and the sharded limiters, exactly as before this seam existed). Several nodes behind one
//! address must share it, or `VerifyOtp` landing on another node than `RequestOtp` finds no code
//! and every limit is multiplied by the number of nodes; cluster mode therefore plugs in a store
//! kept in Redis (`cluster::redis::auth_state`, feature `cluster`). Auth itself never learns which one
//! it has.
//!
//! The operations are the service's steps, not generic get/set, because each must be atomic
//! where the state lives: "check both request budgets, then spend both", "issue a code, void the
//! old one", "check the lock and the failure budget, compare, count the miss". A store that
//! cannot reach its state answers [`AuthStateError::Unavailable`] and the service refuses the
//! request (fail closed): falling back to node-local state would hand every node a fresh guess
//! budget.
//!
//! Time: the in-memory store uses the `now` it is given (tests simulate hours); a shared store
//! may ignore it and use one clock for all nodes (Redis's), since node clocks disagree.

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::attempts::{AttemptLimits, Attempts};
use super::config::AuthConfig;
use super::otp::{OtpBook, OtpLimits, Verdict};
use super::rate_limit::ShardedLimiter;
use super::source::SourcePrefix;

/// Why a store could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthStateError {
    /// The shared state is out of reach (Redis down, slow or refusing): retry later. Never
    /// answered by the in-memory store.
    #[error("auth state unavailable: {0}")]
    Unavailable(String),
    /// The system random number generator failed.
    #[error("no randomness for a code")]
    Random,
    /// The store answered something it should not have (a script's reply did not parse).
    #[error("auth state answered unexpectedly: {0}")]
    Protocol(String),
}

/// What a presented code turned out to be, after every `VerifyOtp` limit from the lock on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The current, live code: consumed now; the source's run of misses is over.
    Ok,
    /// Not a code of this identifier, or none is pending: one miss and one failure counted.
    Wrong,
    /// The digits of a code that expired, was replaced or was already used; nothing counted.
    Expired,
    /// The source is locked out of this identifier, or the identifier's failure budget is
    /// spent (possibly by this very guess); the code may not have been compared.
    TooMany,
}

/// OTP codes, guess budgets and request quotas. Steps are numbered as in the [`crate::auth`]
/// module docs; each call is atomic with respect to every node sharing the store.
#[async_trait]
pub trait AuthState: Send + Sync + fmt::Debug {
    /// Takes one call from the source prefix's bucket (`RequestOtp` 2 and `VerifyOtp` 2 share
    /// it); `false`: none left.
    async fn take_source(&self, source: SourcePrefix, now: Instant)
    -> Result<bool, AuthStateError>;

    /// Spends one code request of the identifier-and-source pair and one of the identifier, if
    /// both have one; otherwise spends neither and answers `false` (`RequestOtp` 3).
    async fn take_request(
        &self,
        identifier: &str,
        source: SourcePrefix,
        now: Instant,
    ) -> Result<bool, AuthStateError>;

    /// Takes one code from the number prefix's or email domain's budget (`RequestOtp` 4);
    /// `false`: spent, only registered identifiers get a code.
    async fn take_prefix(&self, prefix: &str, now: Instant) -> Result<bool, AuthStateError>;

    /// Issues a fresh code for `identifier` and voids the previous one; answers the digits
    /// (only the MAC is kept).
    async fn issue(&self, identifier: &str, now: Instant) -> Result<String, AuthStateError>;

    /// `VerifyOtp` 3–5: the source's lock, the identifier's failure budget, the code.
    async fn verify(
        &self,
        identifier: &str,
        code: &str,
        source: SourcePrefix,
        now: Instant,
    ) -> Result<Checked, AuthStateError>;
}

/// The single-node store: everything in this process's memory, bounded and evicting (see the
/// module docs of [`OtpBook`], [`Attempts`] and [`super::rate_limit`]). A restart forgets it.
#[derive(Debug)]
pub struct MemoryState {
    per_source: ShardedLimiter<SourcePrefix>,
    per_identifier: ShardedLimiter<String>,
    per_prefix: ShardedLimiter<String>,
    otp: OtpBook,
    attempts: Attempts,
}

impl MemoryState {
    /// Tables sized and limited by `c`; codes MAC'd with `otp_secret`.
    pub fn new(c: &AuthConfig, otp_secret: &[u8]) -> Self {
        MemoryState {
            per_source: ShardedLimiter::new(c.otp_per_address, c.max_tracked_sources),
            per_identifier: ShardedLimiter::new(c.otp_per_identifier, c.otp_max_identifiers),
            per_prefix: ShardedLimiter::new(c.otp_per_prefix, 100_000),
            otp: OtpBook::new(
                otp_secret,
                OtpLimits {
                    ttl: Duration::from_secs(c.otp_ttl_s),
                    failures: c.otp_failures_per_identifier,
                    max_entries: c.otp_max_identifiers,
                },
            ),
            attempts: Attempts::new(AttemptLimits {
                requests: c.otp_per_identifier_source,
                free_misses: c.otp_free_misses,
                first_lock: Duration::from_secs(c.otp_first_lock_s),
                max_lock: Duration::from_secs(c.otp_max_lock_s),
                forget_after: FORGET_MISSES_AFTER,
                max_entries: c.otp_max_pairs,
            }),
        }
    }
}

/// A run of wrong codes from one source is forgotten after this long without a miss.
pub const FORGET_MISSES_AFTER: Duration = Duration::from_secs(24 * 3600);

#[async_trait]
impl AuthState for MemoryState {
    async fn take_source(
        &self,
        source: SourcePrefix,
        now: Instant,
    ) -> Result<bool, AuthStateError> {
        Ok(self.per_source.check(&source, now).is_ok())
    }

    async fn take_request(
        &self,
        identifier: &str,
        source: SourcePrefix,
        now: Instant,
    ) -> Result<bool, AuthStateError> {
        let key = identifier.to_owned();
        if !self.attempts.may_request(&key, source, now) || !self.per_identifier.allows(&key, now) {
            return Ok(false);
        }
        self.attempts.requested(&key, source, now);
        let _ = self.per_identifier.check(&key, now);
        Ok(true)
    }

    async fn take_prefix(&self, prefix: &str, now: Instant) -> Result<bool, AuthStateError> {
        Ok(self.per_prefix.check(&prefix.to_owned(), now).is_ok())
    }

    async fn issue(&self, identifier: &str, now: Instant) -> Result<String, AuthStateError> {
        self.otp
            .issue(identifier, now)
            .map_err(|_| AuthStateError::Random)
    }

    async fn verify(
        &self,
        identifier: &str,
        code: &str,
        source: SourcePrefix,
        now: Instant,
    ) -> Result<Checked, AuthStateError> {
        if self.attempts.locked(identifier, source, now).is_some() {
            return Ok(Checked::TooMany);
        }
        Ok(match self.otp.verify(identifier, code, now) {
            Verdict::Ok => {
                self.attempts.succeeded(identifier, source);
                Checked::Ok
            }
            Verdict::Exhausted => Checked::TooMany,
            Verdict::Expired => Checked::Expired,
            Verdict::Wrong => {
                if self.attempts.missed(identifier, source, now).is_some()
                    || !self.otp.failures_left(identifier, now)
                {
                    Checked::TooMany
                } else {
                    Checked::Wrong
                }
            }
        })
    }
}
