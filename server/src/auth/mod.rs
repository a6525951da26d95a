//! Identity: OTP login, access and refresh tokens, devices.
//!
//! [`AuthService`] gets everything it needs as explicit fields ([`AuthDeps`]). OTP state and the
//! OTP limits sit behind [`state::AuthState`]: in memory on a single node (a restart voids
//! outstanding codes), in Redis in cluster mode (`cluster::redis::auth_state`), where a store that cannot
//! reach Redis makes `RequestOtp` and `VerifyOtp` answer `Overloaded` (retry) rather than fall
//! back to node-local budgets. The refresh limits stay per node: refresh tokens cannot be guessed
//! and their rotation is checked in storage, so those limits only bound load.
//!
//! # Limits, in the order they are checked
//!
//! Each check runs only if the ones before it passed, and a refused check spends nothing of the
//! checks after it, so the cheap and broad limits an attacker hits first never spend a victim's
//! budget. All tables are sharded, bounded, and evict instead of refusing (no global state an
//! anonymous client can fill); defaults in brackets ([`AuthConfig`], docs/operations.md).
//!
//! `RequestOtp`:
//! 1. the identifier parses (`InvalidArgument`);
//! 2. per source prefix, IPv4 /32 and IPv6 /64 by default (burst 30, 10/min) → `RateLimited`;
//! 3. per identifier and source prefix (burst 3, 72/day) and per identifier from all sources
//!    (burst 5, 1/min), both checked before either is spent → `RateLimited`;
//! 4. per number prefix or email domain (burst 200, 100/min): beyond it only identifiers that
//!    are already registered get a code. The answer is `OtpRequested` either way, so flooding
//!    `@gmail.com` stops new sign-ups there (SMS pumping, mail bombing) but no gmail user.
//!
//! `VerifyOtp`:
//! 1. the identifier parses and the code is six digits (`InvalidArgument`, no try spent);
//! 2. per source prefix (the same bucket as above) → `RateLimited`;
//! 3. the identifier-and-source lock: after 5 wrong codes in a row from one prefix, that prefix
//!    is locked out of this identifier for 1 min, doubling with every further miss up to a day
//!    → `OtpTooManyAttempts` without looking at the code;
//! 4. the identifier's failure budget (burst 30, 30/day), counted across every code issued for
//!    it and every source → `OtpTooManyAttempts`;
//! 5. the code: right → logged in; the digits of an expired, replaced or consumed code →
//!    `OtpExpired`; anything else, including "no code pending" → `OtpInvalid`, one failure.
//!
//! **Daily guess budget per identifier: at most 60 wrong codes in any 24 hours** (the failure
//! budget's burst of 30 plus 30 refilled), 30 a day after that, however many codes are requested
//! and from however many prefixes. With one million codes that is a chance of at most 6 in
//! 100,000 per identifier per day. (Before: 5 per code and a code a minute, about 7,000 a day.)
//!
//! **The owner still gets in while someone hammers the number**: one attacking prefix can spend
//! at most 3 code requests at once (72 a day) of the identifier's 5-then-1-a-minute, and at most
//! 15 wrong codes a day (5, then one per doubling lock) of its 60, and locks only itself out. A
//! wrong code never voids the pending one; an attacker's request does replace it (the old code
//! then answers `OtpExpired`), 3 times an hour per prefix at most. The owner, on another prefix,
//! gets codes and tries until an attacker with four or more prefixes spends the whole daily
//! budget; that is the price of the hard brute-force bound, and wider prefixes
//! (`auth.ipv6_prefix_len = 48`) make such prefixes dearer.
//!
//! `Refresh`: per source prefix (burst 60, 30/min), then per device (burst 10, 2/min).
//!
//! # Answers that do not leak
//!
//! `RequestOtp` answers the same for registered and unregistered identifiers. `VerifyOtp` answers
//! an identifier without a pending code exactly like a wrong code (content and work: the HMAC is
//! always computed and compared, against dummy tags when nothing is stored).
//!
//! # Refresh rotation
//!
//! The successor of a refresh token is derived from it: `rt1.` + base64url(HMAC-SHA256(refresh
//! key, old token)). Storage marks the old token used, recording the successor's hash, and stores
//! the successor in one commit. A client whose answer was lost retries with the old token; within
//! `refresh_grace_s` (120 s), while the successor is unused, the server derives the same successor
//! again and answers it (with a freshly signed access token) instead of revoking the device. The
//! successor is never stored in the clear: only someone holding the old token and the server key
//! can derive it, which is exactly who was entitled to it. Outside the window the old token is
//! reuse and revokes the device (RFC 9700 §4.14.2). Rotation also deletes the token before the
//! old one, so a device holds two token rows; a token two rotations old answers `InvalidToken`
//! (whoever holds it gets nothing, but it no longer triggers revocation: the token a thief races
//! the owner with is the latest one, which is kept). Revocation deletes a device's tokens.

