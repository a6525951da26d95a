//! Latency recording: one HDR histogram per kind (ack, deliver, ...) over the measured window,
//! plus coarser per-second histograms (by intended send time) for the latency-over-time chart.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded, in microseconds (larger values are clamped): 10 minutes.
const MAX_US: u64 = 600_000_000;

/// The histogram in `slot`, created on first use. The bounds are constants that satisfy
/// hdrhistogram's preconditions, so creation does not fail in practice; if it did, the sample
/// would be dropped rather than the load generator stopped.
fn slot(slot: &mut Option<Histogram<u64>>, sigfig: u8) -> Option<&mut Histogram<u64>> {
    if slot.is_none() {
        *slot = Histogram::new_with_bounds(1, MAX_US, sigfig).ok();
    }
    slot.as_mut()
}

/// Percentiles of one latency kind, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Summary {
    fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

/// p50 and p99 of one kind in one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Point {
    /// Samples.
    pub count: u64,
    /// Median, µs.
    pub p50: u64,
    /// 99th percentile, µs.
    pub p99: u64,
}

#[derive(Debug, Default)]
struct Kind {
    total: Option<Histogram<u64>>,
    per_second: Vec<Option<Histogram<u64>>>,
}

/// Records latencies of several kinds from many tasks.
#[derive(Debug, Default)]
pub struct Recorder {
    kinds: Mutex<BTreeMap<&'static str, Kind>>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Recorder::default()
    }

    /// Records `us` for `kind`. `second` (since the start of the run) feeds the per-second
    /// series; `measured` says whether the sample counts toward the overall percentiles.
    pub fn record(&self, kind: &'static str, us: u64, second: Option<usize>, measured: bool) {
        let us = us.clamp(1, MAX_US);
        let Ok(mut kinds) = self.kinds.lock() else {
            return;
        };
        let k = kinds.entry(kind).or_default();
        if measured && let Some(h) = slot(&mut k.total, 3) {
            let _ = h.record(us);
        }
        if let Some(s) = second {
            if k.per_second.len() <= s {
                k.per_second.resize_with(s + 1, || None);
            }
            if let Some(h) = k.per_second.get_mut(s).and_then(|h| slot(h, 2)) {
                let _ = h.record(us);
            }
        }
    }

    /// Makes sure `kind` appears in the summaries even without samples.
    pub fn declare(&self, kind: &'static str) {
        if let Ok(mut kinds) = self.kinds.lock() {
            kinds.entry(kind).or_default();
        }
    }

    /// Percentiles of every kind over the measured window.
    pub fn summaries(&self) -> BTreeMap<String, Summary> {
        let Ok(kinds) = self.kinds.lock() else {
            return BTreeMap::new();
        };
        kinds
            .iter()
            .map(|(name, k)| {
                let s = k.total.as_ref().map(Summary::of).unwrap_or_default();
                ((*name).to_owned(), s)
            })
            .collect()
    }

    /// Per-second p50/p99 of every kind (seconds without samples are zero).
    pub fn series(&self) -> BTreeMap<String, Vec<Point>> {
        let Ok(kinds) = self.kinds.lock() else {
            return BTreeMap::new();
        };
        kinds
            .iter()
            .map(|(name, k)| {
                let points = k
                    .per_second
                    .iter()
                    .map(|h| match h {
                        Some(h) if !h.is_empty() => Point {
                            count: h.len(),
                            p50: h.value_at_quantile(0.5),
                            p99: h.value_at_quantile(0.99),
                        },
                        _ => Point::default(),
                    })
                    .collect();
                ((*name).to_owned(), points)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_series() {
        let r = Recorder::new();
        r.declare("deliver");
        for us in 1..=1000u64 {
            r.record("ack", us, Some((us / 500) as usize), us > 10);
        }
        let s = r.summaries();
        let ack = s["ack"];
        assert_eq!(ack.count, 990);
        assert!((495..=510).contains(&ack.p50), "{ack:?}");
        assert!(ack.p99 >= 985 && ack.p999 <= 1001, "{ack:?}");
        assert_eq!(ack.max, 1000);
        assert_eq!(s["deliver"], Summary::default());
        let series = r.series();
        assert_eq!(series["ack"].len(), 3);
        assert_eq!(series["ack"][0].count, 499);
    }
}
