//! Server configuration: defaults, an optional TOML file, then flags and `TERN_*` variables
//! (parsed in the binary) on top.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::auth::AuthConfig;
use crate::chat::limits::ChatConfig;
use crate::cluster::ClusterConfig;
use crate::presence::PresenceConfig;
use crate::social::SocialConfig;

/// Where OTP codes are delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OtpSenderConfig {
    /// Printed to the server log (development default).
    #[default]
    Log,
    /// Appended to a file, for load and test clients. Refused unless every listener is loopback.
    File {
        /// The file.
        path: PathBuf,
    },
    /// POSTed as JSON to an SMS or mail gateway.
    Webhook {
        /// http(s) URL.
        url: String,
    },
}

/// Everything the server needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// QUIC (UDP) listen address.
    pub listen: SocketAddr,
    /// Admin HTTP listen address (`/metrics`, `/healthz`, `/readyz`).
    pub admin_listen: SocketAddr,
    /// Data directory: database, secrets, dev certificate.
    pub data_dir: PathBuf,
    /// PEM certificate chain; without it a dev certificate is generated in the data dir.
    pub cert: Option<PathBuf>,
    /// PEM private key for `cert`.
    pub key: Option<PathBuf>,
    /// The server secret (32 bytes) that access tokens, OTP codes and refresh-token successors
    /// are derived from; default `server.secret` in the data dir. Every node of a cluster must
    /// read the same secret, or a token issued by one node is refused by the next.
    pub secret_file: Option<PathBuf>,
    /// OTP delivery.
    pub otp_sender: OtpSenderConfig,
    /// Idle connections are closed after this many seconds.
    pub idle_timeout_s: u64,
    /// A connection that has not logged in this many seconds after `Hello` is closed.
    pub auth_timeout_s: u64,
    /// Most concurrent connections (split evenly over the shards).
    pub max_connections: usize,
    /// Shards (threads with their own runtime and endpoint); `None` means one per core.
    pub shards: Option<usize>,
    /// Deliveries a shard's mailbox holds before further ones are dropped and their users resync.
    pub shard_mailbox: usize,
    /// Bytes of deliveries a shard's mailbox holds, likewise.
    pub shard_mailbox_bytes: usize,
    /// Bytes queued for one authenticated connection before it is shed as a slow consumer.
    pub outbound_queue_bytes: usize,
    /// Most concurrent connections from one source: an IPv4 address or an IPv6 /64 (one
    /// subscriber's allocation, so rotating addresses within it does not help).
    pub max_connections_per_ip: u32,
    /// Most live connections per device; a newer one closes the oldest.
    pub max_connections_per_device: usize,
    /// Unvalidated handshakes per second per shard before clients must do a QUIC Retry.
    pub handshakes_before_retry_per_s: u32,
    /// What over-cap clients are told to wait before reconnecting, milliseconds.
    pub overloaded_retry_after_ms: u32,
    /// Refuse development settings (the `log` and `file` OTP senders).
    pub production: bool,
    /// Microseconds the storage writer waits for more jobs before a group commit that would
    /// cover only a few (0: commit at once). See `storage::fjall::WriterOptions::linger`.
    pub commit_linger_us: u64,
    /// Storage backend (`[storage]`, `--storage`): the embedded fjall store (default) or a
    /// ScyllaDB/Cassandra cluster.
    pub storage: crate::storage::StorageConfig,
    /// Auth settings.
    pub auth: AuthConfig,
    /// Chat settings: per-user send and first-contact limits, receipt coalescing.
    pub chat: ChatConfig,
    /// Social settings: lookup budget, list sizes, typing and presence timings.
    pub social: SocialConfig,
    /// Presence and typing timings.
    pub presence: PresenceConfig,
    /// QUIC and TLS handshake settings (`[transport]`).
    pub transport: TransportConfig,
    /// Cluster mode (`[cluster]`: node id, Redis bus, advertised address); off by default.
    pub cluster: ClusterConfig,
    /// Media (`[media]`): object store, limits, quotas, lifetimes.
    pub media: crate::media::MediaConfig,
}

/// QUIC and TLS handshake settings: the `[transport]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// Accept TLS 0-RTT early data from clients that resume a session (`--zero-rtt`,
    /// `TERN_ZERO_RTT`). On by default: the server runs only replay-safe requests from early
    /// data and holds the rest until the handshake completes (`transport::early`), and its
    /// session tickets are single use, so a replayed flight is refused by TLS as well.
    pub zero_rtt: bool,
    /// Resumable TLS sessions the server remembers, across all shards (each costs a few hundred
    /// bytes; the oldest are forgotten first, and a forgotten one costs a full handshake).
    pub session_cache: usize,
    /// Ask clients to send a QUIC ACK only after more than this many ack-eliciting packets
    /// (or after `ack_delay_ms`); unset: the QUIC default (every second packet). See
    /// BENCHMARKS.md, "quinn settings", for what it was measured to do.
    pub ack_eliciting_threshold: Option<u32>,
    /// The ACK delay to ask of clients with `ack_eliciting_threshold`, in milliseconds
    /// (quinn caps it at the greater of the path RTT and 25 ms).
    pub ack_delay_ms: Option<u32>,
    /// UDP segmentation offload (GSO): several packets of one connection per `sendmsg`.
    pub segmentation_offload: bool,
    /// Path MTU discovery (a few probe packets per connection).
    pub mtu_discovery: bool,
    /// `SO_RCVBUF` of each shard's UDP socket, in bytes (capped by `net.core.rmem_max`).
    pub udp_receive_buffer_bytes: usize,
}

