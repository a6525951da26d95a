//! Identity: OTP login, access and refresh tokens, devices.
//!
//! [`AuthService`] gets everything it needs as explicit fields ([`AuthDeps`]). OTP state is held in
//! memory (a restart voids outstanding codes; cluster mode moves it to Redis).

pub mod identifier;
pub mod otp;
pub mod rate_limit;
pub mod sender;
pub mod token;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};
use tern_protocol::{
    DeviceId, DeviceInfo, ErrorBody, ErrorCode, LoginGrant, SessionInfo, Tokens, UserId,
};

use self::identifier::Identifier;
use self::otp::{OTP_TTL, OtpBook};
use self::rate_limit::{Quota, RateLimiter};
use self::sender::OtpSender;
use self::token::{TokenIssuer, hash_refresh_token, new_refresh_token};
use crate::router::Router;
use crate::storage::{RefreshRecord, Storage, StorageError};

/// Auth settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Access token lifetime, seconds.
    pub access_ttl_s: u64,
    /// Refresh token lifetime, seconds.
    pub refresh_ttl_s: u64,
    /// OTP code lifetime, seconds.
    pub otp_ttl_s: u64,
    /// OTP requests per identifier.
    pub otp_per_identifier: Quota,
    /// OTP requests per number prefix / email domain.
    pub otp_per_prefix: Quota,
    /// OTP requests and verifications per source address.
    pub otp_per_address: Quota,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_ttl_s: 15 * 60,
            refresh_ttl_s: 30 * 24 * 3600,
            otp_ttl_s: OTP_TTL.as_secs(),
            otp_per_identifier: Quota {
                burst: 5,
                per_minute: 1,
            },
            otp_per_prefix: Quota {
                burst: 200,
                per_minute: 100,
            },
            otp_per_address: Quota {
                burst: 30,
                per_minute: 10,
            },
        }
    }
}

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
    /// Secret the OTP codes are MAC'd with.
    pub otp_secret: Vec<u8>,
    /// Settings.
    pub config: AuthConfig,
}

#[derive(Debug)]
struct Limits {
    per_identifier: RateLimiter<String>,
    per_prefix: RateLimiter<String>,
    per_address: RateLimiter<IpAddr>,
}

/// OTP login, tokens and devices.
#[derive(Debug)]
pub struct AuthService {
    storage: Arc<dyn Storage>,
    sender: Arc<dyn OtpSender>,
    issuer: TokenIssuer,
    router: Arc<Router>,
    config: AuthConfig,
    otp: Mutex<OtpBook>,
    limits: Mutex<Limits>,
    rng: SystemRandom,
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

impl AuthService {
    /// Builds the service from its dependencies.
    pub fn new(deps: AuthDeps) -> Self {
        let limits = Limits {
            per_identifier: RateLimiter::new(deps.config.otp_per_identifier, 1_000_000),
            per_prefix: RateLimiter::new(deps.config.otp_per_prefix, 100_000),
            per_address: RateLimiter::new(deps.config.otp_per_address, 1_000_000),
        };
        let otp = OtpBook::new(&deps.otp_secret, Duration::from_secs(deps.config.otp_ttl_s));
        AuthService {
            storage: deps.storage,
            sender: deps.sender,
            issuer: deps.issuer,
            router: deps.router,
            config: deps.config,
            otp: Mutex::new(otp),
            limits: Mutex::new(limits),
            rng: SystemRandom::new(),
        }
    }

    fn limit_address(&self, addr: IpAddr, now: Instant) -> Result<(), ErrorBody> {
        let mut l = self
            .limits
            .lock()
            .map_err(|_| err(ErrorCode::Internal, "lock"))?;
        l.per_address.check(&addr, now).map_err(|_| {
            err(
                ErrorCode::RateLimited,
                "too many attempts from this address",
            )
        })
    }

    /// Issues a code and hands it to the sender. Answers the same whether or not the identifier
    /// is registered.
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
        self.limit_address(addr, now)?;
        {
            let mut l = self
                .limits
                .lock()
                .map_err(|_| err(ErrorCode::Internal, "lock"))?;
            let limited = err(
                ErrorCode::RateLimited,
                "too many codes requested; wait a while",
            );
            l.per_identifier
                .check(&id.as_str().to_owned(), now)
                .map_err(|_| limited.clone())?;
            l.per_prefix
                .check(&id.prefix().to_owned(), now)
                .map_err(|_| limited)?;
        }
        let code = {
            let mut book = self
                .otp
                .lock()
                .map_err(|_| err(ErrorCode::Internal, "lock"))?;
            book.issue(id.as_str(), now)
                .map_err(|c| err(c, "could not issue a code"))?
        };
        if let Err(e) = self.sender.send(id.as_str(), &code).await {
            tracing::warn!(error = %e, "OTP delivery failed");
            return Err(err(ErrorCode::Internal, "the code could not be delivered"));
        }
        Ok(u32::try_from(self.config.otp_ttl_s).unwrap_or(u32::MAX))
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
        self.limit_address(addr, now)?;
        {
            let mut book = self
                .otp
                .lock()
                .map_err(|_| err(ErrorCode::Internal, "lock"))?;
            book.verify(id.as_str(), code, now).map_err(|c| {
                let msg = match c {
                    ErrorCode::OtpInvalid => "wrong code",
                    ErrorCode::OtpTooManyAttempts => "too many wrong codes; request a new one",
                    _ => "no valid code; request a new one",
                };
                err(c, msg)
            })?;
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
        self.grant(SessionInfo {
            user_id: user,
            device_id: device.device_id,
        })
        .await
    }

    async fn grant(&self, session: SessionInfo) -> Result<LoginGrant, ErrorBody> {
        let now = now_ms();
        let (access_token, exp_s) = self
            .issuer
            .issue(session, now / 1000)
            .map_err(|c| err(c, "could not sign a token"))?;
        let (refresh_token, hash) =
            new_refresh_token(&self.rng).map_err(|c| err(c, "randomness failed"))?;
        let record = RefreshRecord {
            user_id: session.user_id,
            device_id: session.device_id,
            expires_ms: now + self.config.refresh_ttl_s * 1000,
            used: false,
        };
        self.storage
            .put_refresh_token(hash, record)
            .await
            .map_err(storage_error)?;
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

    /// Rotates a refresh token. A second use of a rotated token revokes the device (the token
    /// family) and closes its connections.
    pub async fn refresh(&self, refresh_token: &str) -> Result<LoginGrant, ErrorBody> {
        let hash = hash_refresh_token(refresh_token);
        let record = self
            .storage
            .take_refresh_token(hash)
            .await
            .map_err(storage_error)?
            .ok_or_else(|| err(ErrorCode::InvalidToken, "unknown refresh token"))?;
        if record.used {
            tracing::warn!(user = %record.user_id, device = %record.device_id, "refresh token reuse: revoking the device");
            self.revoke(record.user_id, record.device_id).await?;
            return Err(err(
                ErrorCode::RefreshReused,
                "refresh token reused; the device has been signed out",
            ));
        }
        if record.expires_ms <= now_ms() {
            return Err(err(ErrorCode::InvalidToken, "refresh token expired"));
        }
        self.check_device(record.user_id, record.device_id).await?;
        self.grant(SessionInfo {
            user_id: record.user_id,
            device_id: record.device_id,
        })
        .await
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
