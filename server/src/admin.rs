//! The admin HTTP listener: `/metrics` (Prometheus text), `/healthz` (process alive), `/readyz`
//! (accepting clients). Bind it to loopback or a private interface.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// Shared state of the admin handlers.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// Rendered on `/metrics`.
    pub metrics: Metrics,
    /// `/readyz` answers 200 only while this is true.
    pub ready: Arc<AtomicBool>,
}

/// The admin routes.
pub fn routes(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    let mut body = s.metrics.render();
    body.push_str(&process_metrics());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// Resident memory and CPU time of this process, read from /proc where available.
fn process_metrics() -> String {
    let mut out = String::new();
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(kb) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    {
        out.push_str("# TYPE process_resident_memory_bytes gauge\n");
        out.push_str(&format!("process_resident_memory_bytes {}\n", kb * 1024));
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name: utime and stime are the 12th and 13th (in clock ticks).
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if let (Some(u), Some(s)) = (fields.get(11), fields.get(12))
                && let (Ok(u), Ok(s)) = (u.parse::<f64>(), s.parse::<f64>())
            {
                out.push_str("# TYPE process_cpu_seconds_total counter\n");
                out.push_str(&format!("process_cpu_seconds_total {}\n", (u + s) / 100.0));
            }
        }
    }
    out
}
