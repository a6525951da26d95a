//! The command line: global connection flags (each with a `TERN_*` variable) and one subcommand
//! per verb. Every flag is listed in `docs/cli.md`; keep the two in step.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `tern`: log in, list, send and watch on a Tern server, by hand or from a script.
#[derive(Debug, Parser)]
#[command(name = "tern", version, about, long_about = None)]
pub struct Cli {
    /// Flags every command accepts.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Connection, profile and output flags. `global = true` lets them stand before or after the
/// subcommand, as people type them both ways.
#[derive(Debug, Args)]
pub struct Global {
    /// Server QUIC address, HOST:PORT. Remembered by `login`; defaults to 127.0.0.1:4433 there.
    #[arg(long, global = true, env = "TERN_SERVER", value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// Pin the server certificate with this SHA-256 fingerprint (hex, colons allowed).
    #[arg(long, global = true, env = "TERN_CERT_FINGERPRINT", value_name = "HEX")]
    pub cert_fingerprint: Option<String>,
    /// Read the fingerprint to pin from the server's data directory (`dev-cert.sha256`).
    #[arg(
        long,
        global = true,
        env = "TERN_SERVER_DATA_DIR",
        value_name = "DIR",
        conflicts_with = "cert_fingerprint"
    )]
    pub server_data_dir: Option<PathBuf>,
    /// Where profiles live (default: the platform config dir, e.g. ~/.config/tern).
    #[arg(long, global = true, env = "TERN_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Profile name: one logged-in device per profile, so one machine can hold several users.
    #[arg(
        long,
        global = true,
        env = "TERN_PROFILE",
        value_name = "NAME",
        default_value = "default"
    )]
    pub profile: String,
    /// Print one JSON object per line instead of text (TERN_JSON: any value but 0/false/no/off).
    #[arg(long, global = true, env = "TERN_JSON",
          value_parser = clap::builder::FalseyValueParser::new())]
    pub json: bool,
    /// Give up connecting after this long (exit 3). The SDK alone would retry forever.
    #[arg(long, global = true, env = "TERN_CONNECT_TIMEOUT", value_name = "DURATION",
          default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Give up waiting for an answer after this long (exit 3).
    #[arg(long, global = true, env = "TERN_REQUEST_TIMEOUT", value_name = "DURATION",
          default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in with a one-time code: requests it, then reads it (prompt, --code or --otp-file).
    Login(LoginArgs),
    /// Revoke this device on the server and forget its tokens.
    Logout,
    /// Show the profile's user, device and server (no network).
    Whoami,
    /// List the user's devices.
    Devices,
    /// Revoke one of the user's devices; its connections are closed at once.
    Revoke {
        /// The device id (see `tern devices`).
        device: u64,
    },
    /// List the user's chats.
    Chats,
    /// Open (or find) the direct chat with a user.
    Open {
        /// The other user's id (they see it in `tern whoami`).
        user: u64,
    },
    /// Send a text message; the text comes from stdin when TEXT is absent or `-`.
    Send(SendArgs),
    /// Print a range of a chat's messages (default: the last --limit).
    History(HistoryArgs),
    /// Mark a chat read up to a seq.
    Read {
        /// The chat id.
        chat: u64,
        /// Highest seq read.
        seq: u64,
    },
    /// Print every member's delivered and read watermarks.
    Receipts {
        /// The chat id.
        chat: u64,
    },
    /// Stay connected and print every event: first what was missed, then live.
    Tail(TailArgs),
}

/// `tern login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Phone number (E.164, e.g. +15550001111) or email address.
    pub identifier: String,
    /// The code, for scripts (otherwise a terminal prompt asks for it).
    #[arg(long, env = "TERN_CODE", conflicts_with = "otp_file")]
    pub code: Option<String>,
    /// Read the code from the server's OTP file (`tern-server --otp-sender file:PATH`).
    #[arg(long, env = "TERN_OTP_FILE", value_name = "FILE")]
    pub otp_file: Option<PathBuf>,
    /// Name shown in `tern devices` (default: "tern CLI (profile NAME)").
    #[arg(long, value_name = "NAME")]
    pub device_name: Option<String>,
}

/// `tern send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The chat id.
    pub chat: u64,
    /// The text; absent or `-` reads stdin.
    pub text: Option<String>,
    /// Idempotency key: repeating a send with the same key (from this profile) stores it once.
    #[arg(long, value_name = "N")]
    pub client_msg_id: Option<u64>,
}

/// `tern history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The chat id.
    pub chat: u64,
    /// First seq to print (default: the last --limit messages).
    #[arg(long, value_name = "SEQ")]
    pub from: Option<u64>,
    /// At most this many messages (capped by the server's page size).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u32,
}

/// `tern tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Exit 0 after printing this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Exit 0 after this long (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Print only these kinds of event (repeatable); the others still count as seen.
    #[arg(long, value_enum, value_name = "KIND")]
    pub only: Vec<EventKind>,
}

/// The kinds of event `tail` prints; the names are the JSON `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum EventKind {
    /// A message.
    Message,
    /// A member's receipt watermarks moved.
    Receipt,
    /// This user joined a chat.
    ChatJoined,
}
