//! Command-line interface: one subcommand per scenario, sharing the options that say where the
//! server is, how users log in, how long to run and where to write the report.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Exit code when the run itself failed (could not start, log in, ...).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code when the run completed but a message was lost, duplicated or reordered.
pub const EXIT_VIOLATION: i32 = 2;

/// Load generator for Tern. Speaks the production protocol through tern-sdk.
///
/// Exit code 0 when the run completed and every acknowledged message was delivered exactly once
/// and in order; 2 when anything was lost, duplicated or reordered; 1 when the run failed.
#[derive(Debug, Parser)]
#[command(name = "tern-loadgen", version)]
pub struct Cli {
    /// The scenario to run, or an offline check.
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
// Parsed once per process: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A scenario.
    #[command(flatten)]
    Scenario(Scenario),
    /// Checks a history written with `chat --history FILE` offline: every acknowledged send
    /// received exactly once by each other member of its chat, in seq order, nothing received
    /// that was never sent, no two acknowledged sends with one (chat, seq). Exit code 2 on a
    /// violation.
    CheckHistory(CheckHistoryArgs),
}

/// Scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Pairs of users exchange 1:1 messages at a fixed total rate (open loop); every acknowledged
    /// message is matched against what its recipient received.
    Chat(ChatArgs),
    /// Log N users in and hold their authenticated connections; reports server memory per
    /// connection.
    Idle(IdleArgs),
    /// Each worker connects with its tokens, syncs and closes, again and again (closed loop);
    /// reports full handshakes per server CPU-second.
    Churn(ChurnArgs),
    /// Groups of logged-in users; a few members of each send at a fixed total rate (open loop)
    /// and every member receives every message: reports fan-out deliveries per server
    /// CPU-second and checks every member's receptions.
    Group(GroupArgs),
    /// N users each watching K others while users switch between foreground and background:
    /// reports presence events delivered per server CPU-second and latency, and checks that
    /// each watcher's final view matches the truth.
    Presence(PresenceArgs),
    /// One user uploads media objects on their own QUIC streams: reports MB per server
    /// CPU-second (compare `quinn-upload` from tern-benches) and checks every object reads
    /// back as sent.
    Upload(UploadArgs),
}

impl Scenario {
    /// The options every scenario shares.
    pub fn common(&self) -> &CommonArgs {
        match self {
            Scenario::Chat(a) => &a.common,
            Scenario::Idle(a) => &a.common,
            Scenario::Churn(a) => &a.common,
            Scenario::Group(a) => &a.common,
            Scenario::Presence(a) => &a.common,
            Scenario::Upload(a) => &a.common,
        }
    }

    /// Checks the options before anything connects or a server is spawned.
    pub fn validate(&self) -> Result<(), ArgsError> {
        match self {
            Scenario::Group(a) => a.validate(),
            Scenario::Chat(_)
            | Scenario::Idle(_)
            | Scenario::Churn(_)
            | Scenario::Presence(_)
            | Scenario::Upload(_) => Ok(()),
        }
    }

    /// The scenario's name, as written to the report.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Chat(_) => "chat",
            Scenario::Idle(_) => "idle",
            Scenario::Churn(_) => "churn",
            Scenario::Group(_) => "group",
            Scenario::Presence(_) => "presence",
            Scenario::Upload(_) => "upload",
        }
    }
}

