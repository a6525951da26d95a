//! Auth under attack (issue 7): OTP brute force across reissued codes, address limits keyed by
//! network prefix, login outage by table filling or domain flooding, login activity leaks, and
//! refresh answers lost on the way.
//!
//! Most scenarios drive [`AuthService`] directly (real fjall storage, time passed in), so they can
//! use many source addresses and simulated hours; the refresh scenarios use a real server.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tern_sdk::protocol::{ErrorCode, Response};
use tern_server::auth::sender::{OtpSender, SendError};
use tern_server::auth::token::{SigningKey, TokenIssuer};
use tern_server::auth::{AuthConfig, AuthDeps, AuthService};
use tern_server::metrics::Metrics;
use tern_server::router::Router;
use tern_server::storage::Storage;
use tern_server::storage::fjall::FjallStorage;
use tern_tests::TestServer;

/// Keeps the last code sent to each identifier.
#[derive(Debug, Default)]
struct Inbox {
    codes: Mutex<Vec<(String, String)>>,
}

impl Inbox {
    fn last(&self, identifier: &str) -> Option<String> {
        let codes = self.codes.lock().unwrap();
        codes
            .iter()
            .rev()
            .find(|(i, _)| i == identifier)
            .map(|(_, c)| c.clone())
    }

    fn count(&self) -> usize {
        self.codes.lock().unwrap().len()
    }
}

#[derive(Debug)]
struct InboxSender(Arc<Inbox>);

#[async_trait]
impl OtpSender for InboxSender {
    async fn send(&self, identifier: &str, code: &str) -> Result<(), SendError> {
        let mut codes = self.0.codes.lock().unwrap();
        if codes.len() > 1_000 {
            codes.drain(..500);
        }
        codes.push((identifier.to_owned(), code.to_owned()));
        Ok(())
    }

    fn describe(&self) -> String {
        "test inbox".into()
    }
}

struct Harness {
    auth: AuthService,
    inbox: Arc<Inbox>,
    _dir: tempfile::TempDir,
}

