//! The Redis auth store against a real Redis (`TERN_TEST_REDIS`, started by
//! `scripts/services.sh`; `source target/tern-services.env`). Two store instances on one Redis
//! play two nodes. Each test uses its own random key prefix, so the tests run in parallel on
//! one Redis, and deletes its keys at the end.
//!
//! The scenarios are written against [`AuthState`], so they also run on the in-memory store:
//! one shared [`MemoryState`] passes them all (the Redis store answers like the single-node
//! book), and two separate ones fail every cross-node scenario
//! (`separate_memory_stores_fail_the_cross_node_scenarios`): a scenario that passed there
//! would not be testing shared state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::SecureRandom;
use tern_protocol::ErrorCode;

use super::*;
use crate::auth::rate_limit::Quota;
use crate::auth::source::PrefixLens;
use crate::auth::state::MemoryState;

mod harness;

use harness::{service, service_on};

pub(super) const SECRET: &[u8] = b"shared otp secret of the test cluster";

fn redis_url() -> Option<String> {
    match std::env::var("TERN_TEST_REDIS") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "TERN_TEST_REDIS is not set in CI: run scripts/services.sh first"
            );
            eprintln!(
                "\n*** SKIPPED: TERN_TEST_REDIS is not set (scripts/services.sh starts Redis) ***\n"
            );
            None
        }
    }
}

fn random_prefix() -> String {
    let mut b = [0u8; 8];
    SystemRandom::new().fill(&mut b).unwrap();
    format!("test-auth-{}", hex::encode(b))
}

/// Two nodes' stores on one Redis, sharing a fresh key prefix; deletes the keys when dropped.
struct Nodes {
    a: RedisAuthState,
    b: RedisAuthState,
    url: String,
    prefix: String,
}

impl Nodes {
    fn new(url: &str, config: &AuthConfig) -> Nodes {
        Nodes::on(RedisTarget::Single(url.to_owned()), config)
    }

    /// On any target; keys are deleted afterwards only on a single Redis (on a cluster they
    /// expire).
    fn on(target: RedisTarget, config: &AuthConfig) -> Nodes {
        let prefix = random_prefix();
        let url = match &target {
            RedisTarget::Single(u) => u.clone(),
            RedisTarget::Cluster(_) => String::new(),
        };
        let store = || {
            let mut s = RedisAuthSettings::new(target.clone());
            s.prefix = prefix.clone();
            RedisAuthState::new(s, config, SECRET).unwrap()
        };
        Nodes {
            a: store(),
            b: store(),
            url,
            prefix,
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut c) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut c)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&keys).query(&mut c);
        }
    }
}

fn src(s: &str) -> SourcePrefix {
    SourcePrefix::of(s.parse().unwrap(), PrefixLens::default())
}

fn wrong(code: &str) -> &'static str {
    if code == "000000" { "000001" } else { "000000" }
}

type Scenario = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn now() -> Instant {
    Instant::now()
}

/// A code requested through A verifies through B, once.
async fn cross_node_verify(a: &dyn AuthState, b: &dyn AuthState) -> Scenario {
    let (id, s) = ("+15550100001", src("198.51.100.1"));
    let code = a.issue(id, now()).await.unwrap();
    let got = b.verify(id, &code, s, now()).await.unwrap();
    ensure!(got == Checked::Ok, "B answered {got:?} for A's code");
    let again = a.verify(id, &code, s, now()).await.unwrap();
    ensure!(
        again == Checked::Expired,
        "A answered {again:?} for the used code"
    );
    Ok(())
}

/// Five wrong codes from one source through alternating nodes lock that source out: the right
/// code then fails from there (another source still gets in).
async fn wrong_codes_lock_across_nodes(a: &dyn AuthState, b: &dyn AuthState) -> Scenario {
    let (id, s) = ("+15550100002", src("198.51.100.2"));
    let code = a.issue(id, now()).await.unwrap();
    for i in 0..5 {
        let node = if i % 2 == 0 { a } else { b };
        let got = node.verify(id, wrong(&code), s, now()).await.unwrap();
        let want = if i < 4 {
            Checked::Wrong
        } else {
            Checked::TooMany
        };
        ensure!(
            got == want,
            "wrong code {} answered {got:?}, not {want:?}",
            i + 1
        );
    }
    let right = b.verify(id, &code, s, now()).await.unwrap();
    ensure!(
        right == Checked::TooMany,
        "the locked source got {right:?} for the right code"
    );
    let other = a
        .verify(id, &code, src("203.0.113.9"), now())
        .await
        .unwrap();
    ensure!(other == Checked::Ok, "another source got {other:?}");
    Ok(())
}

