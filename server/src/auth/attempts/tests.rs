use super::*;

fn limits() -> AttemptLimits {
    AttemptLimits {
        requests: Allowance {
            burst: 3,
            per_day: 72,
        },
        free_misses: 5,
        first_lock: Duration::from_secs(60),
        max_lock: Duration::from_secs(86_400),
        forget_after: Duration::from_secs(86_400),
        max_entries: 1_000,
    }
}

fn src(s: &str) -> SourcePrefix {
    SourcePrefix::of(s.parse().unwrap(), Default::default())
}

#[test]
fn five_misses_lock_with_doubling_back_off() {
    let t0 = Instant::now();
    let a = Attempts::new(limits());
    let s = src("192.0.2.1");
    for _ in 0..4 {
        assert_eq!(a.missed("+1555", s, t0), None);
    }
    assert_eq!(a.missed("+1555", s, t0), Some(Duration::from_secs(60)));
    assert!(a.locked("+1555", s, t0).is_some());
    assert!(
        a.locked("+1555", src("192.0.2.2"), t0).is_none(),
        "other sources are not locked"
    );
    assert!(
        a.locked("+1666", s, t0).is_none(),
        "other identifiers are not locked"
    );
    let t1 = t0 + Duration::from_secs(61);
    assert!(a.locked("+1555", s, t1).is_none());
    assert_eq!(a.missed("+1555", s, t1), Some(Duration::from_secs(120)));
    a.succeeded("+1555", s);
    assert!(a.locked("+1555", s, t1).is_none());
}

/// One source prefix hammering one identifier for a day gets at most 15 wrong codes: 5, then one
/// per lock of 1, 2, 4, ... minutes.
#[test]
fn one_source_gets_fifteen_misses_a_day() {
    let t0 = Instant::now();
    let a = Attempts::new(limits());
    let s = src("2001:db8::1");
    let mut misses = 0;
    for second in (0..86_400).step_by(10) {
        let now = t0 + Duration::from_secs(second);
        if a.locked("x@y.org", s, now).is_none() {
            a.missed("x@y.org", s, now);
            misses += 1;
        }
    }
    assert_eq!(misses, 15);
}

#[test]
fn a_run_of_misses_is_forgotten_after_a_day_without_one() {
    let t0 = Instant::now();
    let a = Attempts::new(limits());
    let s = src("192.0.2.3");
    for _ in 0..4 {
        a.missed("x@y.org", s, t0);
    }
    // Code requests in between do not keep the run alive.
    a.requested("x@y.org", s, t0 + Duration::from_secs(80_000));
    let t1 = t0 + Duration::from_secs(86_401);
    assert_eq!(a.missed("x@y.org", s, t1), None, "a fresh run of misses");
}

#[test]
fn code_requests_per_source_are_limited() {
    let t0 = Instant::now();
    let a = Attempts::new(limits());
    let s = src("192.0.2.9");
    for _ in 0..3 {
        assert!(a.may_request("x@y.org", s, t0));
        a.requested("x@y.org", s, t0);
    }
    assert!(!a.may_request("x@y.org", s, t0));
    assert!(a.may_request("x@y.org", src("192.0.2.10"), t0));
    assert!(a.may_request("x@y.org", s, t0 + Duration::from_secs(1_201)));
}

#[test]
fn entries_are_small() {
    assert!(std::mem::size_of::<Entry>() + std::mem::size_of::<Key>() <= 112);
}

/// A flood of new identifiers fills the table: it stays within `max_entries` (unlocked entries
/// are evicted first), and a lock survives the flood.
#[test]
fn a_full_table_stays_bounded_and_keeps_its_locks() {
    let t0 = Instant::now();
    let a = Attempts::new(AttemptLimits {
        max_entries: 8 * SHARDS,
        ..limits()
    });
    let s = src("192.0.2.1");
    for _ in 0..5 {
        a.missed("victim", s, t0);
    }
    for i in 0..20_000 {
        a.missed(&format!("+1555{i}"), s, t0);
    }
    let held: usize = a.shards.iter().map(|m| m.lock().unwrap().len()).sum();
    assert!(held <= 8 * SHARDS, "{held} entries");
    assert!(a.locked("victim", s, t0).is_some(), "the lock was evicted");
}
