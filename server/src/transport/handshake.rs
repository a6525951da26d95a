//! What kind of TLS handshake a connection did: full, resumed, or resumed with 0-RTT.
//!
//! quinn does not say whether a server-side session was resumed (its `HandshakeData` carries
//! ALPN and SNI only), so the endpoint's crypto config is a thin wrapper around quinn's rustls
//! one that watches two things per connection:
//!
//! - the session cache: each connection gets its own view of the shared, bounded
//!   `ServerSessionMemoryCache`, and a `take` that finds a session is a resumption (TLS 1.3
//!   stateful tickets are taken, never just read; a failed binder fails the handshake, which is
//!   then never counted);
//! - the early keys: rustls hands the server 0-RTT keys only when it accepted the client's
//!   early data.
//!
//! [`Connection::handshake_data`](quinn::Connection::handshake_data) then downcasts to
//! [`TlsHandshake`]. The per-connection view costs one shallow clone of the rustls config per
//! handshake (a few small allocations next to the thousands of a handshake).

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use quinn::crypto::rustls::QuicServerConfig;
use quinn_proto::crypto::{
    self, ExportKeyingMaterialError, HeaderKey, KeyPair, Keys, PacketKey, UnsupportedVersion,
};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::{ConnectionId, Side, TransportError};
use rustls::server::StoresServerSessions;

/// How a connection's TLS handshake went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    /// Certificate and key exchange: no usable ticket.
    Full,
    /// A ticket resumed an earlier session; no early data.
    Resumed,
    /// Resumed, and the client's 0-RTT data was accepted.
    ZeroRtt,
}

impl HandshakeKind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            HandshakeKind::Full => "full",
            HandshakeKind::Resumed => "resumed",
            HandshakeKind::ZeroRtt => "zero_rtt",
        }
    }

    /// What a quinn connection reports (full when it reports nothing we know).
    pub fn of(conn: &quinn::Connection) -> HandshakeKind {
        conn.handshake_data()
            .and_then(|d| d.downcast::<TlsHandshake>().ok())
            .map_or(HandshakeKind::Full, |d| d.kind)
    }
}

/// The handshake data of a connection on a Tern endpoint.
#[derive(Debug, Clone)]
pub struct TlsHandshake {
    /// The negotiated ALPN protocol.
    pub protocol: Option<Vec<u8>>,
    /// The SNI the client sent.
    pub server_name: Option<String>,
    /// Full, resumed or 0-RTT.
    pub kind: HandshakeKind,
}

/// The endpoint's crypto config: quinn's rustls config, observed per connection.
pub struct ObservedServerConfig {
    tls: Arc<rustls::ServerConfig>,
    /// For the keys and tags that do not depend on a connection.
    base: Arc<QuicServerConfig>,
}

impl std::fmt::Debug for ObservedServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedServerConfig")
            .finish_non_exhaustive()
    }
}

impl ObservedServerConfig {
    /// Wraps `tls`. Fails when it has no TLS 1.3 suite QUIC can start with.
    pub fn new(tls: Arc<rustls::ServerConfig>) -> Result<Self, String> {
        let base = QuicServerConfig::try_from(tls.clone()).map_err(|e| e.to_string())?;
        Ok(ObservedServerConfig {
            tls,
            base: Arc::new(base),
        })
    }
}

impl crypto::ServerConfig for ObservedServerConfig {
    fn initial_keys(
        &self,
        version: u32,
        dst_cid: &ConnectionId,
    ) -> Result<Keys, UnsupportedVersion> {
        self.base.initial_keys(version, dst_cid)
    }

    fn retry_tag(&self, version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> [u8; 16] {
        self.base.retry_tag(version, orig_dst_cid, packet)
    }

    fn start_session(
        self: Arc<Self>,
        version: u32,
        params: &TransportParameters,
    ) -> Box<dyn crypto::Session> {
        let resumed = Arc::new(AtomicBool::new(false));
        let mut tls = (*self.tls).clone();
        tls.session_storage = Arc::new(ObservedStore {
            shared: self.tls.session_storage.clone(),
            resumed: resumed.clone(),
        });
        // The same provider as `base`, so this cannot fail; fall back to the unobserved
        // session rather than panic if it ever did.
        let inner = match QuicServerConfig::try_from(Arc::new(tls)) {
            Ok(c) => Arc::new(c).start_session(version, params),
            Err(_) => self.base.clone().start_session(version, params),
        };
        Box::new(ObservedSession {
            inner,
            resumed,
            zero_rtt: AtomicBool::new(false),
        })
    }
}

/// One connection's view of the shared session cache.
#[derive(Debug)]
struct ObservedStore {
    shared: Arc<dyn StoresServerSessions>,
    resumed: Arc<AtomicBool>,
}

impl StoresServerSessions for ObservedStore {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.shared.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.shared.get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let found = self.shared.take(key);
        if found.is_some() {
            self.resumed.store(true, Ordering::Relaxed);
        }
        found
    }

    fn can_cache(&self) -> bool {
        self.shared.can_cache()
    }
}

struct ObservedSession {
    inner: Box<dyn crypto::Session>,
    resumed: Arc<AtomicBool>,
    zero_rtt: AtomicBool,
}

impl ObservedSession {
    fn kind(&self) -> HandshakeKind {
        if self.zero_rtt.load(Ordering::Relaxed) {
            HandshakeKind::ZeroRtt
        } else if self.resumed.load(Ordering::Relaxed) {
            HandshakeKind::Resumed
        } else {
            HandshakeKind::Full
        }
    }
}

impl crypto::Session for ObservedSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        self.inner.initial_keys(dst_cid, side)
    }

    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        let data = self.inner.handshake_data()?;
        let (protocol, server_name) = match data.downcast::<quinn::crypto::rustls::HandshakeData>()
        {
            Ok(d) => (d.protocol, d.server_name),
            Err(_) => (None, None),
        };
        Some(Box::new(TlsHandshake {
            protocol,
            server_name,
            kind: self.kind(),
        }))
    }

    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        self.inner.peer_identity()
    }

    fn early_crypto(&self) -> Option<(Box<dyn HeaderKey>, Box<dyn PacketKey>)> {
        let keys = self.inner.early_crypto();
        if keys.is_some() {
            // A server only gets early keys when TLS accepted the client's early data.
            self.zero_rtt.store(true, Ordering::Relaxed);
        }
        keys
    }

    fn early_data_accepted(&self) -> Option<bool> {
        self.inner.early_data_accepted()
    }

    fn is_handshaking(&self) -> bool {
        self.inner.is_handshaking()
    }

    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, TransportError> {
        self.inner.read_handshake(buf)
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        self.inner.transport_parameters()
    }

    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        self.inner.write_handshake(buf)
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn PacketKey>>> {
        self.inner.next_1rtt_keys()
    }

    fn is_valid_retry(&self, orig_dst_cid: &ConnectionId, header: &[u8], payload: &[u8]) -> bool {
        self.inner.is_valid_retry(orig_dst_cid, header, payload)
    }

    fn export_keying_material(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        self.inner.export_keying_material(output, label, context)
    }
}