/// The identifier's failure budget (6 here) is spent by wrong codes from six sources through
/// alternating nodes; the right code then fails from a seventh.
async fn failure_budget_across_nodes(a: &dyn AuthState, b: &dyn AuthState) -> Scenario {
    let id = "+15550100003";
    let code = a.issue(id, now()).await.unwrap();
    for i in 0..6u8 {
        let node = if i % 2 == 0 { a } else { b };
        let s = src(&format!("192.0.2.{}", i + 1));
        let got = node.verify(id, wrong(&code), s, now()).await.unwrap();
        let want = if i < 5 {
            Checked::Wrong
        } else {
            Checked::TooMany
        };
        ensure!(
            got == want,
            "wrong code {} answered {got:?}, not {want:?}",
            i + 1
        );
    }
    let right = b.verify(id, &code, src("192.0.2.99"), now()).await.unwrap();
    ensure!(
        right == Checked::TooMany,
        "the spent budget let the right code through: {right:?}"
    );
    Ok(())
}

/// A code issued through B voids the one issued through A.
async fn new_code_voids_old(a: &dyn AuthState, b: &dyn AuthState) -> Scenario {
    let (id, s) = ("user@example.org", src("198.51.100.4"));
    let first = a.issue(id, now()).await.unwrap();
    let mut second = b.issue(id, now()).await.unwrap();
    while second == first {
        second = b.issue(id, now()).await.unwrap();
    }
    let old = a.verify(id, &first, s, now()).await.unwrap();
    ensure!(old == Checked::Expired, "the voided code answered {old:?}");
    let new = a.verify(id, &second, s, now()).await.unwrap();
    ensure!(new == Checked::Ok, "the new code answered {new:?}");
    Ok(())
}

/// Quotas (3 per source, 2 per identifier, 2 per identifier and source, 3 per prefix) are
/// spent through both nodes together.
async fn quotas_shared(a: &dyn AuthState, b: &dyn AuthState) -> Scenario {
    let nodes = [a, b];
    let s = src("198.51.100.5");
    for i in 0..4 {
        let got = nodes[i % 2].take_source(s, now()).await.unwrap();
        ensure!(got == (i < 3), "source call {} answered {got}", i + 1);
    }
    let id = "+15550100005";
    for i in 0..3 {
        let got = nodes[i % 2].take_request(id, s, now()).await.unwrap();
        ensure!(got == (i < 2), "request {} answered {got}", i + 1);
    }
    let other = "+15550100006";
    let t = src("198.51.100.6");
    for i in 0..2 {
        let got = nodes[i % 2].take_request(other, t, now()).await.unwrap();
        ensure!(got, "request {} for a fresh identifier refused", i + 1);
    }
    let refused = a
        .take_request(other, src("198.51.100.7"), now())
        .await
        .unwrap();
    ensure!(!refused, "the identifier's quota held only per node");
    for i in 0..4 {
        let got = nodes[i % 2].take_prefix("+15550", now()).await.unwrap();
        ensure!(got == (i < 3), "prefix call {} answered {got}", i + 1);
    }
    Ok(())
}

fn quota(burst: u32) -> Quota {
    Quota {
        burst,
        per_minute: 1,
    }
}

fn test_config() -> AuthConfig {
    AuthConfig {
        otp_per_address: quota(3),
        otp_per_identifier: quota(2),
        otp_per_identifier_source: Allowance {
            burst: 2,
            per_day: 72,
        },
        otp_per_prefix: quota(3),
        otp_failures_per_identifier: Allowance {
            burst: 6,
            per_day: 30,
        },
        ..AuthConfig::default()
    }
}

