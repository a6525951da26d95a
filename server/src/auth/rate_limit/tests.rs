use super::*;

fn quota(burst: u32, per_minute: u32) -> Quota {
    Quota { burst, per_minute }
}

#[test]
fn burst_then_refill() {
    let t0 = Instant::now();
    let mut rl = RateLimiter::new(quota(3, 60), 10);
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
fn a_full_table_evicts_instead_of_refusing() {
    let t0 = Instant::now();
    let mut rl = RateLimiter::new(quota(2, 1), 8);
    for k in 0..8 {
        assert!(rl.check(&k, t0).is_ok());
    }
    assert!(
        rl.check(&100, t0).is_ok(),
        "a new key is admitted even when nothing has refilled"
    );
    assert!(rl.len() <= 8, "the table stays bounded");
}

#[test]
fn allows_does_not_spend() {
    let t0 = Instant::now();
    let mut rl = RateLimiter::new(quota(1, 1), 4);
    assert!(rl.allows(&"k", t0));
    assert!(rl.allows(&"k", t0));
    assert!(rl.check(&"k", t0).is_ok());
    assert!(!rl.allows(&"k", t0));
}

#[test]
fn allowances_refill_per_day() {
    let t0 = Instant::now();
    let rate = Rate::from(Allowance {
        burst: 2,
        per_day: 24,
    });
    let mut b = Bucket::full(rate, t0);
    assert!(b.take(rate, t0).is_ok());
    assert!(b.take(rate, t0).is_ok());
    let wait = b.take(rate, t0).unwrap_err();
    assert!(wait <= Duration::from_secs(3600) && wait >= Duration::from_secs(3500));
    assert!(b.take(rate, t0 + Duration::from_secs(3601)).is_ok());
}

#[test]
fn sharded_limiter_is_bounded_and_keyed() {
    let t0 = Instant::now();
    let rl = ShardedLimiter::new(quota(1, 1), 1_000);
    assert!(rl.check(&1u32, t0).is_ok());
    assert!(rl.check(&1u32, t0).is_err());
    for k in 2..20_000u32 {
        let _ = rl.check(&k, t0);
    }
    let held: usize = rl
        .shards
        .iter()
        .map(|s| s.lock().map(|s| s.len()).unwrap_or(0))
        .sum();
    assert!(held <= 1_000 + SHARDS, "{held} buckets held");
}
