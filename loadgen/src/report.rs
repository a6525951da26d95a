//! The run report: JSON for tools, a short summary for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::ledger::Verdict;
use crate::metrics::ServerView;
use crate::stats::{Point, Summary};

/// Everything a run measured. Counts cover the whole run (warm-up included: every acknowledged
/// message is checked); rates and latency percentiles cover the measured window only.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// `chat`, `group`, `idle` or `churn`.
    pub scenario: String,
    /// True when nothing was lost, duplicated or reordered.
    pub ok: bool,
    /// Authenticated connections held during the run (peak).
    pub connections: u64,
    /// Users logged in.
    pub users: u64,
    /// Client UDP sockets the connections shared.
    pub endpoints: u64,
    /// Target rate (chat: messages per second, total).
    pub rate_target_per_s: Option<f64>,
    /// Message text size.
    pub payload_bytes: Option<usize>,
    /// Measured window, seconds (after the warm-up).
    pub duration_s: f64,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// Sends issued.
    pub sent: u64,
    /// Sends the server acknowledged (durable).
    pub acked: u64,
    /// Messages received by their recipients (all receptions, duplicates included; group: by
    /// the members other than the sender, i.e. the fan-out).
    pub delivered: u64,
    /// Acknowledged messages their recipient never received.
    pub lost: u64,
    /// Receptions beyond the first of a message.
    pub duplicates: u64,
    /// Receptions that arrived after a later message of the same chat.
    pub out_of_order: u64,
    /// Failed sends, failed logins, misrouted or foreign messages, ended sessions.
    pub errors: u64,
    /// Sends neither acknowledged nor failed when the run ended.
    pub unacked: u64,
    /// Connections that dropped and were re-established by the SDK.
    pub disconnects: u64,
    /// What `throughput_per_s` counts.
    pub throughput_unit: String,
    /// Work per wall second in the measured window (chat: acks; idle: logins; churn: cycles).
    pub throughput_per_s: f64,
    /// Chat: receptions per wall second in the measured window.
    pub delivered_per_s: f64,
    /// Latency percentiles in microseconds: `ack` (intended send -> Sent) and `deliver` (intended
    /// send -> arrival at the recipient; group: at each member), `deliver_all` (group: intended
    /// send -> arrival at the last of the other members); `dispatch_lag` (intended -> actually issued, the load
    /// generator's own lateness); `login`, `connect`, `sync`, `cycle` where they apply.
    pub latency_us: BTreeMap<String, Summary>,
    /// Server CPU seconds (user + system) over the measured window.
    pub server_cpu_s: Option<f64>,
    /// Server resident memory at the end of the measured window.
    pub server_rss_bytes: Option<u64>,
    /// Server resident memory before the first connection (idle).
    pub server_rss_baseline_bytes: Option<u64>,
    /// (server_rss_bytes - server_rss_baseline_bytes) / connections (idle).
    pub server_rss_per_connection_bytes: Option<f64>,
    /// Acks in the window per server CPU-second.
    pub acked_per_server_cpu_s: Option<f64>,
    /// Receptions in the window per server CPU-second.
    pub delivered_per_server_cpu_s: Option<f64>,
    /// Churn: handshakes (connect + token auth + sync + close cycles) in the window; full or
    /// resumed, see `tls_handshakes`.
    pub handshakes: Option<u64>,
    /// Churn: handshakes per server CPU-second.
    pub handshakes_per_server_cpu_s: Option<f64>,
    /// Churn: the server's TLS handshakes in the window by kind (from its `/metrics`,
    /// `tern_tls_handshakes_total{kind}`): what `--resume` and `--zero-rtt` achieved.
    pub tls_handshakes: Option<TlsHandshakes>,
    /// The server's own metrics over the window (with `--spawn-server` or `--admin`).
    pub server_view: Option<ServerView>,
    /// This process's CPU seconds over the window (near `duration_s` x cores means the load
    /// generator, not the server, was the bottleneck).
    pub loadgen_cpu_s: Option<f64>,
    /// CPU seconds the rest of the machine (other processes) used in the window: on a shared
    /// machine, a large value means the figures are disturbed.
    pub other_cpu_s: Option<f64>,
    /// CPU seconds the hypervisor stole in the window.
    pub steal_cpu_s: Option<f64>,
    /// UDP datagrams sent on the whole machine in the window (on loopback: every packet the
    /// server and the load generator exchanged, QUIC ACK-only packets included).
    pub udp_datagrams: Option<u64>,
    /// `udp_datagrams` per message acknowledged in the window.
    pub udp_datagrams_per_message: Option<f64>,
    /// UDP datagrams dropped on the machine in the window because a receive buffer was full.
    pub udp_receive_buffer_drops: Option<u64>,
    /// This process's resident memory at the end.
    pub loadgen_rss_bytes: Option<u64>,
    /// Errors by kind.
    pub error_kinds: BTreeMap<String, u64>,
    /// The full delivery check (group: summed over members, so `acked` there counts each
    /// message once per member).
    pub delivery_check: Option<Verdict>,
    /// Group: sizes, fan-out and the per-member check.
    pub group: Option<GroupSummary>,
    /// Presence: watches, switches and the final-view check.
    pub presence: Option<PresenceSummary>,
    /// Upload: objects, bytes and rates.
    pub upload: Option<UploadSummary>,
    /// Per second of intended send time: p50/p99 per latency kind.
    pub latency_per_second_us: BTreeMap<String, Vec<Point>>,
    /// The command line.
    pub command: Vec<String>,
}

