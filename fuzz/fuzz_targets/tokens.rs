//! Access-token verification and the refresh-token functions of `server/src/auth/token.rs` on
//! hostile strings. Byte 0 chooses the mode:
//! * 0: the rest (lossy UTF-8) is verified as an access token: never panics, deterministic;
//! * 1: a real token for a session drawn from the input, then flipped at input-chosen bytes:
//!   verification may only succeed as the session it was issued for (no identity forgery);
//! * 2: a token with input-chosen header and claims JSON, correctly signed with a verifier key:
//!   the claim and header checks never panic, and what passes has an HS256 header, the kid of
//!   the key that signed it, and the user and device of its claims.
//!
//! Every mode also runs the refresh-token functions on the string: the hash is deterministic and
//! a successor is `rt1.` + 43 base64url characters, within `MAX_TOKEN_LEN`, and differs from it.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use tern_protocol::limits::MAX_TOKEN_LEN;
use tern_protocol::{DeviceId, SessionInfo, UserId};
use tern_server::auth::token::{SigningKey, TokenIssuer, hash_refresh_token, successor_token};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const OLD_SECRET: &[u8] = b"an-older-key-still-verifying-xx!";

fn issuer() -> TokenIssuer {
    TokenIssuer::new(
        vec![
            SigningKey {
                kid: "k1".into(),
                secret: SECRET.to_vec(),
            },
            SigningKey {
                kid: "k0".into(),
                secret: OLD_SECRET.to_vec(),
            },
        ],
        300,
    )
    .expect("keys")
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn check_refresh(token: &str) {
    let h = hash_refresh_token(token);
    assert_eq!(h, hash_refresh_token(token));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"refresh-key");
    let next = successor_token(&key, token);
    assert!(next.starts_with("rt1."), "{next}");
    assert_eq!(next.len(), 4 + 43);
    assert!(next.len() <= MAX_TOKEN_LEN);
    assert!(
        next[4..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert_ne!(next, token);
    assert_eq!(next, successor_token(&key, token));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let iss = issuer();
    let token = match mode % 3 {
        0 => {
            let token = String::from_utf8_lossy(rest).into_owned();
            let first = iss.verify(&token);
            assert_eq!(
                first,
                iss.verify(&token),
                "verification is not deterministic"
            );
            token
        }
        1 => {
            if rest.len() < 10 {
                return;
            }
            let session = SessionInfo {
                user_id: UserId(u64::from(u32::from_le_bytes([
                    rest[0], rest[1], rest[2], rest[3],
                ]))),
                device_id: DeviceId(u64::from(u32::from_le_bytes([
                    rest[4], rest[5], rest[6], rest[7],
                ]))),
            };
            // Issued up to ~18 h in the past: the newest are valid, older ones expired.
            let age = u64::from(u16::from_le_bytes([rest[8], rest[9]]));
            let (token, _) = iss.issue(session, now_s() - age).expect("issue");
            let mut bytes = token.into_bytes();
            for pair in rest[10..].chunks_exact(2) {
                let pos = usize::from(pair[0]) * bytes.len() / 256;
                bytes[pos] ^= pair[1];
            }
            let token = String::from_utf8_lossy(&bytes).into_owned();
            if let Ok(got) = iss.verify(&token) {
                assert_eq!(got, session, "a flipped token verified as someone else");
            }
            token
        }
        _ => {
            let Some((&split, rest)) = rest.split_first() else {
                return;
            };
            let at = usize::from(split).min(rest.len());
            let (header, claims) = rest.split_at(at);
            let secret = if split & 1 == 0 { SECRET } else { OLD_SECRET };
            let signing_input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
            let tag = ring::hmac::sign(&key, signing_input.as_bytes());
            let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
            if let Ok(got) = iss.verify(&token) {
                // What passed must say what the checks claim: HS256, the kid of the key that
                // signed it, and the identity in its claims.
                // serde_json::Value decodes every escape; the verifier's typed parse skips
                // fields it does not know without decoding them, so a lone surrogate escape
                // (`"\ud800"`) in such a field passes there and not here. Only a holder of
                // the signing key can make such a token; its checked fields are asserted on
                // the typed parse's terms, so such an input has nothing more to compare.
                let (Ok(h), Ok(c)) = (
                    serde_json::from_slice::<serde_json::Value>(header),
                    serde_json::from_slice::<serde_json::Value>(claims),
                ) else {
                    return;
                };
                assert_eq!(h["alg"], "HS256", "passed without HS256: {h}");
                let kid = if secret == SECRET { "k1" } else { "k0" };
                assert_eq!(h["kid"], kid, "passed under another key's kid: {h}");
                assert_eq!(
                    c["sub"].as_str().and_then(|s| s.parse().ok()),
                    Some(got.user_id.0)
                );
                assert_eq!(c["did"].as_u64(), Some(got.device_id.0));
            }
            token
        }
    };
    check_refresh(&token);
});
