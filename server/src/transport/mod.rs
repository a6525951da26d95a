//! The QUIC transport: the only module that knows quinn.
//!
//! One endpoint per shard (one in the walking skeleton), TLS 1.3 with ALPN `tern/1`, bounded
//! streams per connection, an idle timeout, a persisted stateless-reset key, and address
//! validation (Retry) for clients whose handshake rate suggests spoofing.

pub mod connection;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Endpoint, EndpointConfig, IdleTimeout, ServerConfig, TransportConfig, VarInt};

use crate::services::Services;

/// Settings of the QUIC endpoint.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// UDP address to bind.
    pub listen: SocketAddr,
    /// Close connections idle this long.
    pub idle_timeout: Duration,
    /// Most open connections; further handshakes are refused.
    pub max_connections: usize,
}

/// Building the endpoint failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Binding the UDP socket.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// quinn refused the configuration.
    #[error("QUIC configuration: {0}")]
    Config(String),
}

/// Binds the endpoint.
pub fn bind(
    settings: &TransportSettings,
    identity: tls::ServerIdentity,
    reset_key: &[u8],
) -> Result<Endpoint, TransportError> {
    let tls = tls::server_config(identity)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TransportError::Config(e.to_string()))?;
    let mut server = ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(4))
        .max_concurrent_uni_streams(VarInt::from_u32(4))
        .max_idle_timeout(Some(
            IdleTimeout::try_from(settings.idle_timeout)
                .map_err(|e| TransportError::Config(e.to_string()))?,
        ))
        .datagram_receive_buffer_size(Some(64 * 1024));
    server.transport_config(Arc::new(transport));
    server.max_incoming(settings.max_connections.max(1));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset_key);
    // Connection IDs carry a keyed check; keying it from the persisted secret (not a random key
    // per process) lets a restarted server recognise its predecessor's CIDs and answer them with
    // a stateless reset, so clients learn of the restart at once instead of at their idle timeout.
    let cid_tag = ring::hmac::sign(&key, b"tern quic cid key v1");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&cid_tag.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    let mut endpoint_config = EndpointConfig::new(Arc::new(key));
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let socket =
        std::net::UdpSocket::bind(settings.listen).map_err(|source| TransportError::Bind {
            addr: settings.listen,
            source,
        })?;
    Endpoint::new(
        endpoint_config,
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| TransportError::Bind {
        addr: settings.listen,
        source,
    })
}

/// Accepts connections until the endpoint is closed, serving each on its own task.
pub async fn accept_loop(endpoint: Endpoint, services: Services, max_connections: usize) {
    while let Some(incoming) = endpoint.accept().await {
        if services
            .metrics
            .connections
            .get_or_create(&crate::metrics::Metrics::shard(0))
            .get()
            >= max_connections as i64
        {
            incoming.refuse();
            continue;
        }
        if !incoming.remote_address_validated() && endpoint.open_connections() > max_connections / 2
        {
            // Under load, make unvalidated clients prove their address before we spend a handshake.
            let _ = incoming.retry();
            continue;
        }
        let services = services.clone();
        tokio::spawn(async move {
            match incoming.await {
                Ok(conn) => connection::serve(conn, services).await,
                Err(e) => tracing::debug!(error = %e, "handshake failed"),
            }
        });
    }
}
