//! Auth settings and their defaults. The limits, their order and the budgets they add up to are
//! described in the [`crate::auth`] module docs and in docs/operations.md; keep the three in step.

use serde::{Deserialize, Serialize};

use super::otp::OTP_TTL;
use super::rate_limit::{Allowance, Quota};
use super::source::PrefixLens;

/// Auth settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Access token lifetime, seconds.
    pub access_ttl_s: u64,
    /// Refresh token lifetime, seconds.
    pub refresh_ttl_s: u64,
    /// How long a rotated refresh token still returns its successor instead of counting as
    /// reuse, seconds (a client whose answer was lost retries with the old token).
    pub refresh_grace_s: u64,
    /// `Refresh` calls per device.
    pub refresh_per_device: Quota,
    /// `Refresh` calls per source prefix.
    pub refresh_per_address: Quota,
    /// OTP code lifetime, seconds.
    pub otp_ttl_s: u64,
    /// OTP requests and verifications per source prefix (checked first).
    pub otp_per_address: Quota,
    /// OTP requests per identifier from one source prefix.
    pub otp_per_identifier_source: Allowance,
    /// OTP requests per identifier, from all sources.
    pub otp_per_identifier: Quota,
    /// OTP requests per number prefix / email domain; beyond it only registered identifiers get
    /// codes (the answer is the same).
    pub otp_per_prefix: Quota,
    /// Wrong codes per identifier, across all codes and sources: the brute-force bound.
    pub otp_failures_per_identifier: Allowance,
    /// Wrong codes in a row from one source prefix for one identifier before it is locked out.
    pub otp_free_misses: u32,
    /// First lock after `otp_free_misses`, seconds; doubles with each further miss.
    pub otp_first_lock_s: u64,
    /// Longest lock, seconds.
    pub otp_max_lock_s: u64,
    /// Identifiers with codes or failure budgets held in memory.
    pub otp_max_identifiers: usize,
    /// Identifier-and-source pairs held in memory.
    pub otp_max_pairs: usize,
    /// Source addresses held by each per-address table.
    pub max_tracked_sources: usize,
    /// Bits of an IPv4 source address one client is assumed to control.
    pub ipv4_prefix_len: u8,
    /// Bits of an IPv6 source address one client is assumed to control.
    pub ipv6_prefix_len: u8,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_ttl_s: 15 * 60,
            refresh_ttl_s: 30 * 24 * 3600,
            refresh_grace_s: 120,
            refresh_per_device: Quota {
                burst: 10,
                per_minute: 2,
            },
            refresh_per_address: Quota {
                burst: 60,
                per_minute: 30,
            },
            otp_ttl_s: OTP_TTL.as_secs(),
            otp_per_address: Quota {
                burst: 30,
                per_minute: 10,
            },
            otp_per_identifier_source: Allowance {
                burst: 3,
                per_day: 72,
            },
            otp_per_identifier: Quota {
                burst: 5,
                per_minute: 1,
            },
            otp_per_prefix: Quota {
                burst: 200,
                per_minute: 100,
            },
            otp_failures_per_identifier: Allowance {
                burst: 30,
                per_day: 30,
            },
            otp_free_misses: 5,
            otp_first_lock_s: 60,
            otp_max_lock_s: 24 * 3600,
            otp_max_identifiers: 200_000,
            otp_max_pairs: 200_000,
            max_tracked_sources: 200_000,
            ipv4_prefix_len: 32,
            ipv6_prefix_len: 64,
        }
    }
}

impl AuthConfig {
    /// The source prefix lengths.
    pub fn prefix_lens(&self) -> PrefixLens {
        PrefixLens {
            v4: self.ipv4_prefix_len,
            v6: self.ipv6_prefix_len,
        }
    }

    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if self.ipv4_prefix_len > 32 || self.ipv6_prefix_len > 128 {
            return Err("ipv4_prefix_len is at most 32 and ipv6_prefix_len at most 128".into());
        }
        if self.otp_free_misses == 0 {
            return Err("otp_free_misses must be at least 1".into());
        }
        Ok(())
    }
}