fn harness(tweak: impl FnOnce(&mut AuthConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new(1);
    let (router, _inboxes) = Router::new(
        1,
        tern_server::router::RouterLimits {
            mailbox: 64,
            ..Default::default()
        },
        metrics,
    );
    let router = Arc::new(router);
    let storage: Arc<dyn Storage> =
        Arc::new(FjallStorage::open(&dir.path().join("db"), router.clone(), None).unwrap());
    let issuer = TokenIssuer::new(
        vec![SigningKey {
            kid: "k1".into(),
            secret: vec![7; 32],
        }],
        900,
    )
    .unwrap();
    let inbox = Arc::new(Inbox::default());
    let mut config = AuthConfig::default();
    tweak(&mut config);
    let auth = AuthService::new(AuthDeps {
        storage,
        sender: Arc::new(InboxSender(inbox.clone())),
        issuer,
        router,
        otp_secret: vec![9; 32],
        state: None,
        refresh_secret: vec![5; 32],
        config,
    });
    Harness {
        auth,
        inbox,
        _dir: dir,
    }
}

impl Harness {
    /// Asks for a code from `addr` and logs in with it.
    async fn log_in(&self, id: &str, addr: IpAddr, now: Instant) -> tern_sdk::protocol::LoginGrant {
        self.auth.request_otp(id, addr, now).await.unwrap();
        let code = self.inbox.last(id).unwrap();
        self.auth
            .verify_otp(id, &code, "phone", addr, now)
            .await
            .unwrap()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn wrong(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

/// Scenario 3: a new code used to reset the tries, so five guesses per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_code_does_not_reset_the_tries() {
    let h = harness(|_| {});
    let id = "+15550002001";
    let addr = ip("198.51.100.7");
    let t0 = Instant::now();
    h.auth.request_otp(id, addr, t0).await.unwrap();
    let code = h.inbox.last(id).unwrap();
    let mut checked = 0;
    for _ in 0..5 {
        let e = h
            .auth
            .verify_otp(id, wrong(&code), "d", addr, t0)
            .await
            .unwrap_err();
        if e.code == ErrorCode::OtpInvalid || e.code == ErrorCode::OtpTooManyAttempts {
            checked += 1;
        }
    }
    // A second code a minute later: the wrong guesses before it still count.
    let t1 = t0 + Duration::from_secs(61);
    h.auth.request_otp(id, addr, t1).await.unwrap();
    let code = h.inbox.last(id).unwrap();
    let e = h
        .auth
        .verify_otp(id, wrong(&code), "d", addr, t1)
        .await
        .unwrap_err();
    assert_ne!(
        e.code,
        ErrorCode::OtpInvalid,
        "after {checked} wrong guesses a reissued code must not give fresh tries"
    );
}

/// Scenario 3: an attacker who knows the number and keeps guessing from its own prefix can no
/// longer void the owner's code; the owner, on another prefix, logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_logs_in_while_an_attacker_hammers_the_number() {
    let h = harness(|_| {});
    let id = "+15550002002";
    let attacker = ip("2001:db8:bad::1");
    let owner = ip("198.51.100.99");
    let t0 = Instant::now();
    h.auth.request_otp(id, attacker, t0).await.unwrap();
    for _ in 0..5 {
        let _ = h.auth.verify_otp(id, "000000", "x", attacker, t0).await;
    }
    h.auth.request_otp(id, owner, t0).await.unwrap();
    let code = h.inbox.last(id).unwrap();
    for i in 0..50u32 {
        let a = ip(&format!("2001:db8:bad::{:x}", i + 2));
        let _ = h.auth.verify_otp(id, wrong(&code), "x", a, t0).await;
    }
    h.auth
        .verify_otp(id, &code, "phone", owner, t0)
        .await
        .unwrap();
}

/// Scenario 3: addresses within one IPv6 /64 share one budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_in_one_ipv6_64_share_a_budget() {
    let h = harness(|_| {});
    let t0 = Instant::now();
    let mut refused = 0;
    for i in 0..200u32 {
        let addr = ip(&format!("2001:db8:0:1::{:x}", i + 1));
        let id = format!("user{i}@example{i}.org");
        if h.auth.request_otp(&id, addr, t0).await.is_err() {
            refused += 1;
        }
    }
    assert!(
        refused >= 150,
        "200 requests from one /64 at once: only {refused} refused"
    );
    // Another /64 is not affected.
    h.auth
        .request_otp("other@example.net", ip("2001:db8:0:2::1"), t0)
        .await
        .unwrap();
}

/// Scenario 4: random identifiers from many addresses must not fill a table that refuses
/// everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_identifiers_cannot_fill_the_code_table() {
    let h = harness(|_| {});
    let t0 = Instant::now();
    for i in 0..100_000u32 {
        let b = i.to_be_bytes();
        let addr = IpAddr::from([10, b[1], b[2], b[3]]);
        let id = format!("flood{i}@d{}.example", i % 5_000);
        let _ = h.auth.request_otp(&id, addr, t0).await;
    }
    let victim = "+15550002004";
    let addr = ip("203.0.113.9");
    h.log_in(victim, addr, t0).await;
}

/// Scenario 4: flooding one email domain must not stop that domain's users from logging in,
/// and refused requests must not spend the victim's own quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_a_domain_does_not_lock_out_its_users() {
    let h = harness(|_| {});
    let t0 = Instant::now();
    let victim = "victim@gmail.com";
    let home = ip("203.0.113.10");
    // The victim has logged in before.
    h.log_in(victim, home, t0).await;
    let t1 = t0 + Duration::from_secs(600);
    for i in 0..2_000u32 {
        let b = i.to_be_bytes();
        let addr = IpAddr::from([10, 1, b[2], b[3]]);
        let _ = h
            .auth
            .request_otp(&format!("x{i}@gmail.com"), addr, t1)
            .await;
    }
    let sent = h.inbox.count();
    h.auth.request_otp(victim, home, t1).await.unwrap();
    assert!(h.inbox.count() > sent, "the victim's code was sent");
    let code = h.inbox.last(victim).unwrap();
    h.auth
        .verify_otp(victim, &code, "laptop", home, t1)
        .await
        .unwrap();
}

/// Scenario 4: requests refused by the attacker's own limits spend nothing of the victim's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_do_not_spend_the_victims_quota() {
    let h = harness(|_| {});
    let t0 = Instant::now();
    let victim = "+15550002009";
    let attacker = ip("2001:db8:bad:1::1");
    let mut passed = 0;
    for _ in 0..20 {
        if h.auth.request_otp(victim, attacker, t0).await.is_ok() {
            passed += 1;
        }
    }
    assert!(passed <= 3, "one source got {passed} codes for one number");
    let owner = ip("198.51.100.77");
    h.log_in(victim, owner, t0).await;
}

