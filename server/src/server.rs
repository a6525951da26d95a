//! Wiring: builds every service from the configuration, starts the shards and the admin listener,
//! and shuts everything down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tern_protocol::{ErrorCode, Frame, GoAway, GoAwayReason, codec};

use crate::admin::{self, AdminState};
use crate::auth::sender::{FileSender, LogSender, OtpSender, WebhookSender};
use crate::auth::token::{SigningKey, TokenIssuer};
use crate::auth::{AuthDeps, AuthService};
use crate::chat::limits::UserLimiter;
use crate::chat::{ChatDeps, ChatService};
use crate::config::{Config, OtpSenderConfig};
use crate::groups::{GroupDeps, GroupService};
use crate::keys::{ServerKeys, load_or_create};
use crate::media::store::MediaStore;
use crate::media::{MediaDeps, MediaService};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::presence::{PresenceDeps, PresenceService};
use crate::router::{Router, RouterLimits, ShardInbox};
use crate::services::Services;
use crate::shard::{ConnectionLimits, DRAIN_TIMEOUT, Shard};
use crate::social::{SocialDeps, SocialService};
use crate::storage::Storage;
use crate::storage::fjall::{Durability, FjallStorage, WriterOptions};
use crate::transport::admission::{Admission, AdmissionLimits};
use crate::transport::limits::TransportLimits;
use crate::transport::{self, TransportSettings, tls};

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound QUIC address (shared by every shard).
    pub quic_addr: SocketAddr,
    /// The bound admin HTTP address.
    pub admin_addr: SocketAddr,
    /// SHA-256 of the server certificate, hex.
    pub cert_fingerprint: String,
    /// What the OTP sender is.
    pub otp_sender: String,
    /// Number of shards.
    pub shards: usize,
    router: Arc<Router>,
    storage: Arc<dyn Storage>,
    ready: Arc<AtomicBool>,
    admin_task: tokio::task::JoinHandle<()>,
    chat: Arc<ChatService>,
    receipt_task: tokio::task::JoinHandle<()>,
    presence: Arc<PresenceService>,
    presence_task: tokio::task::JoinHandle<()>,
    collector_task: tokio::task::JoinHandle<()>,
    presence_stop: tokio::sync::watch::Sender<bool>,
    shard_threads: Vec<std::thread::JoinHandle<()>>,
    #[cfg(feature = "cluster")]
    bus: Option<crate::cluster::redis::Bus>,
}

/// Starts the cluster bus when `--cluster-redis` is set (before any connection can attach).
#[cfg(feature = "cluster")]
fn start_bus(
    config: &Config,
    router: &Arc<Router>,
    metrics: &Metrics,
) -> anyhow::Result<Option<crate::cluster::redis::Bus>> {
    use crate::cluster::redis::{Bus, BusSettings};
    let Some(url) = &config.cluster.redis else {
        return Ok(None);
    };
    let target = crate::cluster::RedisTarget::parse(url).map_err(anyhow::Error::msg)?;
    let node = crate::cluster::node_id(&config.cluster, &config.data_dir, config.listen.port())?;
    let advertise = config
        .cluster
        .advertise
        .clone()
        .unwrap_or_else(|| config.listen.to_string());
    let settings = BusSettings::new(node.into(), target, advertise);
    let bus = Bus::start(settings, router.clone(), metrics.cluster.clone())?;
    tracing::info!(node = %bus.cluster().node(), "cluster mode: Redis bus");
    Ok(Some(bus))
}

/// What every node of a cluster shares in Redis (`--cluster-redis`); in memory otherwise.
#[derive(Default)]
struct SharedState {
    /// OTP codes and limits, so every node sees the same codes and budgets (and refuses logins
    /// while Redis is unreachable).
    auth: Option<Arc<dyn crate::auth::state::AuthState>>,
    /// Per-user budgets of users on several nodes (their node's own limit applies while Redis
    /// is unreachable).
    budget: Option<Arc<dyn crate::chat::limits::SharedBudget>>,
}

fn shared_state(
    config: &Config,
    otp_secret: &[u8],
    router: &Arc<Router>,
) -> anyhow::Result<SharedState> {
    #[cfg(feature = "cluster")]
    if let Some(url) = &config.cluster.redis {
        use crate::cluster::redis::auth_state::{RedisAuthSettings, RedisAuthState};
        use crate::cluster::redis::budget::RedisBudget;
        let target = crate::cluster::RedisTarget::parse(url).map_err(anyhow::Error::msg)?;
        let state = Arc::new(RedisAuthState::new(
            RedisAuthSettings::new(target),
            &config.auth,
            otp_secret,
        )?);
        return Ok(SharedState {
            auth: Some(state.clone()),
            budget: Some(Arc::new(RedisBudget::new(state, router.clone()))),
        });
    }
    let _ = (config, otp_secret, router);
    Ok(SharedState::default())
}

