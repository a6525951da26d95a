//! The open-loop machinery `chat` and `group` share.
//!
//! Message `k` is due at `start + k / rate`, whatever happened to earlier messages. A scheduler
//! thread issues each send at its due time (tokio's timer wheel has millisecond granularity; a
//! thread's sleep is tens of microseconds), and every latency is measured from the due
//! ("intended") time, so a stalled server or client shows up as latency instead of silently
//! lowering the offered load. The text of each message starts with its intended send time in
//! nanoseconds since the run's start, so a recipient can compute delivery latency itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use tern_sdk::Client;
use tern_sdk::protocol::{ChatId, ClientMsgId, MessageBody, Seq};

use crate::cli::CommonArgs;
use crate::ledger::Verdict;
use crate::report::Report;
use crate::run::{self, Errors, Ui, Window};
use crate::stats::Recorder;

/// Digits of the intended-send timestamp at the start of each message.
const STAMP_DIGITS: usize = 20;
/// The scheduler spins (instead of sleeping) for the last this-much before a due time...
const SPIN_WINDOW: Duration = Duration::from_micros(120);
/// ...when sends are at least this far apart (low rates, where the CPU is there to spare).
const SPIN_ABOVE: Duration = Duration::from_millis(1);
/// Smallest payload: the stamp and a separator.
pub const MIN_PAYLOAD: usize = 24;

/// The text of a message due `ns` nanoseconds after the start, `len` bytes long.
pub fn message_text(ns: u64, len: usize) -> String {
    let mut s = format!("{ns:0STAMP_DIGITS$}|");
    let pad = len.saturating_sub(s.len());
    s.extend(std::iter::repeat_n('x', pad));
    s
}

/// The intended-send time stamped into a message text.
pub fn stamp_of(text: &str) -> Option<u64> {
    text.get(..STAMP_DIGITS)?.parse().ok()
}

/// Whole microseconds, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Refuses a rate or payload size the scenario cannot run with.
pub fn validate(rate: f64, payload_bytes: usize) -> anyhow::Result<()> {
    if !(rate.is_finite() && rate > 0.0) {
        bail!("--rate must be a positive number of messages per second");
    }
    if !(MIN_PAYLOAD..=tern_sdk::protocol::limits::MAX_TEXT_LEN).contains(&payload_bytes) {
        bail!(
            "--payload-bytes must be between {MIN_PAYLOAD} (the text carries its send time) and {}",
            tern_sdk::protocol::limits::MAX_TEXT_LEN
        );
    }
    Ok(())
}

/// The clock, counters and latency histograms of one open-loop run.
#[derive(Debug)]
pub struct Core {
    /// Message 0 is due now.
    pub start: Instant,
    /// The measured window starts here...
    pub warm_end: Instant,
    /// ...and ends here.
    pub end: Instant,
    /// Messages due in total.
    pub total: u64,
    /// Messages per second.
    rate: f64,
    /// The planned measured window.
    duration: Duration,
    /// How long to wait for in-flight work after the last send.
    grace: Duration,
    /// Latencies: `ack`, `deliver`, `dispatch_lag`.
    pub recorder: Recorder,
    /// Errors by kind.
    pub errors: Errors,
    /// Sends issued.
    pub sent: AtomicU64,
    /// Sends acknowledged.
    pub acked: AtomicU64,
    /// Sends that failed.
    pub failed: AtomicU64,
    /// Receptions by recipients (not the sender's own copies).
    pub delivered: AtomicU64,
    /// Acks that arrived in the window.
    pub acked_in_window: AtomicU64,
    /// Receptions that arrived in the window.
    pub delivered_in_window: AtomicU64,
    /// Connections that dropped.
    pub disconnects: AtomicU64,
}

impl Core {
    /// A run starting shortly: `warmup` (default `default_warmup`), then the measured
    /// `--duration`, at `rate` messages per second, then at most `--grace`.
    pub fn new(c: &CommonArgs, default_warmup: Duration, rate: f64) -> Core {
        let warmup = c.warmup.unwrap_or(default_warmup);
        let duration = c.duration;
        let start = Instant::now() + Duration::from_millis(200);
        let warm_end = start + warmup;
        let recorder = Recorder::new();
        for kind in ["ack", "deliver", "dispatch_lag"] {
            recorder.declare(kind);
        }
        Core {
            start,
            warm_end,
            end: warm_end + duration,
            total: (rate * (warmup + duration).as_secs_f64()).round() as u64,
            rate,
            duration,
            grace: c.grace,
            recorder,
            errors: Errors::default(),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            acked_in_window: AtomicU64::new(0),
            delivered_in_window: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
        }
    }

