//! One shard's hot series, resolved once.
//!
//! prometheus-client's `Family::get_or_create` takes a read lock, hashes the label set with
//! SipHash and, since our label sets own their strings, needs two fresh `String`s per call just
//! to look a series up. Per frame and per request that was about 3% of the server's instructions
//! per chat message (BENCHMARKS.md, "Instructions per message"). A shard therefore resolves its
//! frame counters once, and its request series the first time each request is answered; the
//! handles share their values with the families, so `/metrics` is unchanged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tern_protocol::ErrorCode;

use super::{FrameLabels, Metrics, RequestLabels, RequestTimingLabels, ShardLabel};

/// Every value of `Frame::kind`.
const FRAME_KINDS: [&str; 7] = [
    "hello", "welcome", "request", "response", "event", "error", "go_away",
];

/// A request's success counter and timing histogram.
type RequestSeries = (Counter, Histogram);

/// The series one shard touches per frame and per request.
#[derive(Debug)]
pub struct ShardSeries {
    label: ShardLabel,
    metrics: Metrics,
    frames_in: [Counter; FRAME_KINDS.len()],
    frames_out: [Counter; FRAME_KINDS.len()],
    /// By request name; only the shard's own thread takes it, so it is never contended.
    requests: Mutex<HashMap<&'static str, RequestSeries, foldhash::fast::RandomState>>,
}

impl ShardSeries {
    /// Resolves the frame series of `label`.
    pub fn new(metrics: &Metrics, label: ShardLabel) -> Self {
        let frames = |family: &prometheus_client::metrics::family::Family<FrameLabels, Counter>| {
            FRAME_KINDS.map(|kind| {
                family
                    .get_or_create(&FrameLabels {
                        shard: label.shard.clone(),
                        kind: kind.to_owned(),
                    })
                    .clone()
            })
        };
        ShardSeries {
            frames_in: frames(&metrics.frames_in),
            frames_out: frames(&metrics.frames_out),
            label,
            metrics: metrics.clone(),
            requests: Mutex::new(HashMap::default()),
        }
    }

    /// Counts a frame received.
    pub fn frame_in(&self, kind: &'static str) {
        self.frame(&self.frames_in, &self.metrics.frames_in, kind);
    }

    /// Counts a frame sent.
    pub fn frame_out(&self, kind: &'static str) {
        self.frame(&self.frames_out, &self.metrics.frames_out, kind);
    }

    fn frame(
        &self,
        hot: &[Counter; FRAME_KINDS.len()],
        family: &prometheus_client::metrics::family::Family<FrameLabels, Counter>,
        kind: &'static str,
    ) {
        match FRAME_KINDS.iter().position(|k| *k == kind) {
            Some(i) => {
                hot[i].inc();
            }
            None => {
                family
                    .get_or_create(&FrameLabels {
                        shard: self.label.shard.clone(),
                        kind: kind.to_owned(),
                    })
                    .inc();
            }
        }
    }

    /// Counts an answered request and records how long it took. The timing and the success
    /// counter are cached per request name; an error's counter is looked up each time, since its
    /// label names the code and errors are rare.
    pub fn request(&self, name: &'static str, outcome: Result<(), ErrorCode>, took: Duration) {
        let Ok(mut requests) = self.requests.lock() else {
            return;
        };
        let (ok, timing) = requests.entry(name).or_insert_with(|| {
            let m = &self.metrics;
            let ok = m
                .requests
                .get_or_create(&self.request_labels(name, "ok".to_owned()));
            let timing = m.request_seconds.get_or_create(&self.timing_labels(name));
            (ok.clone(), timing.clone())
        });
        timing.observe(took.as_secs_f64());
        match outcome {
            Ok(()) => {
                ok.inc();
            }
            Err(code) => {
                self.metrics
                    .requests
                    .get_or_create(&self.request_labels(name, format!("{code:?}")))
                    .inc();
            }
        }
    }

    fn request_labels(&self, name: &'static str, result: String) -> RequestLabels {
        RequestLabels {
            shard: self.label.shard.clone(),
            request: name.to_owned(),
            result,
        }
    }

    fn timing_labels(&self, name: &'static str) -> RequestTimingLabels {
        RequestTimingLabels {
            shard: self.label.shard.clone(),
            request: name.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_handles_count_into_the_families_that_are_rendered() {
        let metrics = Metrics::new(4);
        let series = ShardSeries::new(&metrics, Metrics::shard(3));
        series.frame_in("request");
        series.frame_out("event");
        series.frame_out("event");
        series.request("sync", Ok(()), Duration::from_millis(1));
        series.request("sync", Ok(()), Duration::from_millis(1));
        series.request(
            "sync",
            Err(ErrorCode::RateLimited),
            Duration::from_millis(1),
        );
        let text = metrics.render();
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
                .to_owned()
        };
        assert!(line(r#"tern_frames_in_total{shard="3",kind="request"}"#).ends_with(" 1"));
        assert!(line(r#"tern_frames_out_total{shard="3",kind="event"}"#).ends_with(" 2"));
        assert!(line(r#"request="sync",result="ok"}"#).ends_with(" 2"));
        assert!(line(r#"request="sync",result="RateLimited"}"#).ends_with(" 1"));
        assert!(line(r#"request_seconds_count{shard="3",request="sync"}"#).ends_with(" 3"));
    }
}
