//! TLS for the client: either pin the server certificate's SHA-256 fingerprint (dev certificates)
//! or verify against the bundled web PKI roots. Ring provider only, for easy mobile builds.

use std::sync::{Arc, Mutex, PoisonError};

use ring::digest;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::Error;

/// How the client decides to trust the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Accept exactly the certificate with this SHA-256 fingerprint (of its DER encoding).
    PinnedSha256([u8; 32]),
    /// Verify the chain against the bundled Mozilla root set and the server name.
    WebPki,
}

impl Trust {
    /// Parses a hex fingerprint as printed by `tern-server` (colons and case ignored).
    pub fn pinned_hex(hex_fp: &str) -> Result<Trust, Error> {
        let clean: String = hex_fp.trim().chars().filter(|c| *c != ':').collect();
        let bytes =
            hex::decode(clean).map_err(|e| Error::Config(format!("bad fingerprint: {e}")))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::Config("a SHA-256 fingerprint has 32 bytes".into()))?;
        Ok(Trust::PinnedSha256(arr))
    }
}

#[derive(Debug)]
struct PinnedVerifier {
    pin: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = digest::digest(&digest::SHA256, end_entity.as_ref());
        if got.as_ref() == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "server certificate does not match the pinned fingerprint".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// TLS sessions remembered for resumption, with the TLS configuration they belong to: a
/// bounded in-memory store of the tickets servers sent, shared by every client built from
/// clones of one [`ClientConfig`](crate::ClientConfig) (so a reconnect, or a new `Client` with
/// the same config, resumes: no certificate exchange, and with 0-RTT the `Hello` rides in the
/// first flight).
///
/// rustls resumes a session only under the very certificate verifier that checked the server
/// the first time (a ticket cannot smuggle trust from one configuration into another), so the
/// cache keeps the TLS configuration itself, built on first use and rebuilt (forgetting every
/// session) if the trust or the 0-RTT setting changes.
///
/// Tickets are single use (the server takes its entry on resumption), and a server issues one
/// per connection: sequential reconnects always have one, concurrent connections of clones of
/// one config may find none and do a full handshake. Give each concurrent client its own cache
/// when that matters (`tern-loadgen churn --resume` does).
#[derive(Clone)]
pub struct SessionCache {
    servers: usize,
    built: Arc<Mutex<Option<Built>>>,
}

struct Built {
    trust: Trust,
    zero_rtt: bool,
    crypto: Arc<quinn::crypto::rustls::QuicClientConfig>,
}

impl SessionCache {
    /// A cache remembering sessions for up to `servers` server names.
    pub fn new(servers: usize) -> Self {
        SessionCache {
            servers: servers.max(1),
            built: Arc::new(Mutex::new(None)),
        }
    }

    /// The TLS configuration for `trust` whose sessions this cache holds.
    fn crypto(
        &self,
        trust: &Trust,
        zero_rtt: bool,
    ) -> Result<Arc<quinn::crypto::rustls::QuicClientConfig>, Error> {
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = built.as_ref()
            && b.trust == *trust
            && b.zero_rtt == zero_rtt
        {
            return Ok(b.crypto.clone());
        }
        let crypto = Arc::new(build_crypto(trust, self.servers, zero_rtt)?);
        *built = Some(Built {
            trust: trust.clone(),
            zero_rtt,
            crypto: crypto.clone(),
        });
        Ok(crypto)
    }
}

impl Default for SessionCache {
    /// Room for 32 server names.
    fn default() -> Self {
        SessionCache::new(32)
    }
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

/// The quinn client configuration for `trust`, with a session cache of its own and 0-RTT
/// enabled.
pub fn client_config(trust: &Trust) -> Result<quinn::ClientConfig, Error> {
    client_config_with(trust, &SessionCache::default(), true)
}

/// The quinn client configuration for `trust`, resuming sessions from `sessions`; with
/// `zero_rtt`, early data is offered when a ticket allows it (the caller decides what to write
/// before the handshake completes: Tern's SDK writes only `Hello`).
pub fn client_config_with(
    trust: &Trust,
    sessions: &SessionCache,
    zero_rtt: bool,
) -> Result<quinn::ClientConfig, Error> {
    Ok(quinn::ClientConfig::new(sessions.crypto(trust, zero_rtt)?))
}

fn build_crypto(
    trust: &Trust,
    servers: usize,
    zero_rtt: bool,
) -> Result<quinn::crypto::rustls::QuicClientConfig, Error> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Config(e.to_string()))?;
    let mut tls = match trust {
        Trust::PinnedSha256(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pin: *pin,
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
        Trust::WebPki => {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    tls.alpn_protocols = vec![tern_protocol::ALPN.to_vec()];
    tls.resumption = rustls::client::Resumption::in_memory_sessions(servers);
    tls.enable_early_data = zero_rtt;
    quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| Error::Config(e.to_string()))
}
