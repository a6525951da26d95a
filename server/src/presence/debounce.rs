//! The debounce of one user's presence: a pure state machine, its clock passed in.
//!
//! Watchers should see a user go online and offline, not every reconnect of a phone on a bad
//! network: a device that loses its connection reconnects within a second or two, and a buggy
//! client may do so in a loop (the "presence storm" that made other servers switch presence
//! off). The rule (docs/social-spec, "Debounce"):
//!
//! - at most one published change per user per `interval`;
//! - going offline is published only once the user has stayed offline for `interval`, so a
//!   quick reconnect shows nothing;
//! - coming online is published at once, unless a change was published less than `interval`
//!   ago; then at the end of that interval if the user is still online (the trailing edge, so
//!   the final state always gets out).
//!
//! While the user is online only `online` is compared; while offline, `(online, last seen)`: a
//! user who was offline, flapped online and offline again within a window in which the online
//! could not be published has a new last seen, and that is published as one change at the
//! trailing edge. A flap of an online user is invisible (its last seen goes out with the next
//! real offline). A storm that
//! starts and ends online publishes nothing; one that starts offline publishes the coming online
//! at once and the final offline `interval` after the last disconnect, so never more than one
//! change per interval.

use std::time::{Duration, Instant};

/// What watchers may be told about a user: online now, and when they were last online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shown {
    /// At least one foreground connection.
    pub online: bool,
    /// When the user last went offline (ms since the epoch), if ever known.
    pub last_seen_ms: Option<u64>,
}

/// One user's debounce state.
#[derive(Debug, Clone)]
pub struct Debounce {
    /// The true state now.
    actual: Shown,
    /// When `actual.online` last became false (monotonic), for the offline rule.
    offline_since: Option<Instant>,
    /// What watchers were last told.
    published: Shown,
    /// When that was published; `None` if nothing ever was (a user new to this node).
    published_at: Option<Instant>,
    /// When `poll` must be called next, if a change is pending.
    deadline: Option<Instant>,
}

impl Debounce {
    /// A user not seen since start: offline, with the last seen storage had (if any).
    pub fn new(last_seen_ms: Option<u64>) -> Self {
        Debounce::settled_at(Shown {
            online: false,
            last_seen_ms,
        })
    }

    /// A user this node first hears of while they are online on another node: online, with
    /// nothing pending (nobody here was told otherwise).
    pub fn new_online() -> Self {
        Debounce::settled_at(Shown {
            online: true,
            last_seen_ms: None,
        })
    }

    fn settled_at(shown: Shown) -> Self {
        Debounce {
            actual: shown,
            offline_since: None,
            published: shown,
            published_at: None,
            deadline: None,
        }
    }

    /// What watchers have been told (the view snapshots and events are made from).
    pub fn published(&self) -> Shown {
        self.published
    }

    /// The true state.
    pub fn actual(&self) -> Shown {
        self.actual
    }

    /// When `poll` must run next, if anything is pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether nothing is pending and the last publish is older than `interval` at `now`: the
    /// state could be forgotten and rebuilt from storage without changing any rule's outcome.
    pub fn settled(&self, now: Instant, interval: Duration) -> bool {
        self.deadline.is_none()
            && !self.pending()
            && self
                .published_at
                .is_none_or(|at| now.saturating_duration_since(at) >= interval)
    }

    /// Fills in a last seen read from storage later than the state was made (loaded lazily),
    /// unless the user has gone offline on this node since (a newer value).
    pub fn learn_stored(&mut self, last_seen_ms: u64) {
        if self.actual.last_seen_ms.is_none() {
            self.actual.last_seen_ms = Some(last_seen_ms);
        }
        if self.published.last_seen_ms.is_none() {
            self.published.last_seen_ms = Some(last_seen_ms);
        }
    }

    /// Whether the true state differs from the published one in a way watchers must learn.
    pub fn pending(&self) -> bool {
        self.actual.online != self.published.online
            || (!self.actual.online && self.actual.last_seen_ms != self.published.last_seen_ms)
    }

    /// The user's true online state changed (`wall_ms` is the wall clock, for last seen).
    /// Returns the state to publish now, if any.
    pub fn set_online(
        &mut self,
        online: bool,
        now: Instant,
        wall_ms: u64,
        interval: Duration,
    ) -> Option<Shown> {
        if online == self.actual.online {
            return None;
        }
        self.actual.online = online;
        if online {
            self.offline_since = None;
        } else {
            self.offline_since = Some(now);
            self.actual.last_seen_ms = Some(wall_ms);
        }
        self.poll(now, interval)
    }