/// The `upload` scenario's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UploadSummary {
    /// Objects stored.
    pub objects: u64,
    /// Bytes per object.
    pub object_bytes: u64,
    /// Uploads in flight at once.
    pub streams: u64,
    /// Megabytes (10^6) uploaded.
    pub mb: f64,
    /// MB per wall second.
    pub mb_per_s: f64,
    /// MB per server CPU-second.
    pub mb_per_server_cpu_s: Option<f64>,
    /// Streams that resumed an interrupted upload.
    pub resumed: u64,
    /// Objects that did not read back as sent.
    pub mismatched: u64,
}

/// TLS handshakes the server completed in the window, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TlsHandshakes {
    /// Full handshakes (certificate and key exchange).
    pub full: u64,
    /// Resumed from a ticket, without early data.
    pub resumed: u64,
    /// Resumed with the `Hello` accepted as 0-RTT early data.
    pub zero_rtt: u64,
}

impl TlsHandshakes {
    /// From the window's deltas of `tern_tls_handshakes_total{kind}` (summed over shards).
    pub fn from_view(view: &ServerView) -> TlsHandshakes {
        let get = |kind: &str| {
            let key = format!("tern_tls_handshakes_total{{kind=\"{kind}\"}}");
            view.deltas.get(&key).map_or(0, |v| v.max(0.0) as u64)
        };
        TlsHandshakes {
            full: get("full"),
            resumed: get("resumed"),
            zero_rtt: get("zero_rtt"),
        }
    }
}

/// The `group` scenario's own figures. The fan-out rate is the report's
/// `delivered_per_server_cpu_s` (deliveries to members other than the sender, per server
/// CPU-second).
#[derive(Debug, Default, Serialize)]
pub struct GroupSummary {
    /// Groups (G).
    pub groups: u64,
    /// Members per group (S), the creator included.
    pub members_per_group: u64,
    /// Sending members per group.
    pub senders_per_group: u64,
    /// `acked x (S - 1)`: what `delivered` is when nothing is lost or duplicated.
    pub expected_deliveries: u64,
    /// Senders' own messages back on their own device (the server writes every message into
    /// every member's update log): `acked` when nothing is lost or duplicated.
    pub own_copies: u64,
    /// System messages members received (`Created` and `MembersAdded`: 2 per member; not
    /// part of the check).
    pub system_messages: u64,
    /// Members whose receptions were checked.
    pub members_checked: u64,
    /// Members with anything lost, duplicated or reordered.
    pub members_failed: u64,
    /// The first of them.
    pub failed_members: Vec<MemberCheck>,
}