/// Options shared by every scenario.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Server QUIC address (ignored with --spawn-server).
    #[arg(long, default_value = "127.0.0.1:4433")]
    pub server: SocketAddr,
    /// The server certificate's SHA-256 fingerprint (hex). Alternatively --data-dir.
    #[arg(long, conflicts_with = "data_dir")]
    pub cert_fingerprint: Option<String>,
    /// The server's data directory, to read the dev certificate fingerprint from
    /// `dev-cert.sha256`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The file the server's `file:` OTP sender writes codes to (one `identifier code` per line).
    #[arg(long)]
    pub otp_file: Option<PathBuf>,
    /// Users (each one device, one connection). Chat rounds up to an even number.
    #[arg(long)]
    pub users: Option<usize>,
    /// Measured run time after the warm-up (e.g. `10s`, `500ms`, `2m`). Idle: hold time.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Warm-up before measuring; its work is checked for correctness but not measured.
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// QUIC connections sharing one client UDP socket (endpoint). Default 1000; `group` 16:
    /// a group message reaches every member at once, and a burst of hundreds of datagrams
    /// overflows one socket's default receive buffer (208 KiB), after which QUIC's loss
    /// recovery adds seconds of latency that are the load generator's, not the server's.
    #[arg(long)]
    pub connections_per_endpoint: Option<usize>,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 128)]
    pub login_concurrency: usize,
    /// Tag that makes this run's login identifiers unique (default: derived from the clock).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Start a tern-server child on a temporary data dir and free loopback ports (file OTP sender,
    /// raised limits), and stop it at the end.
    #[arg(long)]
    pub spawn_server: bool,
    /// The tern-server binary for --spawn-server (default: next to this executable).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Pin the spawned server to this CPU (taskset); with `--nodes`, node k to CPU `k + this`
    /// modulo the machine's CPUs.
    #[arg(long)]
    pub server_cpu: Option<usize>,
    /// With --spawn-server: start this many nodes of one cluster (each `--node-id nodeK`, one
    /// shared `--secret-file`; pass the shared storage and Redis with `--server-arg`, e.g.
    /// `--server-arg=--storage=cql://127.0.0.1:9042/bench --server-arg=--cluster-redis=redis://127.0.0.1:6399`).
    /// User i connects to node `i % N`, so with 2 nodes both members of every `chat` pair are
    /// on different nodes and every message is routed across nodes. Server CPU and memory are
    /// summed over the nodes. `chat`, `group` and `presence` spread users; `idle` and `churn`
    /// use the first node.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub nodes: u16,
    /// Extra argument for the spawned server (repeatable), e.g. `--server-arg=--idle-timeout-s=60`.
    #[arg(long, allow_hyphen_values = true)]
    pub server_arg: Vec<String>,
    /// Read the server's CPU time and RSS from /proc/PID (when not spawning it).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Also count this process's CPU and memory as the server's (repeatable): the Cassandra
    /// and Redis a cluster uses do work per message that the server's own CPU does not show.
    #[arg(long, value_name = "PID")]
    pub count_pid: Vec<u32>,
    /// The server's admin HTTP address, to report its own metrics over the window (when not
    /// spawning it).
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// After the run, wait at most this long for in-flight sends and deliveries before counting
    /// what is missing as lost.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub grace: Duration,
    /// QUIC keep-alive interval of the clients (default: the SDK's).
    #[arg(long, value_parser = parse_duration)]
    pub keep_alive: Option<Duration>,
    /// With --spawn-server: how long to wait after SIGTERM for the server to exit before
    /// SIGKILL (default 0s: SIGKILL at once; a server under callgrind needs time to write).
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub server_stop_grace: Duration,
    /// How long the clients batch delivery acks (default: the SDK's `ack_delay`; `0s` acks
    /// after every drain of the inbound queue, as before).
    #[arg(long, value_parser = parse_duration)]
    pub ack_delay: Option<Duration>,
    /// Write a latency-over-time chart (SVG): p50/p99 per second of ack and deliver latency.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// `chat` options.
#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Messages per second, total over all senders. Sends are scheduled at their intended times
    /// (open loop) and latency counts from the intended time.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Message text size in bytes (at least 24: the text carries its intended send time).
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
    /// Write a JSON-lines history of every send (invoke / ok / fail / info) and reception to
    /// FILE, for `tern-loadgen check-history FILE`.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
}

/// `check-history` options.
#[derive(Debug, Clone, Args)]
pub struct CheckHistoryArgs {
    /// A history written by `tern-loadgen chat --history FILE`.
    pub file: PathBuf,
}

/// `presence` options.
#[derive(Debug, Clone, Args)]
pub struct PresenceArgs {
    /// Shared options (`--users`: N, default 200).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Users each user watches (K), at most N - 1 and the server's watch limit (256).
    #[arg(long, default_value_t = 16)]
    pub watch: usize,
    /// Foreground/background switches per second, over all users.
    #[arg(long, default_value_t = 20.0)]
    pub churn_rate: f64,
    /// Each user switches at most once per this (default: twice the server's 3 s debounce, so
    /// every switch is published).
    #[arg(long, value_parser = parse_duration, default_value = "6s")]
    pub min_switch_interval: Duration,
}

/// `group` options.
#[derive(Debug, Clone, Args)]
pub struct GroupArgs {
    /// Shared options (`--users` is `--groups` x `--members`; when given it must say so).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Groups (G).
    #[arg(long, default_value_t = 8)]
    pub groups: usize,
    /// Members per group (S), the creator included: 2 to the server's chat limit (1024). Each
    /// member is its own user with one device and one connection.
    #[arg(long, default_value_t = 128)]
    pub members: usize,
    /// Members of each group that send (the first ones; the creator is one of them).
    #[arg(long, default_value_t = 1)]
    pub senders_per_group: usize,
    /// Messages per second, total over all senders of all groups (each is delivered to the
    /// other S - 1 members). Open loop: latency counts from the intended send time.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Message text size in bytes (at least 24: the text carries its intended send time).
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
}

