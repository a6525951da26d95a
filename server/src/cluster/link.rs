//! The receiver's per-link sequence check (I6): pure, clock-injected, so it is tested without
//! Redis.
//!
//! Per sending node it remembers the sender's boot id, the last sequence number seen and when
//! the link was last heard. The verdicts:
//! - a data envelope with `seq == last + 1` is in order; `seq <= last` is a duplicate (dropped);
//!   `seq > last + 1` means envelopes were lost: a gap;
//! - a heartbeat with `seq > last` means the tail was lost: a gap;
//! - a known sender with a new boot id restarted: its old incarnation may have died between a
//!   commit and its publish, so that is a gap too;
//! - a link not heard for [`LinkTable::silent_after`] without a `Bye` is a dead sender: a gap
//!   (same reason), and the link is forgotten;
//! - the first envelope of an unknown sender sets the baseline; it is a gap unless it is the
//!   link's first (data `seq == 1`, heartbeat `seq == 0`): a sender heartbeats from its start,
//!   so a receiver that was listening sees the link from its first number.
//!
//! On any gap the caller resyncs its local users (the router's overflow path): everything the
//! lost envelopes carried is durable, so a sync from storage heals it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What the receiver should do with one envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Apply it.
    Apply,
    /// Apply it, and resync: something before it was lost.
    Gap,
    /// Already seen: drop it.
    Duplicate,
}

#[derive(Debug, Clone, Copy)]
struct Link {
    boot: u64,
    last: u64,
    heard: Instant,
    said_bye: bool,
}

/// Per sending node: boot id, last sequence number, last heard.
#[derive(Debug)]
pub struct LinkTable {
    links: HashMap<String, Link>,
    silent_after: Duration,
}

impl LinkTable {
    /// A table that declares a link dead after `silent_after` without an envelope.
    pub fn new(silent_after: Duration) -> Self {
        LinkTable {
            links: HashMap::new(),
            silent_after,
        }
    }

    /// How long a link may be silent.
    pub fn silent_after(&self) -> Duration {
        self.silent_after
    }

    /// Checks one envelope from `from` (boot `boot`, sequence `seq`; `data` for envelopes that
    /// take a number, `bye` for a clean goodbye) received at `now`.
    pub fn check(
        &mut self,
        from: &str,
        boot: u64,
        seq: u64,
        data: bool,
        bye: bool,
        now: Instant,
    ) -> Verdict {
        let Some(link) = self.links.get_mut(from) else {
            self.links.insert(
                from.to_owned(),
                Link {
                    boot,
                    last: seq,
                    heard: now,
                    said_bye: bye,
                },
            );
            let owed = if data { seq > 1 } else { seq > 0 };
            return if owed && !bye {
                Verdict::Gap
            } else {
                Verdict::Apply
            };
        };
        link.heard = now;
        if link.boot != boot {
            let clean = link.said_bye;
            *link = Link {
                boot,
                last: seq,
                heard: now,
                said_bye: bye,
            };
            return if clean { Verdict::Apply } else { Verdict::Gap };
        }
        link.said_bye |= bye;
        if data {
            if seq <= link.last {
                return Verdict::Duplicate;
            }
            let gap = seq > link.last + 1;
            link.last = seq;
            return if gap { Verdict::Gap } else { Verdict::Apply };
        }
        if seq > link.last {
            link.last = seq;
            return Verdict::Gap;
        }
        Verdict::Apply
    }

    /// Forgets links silent since before `now - silent_after`; returns the senders of those
    /// that ended without a `Bye` (each one is a gap).
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let limit = self.silent_after;
        let mut unclean = Vec::new();
        self.links.retain(|from, l| {
            let alive = now.saturating_duration_since(l.heard) < limit;
            if !alive && !l.said_bye {
                unclean.push(from.clone());
            }
            alive
        });
        unclean
    }

    /// Forgets every link (after a subscriber reconnect, which resyncs anyway): the next
    /// envelope of each sender sets a new baseline.
    pub fn reset(&mut self) {
        self.links.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_verdicts() {
        let t = Instant::now();
        let mut l = LinkTable::new(Duration::from_secs(3));
        assert_eq!(
            l.check("a", 1, 0, false, false, t),
            Verdict::Apply,
            "a fresh link"
        );
        assert_eq!(l.check("a", 1, 1, true, false, t), Verdict::Apply);
        assert_eq!(
            l.check("b", 1, 5, true, false, t),
            Verdict::Gap,
            "1..4 were missed"
        );
        assert_eq!(l.check("b", 1, 6, true, false, t), Verdict::Apply);
        assert_eq!(l.check("b", 1, 6, true, false, t), Verdict::Duplicate);
        assert_eq!(
            l.check("b", 1, 6, false, false, t),
            Verdict::Apply,
            "heartbeat in step"
        );
        assert_eq!(l.check("b", 1, 8, true, false, t), Verdict::Gap, "7 lost");
        assert_eq!(
            l.check("b", 1, 9, false, false, t),
            Verdict::Gap,
            "tail 9 lost"
        );
        assert_eq!(l.check("b", 1, 10, true, false, t), Verdict::Apply);
        assert_eq!(
            l.check("b", 2, 1, true, false, t),
            Verdict::Gap,
            "restart without bye"
        );
        assert_eq!(l.check("b", 2, 1, false, true, t), Verdict::Apply, "bye");
        assert_eq!(
            l.check("b", 3, 1, true, false, t),
            Verdict::Apply,
            "restart after bye"
        );
    }

    #[test]
    fn silent_links_expire_and_count_unless_they_said_bye() {
        let t = Instant::now();
        let mut l = LinkTable::new(Duration::from_secs(3));
        l.check("b", 1, 1, true, false, t);
        l.check("c", 1, 1, false, true, t);
        l.check("d", 1, 1, true, false, t + Duration::from_secs(2));
        assert_eq!(
            l.expire(t + Duration::from_secs(4)),
            vec!["b".to_owned()],
            "b died, c said bye, d alive"
        );
        assert_eq!(
            l.check("b", 1, 9, true, false, t),
            Verdict::Gap,
            "forgotten: a new baseline"
        );
        assert_eq!(l.check("b", 1, 10, true, false, t), Verdict::Apply);
    }
}
