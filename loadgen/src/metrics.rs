//! The server's own view: its Prometheus `/metrics`, scraped at the start and end of the measured
//! window, summed over shards, as deltas. A few derived figures (server-side request latency,
//! storage commit time and size, updates pushed per message) explain where latency and CPU go.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::Serialize;

/// Metric samples by series, the `shard` label dropped (values of all shards summed).
pub type Samples = BTreeMap<String, f64>;

/// Fetches and parses `/metrics`; `None` when the admin listener does not answer.
pub fn scrape(admin: SocketAddr) -> Option<Samples> {
    let timeout = Duration::from_secs(2);
    let mut s = TcpStream::connect_timeout(&admin, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1);
    if !head.starts_with("HTTP/1.") || status.is_none_or(|c| c != "200") {
        return None;
    }
    Some(parse(body))
}

/// Parses the Prometheus text format, skipping histogram buckets and dropping `shard` labels.
pub fn parse(body: &str) -> Samples {
    let mut out = Samples::new();
    for line in body.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if name.ends_with("_bucket") {
            continue;
        }
        let kept: Vec<&str> = labels
            .split(',')
            .filter(|l| !l.is_empty() && !l.starts_with("shard="))
            .collect();
        let key = if kept.is_empty() {
            name.to_owned()
        } else {
            format!("{name}{{{}}}", kept.join(","))
        };
        *out.entry(key).or_insert(0.0) += value;
    }
    out
}

/// What the server saw during the window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerView {
    /// Mean time the server took to answer `SendMessage` (receipt to response), µs.
    pub send_mean_us: Option<f64>,
    /// Mean time the server took to answer `Ack`, µs.
    pub ack_mean_us: Option<f64>,
    /// Mean storage group commit (write + fdatasync), µs.
    pub commit_mean_us: Option<f64>,
    /// Mean jobs per group commit.
    pub jobs_per_commit: Option<f64>,
    /// Updates pushed to devices per stored message (message and receipts, to every device).
    pub deliveries_per_message: Option<f64>,
    /// Requests of every kind per stored message.
    pub requests_per_message: Option<f64>,
    /// Every series that changed in the window (delta), summed over shards.
    pub deltas: BTreeMap<String, f64>,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b > 0.0).then(|| (a / b * 100.0).round() / 100.0)
}

impl ServerView {
    /// Deltas between two scrapes and the derived figures.
    pub fn between(start: &Samples, end: &Samples) -> ServerView {
        let deltas: BTreeMap<String, f64> = end
            .iter()
            .filter(|(k, _)| !k.starts_with("process_"))
            .map(|(k, v)| (k.clone(), v - start.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, d)| d.abs() > 0.0)
            .collect();
        let get = |k: &str| deltas.get(k).copied();
        let sum_prefix = |p: &str| {
            let v: f64 = deltas
                .iter()
                .filter(|(k, _)| k.starts_with(p))
                .map(|(_, v)| *v)
                .sum();
            (v > 0.0).then_some(v)
        };
        let us = |sum: &str, count: &str| ratio(get(sum).map(|s| s * 1e6), get(count));
        let messages = get("tern_messages_stored_total");
        ServerView {
            send_mean_us: us(
                "tern_request_seconds_sum{request=\"send_message\"}",
                "tern_request_seconds_count{request=\"send_message\"}",
            ),
            ack_mean_us: us(
                "tern_request_seconds_sum{request=\"ack\"}",
                "tern_request_seconds_count{request=\"ack\"}",
            ),
            commit_mean_us: us(
                "tern_storage_commit_seconds_sum",
                "tern_storage_commit_seconds_count",
            ),
            jobs_per_commit: ratio(
                get("tern_storage_commit_jobs_sum"),
                get("tern_storage_commit_jobs_count"),
            ),
            deliveries_per_message: ratio(get("tern_deliveries_total"), messages),
            requests_per_message: ratio(sum_prefix("tern_requests_total"), messages),
            deltas,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_summed_and_derived_figures_computed() {
        let start = parse(
            "# HELP x\ntern_messages_stored_total 10\n\
             tern_deliveries_total{shard=\"0\"} 20\ntern_deliveries_total{shard=\"1\"} 20\n\
             tern_request_seconds_sum{shard=\"0\",request=\"send_message\"} 0.01\n\
             tern_request_seconds_count{shard=\"0\",request=\"send_message\"} 10\n\
             tern_request_seconds_bucket{shard=\"0\",request=\"send_message\",le=\"0.001\"} 10\n",
        );
        let end = parse(
            "tern_messages_stored_total 110\n\
             tern_deliveries_total{shard=\"0\"} 220\ntern_deliveries_total{shard=\"1\"} 220\n\
             tern_request_seconds_sum{shard=\"0\",request=\"send_message\"} 0.11\n\
             tern_request_seconds_count{shard=\"0\",request=\"send_message\"} 110\n\
             process_cpu_seconds_total 3\n",
        );
        assert_eq!(end["tern_deliveries_total"], 440.0);
        let v = ServerView::between(&start, &end);
        assert_eq!(v.deliveries_per_message, Some(4.0));
        assert_eq!(v.send_mean_us, Some(1000.0));
        assert!(
            !v.deltas
                .keys()
                .any(|k| k.contains("bucket") || k.starts_with("process_"))
        );
    }
}
