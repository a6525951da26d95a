//! Secrets kept in the data directory: created on first start, read on every later one.
//!
//! * `server.secret`: 32 random bytes; the JWT signing key, the OTP MAC key and the refresh-token
//!   successor key are derived from it with HMAC-SHA256 under distinct labels, so one file backs
//!   them all and none is reused.
//! * `reset.key`: the QUIC stateless-reset key, persisted so clients of a restarted server get a
//!   stateless reset at once instead of waiting for their idle timeout.

use std::io::Write;
use std::path::Path;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Reading or creating a key file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// IO on the key file.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file has the wrong length.
    #[error("key file {0} is damaged (wrong length)")]
    Damaged(String),
    /// The system RNG failed.
    #[error("the system random number generator failed")]
    Random,
}

/// Reads `len` random bytes from `path`, creating the file (mode 0600) if it does not exist.
pub fn load_or_create(path: &Path, len: usize) -> Result<Vec<u8>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() == len => return Ok(bytes),
        Ok(_) => return Err(KeyError::Damaged(path.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut bytes = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::Random)?;
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(bytes)
}

/// Keys derived from the server secret.
#[derive(Clone)]
pub struct ServerKeys {
    /// HS256 key for access tokens.
    pub jwt: Vec<u8>,
    /// MAC key for OTP codes.
    pub otp: Vec<u8>,
    /// Key refresh-token successors are derived with.
    pub refresh: Vec<u8>,
}

impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKeys(..)")
    }
}

impl ServerKeys {
    /// Loads (or creates) `server.secret` in `data_dir` and derives the keys.
    pub fn load(data_dir: &Path) -> Result<Self, KeyError> {
        Self::load_file(&data_dir.join("server.secret"))
    }

    /// Loads (or creates) the secret at `path` and derives the keys: the nodes of a cluster
    /// share one file (`--secret-file`), so each accepts the tokens the others issue.
    pub fn load_file(path: &Path) -> Result<Self, KeyError> {
        let secret = load_or_create(path, 32)?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        let derive = |label: &[u8]| hmac::sign(&key, label).as_ref().to_vec();
        Ok(ServerKeys {
            jwt: derive(b"tern jwt hs256 v1"),
            otp: derive(b"tern otp mac v1"),
            refresh: derive(b"tern refresh successor v1"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_sharing_a_secret_file_derive_the_same_keys() {
        let shared = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = shared.path().join("cluster.secret");
        let a = ServerKeys::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let b = ServerKeys::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.jwt, b.jwt, "a second node reads the same secret");
        assert_eq!(a.otp, b.otp);
        let own = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let c = ServerKeys::load(own.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(
            a.jwt, c.jwt,
            "a node with its own data dir has its own secret"
        );
        assert_ne!(a.jwt, a.otp, "the derived keys differ from each other");
        std::fs::write(&path, b"short").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            ServerKeys::load_file(&path),
            Err(KeyError::Damaged(_))
        ));
    }
}
