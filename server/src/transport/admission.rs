//! Overload control at the door: caps on connections per shard and per source address, and
//! address validation (QUIC Retry) when a shard's handshake rate is high.
//!
//! A connection over a cap still completes its handshake so the client can be told, in protocol
//! terms, when to come back: the server answers its `Hello` with `GoAway { Overloaded,
//! reconnect_after_ms }` and `Error(Overloaded)`, then closes with code `Overloaded`. The SDK waits
//! at least that long, plus jitter, so a crowd spreads out instead of hammering the server again.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::auth::rate_limit::{Quota, RateLimiter};
use crate::auth::source::{PrefixLens, SourcePrefix};

/// Admission settings.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    /// Most open connections per shard.
    pub max_per_shard: usize,
    /// Most open connections per source prefix (an IPv4 address or an IPv6 /64 by default).
    pub max_per_ip: u32,
    /// What counts as one source (`auth.ipv4_prefix_len`, `auth.ipv6_prefix_len`).
    pub source_prefix: PrefixLens,
    /// Unvalidated handshakes per second per shard before Retry is demanded.
    pub handshakes_before_retry_per_s: u32,
    /// What overloaded clients are told to wait.
    pub overloaded_retry_after: Duration,
}

/// Counts connections per source address across all shards.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    per_ip: DashMap<SourcePrefix, u32>,
}

/// Holds one connection's place in the per-address count; released on drop.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    ip: SourcePrefix,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let remove = match self.admission.per_ip.get_mut(&self.ip) {
            Some(mut n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if remove {
            self.admission.per_ip.remove_if(&self.ip, |_, n| *n == 0);
        }
    }
}

impl Admission {
    /// Admission with `limits`.
    pub fn new(limits: AdmissionLimits) -> Arc<Self> {
        Arc::new(Admission {
            limits,
            per_ip: DashMap::new(),
        })
    }

    /// The settings.
    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// Takes a place for a connection from `ip` on a shard with `open` connections, or says the
    /// server is overloaded.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, open_on_shard: usize) -> Option<Admitted> {
        if open_on_shard >= self.limits.max_per_shard {
            return None;
        }
        let ip = SourcePrefix::of(ip, self.limits.source_prefix);
        let mut n = self.per_ip.entry(ip).or_insert(0);
        if *n >= self.limits.max_per_ip {
            return None;
        }
        *n += 1;
        drop(n);
        Some(Admitted {
            admission: self.clone(),
            ip,
        })
    }
}

/// Per-shard handshake rate gate: above the rate, unvalidated clients must do a Retry round trip.
#[derive(Debug)]
pub struct HandshakeGate {
    limiter: RateLimiter<()>,
}

impl HandshakeGate {
    /// A gate letting `per_s` unvalidated handshakes a second through without Retry.
    pub fn new(per_s: u32) -> Self {
        let quota = Quota {
            burst: per_s.max(1),
            per_minute: per_s.saturating_mul(60).max(1),
        };
        HandshakeGate {
            limiter: RateLimiter::new(quota, 1),
        }
    }

    /// Whether an unvalidated handshake arriving at `now` must be sent a Retry.
    pub fn demand_retry(&mut self, now: Instant) -> bool {
        self.limiter.check(&(), now).is_err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            max_per_shard: 3,
            max_per_ip: 2,
            handshakes_before_retry_per_s: 2,
            overloaded_retry_after: Duration::from_secs(1),
            source_prefix: PrefixLens::default(),
        }
    }

    #[test]
    fn per_address_and_per_shard_caps() {
        let a = Admission::new(limits());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = a.admit(ip, 0).unwrap();
        let _g2 = a.admit(ip, 1).unwrap();
        assert!(a.admit(ip, 2).is_none(), "per-address cap");
        assert!(a.admit(other, 3).is_none(), "per-shard cap");
        drop(g1);
        assert!(
            a.admit(ip, 2).is_some(),
            "a closed connection frees its place"
        );
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        let a = Admission::new(limits());
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:fffe".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _g1 = a.admit(one, 0).unwrap();
        let _g2 = a.admit(same_64, 0).unwrap();
        assert!(
            a.admit("2001:db8:1:2::99".parse().unwrap(), 0).is_none(),
            "a third address of the same /64 is over the cap of 2"
        );
        assert!(a.admit(other_64, 0).is_some());
    }

    #[test]
    fn retry_is_demanded_above_the_rate() {
        let t0 = Instant::now();
        let mut gate = HandshakeGate::new(2);
        assert!(!gate.demand_retry(t0));
        assert!(!gate.demand_retry(t0));
        assert!(gate.demand_retry(t0));
        assert!(!gate.demand_retry(t0 + Duration::from_secs(1)));
    }
}