/// The `presence` scenario's own figures. The rate is the report's
/// `delivered_per_server_cpu_s` (presence events delivered to watchers per server CPU-second).
#[derive(Debug, Default, Serialize)]
pub struct PresenceSummary {
    /// Users each user watches (K).
    pub watch_per_user: u64,
    /// Foreground/background switches made.
    pub switches: u64,
    /// (watcher, watched) views compared with the truth at the end.
    pub views_checked: u64,
    /// Views that did not match.
    pub views_wrong: u64,
}

/// One member's failed check.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MemberCheck {
    /// Member (user) index in the run.
    pub member: u64,
    /// Its group.
    pub group: u64,
    /// Acknowledged messages of its group it never received.
    pub lost: u64,
    /// Receptions beyond the first.
    pub duplicates: u64,
    /// Receptions after a later message of the group.
    pub out_of_order: u64,
}

fn per(n: f64, d: Option<f64>) -> Option<f64> {
    d.filter(|d| *d > 0.0)
        .map(|d| (n / d * 10.0).round() / 10.0)
}

impl Report {
    /// Fills the derived per-CPU rates and the machine's other load.
    pub fn derive(
        &mut self,
        window: &crate::run::Window,
        acked_in_window: u64,
        delivered_in_window: u64,
    ) {
        (self.other_cpu_s, self.steal_cpu_s) = window.other_cpu();
        if let Some((sent, drops)) = window.udp() {
            self.udp_datagrams = Some(sent);
            self.udp_receive_buffer_drops = Some(drops);
            self.udp_datagrams_per_message = (acked_in_window > 0)
                .then(|| (sent as f64 / acked_in_window as f64 * 100.0).round() / 100.0);
        }
        self.acked_per_server_cpu_s = per(acked_in_window as f64, self.server_cpu_s);
        self.delivered_per_server_cpu_s = per(delivered_in_window as f64, self.server_cpu_s);
        if let Some(h) = self.handshakes {
            self.handshakes_per_server_cpu_s = per(h as f64, self.server_cpu_s);
        }
        self.ok = self.lost == 0 && self.duplicates == 0 && self.out_of_order == 0;
    }

    /// Writes the JSON report.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }

    /// A few lines for a person.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
        let _ = writeln!(
            s,
            "== tern-loadgen {}: {} connections ({} users, {} endpoints), {:.1}s measured after {:.1}s warm-up",
            self.scenario,
            self.connections,
            self.users,
            self.endpoints,
            self.duration_s,
            self.warmup_s
        );
        let messaging = matches!(self.scenario.as_str(), "chat" | "group");
        if messaging {
            let _ = writeln!(
                s,
                "messages   sent {}  acked {}  delivered {}  unacked {}  (target {:.0}/s, {} B)",
                self.sent,
                self.acked,
                self.delivered,
                self.unacked,
                self.rate_target_per_s.unwrap_or(0.0),
                self.payload_bytes.unwrap_or(0)
            );
            let _ = writeln!(
                s,
                "check      lost {}  duplicates {}  out of order {}  -> {}",
                self.lost,
                self.duplicates,
                self.out_of_order,
                if self.ok { "OK" } else { "FAILED" }
            );
        }
        if let Some(g) = &self.group {
            let _ = writeln!(
                s,
                "fan-out    {} groups x {} members, {} sending per group: deliveries {} (acked x (S-1) = {}), own copies {}, members failed {} of {}",
                g.groups,
                g.members_per_group,
                g.senders_per_group,
                self.delivered,
                g.expected_deliveries,
                g.own_copies,
                g.members_failed,
                g.members_checked
            );
        }
        let _ = writeln!(
            s,
            "throughput {:.0} {}/s{}",
            self.throughput_per_s,
            self.throughput_unit,
            if messaging {
                format!("  (deliveries {:.0}/s)", self.delivered_per_s)
            } else {
                String::new()
            }
        );
        if let Some(u) = &self.upload {
            let _ = writeln!(
                s,
                "upload     {} objects x {} MiB, {} at once: {:.1} MB in {:.2}s = {:.1} MB/s, {} MB per server CPU-s; resumed {}, mismatched {} -> {}",
                u.objects,
                u.object_bytes >> 20,
                u.streams,
                u.mb,
                self.duration_s,
                u.mb_per_s,
                u.mb_per_server_cpu_s
                    .map_or("?".into(), |v| format!("{v:.1}")),
                u.resumed,
                u.mismatched,
                if self.ok { "OK" } else { "FAILED" }
            );
        }
        for (name, l) in &self.latency_us {
            if l.count > 0 {
                let _ = writeln!(
                    s,
                    "latency    {name:<12} p50 {:>7} us  p99 {:>7} us  p99.9 {:>7} us  max {:>8} us  (n={})",
                    l.p50, l.p99, l.p999, l.max, l.count
                );
            }
        }
        match self.server_cpu_s {
            Some(cpu) => {
                let mut line = format!("server     cpu {cpu:.2} s");
                if let Some(r) = self.acked_per_server_cpu_s.filter(|_| messaging) {
                    let _ = write!(line, "  acked/cpu-s {r:.0}");
                }
                if let Some(r) = self.delivered_per_server_cpu_s.filter(|_| messaging) {
                    let _ = write!(line, "  delivered/cpu-s {r:.0}");
                }
                if let Some(r) = self.handshakes_per_server_cpu_s {
                    let _ = write!(line, "  handshakes/cpu-s {r:.0}");
                }
                if let Some(t) = self.tls_handshakes {
                    let _ = write!(
                        line,
                        "  (tls: {} full, {} resumed, {} zero-rtt)",
                        t.full, t.resumed, t.zero_rtt
                    );
                }
                if let Some(rss) = self.server_rss_bytes {
                    let _ = write!(line, "  rss {:.1} MiB", mb(rss));
                }
                if let Some(p) = self.server_rss_per_connection_bytes {
                    let _ = write!(line, "  ({:.1} KiB per connection)", p / 1024.0);
                }
                let _ = writeln!(s, "{line}");
            }
            None => {
                let _ = writeln!(
                    s,
                    "server     cpu/rss unknown (pass --server-pid or --spawn-server)"
                );
            }
        }
        if let Some(v) = self
            .server_view
            .as_ref()
            .filter(|v| v.send_mean_us.is_some() || v.commit_mean_us.is_some())
        {
            let f = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.0}"));
            let g = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.2}"));
            let _ = writeln!(
                s,
                "server saw send {} us, ack {} us (mean); commit {} us x {} jobs; per message {} updates pushed, {} requests",
                f(v.send_mean_us),
                f(v.ack_mean_us),
                f(v.commit_mean_us),
                g(v.jobs_per_commit),
                g(v.deliveries_per_message),
                g(v.requests_per_message)
            );
        }
        if let (Some(n), Some(per)) = (self.udp_datagrams, self.udp_datagrams_per_message) {
            let _ = writeln!(
                s,
                "udp        {n} datagrams on the machine ({per:.2} per message acked), {} dropped for a full receive buffer",
                self.udp_receive_buffer_drops.unwrap_or(0)
            );
        }
        if let Some(cpu) = self.loadgen_cpu_s {
            let _ = writeln!(
                s,
                "loadgen    cpu {cpu:.2} s  rss {:.1} MiB",
                mb(self.loadgen_rss_bytes.unwrap_or(0))
            );
        }
        if let Some(other) = self.other_cpu_s.filter(|o| *o >= 0.05 * self.duration_s) {
            let _ = writeln!(
                s,
                "WARNING    other processes used {other:.2} CPU-s during the window (steal {:.2} s): figures may be disturbed",
                self.steal_cpu_s.unwrap_or(0.0)
            );
        }
        if self.errors > 0 || self.disconnects > 0 {
            let kinds: Vec<String> = self
                .error_kinds
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            let _ = writeln!(
                s,
                "errors     {}  disconnects {}  [{}]",
                self.errors,
                self.disconnects,
                kinds.join(", ")
            );
        }
        s
    }
}
