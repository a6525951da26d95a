//! Server metrics in one explicit struct, rendered as Prometheus text by the admin listener.
//!
//! Every series carries a `shard` label so the sharded server (one runtime per core) can report
//! each shard; the walking skeleton runs a single shard, `shard="0"`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::storage::fjall::CommitObserver;

mod shard;

pub use self::shard::ShardSeries;

/// Labels of per-shard series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    /// Shard index.
    pub shard: String,
}

/// Labels of the TLS handshake series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsHandshakeLabels {
    /// Shard index.
    pub shard: String,
    /// `full`, `resumed` or `zero_rtt` (resumed with early data accepted).
    pub kind: String,
}

/// The values of [`TlsHandshakeLabels::kind`].
pub const TLS_HANDSHAKE_KINDS: [&str; 3] = ["full", "resumed", "zero_rtt"];

/// Labels of per-request series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Shard index.
    pub shard: String,
    /// Request name (`send_message`, `sync`, ...).
    pub request: String,
    /// `ok` or the error code name.
    pub result: String,
}

/// Labels of per-frame-type series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrameLabels {
    /// Shard index.
    pub shard: String,
    /// Frame type (`request`, `response`, `event`, ...).
    pub kind: String,
}

/// Labels of connection-close series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    /// Shard index.
    pub shard: String,
    /// The error code the server closed with.
    pub code: String,
}

/// Labels of per-request timing series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestTimingLabels {
    /// Shard index.
    pub shard: String,
    /// Request name.
    pub request: String,
}

/// Labels of the typing series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypingLabels {
    /// `delivered`, `dropped_rate`, `dropped_not_member`, `dropped_load`, `dropped_policy`.
    pub result: String,
}

/// Labels of the datagram series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatagramLabels {
    /// Shard index.
    pub shard: String,
    /// `in` or `out`.
    pub dir: String,
    /// In: `ok`, `unauthenticated`, `malformed`, `wrong_kind`, `rate_limited`; out: `ok`,
    /// `failed` (the event then went on the control stream).
    pub result: String,
}

/// Labels of the social series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SocialLabels {
    /// One of [`SOCIAL_EVENTS`].
    pub event: String,
}

/// The values of [`SocialLabels::event`]: directory lookups that found a user or missed,
/// accepted contact and block requests (idempotent repeats included), profile and privacy
/// commits, and direct messages withheld from a blocker.
pub const SOCIAL_EVENTS: [&str; 9] = [
    "lookup_found",
    "lookup_missed",
    "contact_added",
    "contact_removed",
    "blocked",
    "unblocked",
    "profile_changed",
    "privacy_changed",
    "message_withheld",
];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_025, 2.0, 18))
}

/// All metrics. Cloning shares the underlying series.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Open connections.
    pub connections: Family<ShardLabel, Gauge>,
    /// Completed handshakes (Hello accepted).
    pub handshakes: Family<ShardLabel, Counter>,
    /// Completed QUIC/TLS handshakes by kind: full, resumed, 0-RTT accepted.
    pub tls_handshakes: Family<TlsHandshakeLabels, Counter>,
    /// QUIC Retry packets sent by the admission gate.
    pub retries: Family<ShardLabel, Counter>,
    /// Frames received.
    pub frames_in: Family<FrameLabels, Counter>,
    /// Frames sent.
    pub frames_out: Family<FrameLabels, Counter>,
    /// Connections the server closed with an error code, by code.
    pub closes: Family<CloseLabels, Counter>,
    /// Requests by name and result.
    pub requests: Family<RequestLabels, Counter>,
    /// Messages made durable.
    pub messages_stored: Counter,
    /// Groups created.
    pub groups_created: Counter,
    /// Updates pushed to live connections.
    pub deliveries: Family<ShardLabel, Counter>,
    /// Connections closed because their send queue was full.
    pub slow_consumers: Family<ShardLabel, Counter>,
    /// Deliveries dropped because a shard's mailbox was full (their users resync).
    pub mailbox_overflows: Family<ShardLabel, Counter>,
    /// Deliveries waiting in a shard's mailbox.
    pub mailbox_depth: Family<ShardLabel, Gauge>,
    /// Time from storage commit to the update being queued on the connection, seconds.
    pub delivery_seconds: HistogramFamily<ShardLabel>,
    /// Time to answer a request (for `send_message`: receipt to durable `Sent`), seconds.
    pub request_seconds: HistogramFamily<RequestTimingLabels>,
    /// Latency of one group commit (including fsync), seconds.
    pub storage_commit_seconds: Histogram,
    /// Jobs per group commit.
    pub storage_commit_jobs: Histogram,
    /// Failed commits.
    pub storage_commit_errors: Counter,
    /// Presence changes published (after the debounce), one per user per change.
    pub presence_changes: Counter,
    /// `Event::Presence` frames queued to watching connections.
    pub presence_events: Family<ShardLabel, Counter>,
    /// Typing indicators by outcome (per receiving connection for `delivered` and the load
    /// drops at a connection; per indicator or per receiver for the others).
    pub typing: Family<TypingLabels, Counter>,
    /// QUIC datagrams in and out, by outcome.
    pub datagrams: Family<DatagramLabels, Counter>,
    /// Distinct users watched by at least one connection on this node.
    pub presence_watched_users: Gauge,
    /// Social events by kind (see [`SOCIAL_EVENTS`]).
    pub social: Family<SocialLabels, Counter>,
    /// The cluster bus (`tern_cluster_*`; zero on a single node).
    pub cluster: crate::cluster::ClusterMetrics,
    /// Media uploads, downloads and collection (`tern_media_*`).
    pub media: crate::media::MediaMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(1)
    }
}

