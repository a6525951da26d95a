//! Client configuration.

use std::net::SocketAddr;
use std::time::Duration;

use tern_protocol::Tokens;

use crate::error::Error;

use crate::state::SyncState;
use crate::tls::{SessionCache, Trust};

/// How to reach the server and how to behave.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Server UDP address.
    pub server: SocketAddr,
    /// TLS server name (SNI); `localhost` for dev certificates.
    pub server_name: String,
    /// Certificate trust.
    pub trust: Trust,
    /// Name shown in the user's device list.
    pub device_name: String,
    /// App name and version, sent in `Hello`.
    pub app: String,
    /// Tokens from an earlier login, to resume without OTP.
    pub tokens: Option<Tokens>,
    /// Sync position from an earlier run.
    pub sync_state: SyncState,
    /// First reconnect delay; doubles per failed attempt, with ±50% jitter.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Requests without an answer after this fail with `Error::Timeout` (sends keep retrying).
    pub request_timeout: Duration,
    /// QUIC keep-alive interval.
    pub keep_alive: Duration,
    /// Updates per sync page.
    pub sync_page: u32,
    /// A QUIC endpoint (one UDP socket) to share with other clients; `None` makes one per client.
    /// Load generators share one endpoint among many connections.
    pub endpoint: Option<quinn::Endpoint>,
    /// Accept QUIC datagrams (typing arrives this way). `false` makes the server send typing
    /// on the stream instead: for networks that drop datagrams, and for tests of the fallback.
    pub datagrams: bool,
    /// TLS sessions to resume from; clones of this config share it, so reconnects (and new
    /// clients from a clone) skip the certificate exchange.
    pub sessions: SessionCache,
    /// Send `Hello` as 0-RTT early data when a resumable session allows it (falls back to a
    /// full handshake otherwise, or when the server refuses early data). Only `Hello` is ever
    /// written before the handshake completes.
    pub zero_rtt: bool,
    /// How long delivery acks wait to be sent, so that messages arriving meanwhile in the same
    /// chat share one `Ack` (one request and one receipt write on the server instead of one per
    /// message). Zero sends them after each drain of the inbound queue. The sender's
    /// "delivered" shows up to this much later; nothing else waits for it.
    pub ack_delay: Duration,
}

impl ClientConfig {
    /// Defaults for a server at `server` trusted via `trust`.
    pub fn new(server: SocketAddr, trust: Trust) -> Self {
        ClientConfig {
            server,
            server_name: "localhost".into(),
            trust,
            device_name: "tern-sdk device".into(),
            app: format!("tern-sdk/{}", env!("CARGO_PKG_VERSION")),
            tokens: None,
            sync_state: SyncState::default(),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            sync_page: tern_protocol::limits::MAX_SYNC_PAGE,
            endpoint: None,
            datagrams: true,
            sessions: SessionCache::default(),
            zero_rtt: true,
            ack_delay: Duration::from_millis(50),
        }
    }
}

/// Receive buffer asked for the socket of a [`shared_endpoint`]: many connections' packets
/// arrive on it in bursts, and the kernel's default (about 208 KiB) overflowed with 200 busy
/// clients on one socket in `tern-loadgen chat`; every dropped datagram then costs both sides a
/// QUIC loss recovery. The kernel caps it at `net.core.rmem_max`.
pub const SHARED_ENDPOINT_RECEIVE_BUFFER: usize = 4 << 20;

/// A client endpoint bound to an ephemeral port of the right address family, to pass to
/// [`ClientConfig::endpoint`] for several clients.
pub fn shared_endpoint(server: SocketAddr) -> Result<quinn::Endpoint, Error> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind: SocketAddr = if server.is_ipv6() {
        SocketAddr::from(([0u16; 8], 0))
    } else {
        SocketAddr::from(([0u8; 4], 0))
    };
    let config = |e: std::io::Error| Error::Config(e.to_string());
    let socket =
        Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP)).map_err(config)?;
    if bind.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    // A smaller buffer than asked for (a low rmem_max) still works, only with more drops.
    let _ = socket.set_recv_buffer_size(SHARED_ENDPOINT_RECEIVE_BUFFER);
    socket.bind(&bind.into()).map_err(config)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| Error::Config("no async runtime for the QUIC endpoint".into()))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket.into(),
        runtime,
    )
    .map_err(config)
}
