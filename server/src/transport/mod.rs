//! The QUIC transport: the only module that knows quinn.
//!
//! One endpoint per shard (one in the walking skeleton), TLS 1.3 with ALPN `tern/1`, bounded
//! streams per connection, an idle timeout, a persisted stateless-reset key, and address
//! validation (Retry) for clients whose handshake rate suggests spoofing.

pub mod admission;
pub mod connection;
pub mod datagram;
pub mod early;
pub mod handshake;
pub mod limits;
pub mod media;
pub mod outbound;
pub mod tls;
pub mod tuning;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Endpoint, EndpointConfig, ServerConfig};

use self::admission::{Admission, HandshakeGate};
use self::limits::TransportLimits;
use self::tuning::QuicTuning;
use crate::services::Services;
use crate::shard::{ConnectionLimits, Shard};

/// Settings of the QUIC endpoints.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// UDP address every shard binds (with `SO_REUSEPORT`).
    pub listen: SocketAddr,
    /// Close connections idle this long.
    pub idle_timeout: Duration,
    /// Buffer limits per connection.
    pub limits: TransportLimits,
    /// Packet-level QUIC settings (ACK frequency, GSO, MTU discovery).
    pub tuning: QuicTuning,
    /// What each connection follows once accepted.
    pub connection: ConnectionLimits,
    /// Accept connections as 0.5-RTT so 0-RTT early data is read before the handshake
    /// completes (see [`early`]); the TLS config must offer early data too.
    pub zero_rtt: bool,
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

/// Binds one shard's endpoint to `settings.listen` with `SO_REUSEPORT`, so every shard can bind
/// the same port and the kernel spreads clients over them.
pub fn bind(
    settings: &TransportSettings,
    tls: Arc<rustls::ServerConfig>,
    reset_key: &[u8],
) -> Result<Endpoint, TransportError> {
    // quinn's rustls config, observed per connection so metrics can tell full, resumed and
    // 0-RTT handshakes apart.
    let crypto = handshake::ObservedServerConfig::new(tls).map_err(TransportError::Config)?;
    let mut server = ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = settings.limits.transport_config(settings.idle_timeout)?;
    settings.tuning.apply(&mut transport);
    server.transport_config(Arc::new(transport));
    // Data that arrives for a connection not yet accepted is buffered by quinn; its defaults
    // (10 MiB each, 100 MiB in all) are sized for 0-RTT bulk uploads Tern does not do.
    server
        .max_incoming(4096)
        .incoming_buffer_size(64 * 1024)
        .incoming_buffer_size_total(16 << 20);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset_key);
    // Connection IDs carry a keyed check; keying it from the persisted secret (not a random key
    // per process) lets a restarted server, and every sibling shard, recognise our CIDs and answer
    // them with a stateless reset, so clients learn at once instead of at their idle timeout.
    let cid_tag = ring::hmac::sign(&key, b"tern quic cid key v1");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&cid_tag.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    let mut endpoint_config = EndpointConfig::new(Arc::new(key));
    // quinn sends at most one stateless reset per 20 ms by default, so after a restart 2,000
    // clients would learn of it over 40 s. Resets are smaller than the packet that triggers them
    // and our keyed CIDs reject foreign traffic, so a much higher rate is safe.
    endpoint_config.min_reset_interval(Duration::from_micros(200));
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let socket = reuseport_socket(settings.listen, settings.tuning.udp_receive_buffer).map_err(
        |source| TransportError::Bind {
            addr: settings.listen,
            source,
        },
    )?;
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

fn reuseport_socket(
    addr: SocketAddr,
    receive_buffer: usize,
) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    if let Err(e) = socket.set_recv_buffer_size(receive_buffer) {
        tracing::warn!(error = %e, "could not size the UDP receive buffer");
    }
    // Linux doubles what it grants (the other half is its bookkeeping) and reports the double;
    // less than asked means `net.core.rmem_max` capped it.
    let reported = socket.recv_buffer_size().unwrap_or(0);
    let granted = if cfg!(target_os = "linux") {
        reported / 2
    } else {
        reported
    };
    if granted < receive_buffer {
        tracing::warn!(
            asked = receive_buffer,
            granted,
            "the UDP receive buffer is smaller than configured: raise net.core.rmem_max"
        );
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Accepts connections for one shard until its endpoint is closed, serving each on its own task.
pub async fn accept_loop(
    endpoint: Endpoint,
    services: Arc<Services>,
    shard: Arc<Shard>,
    admission: Arc<Admission>,
    zero_rtt: bool,
) {
    let mut gate = HandshakeGate::new(admission.limits().handshakes_before_retry_per_s);
    while let Some(incoming) = endpoint.accept().await {
        if !incoming.remote_address_validated() && gate.demand_retry(std::time::Instant::now()) {
            // Under a handshake storm, make clients prove their address before we spend a handshake.
            if incoming.may_retry() {
                if incoming.retry().is_ok() {
                    services.metrics.retries.get_or_create(&shard.label).inc();
                }
                continue;
            }
        }
        let admitted = admission.admit(incoming.remote_address().ip(), shard.open_connections());
        let services = services.clone();
        let shard = shard.clone();
        let retry_after = admission.limits().overloaded_retry_after;
        tokio::spawn(async move {
            match early::accept(incoming, zero_rtt).await {
                Ok((conn, handshake)) => {
                    connection::serve(conn, handshake, services, shard, admitted, retry_after).await
                }
                Err(e) => tracing::debug!(error = %e, "handshake failed"),
            }
        });
    }
}