fn sender(config: &Config) -> anyhow::Result<Arc<dyn OtpSender>> {
    Ok(match &config.otp_sender {
        OtpSenderConfig::Log => Arc::new(LogSender),
        OtpSenderConfig::File { path } => Arc::new(FileSender::new(path.clone())),
        OtpSenderConfig::Webhook { url } => Arc::new(WebhookSender::new(url)?),
    })
}

/// What a shard thread needs.
struct ShardSetup {
    index: usize,
    settings: TransportSettings,
    tls: Arc<rustls::ServerConfig>,
    reset_key: Vec<u8>,
    /// Shared, not cloned: every connection task holds one (see `transport::accept_loop`).
    services: Arc<Services>,
    router: Arc<Router>,
    metrics: Metrics,
    admission: Arc<Admission>,
    inbox: ShardInbox,
}

/// Starts shard `setup.index` on its own thread; returns once its endpoint is bound.
fn spawn_shard(setup: ShardSetup) -> anyhow::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let index = setup.index;
    let handle = std::thread::Builder::new()
        .name(format!("tern-shard-{index}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::anyhow!("shard {index} runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let endpoint = match transport::bind(&setup.settings, setup.tls, &setup.reset_key) {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = tx.send(Err(e.into()));
                        return;
                    }
                };
                let _ = tx.send(endpoint.local_addr().map_err(Into::into));
                let shard = Arc::new(Shard::new(
                    setup.index,
                    setup.router,
                    setup.settings.connection,
                    setup.metrics,
                ));
                let accept = tokio::spawn(transport::accept_loop(
                    endpoint.clone(),
                    setup.services,
                    shard.clone(),
                    setup.admission,
                    setup.settings.zero_rtt,
                ));
                let stopper = endpoint.clone();
                shard
                    .run_mailbox(setup.inbox, move || stopper.set_server_config(None))
                    .await;
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, endpoint.wait_idle()).await;
                endpoint.close(
                    quinn::VarInt::from(ErrorCode::ShuttingDown.as_u16()),
                    b"shutting down",
                );
                accept.abort();
            });
        })?;
    let addr = rx.recv().context("shard thread ended before binding")??;
    Ok((addr, handle))
}