impl Metrics {
    /// Creates and registers every series, with zeroed per-shard series for `shards` shards.
    pub fn new(shards: usize) -> Self {
        let mut r = Registry::with_prefix("tern");
        let connections = Family::<ShardLabel, Gauge>::default();
        r.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        let handshakes = Family::<ShardLabel, Counter>::default();
        r.register(
            "handshakes",
            "Accepted Hello handshakes",
            handshakes.clone(),
        );
        let tls_handshakes = Family::<TlsHandshakeLabels, Counter>::default();
        r.register(
            "tls_handshakes",
            "Completed QUIC/TLS handshakes: full, resumed from a ticket, or resumed with 0-RTT \
             early data accepted",
            tls_handshakes.clone(),
        );
        let retries = Family::<ShardLabel, Counter>::default();
        r.register(
            "retries",
            "QUIC Retry packets sent to make unvalidated clients prove their address",
            retries.clone(),
        );
        let frames_in = Family::<FrameLabels, Counter>::default();
        r.register(
            "frames_in",
            "Frames received from clients",
            frames_in.clone(),
        );
        let frames_out = Family::<FrameLabels, Counter>::default();
        r.register("frames_out", "Frames sent to clients", frames_out.clone());
        let closes = Family::<CloseLabels, Counter>::default();
        r.register(
            "connection_closes",
            "Connections closed by the server with an error code",
            closes.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        r.register("requests", "Requests by name and result", requests.clone());
        let messages_stored = Counter::default();
        r.register(
            "messages_stored",
            "Messages made durable",
            messages_stored.clone(),
        );
        let groups_created = Counter::default();
        r.register("groups_created", "Groups created", groups_created.clone());
        let deliveries = Family::<ShardLabel, Counter>::default();
        r.register(
            "deliveries",
            "Updates pushed to live connections",
            deliveries.clone(),
        );
        let slow_consumers = Family::<ShardLabel, Counter>::default();
        r.register(
            "slow_consumers",
            "Connections closed because their queue was full",
            slow_consumers.clone(),
        );
        let mailbox_overflows = Family::<ShardLabel, Counter>::default();
        r.register(
            "mailbox_overflows",
            "Deliveries dropped for a full shard mailbox",
            mailbox_overflows.clone(),
        );
        let mailbox_depth = Family::<ShardLabel, Gauge>::default();
        r.register(
            "mailbox_depth",
            "Deliveries waiting in the shard mailbox",
            mailbox_depth.clone(),
        );
        let delivery_seconds: HistogramFamily<ShardLabel> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "delivery_seconds",
            "Time from storage commit to the update queued on the connection",
            delivery_seconds.clone(),
        );
        let request_seconds: HistogramFamily<RequestTimingLabels> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "request_seconds",
            "Time to answer a request",
            request_seconds.clone(),
        );
        let storage_commit_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        r.register(
            "storage_commit_seconds",
            "Duration of one group commit including fsync",
            storage_commit_seconds.clone(),
        );
        let storage_commit_jobs = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        r.register(
            "storage_commit_jobs",
            "Write jobs per group commit",
            storage_commit_jobs.clone(),
        );
        let storage_commit_errors = Counter::default();
        r.register(
            "storage_commit_errors",
            "Failed group commits",
            storage_commit_errors.clone(),
        );
        let presence_changes = Counter::default();
        r.register(
            "presence_changes",
            "Presence changes published after the debounce",
            presence_changes.clone(),
        );
        let presence_events = Family::<ShardLabel, Counter>::default();
        r.register(
            "presence_events",
            "Presence events queued to watching connections",
            presence_events.clone(),
        );
        let typing = Family::<TypingLabels, Counter>::default();
        r.register("typing", "Typing indicators by outcome", typing.clone());
        let datagrams = Family::<DatagramLabels, Counter>::default();
        r.register(
            "datagrams",
            "QUIC datagrams by direction and outcome",
            datagrams.clone(),
        );
        let presence_watched_users = Gauge::default();
        r.register(
            "presence_watched_users",
            "Users watched by at least one connection",
            presence_watched_users.clone(),
        );
        let social = Family::<SocialLabels, Counter>::default();
        r.register(
            "social_events",
            "Directory lookups, contact, block, profile and privacy changes, withheld messages",
            social.clone(),
        );
        for event in SOCIAL_EVENTS {
            let _ = social.get_or_create(&SocialLabels {
                event: event.into(),
            });
        }
        for result in [
            "delivered",
            "dropped_rate",
            "dropped_not_member",
            "dropped_load",
            "dropped_policy",
        ] {
            let _ = typing.get_or_create(&TypingLabels {
                result: result.into(),
            });
        }
        // Create every shard's series up front so dashboards see zeros rather than gaps.
        for n in 0..shards.max(1) {
            let s = Self::shard(n);
            let _ = connections.get_or_create(&s);
            let _ = handshakes.get_or_create(&s);
            let _ = retries.get_or_create(&s);
            for kind in TLS_HANDSHAKE_KINDS {
                let _ = tls_handshakes.get_or_create(&TlsHandshakeLabels {
                    shard: s.shard.clone(),
                    kind: kind.into(),
                });
            }
            for kind in ["hello", "request"] {
                let _ = frames_in.get_or_create(&FrameLabels {
                    shard: s.shard.clone(),
                    kind: kind.into(),
                });
            }
            for kind in ["welcome", "response", "event", "error", "go_away"] {
                let _ = frames_out.get_or_create(&FrameLabels {
                    shard: s.shard.clone(),
                    kind: kind.into(),
                });
            }
            let _ = deliveries.get_or_create(&s);
            let _ = slow_consumers.get_or_create(&s);
            let _ = mailbox_overflows.get_or_create(&s);
            let _ = mailbox_depth.get_or_create(&s);
            let _ = delivery_seconds.get_or_create(&s);
            let _ = presence_events.get_or_create(&s);
        }
        let cluster = crate::cluster::ClusterMetrics::register(&mut r);
        let media = crate::media::MediaMetrics::register(&mut r);
        Metrics {
            cluster,
            media,
            registry: Arc::new(r),
            connections,
            handshakes,
            tls_handshakes,
            retries,
            frames_in,
            frames_out,
            closes,
            requests,
            messages_stored,
            groups_created,
            deliveries,
            slow_consumers,
            mailbox_overflows,
            mailbox_depth,
            delivery_seconds,
            request_seconds,
            storage_commit_seconds,
            storage_commit_jobs,
            storage_commit_errors,
            presence_changes,
            presence_events,
            typing,
            datagrams,
            social,
            presence_watched_users,
        }
    }

    /// Counts a typing indicator's outcome.
    pub fn typing(&self, result: &'static str) {
        self.typing
            .get_or_create(&TypingLabels {
                result: result.into(),
            })
            .inc();
    }

    /// Counts a social event (one of [`SOCIAL_EVENTS`]).
    pub fn social_event(&self, event: &'static str) {
        self.social
            .get_or_create(&SocialLabels {
                event: event.into(),
            })
            .inc();
    }

    /// Counts a datagram on `shard` (`dir` is `in` or `out`).
    pub fn datagram(&self, shard: &ShardLabel, dir: &'static str, result: &'static str) {
        self.datagrams
            .get_or_create(&DatagramLabels {
                shard: shard.shard.clone(),
                dir: dir.into(),
                result: result.into(),
            })
            .inc();
    }

    /// The label of shard `n`.
    pub fn shard(n: usize) -> ShardLabel {
        ShardLabel {
            shard: n.to_string(),
        }
    }

    /// Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl CommitObserver for Metrics {
    fn commit(&self, jobs: usize, elapsed: Duration, ok: bool) {
        self.storage_commit_seconds.observe(elapsed.as_secs_f64());
        self.storage_commit_jobs.observe(jobs as f64);
        if !ok {
            self.storage_commit_errors.inc();
        }
    }
}