/// Scenario 5: a guess for an identifier without a pending code answers exactly like a wrong
/// guess for one with a pending code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_answers_do_not_reveal_a_pending_code() {
    let h = harness(|_| {});
    let t0 = Instant::now();
    let addr = ip("198.51.100.20");
    h.auth.request_otp("+15550002005", addr, t0).await.unwrap();
    let code = h.inbox.last("+15550002005").unwrap();
    let pending = h
        .auth
        .verify_otp("+15550002005", wrong(&code), "d", addr, t0)
        .await
        .unwrap_err();
    let none = h
        .auth
        .verify_otp("+15550002006", "123456", "d", addr, t0)
        .await
        .unwrap_err();
    assert_eq!(pending, none, "a pending code must not change the answer");
}

/// Scenario 7: the answer to a refresh is lost; the client retries with the same old token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_refresh_answer_does_not_sign_the_device_out() {
    let server = TestServer::start().await;
    let dev = server.login("+15550002007").await;
    let first = dev.client.snapshot().await.unwrap().tokens.unwrap();
    // The first answer is "lost": the client never stores it.
    let lost = match server.refresh_once(&first.refresh_token).await.unwrap() {
        Response::LoggedIn(g) => g.tokens,
        other => panic!("expected LoggedIn, got {other:?}"),
    };
    let again = match server.refresh_once(&first.refresh_token).await {
        Ok(Response::LoggedIn(g)) => g.tokens,
        other => panic!("a retry within the grace window must succeed, got {other:?}"),
    };
    assert_eq!(
        again.refresh_token, lost.refresh_token,
        "the same old token returns the same new refresh token"
    );
    // The new token works, and the device was not revoked.
    match server.refresh_once(&again.refresh_token).await.unwrap() {
        Response::LoggedIn(_) => {}
        other => panic!("expected LoggedIn, got {other:?}"),
    }
    // Once its successor has been rotated too, the first token is deleted (a device keeps two
    // token rows) and refused. Reuse after the grace window revoking the device is checked by
    // `auth::a_refresh_token_used_twice_revokes_the_family`.
    let old = server.refresh_once(&first.refresh_token).await.unwrap_err();
    assert_eq!(old.code(), Some(ErrorCode::InvalidToken));
}

/// Scenario 8 (part): `Refresh` is rate limited per device (and per source prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_is_rate_limited_per_device() {
    let h = harness(|_| {});
    let t0 = Instant::now();
    let home = ip("198.51.100.30");
    let grant = h.log_in("+15550002008", home, t0).await;
    let mut token = grant.tokens.refresh_token;
    let mut refused = None;
    for i in 0..100u32 {
        // A different address each time: the per-device limit holds regardless.
        let addr = IpAddr::from([10, 9, (i >> 8) as u8, i as u8]);
        match h.auth.refresh(&token, addr, t0).await {
            Ok(g) => token = g.tokens.refresh_token,
            Err(e) => {
                refused = Some((i, e.code));
                break;
            }
        }
    }
    let (after, code) = refused.expect("100 refreshes at once were all accepted");
    assert_eq!(code, ErrorCode::RateLimited);
    assert!(after <= 20, "refused only after {after}");
    // Once the bucket refills, the current token still works: a refusal spends nothing.
    h.auth
        .refresh(&token, home, t0 + Duration::from_secs(60))
        .await
        .unwrap();
}

/// Scenario 7 with the SDK: an app whose refresh answer was lost restarts with its old tokens
/// and stays signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_client_whose_refresh_answer_was_lost_stays_signed_in() {
    let server = TestServer::start().await;
    let dev = server.login("+15550002010").await;
    let mut saved = dev.client.snapshot().await.unwrap();
    dev.client.close().await;
    let tokens = saved.tokens.as_mut().unwrap();
    // The server rotates, but the answer never reaches the app.
    let _lost = server.refresh_once(&tokens.refresh_token).await.unwrap();
    // The app restarts with what it had stored; its access token has expired meanwhile.
    tokens.access_expires_at_ms = 0;
    let (client, mut events) = server.resume(&saved);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(tern_sdk::ClientEvent::Connected { session: Some(s) })) => {
                assert_eq!(Some(s), saved.session);
                break;
            }
            Ok(Some(tern_sdk::ClientEvent::SessionEnded { code, reason })) => {
                panic!("signed out: {code:?} {reason}")
            }
            Ok(Some(_)) => {}
            _ => panic!("never connected"),
        }
    }
    client.chats().await.unwrap();
    client.close().await;
}