impl TransportConfig {
    /// The packet-level settings for the transport.
    pub fn tuning(&self) -> crate::transport::tuning::QuicTuning {
        crate::transport::tuning::QuicTuning {
            ack_eliciting_threshold: self.ack_eliciting_threshold,
            ack_delay: self
                .ack_delay_ms
                .map(|ms| std::time::Duration::from_millis(u64::from(ms))),
            segmentation_offload: self.segmentation_offload,
            mtu_discovery: self.mtu_discovery,
            udp_receive_buffer: self.udp_receive_buffer_bytes,
        }
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            zero_rtt: true,
            session_cache: 65_536,
            ack_eliciting_threshold: None,
            ack_delay_ms: None,
            segmentation_offload: true,
            mtu_discovery: true,
            udp_receive_buffer_bytes: crate::transport::tuning::DEFAULT_UDP_RECEIVE_BUFFER,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 4433)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9433)),
            data_dir: PathBuf::from("./tern-data"),
            cert: None,
            key: None,
            secret_file: None,
            otp_sender: OtpSenderConfig::Log,
            idle_timeout_s: 30,
            auth_timeout_s: 120,
            max_connections: 100_000,
            shards: None,
            shard_mailbox: 65_536,
            shard_mailbox_bytes: 64 << 20,
            outbound_queue_bytes: 256 << 10,
            max_connections_per_ip: 256,
            max_connections_per_device: 4,
            handshakes_before_retry_per_s: 2_000,
            overloaded_retry_after_ms: 2_000,
            production: false,
            commit_linger_us: 0,
            storage: crate::storage::StorageConfig::default(),
            auth: AuthConfig::default(),
            chat: ChatConfig::default(),
            social: SocialConfig::default(),
            presence: PresenceConfig::default(),
            transport: TransportConfig::default(),
            cluster: ClusterConfig::default(),
            media: crate::media::MediaConfig::default(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML file could not be read or parsed.
    #[error("config file {path}: {detail}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// A setting is not allowed with the others.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// The number of shards to run: the configured one, or one per available core.
    pub fn shard_count(&self) -> usize {
        self.shards
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Reads a TOML file over the defaults.
    pub fn from_toml_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }

    /// A warning to print at start-up when OTP codes are printed to the log where others can
    /// reach the server: fine for the two-command quick start, fatal for a deployment.
    pub fn dev_otp_warning(&self) -> Option<String> {
        (self.otp_sender == OtpSenderConfig::Log && !self.listen.ip().is_loopback()).then(|| {
            format!(
                "OTP codes are written to this log and the server listens on {}: anyone who \
                 can read the log can log in as anyone. Development only; use \
                 --otp-sender webhook:URL (and --production) for a deployment",
                self.listen
            )
        })
    }

    /// Refuses unsafe combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.production && !matches!(self.otp_sender, OtpSenderConfig::Webhook { .. }) {
            return Err(ConfigError::Invalid(
                "--production needs a real OTP sender (--otp-sender webhook:URL); the log and \
                 file senders hand codes to whoever reads them"
                    .into(),
            ));
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err(ConfigError::Invalid("--cert and --key go together".into()));
        }
        if matches!(self.otp_sender, OtpSenderConfig::File { .. })
            && !(self.listen.ip().is_loopback() && self.admin_listen.ip().is_loopback())
        {
            return Err(ConfigError::Invalid(
                "the file OTP sender hands codes to anyone who can read the file; it is only allowed \
                 when every listener is on loopback"
                    .into(),
            ));
        }
        self.auth.validate().map_err(ConfigError::Invalid)?;
        if self.shards == Some(0) {
            return Err(ConfigError::Invalid("shards must be at least 1".into()));
        }
        if let Some(url) = &self.cluster.redis {
            crate::cluster::RedisTarget::parse(url).map_err(ConfigError::Invalid)?;
            if !cfg!(feature = "cluster") {
                return Err(ConfigError::Invalid(
                    "--cluster-redis needs a tern-server built with the `cluster` feature".into(),
                ));
            }
        }
        if self.commit_linger_us > 10_000 {
            return Err(ConfigError::Invalid(
                "commit_linger_us is at most 10000: every write waits that long".into(),
            ));
        }
        if self.idle_timeout_s == 0 {
            return Err(ConfigError::Invalid(
                "idle_timeout_s must be positive".into(),
            ));
        }
        if self.auth_timeout_s == 0 {
            return Err(ConfigError::Invalid(
                "auth_timeout_s must be positive".into(),
            ));
        }
        if self.outbound_queue_bytes < tern_protocol::limits::MAX_FRAME_LEN as usize {
            return Err(ConfigError::Invalid(
                "outbound_queue_bytes must hold at least one frame (65536 bytes)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_rtt_is_on_by_default_and_the_transport_table_turns_it_off() {
        let d = Config::default();
        assert!(d.transport.zero_rtt);
        assert!(d.transport.session_cache > 0);
        let c: Config =
            toml::from_str("[transport]\nzero_rtt = false\nsession_cache = 10\n").unwrap();
        assert_eq!(
            c.transport,
            TransportConfig {
                zero_rtt: false,
                session_cache: 10,
                ..TransportConfig::default()
            }
        );
        assert!(toml::from_str::<Config>("[transport]\nzero_rt = false\n").is_err());
        let tuned: Config = toml::from_str(
            "[transport]\nack_eliciting_threshold = 8\nack_delay_ms = 20\nmtu_discovery = false\n",
        )
        .unwrap();
        let t = tuned.transport.tuning();
        assert_eq!(t.ack_eliciting_threshold, Some(8));
        assert_eq!(t.ack_delay, Some(std::time::Duration::from_millis(20)));
        assert!(!t.mtu_discovery);
        assert!(t.segmentation_offload, "GSO stays on unless turned off");
        assert_eq!(d.transport.tuning(), Default::default());
    }

    #[test]
    fn toml_overrides_defaults_and_unknown_keys_are_refused() {
        let c: Config = toml::from_str(
            "listen = \"127.0.0.1:5000\"\n[otp_sender]\nkind = \"file\"\npath = \"/tmp/otp\"\n[auth]\notp_ttl_s = 60\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 5000);
        assert_eq!(
            c.otp_sender,
            OtpSenderConfig::File {
                path: "/tmp/otp".into()
            }
        );
        assert_eq!(c.auth.otp_ttl_s, 60);
        let chat: Config =
            toml::from_str("[chat]\nsend_burst = 5\nreceipt_delay_ms = 0\n").unwrap();
        assert_eq!((chat.chat.send_burst, chat.chat.receipt_delay_ms), (5, 0));
        assert_eq!(
            chat.chat.new_peers_per_day,
            ChatConfig::default().new_peers_per_day
        );
        assert!(toml::from_str::<Config>("[chat]\nsend_brust = 5\n").is_err());
        assert_eq!(c.admin_listen, Config::default().admin_listen);
        assert!(toml::from_str::<Config>("lisen = \"127.0.0.1:1\"").is_err());
    }

    #[test]
    fn the_file_sender_is_refused_beyond_loopback() {
        let mut c = Config {
            otp_sender: OtpSenderConfig::File {
                path: "/tmp/otp".into(),
            },
            ..Config::default()
        };
        assert!(c.validate().is_err(), "0.0.0.0 is not loopback");
        c.listen = "127.0.0.1:4433".parse().unwrap();
        assert!(c.validate().is_ok());
        c.cert = Some("cert.pem".into());
        assert!(c.validate().is_err(), "--cert needs --key");
    }

    #[test]
    fn production_refuses_dev_senders_and_the_log_sender_warns_beyond_loopback() {
        let mut c = Config::default();
        assert!(c.dev_otp_warning().is_some(), "log sender on 0.0.0.0");
        c.production = true;
        assert!(c.validate().is_err(), "log sender in production");
        c.otp_sender = OtpSenderConfig::Webhook {
            url: "https://sms.example/otp".into(),
        };
        assert!(c.validate().is_ok());
        assert!(c.dev_otp_warning().is_none());
        let quick = Config {
            listen: "127.0.0.1:4433".parse().unwrap(),
            ..Config::default()
        };
        assert!(quick.dev_otp_warning().is_none(), "loopback is quiet");
        assert!(quick.validate().is_ok(), "the quick start still runs");
    }

    #[test]
    fn zero_limits_and_an_unreadable_file_are_refused() {
        let zeroed: [fn(&mut Config); 4] = [
            |c| c.shards = Some(0),
            |c| c.idle_timeout_s = 0,
            |c| c.auth_timeout_s = 0,
            |c| c.outbound_queue_bytes = 1 << 10,
        ];
        for zero in zeroed {
            let mut c = Config::default();
            assert!(c.validate().is_ok());
            zero(&mut c);
            assert!(c.validate().is_err(), "{c:?}");
        }
        assert!(Config::from_toml_file(std::path::Path::new("/nonexistent/tern.toml")).is_err());
    }
}
