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

/// Labels of per-shard series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    /// Shard index.
    pub shard: String,
}

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

/// All metrics. Cloning shares the underlying series.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Open connections.
    pub connections: Family<ShardLabel, Gauge>,
    /// Completed handshakes (Hello accepted).
    pub handshakes: Family<ShardLabel, Counter>,
    /// Frames received.
    pub frames_in: Family<ShardLabel, Counter>,
    /// Frames sent.
    pub frames_out: Family<ShardLabel, Counter>,
    /// Requests by name and result.
    pub requests: Family<RequestLabels, Counter>,
    /// Messages made durable.
    pub messages_stored: Counter,
    /// Updates pushed to live connections.
    pub deliveries: Family<ShardLabel, Counter>,
    /// Connections closed because their send queue was full.
    pub slow_consumers: Family<ShardLabel, Counter>,
    /// Latency of one group commit (including fsync), seconds.
    pub storage_commit_seconds: Histogram,
    /// Jobs per group commit.
    pub storage_commit_jobs: Histogram,
    /// Failed commits.
    pub storage_commit_errors: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every series.
    pub fn new() -> Self {
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
        let frames_in = Family::<ShardLabel, Counter>::default();
        r.register(
            "frames_in",
            "Frames received from clients",
            frames_in.clone(),
        );
        let frames_out = Family::<ShardLabel, Counter>::default();
        r.register("frames_out", "Frames sent to clients", frames_out.clone());
        let requests = Family::<RequestLabels, Counter>::default();
        r.register("requests", "Requests by name and result", requests.clone());
        let messages_stored = Counter::default();
        r.register(
            "messages_stored",
            "Messages made durable",
            messages_stored.clone(),
        );
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
        // Create shard 0's series up front so dashboards see zeros rather than gaps.
        let s0 = Self::shard(0);
        let _ = connections.get_or_create(&s0);
        let _ = handshakes.get_or_create(&s0);
        let _ = frames_in.get_or_create(&s0);
        let _ = frames_out.get_or_create(&s0);
        let _ = deliveries.get_or_create(&s0);
        let _ = slow_consumers.get_or_create(&s0);
        Metrics {
            registry: Arc::new(r),
            connections,
            handshakes,
            frames_in,
            frames_out,
            requests,
            messages_stored,
            deliveries,
            slow_consumers,
            storage_commit_seconds,
            storage_commit_jobs,
            storage_commit_errors,
        }
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
