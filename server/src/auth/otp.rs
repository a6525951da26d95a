//! One-time codes: six random digits, stored only as an HMAC, compared in constant time, valid for
//! five minutes and five tries; a new code voids the old one. Time is passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tern_protocol::ErrorCode;

/// How long a code is valid by default.
pub const OTP_TTL: Duration = Duration::from_secs(300);
/// Wrong tries before a code is void.
pub const OTP_MAX_TRIES: u8 = 5;
/// Most outstanding codes kept in memory; oldest expired ones are dropped first.
const MAX_PENDING: usize = 100_000;

#[derive(Debug)]
struct Pending {
    tag: hmac::Tag,
    expires: Instant,
    tries_left: u8,
}

/// Outstanding codes by identifier.
#[derive(Debug)]
pub struct OtpBook {
    key: hmac::Key,
    rng: SystemRandom,
    pending: HashMap<String, Pending>,
    ttl: Duration,
}

impl OtpBook {
    /// A book whose codes are MAC'd with `secret` and valid for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        OtpBook {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            rng: SystemRandom::new(),
            pending: HashMap::new(),
            ttl,
        }
    }

    fn mac_input(identifier: &str, code: &str) -> Vec<u8> {
        let mut v = Vec::with_capacity(identifier.len() + code.len() + 1);
        v.extend_from_slice(identifier.as_bytes());
        v.push(0);
        v.extend_from_slice(code.as_bytes());
        v
    }

    /// Issues a fresh code for `identifier`, voiding any earlier one.
    pub fn issue(&mut self, identifier: &str, now: Instant) -> Result<String, ErrorCode> {
        if self.pending.len() >= MAX_PENDING {
            self.pending.retain(|_, p| p.expires > now);
            if self.pending.len() >= MAX_PENDING {
                return Err(ErrorCode::Overloaded);
            }
        }
        let mut bytes = [0u8; 4];
        self.rng.fill(&mut bytes).map_err(|_| ErrorCode::Internal)?;
        let code = format!("{:06}", u32::from_le_bytes(bytes) % 1_000_000);
        let tag = hmac::sign(&self.key, &Self::mac_input(identifier, &code));
        self.pending.insert(
            identifier.to_owned(),
            Pending {
                tag,
                expires: now + self.ttl,
                tries_left: OTP_MAX_TRIES,
            },
        );
        Ok(code)
    }

    /// Checks a code. A correct code is consumed; a wrong one uses up a try.
    pub fn verify(&mut self, identifier: &str, code: &str, now: Instant) -> Result<(), ErrorCode> {
        let Some(p) = self.pending.get_mut(identifier) else {
            return Err(ErrorCode::OtpExpired);
        };
        if now >= p.expires {
            self.pending.remove(identifier);
            return Err(ErrorCode::OtpExpired);
        }
        if p.tries_left == 0 {
            return Err(ErrorCode::OtpTooManyAttempts);
        }
        // hmac::verify compares in constant time.
        if hmac::verify(
            &self.key,
            &Self::mac_input(identifier, code),
            p.tag.as_ref(),
        )
        .is_ok()
        {
            self.pending.remove(identifier);
            return Ok(());
        }
        p.tries_left -= 1;
        if p.tries_left == 0 {
            Err(ErrorCode::OtpTooManyAttempts)
        } else {
            Err(ErrorCode::OtpInvalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_code_works_once() {
        let t0 = Instant::now();
        let mut book = OtpBook::new(b"secret", OTP_TTL);
        let code = book.issue("+15550001", t0).unwrap();
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(book.verify("+15550001", &code, t0), Ok(()));
        assert_eq!(
            book.verify("+15550001", &code, t0),
            Err(ErrorCode::OtpExpired),
            "consumed"
        );
    }

    #[test]
    fn five_wrong_tries_void_the_code() {
        let t0 = Instant::now();
        let mut book = OtpBook::new(b"secret", OTP_TTL);
        let code = book.issue("a@b.org", t0).unwrap();
        let wrong = if code == "000000" { "000001" } else { "000000" };
        for _ in 0..4 {
            assert_eq!(
                book.verify("a@b.org", wrong, t0),
                Err(ErrorCode::OtpInvalid)
            );
        }
        assert_eq!(
            book.verify("a@b.org", wrong, t0),
            Err(ErrorCode::OtpTooManyAttempts)
        );
        assert_eq!(
            book.verify("a@b.org", &code, t0),
            Err(ErrorCode::OtpTooManyAttempts),
            "void now"
        );
    }

    #[test]
    fn codes_expire_and_new_codes_void_old_ones() {
        let t0 = Instant::now();
        let mut book = OtpBook::new(b"secret", OTP_TTL);
        let code = book.issue("a@b.org", t0).unwrap();
        assert_eq!(
            book.verify("a@b.org", &code, t0 + OTP_TTL),
            Err(ErrorCode::OtpExpired)
        );
        let old = book.issue("a@b.org", t0).unwrap();
        let new = book.issue("a@b.org", t0).unwrap();
        if old != new {
            assert_eq!(
                book.verify("a@b.org", &old, t0),
                Err(ErrorCode::OtpInvalid),
                "old code is void"
            );
        }
        assert_eq!(book.verify("a@b.org", &new, t0), Ok(()));
    }
}
