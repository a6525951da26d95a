//! Access tokens (JWT, HS256 pinned, `kid` from a fixed key set, `iss`/`aud`/`exp` checked, bound
//! to user and device) and opaque refresh tokens (random, stored only as SHA-256).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use tern_protocol::{DeviceId, ErrorCode, SessionInfo, UserId};

/// Issuer claim of every access token.
pub const ISSUER: &str = "tern";
/// Audience claim of access tokens for the chat API.
pub const AUDIENCE: &str = "tern-chat";

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// User id.
    pub sub: String,
    /// Device id.
    pub did: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

/// One signing key with its id.
#[derive(Clone)]
pub struct SigningKey {
    /// Key id, written in the JWT header.
    pub kid: String,
    /// HMAC secret.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Issues and checks access tokens. The first key signs; all keys verify (for rotation).
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    keys: Vec<SigningKey>,
    access_ttl_s: u64,
}

impl TokenIssuer {
    /// An issuer with a non-empty key set.
    pub fn new(keys: Vec<SigningKey>, access_ttl_s: u64) -> Option<Self> {
        (!keys.is_empty()).then_some(TokenIssuer { keys, access_ttl_s })
    }

    /// Lifetime of access tokens, in seconds.
    pub fn access_ttl_s(&self) -> u64 {
        self.access_ttl_s
    }

    /// Signs an access token for `session`, issued at `now_s`. Returns the token and its expiry.
    pub fn issue(&self, session: SessionInfo, now_s: u64) -> Result<(String, u64), ErrorCode> {
        self.issue_with(session, now_s, AUDIENCE)
    }

    /// Like [`TokenIssuer::issue`] with another audience (tests use it to check audience pinning).
    pub fn issue_with(
        &self,
        session: SessionInfo,
        now_s: u64,
        audience: &str,
    ) -> Result<(String, u64), ErrorCode> {
        let key = self.keys.first().ok_or(ErrorCode::Internal)?;
        let exp = now_s + self.access_ttl_s;
        let claims = Claims {
            iss: ISSUER.into(),
            aud: audience.into(),
            sub: session.user_id.0.to_string(),
            did: session.device_id.0,
            iat: now_s,
            exp,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&key.secret))
            .map_err(|_| ErrorCode::Internal)?;
        Ok((token, exp))
    }

    /// Verifies a token: algorithm, key id, signature, issuer, audience and expiry.
    pub fn verify(&self, token: &str) -> Result<SessionInfo, ErrorCode> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| ErrorCode::InvalidToken)?;
        if header.alg != Algorithm::HS256 {
            return Err(ErrorCode::InvalidToken);
        }
        let kid = header.kid.ok_or(ErrorCode::InvalidToken)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(ErrorCode::InvalidToken)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(&key.secret),
            &validation,
        )
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => ErrorCode::TokenExpired,
            _ => ErrorCode::InvalidToken,
        })?;
        let user = data
            .claims
            .sub
            .parse::<u64>()
            .map_err(|_| ErrorCode::InvalidToken)?;
        Ok(SessionInfo {
            user_id: UserId(user),
            device_id: DeviceId(data.claims.did),
        })
    }
}

/// A fresh opaque refresh token and the hash under which it is stored.
pub fn new_refresh_token(rng: &SystemRandom) -> Result<(String, [u8; 32]), ErrorCode> {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes).map_err(|_| ErrorCode::Internal)?;
    let token = format!("rt1.{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_refresh_token(&token);
    Ok((token, hash))
}

/// The token a refresh token is exchanged for: `rt1.` + base64url(HMAC-SHA256(`key`, `token`)).
/// Derived rather than drawn so a retry of the same exchange (a lost answer) gets the same token
/// without the server storing it anywhere but as a hash; unpredictable without the key.
pub fn successor_token(key: &ring::hmac::Key, token: &str) -> String {
    let tag = ring::hmac::sign(key, token.as_bytes());
    format!("rt1.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// SHA-256 of a refresh token: the only form the server stores.
pub fn hash_refresh_token(token: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(secret: &[u8]) -> TokenIssuer {
        TokenIssuer::new(
            vec![SigningKey {
                kid: "k1".into(),
                secret: secret.to_vec(),
            }],
            300,
        )
        .unwrap()
    }

    fn now_s() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    const S: SessionInfo = SessionInfo {
        user_id: UserId(7),
        device_id: DeviceId(9),
    };

    #[test]
    fn round_trip_binds_user_and_device() {
        let iss = issuer(b"0123456789abcdef0123456789abcdef");
        let (t, _) = iss.issue(S, now_s()).unwrap();
        assert_eq!(iss.verify(&t), Ok(S));
    }

    #[test]
    fn forged_expired_and_wrong_audience_are_refused() {
        let iss = issuer(b"0123456789abcdef0123456789abcdef");
        let forger = issuer(b"another-secret-another-secret-xx");
        let (forged, _) = forger.issue(S, now_s()).unwrap();
        assert_eq!(iss.verify(&forged), Err(ErrorCode::InvalidToken));
        let (old, _) = iss.issue(S, now_s() - 3600).unwrap();
        assert_eq!(iss.verify(&old), Err(ErrorCode::TokenExpired));
        let (aud, _) = iss.issue_with(S, now_s(), "someone-else").unwrap();
        assert_eq!(iss.verify(&aud), Err(ErrorCode::InvalidToken));
        assert_eq!(iss.verify("not.a.jwt"), Err(ErrorCode::InvalidToken));
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let rng = SystemRandom::new();
        let (a, ha) = new_refresh_token(&rng).unwrap();
        let (b, hb) = new_refresh_token(&rng).unwrap();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(hash_refresh_token(&a), ha);
    }

    #[test]
    fn successors_are_deterministic_per_key_and_token() {
        let k1 = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"one");
        let k2 = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"two");
        let next = successor_token(&k1, "rt1.a");
        assert_eq!(next, successor_token(&k1, "rt1.a"));
        assert_ne!(next, successor_token(&k1, "rt1.b"));
        assert_ne!(next, successor_token(&k2, "rt1.a"));
        assert!(next.starts_with("rt1.") && next.len() <= tern_protocol::limits::MAX_TOKEN_LEN);
    }
}