    /// Whether `t` is in the measured window.
    pub fn in_window(&self, t: Instant) -> bool {
        t >= self.warm_end && t < self.end
    }

    /// Second of the run an intended time falls in, and whether it is measured.
    fn slot(&self, intended: Instant) -> (Option<usize>, bool) {
        let second = intended.saturating_duration_since(self.start).as_secs() as usize;
        (Some(second), self.in_window(intended))
    }

    /// Sends message `k` (due at `intended`) from `client` into `chat` with client_msg_id
    /// `k + 1`, recording its dispatch lag and ack latency. `Ok((seq, client_msg_id))` once
    /// acknowledged.
    pub async fn send(
        &self,
        client: &Client,
        chat: ChatId,
        k: u64,
        intended: Instant,
        payload: usize,
    ) -> Result<(Seq, ClientMsgId), tern_sdk::Error> {
        let (second, measured) = self.slot(intended);
        self.recorder.record(
            "dispatch_lag",
            micros(Instant::now().saturating_duration_since(intended)),
            None,
            measured,
        );
        let ns = u64::try_from((intended - self.start).as_nanos()).unwrap_or(u64::MAX);
        let cmid = k + 1;
        match client
            .send(chat, MessageBody::Text(message_text(ns, payload)), cmid)
            .await
        {
            Ok(sent) => {
                let now = Instant::now();
                self.acked.fetch_add(1, Ordering::Relaxed);
                if self.in_window(now) {
                    self.acked_in_window.fetch_add(1, Ordering::Relaxed);
                }
                self.recorder.record(
                    "ack",
                    micros(now.saturating_duration_since(intended)),
                    second,
                    measured,
                );
                if sent.chat_id != chat {
                    self.errors.add("ack for another chat");
                }
                Ok((sent.seq, cmid))
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.errors.add(run::sdk_error_kind("send", &e));
                Err(e)
            }
        }
    }

    /// Counts a reception by a recipient of a message stamped `ns`, recording its deliver
    /// latency.
    pub fn delivered(&self, ns: u64) {
        let now = Instant::now();
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if self.in_window(now) {
            self.delivered_in_window.fetch_add(1, Ordering::Relaxed);
        }
        self.record_since(ns, "deliver", now);
    }

    /// Records `now` minus the intended time of the message stamped `ns` as `kind`.
    pub fn record_since(&self, ns: u64, kind: &'static str, now: Instant) {
        let intended = self.start + Duration::from_nanos(ns);
        let (second, measured) = self.slot(intended);
        self.recorder.record(
            kind,
            micros(now.saturating_duration_since(intended)),
            second,
            measured,
        );
    }

    fn progress(&self) -> String {
        format!(
            "acked {} delivered {} errors {}",
            self.acked.load(Ordering::Relaxed),
            self.delivered.load(Ordering::Relaxed),
            self.errors.total()
        )
    }

    /// Issues every message at its due time on a thread of its own: `issue(k, intended)` for
    /// `k` in `0..total` (counted in `sent` first), then waits for in-flight sends and
    /// deliveries: until every send resolved and `outstanding()` is 0, at most `grace`. Shows
    /// progress; returns the CPU and memory samples of the measured window.
    pub async fn drive(
        self: &Arc<Self>,
        target: &run::Target,
        ui: Ui,
        label: &str,
        stop: Arc<AtomicBool>,
        issue: impl FnMut(u64, Instant) + Send + 'static,
        outstanding: impl Fn() -> usize,
    ) -> anyhow::Result<Window> {
        let window = run::sample_window(target, self.warm_end, self.end, stop.clone());
        let scheduler = {
            let core = self.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("schedule".into())
                .spawn(move || core.schedule(&stop, issue))?
        };
        let bar = ui.bar(self.total, label);
        while !scheduler.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            bar.set_position(self.sent.load(Ordering::Relaxed));
            bar.set_message(self.progress());
        }
        let _ = scheduler.join();
        let window = window.await?;