impl GroupArgs {
    /// Checks sizes against the protocol's limits and each other.
    pub fn validate(&self) -> Result<(), ArgsError> {
        let max = tern_sdk::protocol::limits::MAX_CHAT_MEMBERS;
        if !(2..=max).contains(&self.members) {
            return Err(ArgsError::Members {
                given: self.members,
                max,
            });
        }
        if self.groups == 0 {
            return Err(ArgsError::NoGroups);
        }
        if !(1..=self.members).contains(&self.senders_per_group) {
            return Err(ArgsError::Senders {
                given: self.senders_per_group,
                members: self.members,
            });
        }
        let users = self.groups.saturating_mul(self.members);
        if let Some(given) = self.common.users.filter(|u| *u != users) {
            return Err(ArgsError::Users {
                given,
                groups: self.groups,
                members: self.members,
            });
        }
        Ok(())
    }
}

/// Options that contradict each other or the protocol's limits (found before connecting).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// A group size the server cannot have.
    #[error(
        "--members {given}: a group has 2 to {max} members (the creator included; the server's limit is {max})"
    )]
    Members {
        /// What was asked for.
        given: usize,
        /// The protocol's limit.
        max: usize,
    },
    /// `--groups 0`.
    #[error("--groups must be at least 1")]
    NoGroups,
    /// More senders than members, or none.
    #[error("--senders-per-group {given}: must be 1 to --members ({members})")]
    Senders {
        /// What was asked for.
        given: usize,
        /// Members per group.
        members: usize,
    },
    /// `--users` disagrees with the group sizes.
    #[error(
        "--users {given} disagrees with --groups {groups} x --members {members}; leave --users out"
    )]
    Users {
        /// What was asked for.
        given: usize,
        /// Groups.
        groups: usize,
        /// Members per group.
        members: usize,
    },
}

/// `idle` options.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `upload` options.
#[derive(Debug, Clone, Args)]
pub struct UploadArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Size of each object, MiB.
    #[arg(long, default_value_t = 64)]
    pub size_mib: usize,
    /// Objects.
    #[arg(long, default_value_t = 8)]
    pub count: usize,
    /// Uploads in flight at once.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
}

/// `churn` options.
#[derive(Debug, Clone, Args)]
pub struct ChurnArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Resume TLS sessions: each worker keeps one TLS configuration (and its session cache)
    /// across its cycles, so every cycle after its first is a resumed handshake. Without it
    /// every cycle starts with an empty cache: full handshakes.
    #[arg(long)]
    pub resume: bool,
    /// With `--resume`: send `Hello` as 0-RTT early data.
    #[arg(long, requires = "resume")]
    pub zero_rtt: bool,
}

impl CommonArgs {
    /// `--connections-per-endpoint`, or the scenario's default.
    pub fn per_endpoint(&self, default: usize) -> usize {
        self.connections_per_endpoint.unwrap_or(default).max(1)
    }
}

/// Connections per client UDP socket unless `--connections-per-endpoint` says otherwise.
pub const DEFAULT_PER_ENDPOINT: usize = 1000;

/// Parses `10s`, `250ms`, `2m`, `1h`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s, 500ms or 2m"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "us" | "µs" => value / 1_000_000.0,
        "m" | "min" | "mins" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} in {s:?}")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn the_cli_parses_the_documented_command() {
        let cli = Cli::try_parse_from([
            "tern-loadgen",
            "chat",
            "--spawn-server",
            "--users",
            "100",
            "--duration",
            "10s",
            "--json",
            "out.json",
        ])
        .unwrap();
        let Command::Scenario(Scenario::Chat(a)) = cli.command else {
            panic!("not chat")
        };
        assert!(a.common.spawn_server);
        assert_eq!(a.common.users, Some(100));
        assert_eq!(a.rate, 1000.0);
    }

    fn group(args: &[&str]) -> GroupArgs {
        let cli = Cli::try_parse_from(["tern-loadgen", "group"].iter().chain(args)).unwrap();
        let Command::Scenario(Scenario::Group(a)) = cli.command else {
            panic!("not group")
        };
        a
    }

    #[test]
    fn group_sizes_are_checked_before_connecting() {
        let ok = group(&[
            "--groups",
            "2",
            "--members",
            "8",
            "--senders-per-group",
            "2",
        ]);
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(
            group(&["--groups", "1", "--members", "1024"]).validate(),
            Ok(())
        );
        assert_eq!(
            group(&["--members", "1025"]).validate(),
            Err(ArgsError::Members {
                given: 1025,
                max: 1024
            })
        );
        assert!(matches!(
            group(&["--members", "1"]).validate(),
            Err(ArgsError::Members { .. })
        ));
        assert_eq!(
            group(&["--groups", "0"]).validate(),
            Err(ArgsError::NoGroups)
        );
        assert!(matches!(
            group(&["--members", "4", "--senders-per-group", "5"]).validate(),
            Err(ArgsError::Senders { .. })
        ));
        assert!(matches!(
            group(&["--groups", "2", "--members", "8", "--users", "10"]).validate(),
            Err(ArgsError::Users { .. })
        ));
        assert_eq!(
            group(&["--groups", "2", "--members", "8", "--users", "16"]).validate(),
            Ok(())
        );
    }
}
