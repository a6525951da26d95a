//! Wiring: builds every service from the configuration and runs the listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tern_protocol::{ErrorCode, Frame, GoAway, GoAwayReason, codec};

use crate::admin::{self, AdminState};
use crate::auth::sender::{FileSender, LogSender, OtpSender, WebhookSender};
use crate::auth::token::{SigningKey, TokenIssuer};
use crate::auth::{AuthDeps, AuthService};
use crate::chat::{ChatDeps, ChatService};
use crate::config::{Config, OtpSenderConfig};
use crate::keys::{ServerKeys, load_or_create};
use crate::metrics::Metrics;
use crate::router::Router;
use crate::services::Services;
use crate::storage::Storage;
use crate::storage::fjall::FjallStorage;
use crate::transport::{self, TransportSettings, tls};

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound QUIC address.
    pub quic_addr: SocketAddr,
    /// The bound admin HTTP address.
    pub admin_addr: SocketAddr,
    /// SHA-256 of the server certificate, hex.
    pub cert_fingerprint: String,
    /// What the OTP sender is.
    pub otp_sender: String,
    endpoint: quinn::Endpoint,
    router: Arc<Router>,
    storage: Arc<dyn Storage>,
    ready: Arc<AtomicBool>,
    admin_task: tokio::task::JoinHandle<()>,
}

fn sender(config: &Config) -> anyhow::Result<Arc<dyn OtpSender>> {
    Ok(match &config.otp_sender {
        OtpSenderConfig::Log => Arc::new(LogSender),
        OtpSenderConfig::File { path } => Arc::new(FileSender::new(path.clone())),
        OtpSenderConfig::Webhook { url } => Arc::new(WebhookSender::new(url)?),
    })
}

impl RunningServer {
    /// Builds everything and starts listening. Must run inside a tokio runtime.
    pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
        config.validate()?;
        // Two rustls providers are compiled into the server (ring, and aws-lc through other
        // crates); pick ring explicitly. An error means one is installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        std::fs::create_dir_all(&config.data_dir)?;
        let metrics = Metrics::new();
        let router = Arc::new(Router::new(metrics.clone()));
        let storage: Arc<dyn Storage> = Arc::new(FjallStorage::open(
            &config.data_dir.join("db"),
            router.clone(),
            Some(Arc::new(metrics.clone())),
        )?);
        let keys = ServerKeys::load(&config.data_dir)?;
        let issuer = TokenIssuer::new(
            vec![SigningKey {
                kid: "k1".into(),
                secret: keys.jwt.clone(),
            }],
            config.auth.access_ttl_s,
        )
        .ok_or_else(|| anyhow::anyhow!("no signing key"))?;
        let sender = sender(&config)?;
        let otp_sender = sender.describe();
        let auth = Arc::new(AuthService::new(AuthDeps {
            storage: storage.clone(),
            sender,
            issuer,
            router: router.clone(),
            otp_secret: keys.otp.clone(),
            config: config.auth.clone(),
        }));
        let chat = Arc::new(ChatService::new(ChatDeps {
            storage: storage.clone(),
            metrics: metrics.clone(),
        }));
        let idle_timeout = Duration::from_secs(config.idle_timeout_s);
        let services = Services {
            auth,
            chat,
            router: router.clone(),
            metrics: metrics.clone(),
            idle_timeout_ms: u32::try_from(idle_timeout.as_millis()).unwrap_or(u32::MAX),
        };
        let identity = match (&config.cert, &config.key) {
            (Some(c), Some(k)) => tls::load(c, k)?,
            _ => tls::dev_identity(&config.data_dir)?,
        };
        let cert_fingerprint = identity.fingerprint.clone();
        let reset_key = load_or_create(&config.data_dir.join("reset.key"), 64)?;
        let settings = TransportSettings {
            listen: config.listen,
            idle_timeout,
            max_connections: config.max_connections,
        };
        let endpoint = transport::bind(&settings, identity, &reset_key)?;
        let quic_addr = endpoint.local_addr()?;
        tokio::spawn(transport::accept_loop(
            endpoint.clone(),
            services,
            config.max_connections,
        ));

        let ready = Arc::new(AtomicBool::new(true));
        let listener = tokio::net::TcpListener::bind(config.admin_listen).await?;
        let admin_addr = listener.local_addr()?;
        let app = admin::routes(AdminState {
            metrics,
            ready: ready.clone(),
        });
        let admin_task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
        Ok(RunningServer {
            quic_addr,
            admin_addr,
            cert_fingerprint,
            otp_sender,
            endpoint,
            router,
            storage,
            ready,
            admin_task,
        })
    }

    /// Graceful shutdown: stop accepting, tell clients to go away, let in-flight work finish,
    /// flush storage.
    pub async fn shutdown(self, drain: Duration) {
        self.ready.store(false, Ordering::Relaxed);
        self.endpoint.set_server_config(None);
        let go_away = Frame::GoAway(GoAway {
            reason: GoAwayReason::Shutdown,
            reconnect_after_ms: 1_000,
        });
        if let Ok(bytes) = codec::encode_to_vec(&go_away) {
            self.router.broadcast(bytes::Bytes::from(bytes));
        }
        self.router.close_all(ErrorCode::ShuttingDown);
        let _ = tokio::time::timeout(drain, self.endpoint.wait_idle()).await;
        self.endpoint.close(
            quinn::VarInt::from(ErrorCode::ShuttingDown.as_u16()),
            b"shutting down",
        );
        if let Err(e) = self.storage.close().await {
            tracing::error!(error = %e, "flushing storage at shutdown failed");
        }
        self.admin_task.abort();
    }
}