        bar.set_prefix("grace");
        let grace_end = Instant::now() + self.grace;
        loop {
            let sent = self.sent.load(Ordering::Relaxed);
            let resolved = self.acked.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed);
            if (resolved >= sent && outstanding() == 0)
                || Instant::now() >= grace_end
                || stop.load(Ordering::Relaxed)
            {
                break;
            }
            bar.set_message(self.progress());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bar.finish_and_clear();
        Ok(window)
    }

    fn schedule(&self, stop: &AtomicBool, mut issue: impl FnMut(u64, Instant)) {
        let due = |k: u64| self.start + Duration::from_secs_f64(k as f64 / self.rate);
        let mut k = 0u64;
        while k < self.total && !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let next = due(k);
            if next > now {
                let gap = next - now;
                if gap > SPIN_ABOVE {
                    // Sleeping overshoots by the timer slack and a wake-up (~100 us), which
                    // would count as latency: sleep to just before the due time, then spin.
                    std::thread::sleep(gap - SPIN_WINDOW);
                    while Instant::now() < next {
                        std::hint::spin_loop();
                    }
                } else {
                    std::thread::sleep(gap);
                }
                continue;
            }
            while k < self.total {
                let intended = due(k);
                if intended > now {
                    break;
                }
                // Counted here, not in the send: the grace wait compares it with what resolved.
                self.sent.fetch_add(1, Ordering::Relaxed);
                issue(k, intended);
                k += 1;
            }
        }
    }

    /// The report's common part: counts, rates over the measured window, latencies, server
    /// and load generator CPU and memory, and the delivery check's totals.
    pub fn report(
        &self,
        scenario: &str,
        window: &Window,
        verdict: Verdict,
        own_rss: Option<u64>,
    ) -> Report {
        let measured_s = window
            .ended
            .map_or(self.duration, |e| {
                e.saturating_duration_since(self.warm_end)
            })
            .as_secs_f64();
        let acked_in_window = self.acked_in_window.load(Ordering::Relaxed);
        let delivered_in_window = self.delivered_in_window.load(Ordering::Relaxed);
        let sent = self.sent.load(Ordering::Relaxed);
        let acked = self.acked.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        let mut report = Report {
            scenario: scenario.into(),
            rate_target_per_s: Some(self.rate),
            duration_s: measured_s,
            warmup_s: (self.warm_end - self.start).as_secs_f64(),
            sent,
            acked,
            delivered: self.delivered.load(Ordering::Relaxed),
            lost: verdict.lost,
            duplicates: verdict.duplicates,
            out_of_order: verdict.out_of_order,
            errors: self.errors.total(),
            unacked: sent.saturating_sub(acked + failed),
            disconnects: self.disconnects.load(Ordering::Relaxed),
            throughput_unit: "acked messages".into(),
            throughput_per_s: acked_in_window as f64 / measured_s.max(1e-9),
            delivered_per_s: delivered_in_window as f64 / measured_s.max(1e-9),
            latency_us: self.recorder.summaries(),
            server_cpu_s: window.server_cpu(),
            server_view: window.server_view(),
            server_rss_bytes: window.server_end.map(|s| s.rss),
            loadgen_cpu_s: window.own_cpu(),
            loadgen_rss_bytes: own_rss,
            error_kinds: self.errors.kinds(),
            delivery_check: Some(verdict),
            latency_per_second_us: self.recorder.series(),
            ..Report::default()
        };
        report.derive(window, acked_in_window, delivered_in_window);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_carry_their_intended_time() {
        let t = message_text(1_234_567_890, 200);
        assert_eq!(t.len(), 200);
        assert_eq!(stamp_of(&t), Some(1_234_567_890));
        assert_eq!(message_text(5, MIN_PAYLOAD).len(), MIN_PAYLOAD);
        assert_eq!(stamp_of("hello"), None);
    }

    #[test]
    fn rates_and_payloads_are_checked() {
        assert!(validate(100.0, 200).is_ok());
        assert!(validate(0.0, 200).is_err());
        assert!(validate(f64::NAN, 200).is_err());
        assert!(validate(100.0, MIN_PAYLOAD - 1).is_err());
    }
}