impl RunningServer {
    /// Builds everything and starts listening. Must run inside a tokio runtime (for the admin
    /// listener); each shard runs its own single-threaded runtime on its own thread.
    pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
        config.validate()?;
        // Two rustls providers are compiled into the server (ring, and aws-lc through other
        // crates); pick ring explicitly. An error means one is installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        std::fs::create_dir_all(&config.data_dir)?;
        let shards = config.shard_count();
        let metrics = Metrics::new(shards);
        let (router, inboxes) = Router::new(
            shards,
            RouterLimits {
                mailbox: config.shard_mailbox,
                mailbox_bytes: config.shard_mailbox_bytes,
                connections_per_device: config.max_connections_per_device,
            },
            metrics.clone(),
        );
        let router = Arc::new(router);
        #[cfg(feature = "cluster")]
        let bus = start_bus(&config, &router, &metrics)?;
        let ready = Arc::new(AtomicBool::new(true));
        let storage: Arc<dyn Storage> = match &config.storage {
            crate::storage::StorageConfig::Fjall => Arc::new(FjallStorage::open_tuned(
                &config.data_dir.join("db"),
                router.clone(),
                Some(Arc::new(StorageHealth {
                    metrics: metrics.clone(),
                    ready: ready.clone(),
                })),
                WriterOptions {
                    durability: Durability::Fsync,
                    linger: Duration::from_micros(config.commit_linger_us),
                },
            )?),
            cql => open_cql(cql, router.clone(), &metrics).await?,
        };
        let keys = match &config.secret_file {
            Some(path) => ServerKeys::load_file(path)?,
            None => ServerKeys::load(&config.data_dir)?,
        };
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
        let shared = shared_state(&config, &keys.otp, &router)?;
        let auth = Arc::new(AuthService::new(AuthDeps {
            storage: storage.clone(),
            sender,
            issuer,
            router: router.clone(),
            otp_secret: keys.otp.clone(),
            state: shared.auth,
            refresh_secret: keys.refresh.clone(),
            config: config.auth.clone(),
        }));
        let policy = Arc::new(Policy::new(&config.chat).with_shared_budget(shared.budget.clone()));
        let social = Arc::new(
            SocialService::new(SocialDeps {
                storage: storage.clone(),
                metrics: metrics.clone(),
                policy: policy.clone(),
                config: config.social.clone(),
            })
            .with_shared_budget(shared.budget.clone()),
        );
        let presence = Arc::new(PresenceService::new(PresenceDeps {
            storage: storage.clone(),
            social: social.clone(),
            router: router.clone(),
            metrics: metrics.clone(),
            config: config.presence.clone(),
        }));
        let chat = Arc::new(
            ChatService::new(ChatDeps {
                storage: storage.clone(),
                metrics: metrics.clone(),
                policy,
                config: config.chat.clone(),
            })
            .with_shared_budget(shared.budget.clone()),
        );
        let groups = Arc::new(GroupService::new(GroupDeps {
            storage: storage.clone(),
            metrics: metrics.clone(),
            changes: UserLimiter::per_minute(
                "group changes",
                config.chat.send_burst,
                config.chat.send_per_minute,
                config.chat.max_limited_users,
            )
            .shared(shared.budget.clone()),
        }));
        if config.cluster.redis.is_some() && config.media.store.starts_with("fs") {
            // Each node would keep its own media: a device on another node could not read it.
            tracing::warn!(
                store = %config.media.store,
                "cluster mode with media on the local filesystem: every node must share one \
                 store; use --media-store s3://BUCKET"
            );
        }
        let media = Arc::new(MediaService::new(MediaDeps {
            store: MediaStore::new(crate::media::backend::open(
                &config.media.store,
                &config.data_dir,
            )?),
            storage: storage.clone(),
            metrics: metrics.media.clone(),
            config: config.media.clone(),
        }));
        let receipt_task = chat.spawn_receipt_flusher();
        let (presence_stop, stop_rx) = tokio::sync::watch::channel(false);
        let presence_task = presence.spawn_driver(stop_rx.clone());
        let collector_task = tokio::spawn(media.clone().run_collector(stop_rx));
        let idle_timeout = Duration::from_secs(config.idle_timeout_s);
        let services = Arc::new(Services {
            auth,
            chat: chat.clone(),
            groups,
            social,
            presence: presence.clone(),
            media,
            router: router.clone(),
            metrics: metrics.clone(),
            idle_timeout_ms: u32::try_from(idle_timeout.as_millis()).unwrap_or(u32::MAX),
        });
        let identity = match (&config.cert, &config.key) {
            (Some(c), Some(k)) => tls::load(c, k)?,
            _ => tls::dev_identity(&config.data_dir)?,
        };
        let cert_fingerprint = identity.fingerprint.clone();
        let tls = tls::server_config_with(
            identity,
            tls::Resumption {
                sessions: config.transport.session_cache,
                zero_rtt: config.transport.zero_rtt,
            },
        )?;
        let reset_key = load_or_create(&config.data_dir.join("reset.key"), 64)?;
        let admission = Admission::new(AdmissionLimits {
            max_per_shard: (config.max_connections / shards).max(1),
            max_per_ip: config.max_connections_per_ip,
            source_prefix: config.auth.prefix_lens(),
            handshakes_before_retry_per_s: config.handshakes_before_retry_per_s,
            overloaded_retry_after: Duration::from_millis(u64::from(
                config.overloaded_retry_after_ms,
            )),
        });
        let limits = TransportLimits {
            outbound_queue: config.outbound_queue_bytes,
            ..TransportLimits::default()
        };
        let mut settings = TransportSettings {
            listen: config.listen,
            idle_timeout,
            limits,
            tuning: config.transport.tuning(),
            connection: ConnectionLimits {
                auth_timeout: Duration::from_secs(config.auth_timeout_s),
                outbound_queue: limits.outbound_queue,
                anonymous_outbound_queue: limits.anonymous_outbound_queue,
            },
            zero_rtt: config.transport.zero_rtt,
        };
        let mut shard_threads = Vec::with_capacity(shards);
        let mut quic_addr = config.listen;
        for (index, inbox) in inboxes.into_iter().enumerate() {
            let (addr, handle) = spawn_shard(ShardSetup {
                index,
                settings: settings.clone(),
                tls: tls.clone(),
                reset_key: reset_key.clone(),
                services: services.clone(),
                router: router.clone(),
                metrics: metrics.clone(),
                admission: admission.clone(),
                inbox,
            })?;
            // With port 0 the first shard picks the port; the others join it.
            settings.listen = addr;
            quic_addr = addr;
            shard_threads.push(handle);
        }

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
            shards,
            router,
            storage,
            ready,
            admin_task,
            chat,
            receipt_task,
            presence,
            presence_task,
            collector_task,
            presence_stop,
            shard_threads,
            #[cfg(feature = "cluster")]
            bus,
        })
    }

    /// Graceful shutdown: every shard stops accepting, drains its mailbox, sends `GoAway` and
    /// closes its connections (waiting up to the drain timeout); then storage is flushed.
    pub async fn shutdown(self) {
        self.ready.store(false, Ordering::Relaxed);
        let go_away = Frame::GoAway(GoAway {
            reason: GoAwayReason::Shutdown,
            reconnect_after_ms: 1_000,
        });
        let bytes = codec::encode_to_vec(&go_away)
            .map(bytes::Bytes::from)
            .unwrap_or_default();
        self.router.shutdown_all(bytes);
        let threads = self.shard_threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        // Peers hear `Bye`: this node's tail is complete, nothing for them to resync.
        #[cfg(feature = "cluster")]
        if let Some(bus) = self.bus {
            bus.shutdown().await;
        }
        // Every connection is closed now, so every last seen is final: the presence driver
        // flushes them once more as it stops.
        self.presence.disconnect_all();
        let _ = self.presence_stop.send(true);
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, self.presence_task).await;
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, self.collector_task).await;
        // Held delivered receipts are published before storage stops taking writes.
        self.receipt_task.abort();
        self.chat.flush_receipts().await;
        if let Err(e) = self.storage.close().await {
            tracing::error!(error = %e, "flushing storage at shutdown failed");
        }
        self.admin_task.abort();
    }
}