pub mod attempts;
pub mod config;
pub mod identifier;
pub mod otp;
pub mod rate_limit;
pub mod sender;
pub mod source;
pub mod state;
pub mod token;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use ring::hmac;
use tern_protocol::{
    DeviceId, DeviceInfo, ErrorBody, ErrorCode, LoginGrant, SessionInfo, Tokens, UserId,
};

pub use self::config::AuthConfig;
use self::identifier::Identifier;
use self::rate_limit::ShardedLimiter;
use self::sender::OtpSender;
use self::source::{PrefixLens, SourcePrefix};
use self::state::{AuthState, AuthStateError, Checked, MemoryState};
use self::token::{TokenIssuer, hash_refresh_token, successor_token};
use crate::router::Router;
use crate::storage::{RefreshRecord, Rotation, Storage, StorageError};

/// What the auth service depends on.
#[derive(Debug)]
pub struct AuthDeps {
    /// Users, devices and refresh tokens.
    pub storage: Arc<dyn Storage>,
    /// Where codes go.
    pub sender: Arc<dyn OtpSender>,
    /// Signs and checks access tokens.
    pub issuer: TokenIssuer,
    /// Closes a revoked device's live connections.
    pub router: Arc<Router>,
    /// Secret the OTP codes are MAC'd with (by the in-memory store; a shared store was built
    /// with the same secret).
    pub otp_secret: Vec<u8>,
    /// Where codes and OTP limits live; `None`: in this process's memory (one node).
    pub state: Option<Arc<dyn AuthState>>,
    /// Secret refresh-token successors are derived with.
    pub refresh_secret: Vec<u8>,
    /// Settings.
    pub config: AuthConfig,
}

#[derive(Debug)]
struct Limits {
    refresh_per_source: ShardedLimiter<SourcePrefix>,
    refresh_per_device: ShardedLimiter<(UserId, DeviceId)>,
}

/// OTP login, tokens and devices.
#[derive(Debug)]
pub struct AuthService {
    storage: Arc<dyn Storage>,
    sender: Arc<dyn OtpSender>,
    issuer: TokenIssuer,
    router: Arc<Router>,
    config: AuthConfig,
    lens: PrefixLens,
    state: Arc<dyn AuthState>,
    limits: Limits,
    refresh_key: hmac::Key,
}

fn err(code: ErrorCode, message: &str) -> ErrorBody {
    ErrorBody::new(code, message)
}