#[tokio::test]
async fn redis_stores_share_codes_budgets_and_quotas() {
    let Some(url) = redis_url() else { return };
    let c = test_config();
    for (name, run) in scenarios() {
        let n = Nodes::new(&url, &c);
        run(&n.a, &n.b)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

type Run = for<'a> fn(
    &'a dyn AuthState,
    &'a dyn AuthState,
)
    -> std::pin::Pin<Box<dyn std::future::Future<Output = Scenario> + Send + 'a>>;

fn scenarios() -> Vec<(&'static str, Run)> {
    vec![
        ("cross-node verify", |a, b| {
            Box::pin(cross_node_verify(a, b))
        }),
        ("lock across nodes", |a, b| {
            Box::pin(wrong_codes_lock_across_nodes(a, b))
        }),
        ("failure budget", |a, b| {
            Box::pin(failure_budget_across_nodes(a, b))
        }),
        ("new code voids old", |a, b| {
            Box::pin(new_code_voids_old(a, b))
        }),
        ("shared quotas", |a, b| Box::pin(quotas_shared(a, b))),
    ]
}

/// The same scenarios on Redis Cluster (`TERN_TEST_REDIS_CLUSTER=redis+cluster://H1:P1,…`,
/// optional: CI starts no cluster): every script's keys share one slot, and scripts are routed
/// by their first key.
#[tokio::test]
async fn redis_cluster_stores_share_state() {
    let Ok(url) = std::env::var("TERN_TEST_REDIS_CLUSTER") else {
        eprintln!("\n*** SKIPPED: TERN_TEST_REDIS_CLUSTER is not set (a Redis Cluster) ***\n");
        return;
    };
    let target = RedisTarget::parse(&url).unwrap();
    let c = test_config();
    for (name, run) in scenarios() {
        let n = Nodes::on(target.clone(), &c);
        run(&n.a, &n.b)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// Two Redis stores that do not share keys (different prefixes) fail every scenario.
#[tokio::test]
async fn redis_stores_on_different_prefixes_fail_the_scenarios() {
    let Some(url) = redis_url() else { return };
    let c = test_config();
    for (name, run) in scenarios() {
        let (n, m) = (Nodes::new(&url, &c), Nodes::new(&url, &c));
        assert!(
            run(&n.a, &m.b).await.is_err(),
            "{name} passed without shared keys"
        );
    }
}

/// Guesses racing through both nodes from many sources compare at most the failure budget's
/// worth of codes, because the budget is reserved before each comparison: a right code sent
/// after more than a budget of wrong ones on the same connection (Redis runs one connection's
/// scripts in order) is never compared. Checking the budget first and spending it after the
/// comparison would let it log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_stay_within_the_failure_budget() {
    let Some(url) = redis_url() else { return };
    let n = Nodes::new(&url, &test_config());
    let id = "+15550100011";
    let code = n.a.issue(id, now()).await.unwrap();
    // Both connections open first, so no guess waits for one (that would serialise them).
    n.b.take_prefix("warm-up", now()).await.unwrap();
    // 23 wrong codes, then the right one, alternating nodes (under join_all's 30, so they are
    // polled, and their scripts sent, in this order).
    let guesses = (0..24u8).map(|i| {
        let node = if i % 2 == 0 { &n.a } else { &n.b };
        let s = src(&format!("10.0.{i}.1"));
        let guess = if i == 23 {
            code.clone()
        } else {
            wrong(&code).to_owned()
        };
        async move { node.verify(id, &guess, s, now()).await.unwrap() }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let wrong_answers = answers.iter().filter(|a| **a == Checked::Wrong).count();
    assert!(
        wrong_answers <= 6,
        "{wrong_answers} wrong codes answered with a budget of 6"
    );
    assert_eq!(
        answers[23],
        Checked::TooMany,
        "the right code got past a spent budget"
    );
    let right = n.b.verify(id, &code, src("10.1.0.1"), now()).await.unwrap();
    assert_eq!(right, Checked::TooMany);
}

#[tokio::test]
async fn one_memory_store_passes_the_scenarios() {
    for (name, run) in scenarios() {
        let m = MemoryState::new(&test_config(), SECRET);
        run(&m, &m).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn separate_memory_stores_fail_the_cross_node_scenarios() {
    for (name, run) in scenarios() {
        let (a, b) = (
            MemoryState::new(&test_config(), SECRET),
            MemoryState::new(&test_config(), SECRET),
        );
        assert!(
            run(&a, &b).await.is_err(),
            "{name} passed without shared state"
        );
    }
}

#[tokio::test]
async fn codes_expire_on_every_node() {
    let Some(url) = redis_url() else { return };
    let mut c = test_config();
    c.otp_ttl_s = 1;
    let n = Nodes::new(&url, &c);
    let (id, s) = ("+15550100007", src("198.51.100.8"));
    let code = n.a.issue(id, now()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(
        n.b.verify(id, &code, s, now()).await.unwrap(),
        Checked::Expired
    );
    assert_eq!(
        n.a.verify(id, &code, s, now()).await.unwrap(),
        Checked::Expired
    );
    let fresh = n.b.issue(id, now()).await.unwrap();
    assert_eq!(n.a.verify(id, &fresh, s, now()).await.unwrap(), Checked::Ok);
}

#[tokio::test]
async fn only_the_tag_is_stored() {
    let Some(url) = redis_url() else { return };
    let n = Nodes::new(&url, &test_config());
    let id = "+15550100008";
    let code = n.a.issue(id, now()).await.unwrap();
    let mut c = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", n.prefix))
        .query(&mut c)
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        !keys[0].contains(id),
        "the identifier is hashed in key names"
    );
    let fields: Vec<String> = redis::cmd("HVALS").arg(&keys[0]).query(&mut c).unwrap();
    assert!(
        fields.iter().all(|v| !v.contains(&code)),
        "{fields:?} holds the code"
    );
    let ttl: i64 = redis::cmd("PTTL").arg(&keys[0]).query(&mut c).unwrap();
    assert!(ttl > 0, "every key expires");
}

/// A closed port: every step answers `Unavailable`, never a verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_fails_closed() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut s = RedisAuthSettings::new(RedisTarget::Single(url));
    s.timeout = Duration::from_millis(500);
    let store = RedisAuthState::new(s, &test_config(), SECRET).unwrap();
    let p = src("198.51.100.9");
    let id = "+15550100009";
    let un = |r: Result<_, AuthStateError>| matches!(r, Err(AuthStateError::Unavailable(_)));
    assert!(un(store.take_source(p, now()).await.map(|_| ())));
    assert!(un(store.take_request(id, p, now()).await.map(|_| ())));
    assert!(un(store.take_prefix("+15550", now()).await.map(|_| ())));
    assert!(un(store.issue(id, now()).await.map(|_| ())));
    assert!(un(store.verify(id, "123456", p, now()).await.map(|_| ())));

    let h = service(Arc::new(store));
    let addr: IpAddr = "198.51.100.9".parse().unwrap();
    let e = h.auth.request_otp(id, addr, now()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Overloaded, "{e}");
    let e = h
        .auth
        .verify_otp(id, "123456", "phone", addr, now())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Overloaded, "{e}");
    assert!(h.inbox.lock().unwrap().is_empty(), "no code was sent");
}

/// Two `AuthService`s (two nodes, one storage): log in through B with A's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_started_on_one_node_finishes_on_another() {
    let Some(url) = redis_url() else { return };
    let n = Nodes::new(&url, &AuthConfig::default());
    let Nodes { a, b, .. } = &n;
    let a = service(Arc::new(clone_store(a)));
    let b = service_on(Arc::new(clone_store(b)), &a);
    let id = "+15550100010";
    let addr: IpAddr = "198.51.100.10".parse().unwrap();
    a.auth.request_otp(id, addr, now()).await.unwrap();
    let code = a.inbox.lock().unwrap().last().cloned().unwrap().1;
    let e = b
        .auth
        .verify_otp(id, wrong(&code), "phone", addr, now())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::OtpInvalid);
    let grant = b
        .auth
        .verify_otp(id, &code, "phone", addr, now())
        .await
        .unwrap();
    assert!(!grant.tokens.access_token.is_empty());
    let e = a
        .auth
        .verify_otp(id, &code, "phone", addr, now())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::OtpExpired, "used on B, so spent on A");
}

/// A second store on the same Redis and prefix (the `Nodes` keep theirs for the cleanup).
fn clone_store(s: &RedisAuthState) -> RedisAuthState {
    RedisAuthState::new(s.settings.clone(), &AuthConfig::default(), SECRET).unwrap()
}