/// Watches storage commits: counts them, and turns `/readyz` to 503 after a failed one. fjall
/// treats a failed journal persist (a full disk) as fatal and refuses every later write until the
/// process restarts, so a load balancer should stop sending clients here and a supervisor should
/// restart it once the cause is fixed; everything acknowledged before is intact.
/// Opens the CQL backend. Its writes report to the commit metrics, but a failed one does not
/// turn `/readyz` off: unlike a failed journal persist, a CQL error (a timeout, a node down) is
/// transient and answered to its caller as a retryable `Backend` error.
#[cfg(feature = "cql")]
async fn open_cql(
    config: &crate::storage::StorageConfig,
    sink: Arc<dyn crate::storage::UpdateSink>,
    metrics: &Metrics,
) -> anyhow::Result<Arc<dyn Storage>> {
    struct CommitMetrics(Metrics);
    impl crate::storage::fjall::CommitObserver for CommitMetrics {
        fn commit(&self, jobs: usize, elapsed: Duration, ok: bool) {
            self.0.commit(jobs, elapsed, ok);
        }
    }
    let cql = crate::storage::cql::CqlConfig::try_from(config)?;
    let observer = Arc::new(CommitMetrics(metrics.clone()));
    let store = crate::storage::cql::CqlStorage::open(&cql, sink, Some(observer)).await?;
    tracing::info!(hosts = ?cql.hosts, keyspace = %cql.keyspace, "CQL storage opened");
    Ok(Arc::new(store))
}

#[cfg(not(feature = "cql"))]
async fn open_cql(
    _config: &crate::storage::StorageConfig,
    _sink: Arc<dyn crate::storage::UpdateSink>,
    _metrics: &Metrics,
) -> anyhow::Result<Arc<dyn Storage>> {
    anyhow::bail!("CQL storage: this server was built without the `cql` cargo feature")
}

struct StorageHealth {
    metrics: Metrics,
    ready: Arc<AtomicBool>,
}

impl crate::storage::fjall::CommitObserver for StorageHealth {
    fn commit(&self, jobs: usize, elapsed: Duration, ok: bool) {
        self.metrics.commit(jobs, elapsed, ok);
        if !ok && self.ready.swap(false, Ordering::Relaxed) {
            tracing::error!(
                "a storage commit failed: writes are refused until this server restarts; \
                 /readyz now answers 503"
            );
        }
    }
}
