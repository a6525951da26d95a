//! Source prefixes: the unit per-address limits count in.
//!
//! One IPv4 address is one subscriber line (or one NAT), but an IPv6 subscriber is handed a whole
//! /64 (often a /56 or /48), so keying IPv6 limits on the exact address lets one host rotate
//! through 2^64 fresh budgets. Limits key on the address masked to a prefix length: /32 for IPv4
//! and /64 for IPv6 by default, configurable (`auth.ipv4_prefix_len`, `auth.ipv6_prefix_len`).
//! IPv4-mapped IPv6 addresses count as IPv4.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A source address masked to its configured prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourcePrefix(IpAddr);

/// How much of a source address identifies one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixLens {
    /// Bits of an IPv4 address kept (0..=32).
    pub v4: u8,
    /// Bits of an IPv6 address kept (0..=128).
    pub v6: u8,
}

impl Default for PrefixLens {
    fn default() -> Self {
        PrefixLens { v4: 32, v6: 64 }
    }
}

impl SourcePrefix {
    /// The prefix `addr` belongs to.
    pub fn of(addr: IpAddr, lens: PrefixLens) -> SourcePrefix {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        SourcePrefix(match addr {
            IpAddr::V4(a) => {
                let bits = u32::from(lens.v4.min(32));
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let bits = u32::from(lens.v6.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        })
    }

    /// The masked address, for logs.
    pub fn addr(self) -> IpAddr {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str, lens: PrefixLens) -> SourcePrefix {
        SourcePrefix::of(s.parse().unwrap(), lens)
    }

    #[test]
    fn ipv6_keys_on_the_64_and_ipv4_on_the_address() {
        let d = PrefixLens::default();
        assert_eq!(p("2001:db8:1:2::1", d), p("2001:db8:1:2:ffff:1:2:3", d));
        assert_ne!(p("2001:db8:1:2::1", d), p("2001:db8:1:3::1", d));
        assert_ne!(p("192.0.2.1", d), p("192.0.2.2", d));
        assert_eq!(p("::ffff:192.0.2.1", d), p("192.0.2.1", d));
    }

    #[test]
    fn prefix_lengths_are_configurable() {
        let wide = PrefixLens { v4: 24, v6: 48 };
        assert_eq!(p("192.0.2.1", wide), p("192.0.2.200", wide));
        assert_eq!(p("2001:db8:1:2::1", wide), p("2001:db8:1:ff::1", wide));
        let zero = PrefixLens { v4: 0, v6: 0 };
        assert_eq!(p("192.0.2.1", zero), p("10.0.0.1", zero));
        let over = PrefixLens { v4: 99, v6: 200 };
        assert_ne!(p("192.0.2.1", over), p("192.0.2.2", over));
    }
}
