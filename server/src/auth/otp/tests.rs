use super::*;

fn book() -> OtpBook {
    book_with(1_000)
}

fn book_with(max_entries: usize) -> OtpBook {
    OtpBook::new(
        b"secret",
        OtpLimits {
            ttl: OTP_TTL,
            failures: Allowance {
                burst: 30,
                per_day: 30,
            },
            max_entries,
        },
    )
}

fn wrong(code: &str) -> &'static str {
    if code == "000000" { "000001" } else { "000000" }
}

#[test]
fn right_code_works_once() {
    let t0 = Instant::now();
    let b = book();
    let code = b.issue("+15550001", t0).unwrap();
    assert_eq!(code.len(), 6);
    assert!(code.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(b.verify("+15550001", &code, t0), Verdict::Ok);
    assert_eq!(
        b.verify("+15550001", &code, t0),
        Verdict::Expired,
        "consumed"
    );
}

#[test]
fn codes_expire_and_replaced_codes_answer_expired() {
    let t0 = Instant::now();
    let b = book();
    let code = b.issue("a@b.org", t0).unwrap();
    assert_eq!(b.verify("a@b.org", &code, t0 + OTP_TTL), Verdict::Expired);
    let old = b.issue("a@b.org", t0).unwrap();
    let new = b.issue("a@b.org", t0).unwrap();
    if old != new {
        assert_eq!(b.verify("a@b.org", &old, t0), Verdict::Expired, "replaced");
    }
    assert_eq!(b.verify("a@b.org", &new, t0), Verdict::Ok);
}

#[test]
fn no_pending_code_answers_like_a_wrong_code() {
    let t0 = Instant::now();
    let b = book();
    let code = b.issue("a@b.org", t0).unwrap();
    assert_eq!(b.verify("a@b.org", wrong(&code), t0), Verdict::Wrong);
    assert_eq!(b.verify("nobody@b.org", "123456", t0), Verdict::Wrong);
}

/// The brute-force bound: an attacker who asks for a new code every minute for a day and guesses
/// whenever the book lets it gets at most burst + refill = 60 guesses checked against a code.
#[test]
fn the_daily_guess_budget_per_identifier_is_sixty() {
    let t0 = Instant::now();
    let b = book();
    let mut checked = 0;
    for minute in 0..24 * 60 {
        let now = t0 + Duration::from_secs(minute * 60);
        let code = b.issue("+15550002", now).unwrap();
        for _ in 0..10 {
            match b.verify("+15550002", wrong(&code), now) {
                Verdict::Wrong => checked += 1,
                Verdict::Exhausted => break,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(checked <= 60, "{checked} guesses in a day");
    assert!(checked >= 55, "the budget refills: {checked}");
}

#[test]
fn a_full_book_evicts_instead_of_refusing_and_keeps_spent_budgets() {
    let t0 = Instant::now();
    let b = book_with(SHARDS * 4);
    // The victim has spent its failure budget.
    b.issue("victim@b.org", t0).unwrap();
    while b.verify("victim@b.org", "999999", t0) == Verdict::Wrong {}
    for i in 0..10_000 {
        b.issue(&format!("flood{i}@b.org"), t0).unwrap();
    }
    assert!(b.issue("late@b.org", t0).is_ok(), "never Overloaded");
    assert_eq!(
        b.verify("victim@b.org", "999999", t0),
        Verdict::Exhausted,
        "fresh entries do not push out a spent budget"
    );
    let held: usize = b
        .shards
        .iter()
        .map(|s| s.lock().map_or(0, |m| m.len()))
        .sum();
    assert!(held <= SHARDS * 4, "{held} entries");
}

/// Entries stay small, so the default 200,000 identifiers cost tens of MB at most.
#[test]
fn entries_are_small() {
    assert!(
        std::mem::size_of::<Entry>() <= 160,
        "{}",
        std::mem::size_of::<Entry>()
    );
}