pub(crate) fn storage_error(e: StorageError) -> ErrorBody {
    match e {
        StorageError::ChatNotFound => err(ErrorCode::NotFound, "no such chat"),
        StorageError::SeqOutOfRange { seq, last } => ErrorBody::new(
            ErrorCode::InvalidArgument,
            format!("seq {seq} is beyond the last seq {last}"),
        ),
        StorageError::Closed => err(ErrorCode::ShuttingDown, "the server is shutting down"),
        StorageError::Forbidden(why) => err(ErrorCode::Forbidden, &why),
        StorageError::Invalid(why) => err(ErrorCode::InvalidArgument, &why),
        StorageError::TooLarge(why) => err(ErrorCode::TooLarge, &why),
        StorageError::UserNotFound => err(ErrorCode::NotFound, "no such user"),
        other => {
            tracing::error!(error = %other, "storage failure");
            err(ErrorCode::Internal, "storage failure")
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn limited(message: &str) -> ErrorBody {
    err(ErrorCode::RateLimited, message)
}

/// A store that cannot answer refuses the request: `Overloaded` is retryable with jitter, and
/// answering anything else (or consulting node-local state) would let a Redis outage hand out
/// fresh guess budgets.
fn state_error(e: AuthStateError) -> ErrorBody {
    match e {
        AuthStateError::Unavailable(why) => {
            tracing::warn!(error = %why, "auth state unavailable: OTP refused");
            err(
                ErrorCode::Overloaded,
                "login is unavailable for a moment; retry shortly",
            )
        }
        other => {
            tracing::error!(error = %other, "auth state failure");
            err(ErrorCode::Internal, "could not check the code")
        }
    }
}

fn too_many() -> ErrorBody {
    err(
        ErrorCode::OtpTooManyAttempts,
        "too many wrong codes; wait before trying again",
    )
}

impl AuthService {
    /// Builds the service from its dependencies.
    pub fn new(deps: AuthDeps) -> Self {
        let c = &deps.config;
        let limits = Limits {
            refresh_per_source: ShardedLimiter::new(c.refresh_per_address, c.max_tracked_sources),
            refresh_per_device: ShardedLimiter::new(c.refresh_per_device, c.max_tracked_sources),
        };
        let state = deps
            .state
            .unwrap_or_else(|| Arc::new(MemoryState::new(c, &deps.otp_secret)));
        AuthService {
            storage: deps.storage,
            sender: deps.sender,
            issuer: deps.issuer,
            router: deps.router,
            lens: c.prefix_lens(),
            refresh_key: hmac::Key::new(hmac::HMAC_SHA256, &deps.refresh_secret),
            config: deps.config,
            state,
            limits,
        }
    }

    /// Issues a code and hands it to the sender. Answers the same whether or not the identifier
    /// is registered. The limits and their order are in the module docs.
    pub async fn request_otp(
        &self,
        raw: &str,
        addr: IpAddr,
        now: Instant,
    ) -> Result<u32, ErrorBody> {
        let id = Identifier::parse(raw).ok_or_else(|| {
            err(
                ErrorCode::InvalidArgument,
                "identifier must be an E.164 number or an email",
            )
        })?;
        let source = SourcePrefix::of(addr, self.lens);
        if !self
            .state
            .take_source(source, now)
            .await
            .map_err(state_error)?
        {
            return Err(limited("too many attempts from this address"));
        }
        if !self
            .state
            .take_request(id.as_str(), source, now)
            .await
            .map_err(state_error)?
        {
            return Err(limited("too many codes requested; wait a while"));
        }
        let open = self
            .state
            .take_prefix(id.prefix(), now)
            .await
            .map_err(state_error)?;
        // Always looked up, so the work does not depend on the prefix budget.
        let registered = self
            .storage
            .user_by_identifier(id.as_str())
            .await
            .map_err(storage_error)?
            .is_some();
        let expires_in_s = u32::try_from(self.config.otp_ttl_s).unwrap_or(u32::MAX);
        if !open && !registered {
            tracing::debug!(
                prefix = id.prefix(),
                "prefix budget spent: no code for a new identifier"
            );
            return Ok(expires_in_s);
        }
        let code = self
            .state
            .issue(id.as_str(), now)
            .await
            .map_err(state_error)?;
        if let Err(e) = self.sender.send(id.as_str(), &code).await {
            tracing::warn!(error = %e, "OTP delivery failed");
            return Err(err(ErrorCode::Internal, "the code could not be delivered"));
        }
        Ok(expires_in_s)
    }

    /// Checks a code, registers the user on first login and a new device, and issues tokens.
    pub async fn verify_otp(
        &self,
        raw: &str,
        code: &str,
        device_name: &str,
        addr: IpAddr,
        now: Instant,
    ) -> Result<LoginGrant, ErrorBody> {
        let id = Identifier::parse(raw)
            .ok_or_else(|| err(ErrorCode::InvalidArgument, "bad identifier"))?;
        if code.len() != tern_protocol::limits::OTP_DIGITS
            || !code.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err(ErrorCode::InvalidArgument, "a code is six digits"));
        }
        let source = SourcePrefix::of(addr, self.lens);
        if !self
            .state
            .take_source(source, now)
            .await
            .map_err(state_error)?
        {
            return Err(limited("too many attempts from this address"));
        }
        match self
            .state
            .verify(id.as_str(), code, source, now)
            .await
            .map_err(state_error)?
        {
            Checked::Ok => {}
            Checked::TooMany => return Err(too_many()),
            Checked::Expired => {
                return Err(err(
                    ErrorCode::OtpExpired,
                    "this code expired or was replaced; request a new one",
                ));
            }
            Checked::Wrong => return Err(err(ErrorCode::OtpInvalid, "wrong code")),
        }
        let user = self
            .storage
            .upsert_user(id.as_str(), now_ms())
            .await
            .map_err(storage_error)?;
        let name = if device_name.trim().is_empty() {
            "device"
        } else {
            device_name.trim()
        };
        let device = self
            .storage
            .create_device(user, name, now_ms())
            .await
            .map_err(storage_error)?;
        let session = SessionInfo {
            user_id: user,
            device_id: device.device_id,
        };
        let (refresh_token, hash) = token::new_refresh_token(&ring::rand::SystemRandom::new())
            .map_err(|c| err(c, "randomness failed"))?;
        let record = RefreshRecord::new(user, device.device_id, now_ms() + self.refresh_ttl_ms());
        self.storage
            .put_refresh_token(hash, record)
            .await
            .map_err(storage_error)?;
        self.grant(session, refresh_token)
    }

    fn refresh_ttl_ms(&self) -> u64 {
        self.config.refresh_ttl_s.saturating_mul(1000)
    }

    /// Signs an access token and packs the answer.
    fn grant(&self, session: SessionInfo, refresh_token: String) -> Result<LoginGrant, ErrorBody> {
        let (access_token, exp_s) = self
            .issuer
            .issue(session, now_ms() / 1000)
            .map_err(|c| err(c, "could not sign a token"))?;
        Ok(LoginGrant {
            user_id: session.user_id,
            device_id: session.device_id,
            tokens: Tokens {
                access_token,
                access_expires_at_ms: exp_s * 1000,
                refresh_token,
            },
        })
    }

    /// Rotates a refresh token (see the module docs). A reuse outside the grace window revokes
    /// the device (the token family) and closes its connections.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        addr: IpAddr,
        now: Instant,
    ) -> Result<LoginGrant, ErrorBody> {
        let source = SourcePrefix::of(addr, self.lens);
        self.limits
            .refresh_per_source
            .check(&source, now)
            .map_err(|_| limited("too many refreshes from this address"))?;
        let hash = hash_refresh_token(refresh_token);
        let record = self
            .storage
            .refresh_token(hash)
            .await
            .map_err(storage_error)?
            .ok_or_else(|| err(ErrorCode::InvalidToken, "unknown refresh token"))?;
        self.limits
            .refresh_per_device
            .check(&(record.user_id, record.device_id), now)
            .map_err(|_| limited("too many refreshes for this device"))?;
        let wall = now_ms();
        if !record.used && record.expires_ms <= wall {
            return Err(err(ErrorCode::InvalidToken, "refresh token expired"));
        }
        self.check_device(record.user_id, record.device_id).await?;
        let next = successor_token(&self.refresh_key, refresh_token);
        let next_hash = hash_refresh_token(&next);
        let next_record = RefreshRecord::new(
            record.user_id,
            record.device_id,
            wall + self.refresh_ttl_ms(),
        );
        let grace_ms = self.config.refresh_grace_s.saturating_mul(1000);
        let session = SessionInfo {
            user_id: record.user_id,
            device_id: record.device_id,
        };
        match self
            .storage
            .rotate_refresh_token(hash, next_hash, next_record, wall, grace_ms)
            .await
            .map_err(storage_error)?
        {
            Rotation::Rotated(_) | Rotation::Replayed(_) => self.grant(session, next),
            Rotation::Unknown => Err(err(ErrorCode::InvalidToken, "unknown refresh token")),
            Rotation::Reused(r) => {
                tracing::warn!(user = %r.user_id, device = %r.device_id, "refresh token reuse: revoking the device");
                self.revoke(r.user_id, r.device_id).await?;
                Err(err(
                    ErrorCode::RefreshReused,
                    "refresh token reused; the device has been signed out",
                ))
            }
        }
    }

    /// Verifies an access token and that its device is still registered and not revoked.
    pub async fn authenticate(&self, access_token: &str) -> Result<SessionInfo, ErrorBody> {
        let session = self.issuer.verify(access_token).map_err(|c| {
            let msg = if c == ErrorCode::TokenExpired {
                "access token expired"
            } else {
                "invalid access token"
            };
            err(c, msg)
        })?;
        self.check_device(session.user_id, session.device_id)
            .await?;
        Ok(session)
    }

    /// Checks that a session's device is still registered and not revoked. The transport calls
    /// this after registering a freshly authenticated connection, closing the window in which a
    /// revocation could commit between the token check and the registration.
    pub async fn check_session(&self, session: SessionInfo) -> Result<(), ErrorBody> {
        self.check_device(session.user_id, session.device_id).await
    }

    async fn check_device(&self, user: UserId, device: DeviceId) -> Result<(), ErrorBody> {
        match self
            .storage
            .device(user, device)
            .await
            .map_err(storage_error)?
        {
            Some(d) if !d.revoked => Ok(()),
            Some(_) => Err(err(
                ErrorCode::DeviceRevoked,
                "this device has been revoked",
            )),
            None => Err(err(ErrorCode::InvalidToken, "unknown device")),
        }
    }

    async fn revoke(&self, user: UserId, device: DeviceId) -> Result<bool, ErrorBody> {
        let found = self
            .storage
            .revoke_device(user, device)
            .await
            .map_err(storage_error)?;
        if found {
            self.router
                .close_device(user, device, ErrorCode::DeviceRevoked);
        }
        Ok(found)
    }

    /// Revokes one of the caller's devices and closes its live connections.
    pub async fn revoke_device(
        &self,
        session: SessionInfo,
        device: DeviceId,
    ) -> Result<(), ErrorBody> {
        if self.revoke(session.user_id, device).await? {
            Ok(())
        } else {
            Err(err(ErrorCode::NotFound, "no such device"))
        }
    }

    /// The caller's devices.
    pub async fn devices(&self, session: SessionInfo) -> Result<Vec<DeviceInfo>, ErrorBody> {
        let list = self
            .storage
            .devices(session.user_id)
            .await
            .map_err(storage_error)?;
        Ok(list.iter().map(|d| d.info()).collect())
    }

    /// A page of the caller's devices with ids above `after` (`ListDevicesPage`).
    pub async fn devices_page(
        &self,
        session: SessionInfo,
        after: DeviceId,
        limit: u32,
    ) -> Result<tern_protocol::DevicesPage, ErrorBody> {
        // 256 devices with 64-byte names stay well inside one frame.
        let limit = limit.clamp(1, 256);
        let rows = self
            .storage
            .devices_page(session.user_id, after, limit + 1)
            .await
            .map_err(storage_error)?;
        let (list, more) = crate::storage::split_page(rows, limit);
        Ok(tern_protocol::DevicesPage {
            next: more.then(|| list.last().map(|d| d.device_id)).flatten(),
            devices: list.iter().map(|d| d.info()).collect(),
        })
    }

    /// Lifetime of access tokens, for `Welcome`.
    pub fn access_ttl_s(&self) -> u64 {
        self.issuer.access_ttl_s()
    }
}
