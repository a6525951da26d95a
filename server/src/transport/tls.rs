//! TLS material: a persisted self-signed dev certificate (or the operator's), and the rustls
//! server config with ALPN `tern/1`, TLS 1.3 only, ring provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::digest;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Loading or generating TLS material failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// IO on a certificate or key file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No usable certificate or key in the file.
    #[error("{0}: no certificate or private key found")]
    Empty(PathBuf),
    /// Generating the dev certificate failed.
    #[error("generating the dev certificate: {0}")]
    Generate(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A certificate chain with its key, and the SHA-256 fingerprint of the leaf.
#[derive(Debug)]
pub struct ServerIdentity {
    /// Leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// Lower-case hex SHA-256 of the leaf certificate (DER), for pinning.
    pub fingerprint: String,
}

/// The SHA-256 fingerprint of a DER certificate, lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, der))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    std::fs::write(path, bytes).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes a private key readable by the owner only (0600 on Unix), and narrows an existing
/// file's mode too: a key file others can read lets them impersonate the server.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    std::io::Write::write_all(&mut f, bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    restrict(path)
}

/// Makes `path` readable by its owner only (no-op off Unix).
fn restrict(path: &Path) -> Result<(), TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| TlsError::Io {
                path: path.to_owned(),
                source,
            },
        )?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn from_pem(cert_path: &Path, key_path: &Path) -> Result<ServerIdentity, TlsError> {
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Io {
            path: cert_path.to_owned(),
            source,
        })?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsError::Io {
            path: key_path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::Empty(key_path.to_owned()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| TlsError::Empty(cert_path.to_owned()))?;
    let fingerprint = fingerprint(leaf);
    Ok(ServerIdentity {
        certs,
        key,
        fingerprint,
    })
}

/// Loads the operator's certificate and key (PEM).
pub fn load(cert: &Path, key: &Path) -> Result<ServerIdentity, TlsError> {
    from_pem(cert, key)
}

/// Loads the dev certificate from `data_dir`, generating and persisting it on first start. Also
/// writes `dev-cert.sha256` so tools can pin it without parsing the log.
pub fn dev_identity(data_dir: &Path) -> Result<ServerIdentity, TlsError> {
    let cert_path = data_dir.join("dev-cert.pem");
    let key_path = data_dir.join("dev-key.pem");
    if !cert_path.exists() || !key_path.exists() {
        let names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        write_private(&key_path, generated.signing_key.serialize_pem().as_bytes())?;
        write(&cert_path, generated.cert.pem().as_bytes())?;
    } else {
        restrict(&key_path)?;
    }
    let identity = from_pem(&cert_path, &key_path)?;
    write(
        &data_dir.join("dev-cert.sha256"),
        format!("{}\n", identity.fingerprint).as_bytes(),
    )?;
    Ok(identity)
}

/// How the server resumes TLS sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumption {
    /// Sessions remembered (all shards share one cache); 0 turns resumption off.
    pub sessions: usize,
    /// Accept 0-RTT early data on resumed sessions.
    pub zero_rtt: bool,
}

/// The rustls server configuration with the default resumption (65 536 sessions, 0-RTT on).
pub fn server_config(identity: ServerIdentity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config_with(
        identity,
        Resumption {
            sessions: 65_536,
            zero_rtt: true,
        },
    )
}

/// The rustls server configuration Tern uses.
///
/// Resumption is stateful: each connection gets one TLS 1.3 ticket that names an entry in a
/// bounded in-memory cache (`ServerSessionMemoryCache`, shared by every shard of this process,
/// its key material created with the process, never a static). A resumption *takes* the entry,
/// so every ticket works once: that is what makes 0-RTT acceptable (a recorded 0-RTT flight
/// replayed after the original finds its ticket gone and gets no early data) and rustls only
/// offers 0-RTT with stateful tickets for that reason. Stateless tickets (`Ticketer`) would
/// cost no memory but could be replayed for their whole lifetime. A restart forgets every
/// session; clients then do one full handshake.
pub fn server_config_with(
    identity: ServerIdentity,
    resumption: Resumption,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(identity.certs, identity.key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![tern_protocol::ALPN.to_vec()];
    // Our order, not the client's: AES-128-GCM-SHA256 first. It is as strong as clients need
    // and cheaper per handshake than the SHA-384 suite on CPUs without SHA-512 instructions.
    config.ignore_client_order = true;
    if resumption.sessions == 0 {
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    } else {
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(resumption.sessions);
        // One ticket per connection: a client reconnects with one session at a time, and each
        // ticket is a cache entry.
        config.send_tls13_tickets = 1;
    }
    // QUIC allows only "no early data" (0) or "as much as the transport permits" (u32::MAX):
    // the stream and connection windows, not TLS, bound what a client may send early.
    config.max_early_data_size = if resumption.zero_rtt && resumption.sessions > 0 {
        u32::MAX
    } else {
        0
    };
    Ok(Arc::new(config))
}

/// The ring provider with TLS 1.3 suites ordered AES-128-GCM-SHA256, AES-256-GCM-SHA384,
/// ChaCha20-Poly1305.
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    }
}

#[cfg(test)]
mod resumption_tests {
    use super::*;

    fn config(sessions: usize, zero_rtt: bool) -> Arc<rustls::ServerConfig> {
        let dir = tempfile::tempdir().unwrap();
        let identity = dev_identity(dir.path()).unwrap();
        server_config_with(identity, Resumption { sessions, zero_rtt }).unwrap()
    }

    #[test]
    fn early_data_is_all_or_nothing_and_follows_the_switch() {
        let on = config(16, true);
        assert_eq!(
            on.max_early_data_size,
            u32::MAX,
            "QUIC allows 0 or u32::MAX"
        );
        assert_eq!(on.send_tls13_tickets, 1);
        assert!(on.session_storage.can_cache());
        assert!(!on.ticketer.enabled(), "stateful, single-use tickets");
        let off = config(16, false);
        assert_eq!(off.max_early_data_size, 0);
        assert_eq!(off.send_tls13_tickets, 1, "resumption without 0-RTT");
        let none = config(0, true);
        assert_eq!(none.max_early_data_size, 0, "no sessions, no early data");
        assert_eq!(none.send_tls13_tickets, 0);
        // quinn accepts both.
        for c in [on, off, none] {
            assert!(crate::transport::handshake::ObservedServerConfig::new(c).is_ok());
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_dev_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        super::dev_identity(dir.path()).unwrap();
        let key = dir.path().join("dev-key.pem");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "dev-key.pem mode {mode:o}");
        // A key written by an older version with a wider mode is narrowed on the next start.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        super::dev_identity(dir.path()).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