    /// Publishes what is due at `now` and re-arms the deadline. Returns the state to publish.
    pub fn poll(&mut self, now: Instant, interval: Duration) -> Option<Shown> {
        self.deadline = None;
        if !self.pending() {
            return None;
        }
        let mut due = self.published_at.map_or(now, |at| at + interval);
        if !self.actual.online {
            let since = self.offline_since.unwrap_or(now);
            due = due.max(since + interval);
        }
        if now >= due {
            self.published = self.actual;
            self.published_at = Some(now);
            Some(self.published)
        } else {
            self.deadline = Some(due);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(3);

    /// Drives a machine through `events` (ms offset, online) and polls at every deadline and
    /// finally far in the future; returns the publishes as (ms offset, state).
    fn run(start: Debounce, events: &[(u64, bool)]) -> Vec<(u64, Shown)> {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut m = start;
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let next_event = events.get(i).map(|e| e.0);
            let next_deadline = m
                .deadline()
                .map(|d| d.saturating_duration_since(t0).as_millis() as u64);
            match (next_event, next_deadline) {
                (Some(e), Some(d)) if d < e => {
                    if let Some(s) = m.poll(at(d), D) {
                        out.push((d, s));
                    }
                }
                (Some(e), _) => {
                    if let Some(s) = m.set_online(events[i].1, at(e), 1_000_000 + e, D) {
                        out.push((e, s));
                    }
                    i += 1;
                }
                (None, Some(d)) => {
                    if let Some(s) = m.poll(at(d), D) {
                        out.push((d, s));
                    }
                }
                (None, None) => break,
            }
        }
        assert!(m.poll(at(1_000_000), D).is_none(), "nothing left pending");
        assert!(!m.pending(), "the final state got out");
        out
    }

    fn storm(start_online: bool, cycles: u64, step_ms: u64) -> Vec<(u64, bool)> {
        let mut ev = Vec::new();
        let mut t = 10;
        for _ in 0..cycles {
            ev.push((t, !start_online));
            ev.push((t + step_ms / 2, start_online));
            t += step_ms;
        }
        ev
    }

    fn online_at_start() -> Debounce {
        let mut m = Debounce::new(Some(5));
        let t0 = Instant::now() - Duration::from_secs(60);
        assert!(m.set_online(true, t0, 1, D).is_some());
        m
    }

    #[test]
    fn a_first_connect_is_published_at_once_and_a_disconnect_after_the_interval() {
        let out = run(Debounce::new(None), &[(0, true), (5_000, false)]);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            (
                0,
                Shown {
                    online: true,
                    last_seen_ms: None
                }
            )
        );
        assert_eq!(
            out[1],
            (
                8_000,
                Shown {
                    online: false,
                    last_seen_ms: Some(1_005_000)
                }
            )
        );
    }

    #[test]
    fn a_storm_that_ends_where_it_began_publishes_nothing() {
        // 20 disconnect/reconnect cycles in 2 s of a user who is online throughout.
        let out = run(online_at_start(), &storm(true, 20, 100));
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_storm_publishes_at_most_one_change_per_interval_and_the_final_state() {
        for (start_online, end_offline) in [(false, false), (false, true), (true, true)] {
            let mut ev = storm(start_online, 20, 100);
            if end_offline && ev.last().map(|e| e.1) == Some(true) {
                ev.push((2_100, false));
            }
            let start = if start_online {
                online_at_start()
            } else {
                Debounce::new(None)
            };
            let out = run(start, &ev);
            for w in out.windows(2) {
                assert!(
                    w[1].0 - w[0].0 >= 3_000,
                    "two changes within the interval: {out:?}"
                );
            }
            assert!(out.len() <= 2, "{out:?}");
        }
    }

    #[test]
    fn coming_online_soon_after_a_publish_waits_for_the_trailing_edge() {
        // Online at 0 (published), offline at 1 s (published at 4 s), online at 5 s: a change
        // was published 1 s before, so the online goes out at 7 s.
        let out = run(
            Debounce::new(None),
            &[(0, true), (1_000, false), (5_000, true)],
        );
        let times: Vec<u64> = out.iter().map(|o| o.0).collect();
        assert_eq!(times, vec![0, 4_000, 7_000]);
        assert!(out[2].1.online);
    }

    #[test]
    fn a_flap_hidden_by_the_debounce_still_moves_last_seen() {
        // Published offline at 4 s; a flap at 5–5.5 s cannot be published as online (the
        // interval), so one change goes out: the new last seen, 3 s after the flap ended.
        let out = run(
            Debounce::new(None),
            &[(0, true), (1_000, false), (5_000, true), (5_500, false)],
        );
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(
            out[2],
            (
                8_500,
                Shown {
                    online: false,
                    last_seen_ms: Some(1_005_500)
                }
            )
        );
    }

    #[test]
    fn a_stored_last_seen_fills_in_only_what_is_unknown() {
        let mut m = Debounce::new(None);
        m.learn_stored(7);
        assert_eq!(m.published().last_seen_ms, Some(7));
        let now = Instant::now();
        m.set_online(true, now, 10, D);
        m.set_online(false, now + D, 20, D);
        m.learn_stored(8);
        assert_eq!(m.actual().last_seen_ms, Some(20));
        assert!(!m.settled(now + D, D));
        assert!(m.poll(now + 2 * D, D).is_some());
        assert!(m.settled(now + 4 * D, D));
    }
}
