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
    /// Print every member's delivered and read watermarks; with SEQ, who that message (sent
    /// by this user) was delivered to and read by, and when.
    Receipts {
        /// The chat id.
        chat: u64,
        /// A message of this user's.
        seq: Option<u64>,
    },
    /// Reply to a message; the text comes from stdin when TEXT is absent or `-`.
    Reply(ReplyArgs),
    /// React to a message with an emoji (one per user per message: a new one replaces it).
    React(ReactArgs),
    /// Replace the text of one of this user's messages (within the server's edit window).
    Edit(EditArgs),
    /// Delete messages for everyone (own ones within the delete window; group admins: any), or
    /// with --for-me only on this user's devices.
    Delete(DeleteArgs),
    /// Groups: create one, change its members, admins, title and settings, or show it.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Stay connected and print every event: first what was missed, then live.
    Tail(TailArgs),
    /// Show a profile (this user's without USER); with --name, --about, --username or
    /// --clear-username, change this user's.
    Profile(ProfileArgs),
    /// Find a user by @username, phone number (+...) or email address. Lookups are limited per
    /// day, found or not.
    Lookup {
        /// `@ann`, `ann`, `+15550001111` or `ann@example.org`.
        query: String,
    },
    /// List contacts, or add / remove one.
    Contacts {
        #[command(subcommand)]
        action: Option<ContactsAction>,
    },
    /// Block a user: they can no longer reach this user in their direct chat, nor see presence,
    /// last seen, photo, about, profile changes or typing. They are not told.
    Block {
        /// The user id.
        user: u64,
    },
    /// Lift a block (messages sent meanwhile stay undelivered).
    Unblock {
        /// The user id.
        user: u64,
    },
    /// List the users this user blocked.
    Blocked,
    /// Show privacy settings; with flags, change them. AUDIENCE: everyone, contacts, nobody,
    /// or contacts_except:ID,ID,...
    Privacy(PrivacyArgs),
    /// Print the presence of users once (online, last seen, or hidden by their privacy).
    Presence {
        /// The user ids.
        #[arg(required = true, num_args = 1..)]
        users: Vec<u64>,
    },
    /// Watch users' presence: the current state, then every change, until --timeout or Ctrl-C.
    Watch(WatchArgs),
    /// Upload a file (resuming across reconnects, with a progress bar) and send it to a chat.
    SendFile(SendFileArgs),
    /// Download a media object (by its id, from `history`/`tail`) to a file; resumes a partial
    /// file left by an earlier run.
    Download(DownloadArgs),
    /// Tell a chat's members this user is typing (or with --stop, stopped).
    Typing {
        /// The chat id.
        chat: u64,
        /// Stopped typing instead.
        #[arg(long)]
        stop: bool,
    },
}

/// `tern send-file CHAT PATH`.
#[derive(Debug, Args)]
pub struct SendFileArgs {
    /// The chat id.
    pub chat: u64,
    /// The file.
    pub path: std::path::PathBuf,
    /// MIME type [default: from the file name's extension].
    #[arg(long)]
    pub mime: Option<String>,
    /// Text shown with it.
    #[arg(long)]
    pub caption: Option<String>,
    /// Do not draw a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `tern download MEDIA PATH`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The media id (64 hex digits).
    pub media: String,
    /// Where to write it.
    pub path: std::path::PathBuf,
    /// The server's thumbnail instead of the original.
    #[arg(long)]
    pub thumbnail: bool,
    /// Do not draw a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `tern profile`.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// Whose profile to show (default: this user's). Not with the change flags.
    #[arg(conflicts_with_all = ["name", "about", "username", "clear_username"])]
    pub user: Option<u64>,
    /// New display name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// New about text (`""` clears it).
    #[arg(long, value_name = "TEXT")]
    pub about: Option<String>,
    /// New username (3 to 32 of a-z, 0-9, _ and ., starting with a letter).
    #[arg(long, value_name = "NAME", conflicts_with = "clear_username")]
    pub username: Option<String>,
    /// Drop this user's username.
    #[arg(long)]
    pub clear_username: bool,
}

/// `tern contacts ...`.
#[derive(Debug, Subcommand)]
pub enum ContactsAction {
    /// Add a user to the contacts.
    Add {
        /// The user id.
        user: u64,
    },
    /// Remove a user from the contacts.
    Remove {
        /// The user id.
        user: u64,
    },
}

/// `tern privacy`.
#[derive(Debug, Args)]
pub struct PrivacyArgs {
    /// Who sees when this user was last online (reciprocal: hiding it hides others' too).
    #[arg(long, value_name = "AUDIENCE")]
    pub last_seen: Option<String>,
    /// Who sees that this user is online (reciprocal).
    #[arg(long, value_name = "AUDIENCE")]
    pub online: Option<String>,
    /// Who sees the profile photo.
    #[arg(long, value_name = "AUDIENCE")]
    pub photo: Option<String>,
    /// Who sees the about text.
    #[arg(long, value_name = "AUDIENCE")]
    pub about: Option<String>,
}

/// `tern watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The user ids.
    #[arg(required = true, num_args = 1..)]
    pub users: Vec<u64>,
    /// Exit 0 after this long (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Exit 0 after printing this many lines (the snapshot counts).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
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

/// The idempotency key of a message command, as `send` has it.
#[derive(Debug, Args)]
pub struct MsgIdArg {
    /// Idempotency key: repeating the command with the same key (from this profile) stores the
    /// message once.
    #[arg(long, value_name = "N")]
    pub client_msg_id: Option<u64>,
}

/// `tern reply`.
#[derive(Debug, Args)]
pub struct ReplyArgs {
    /// The chat id.
    pub chat: u64,
    /// The message replied to.
    pub seq: u64,
    /// The text; absent or `-` reads stdin.
    pub text: Option<String>,
    /// Mention this member (repeatable).
    #[arg(long = "mention", value_name = "USER")]
    pub mentions: Vec<u64>,
    #[command(flatten)]
    pub id: MsgIdArg,
}

/// `tern react`.
#[derive(Debug, Args)]
pub struct ReactArgs {
    /// The chat id.
    pub chat: u64,
    /// The message reacted to.
    pub seq: u64,
    /// The emoji (not with --remove).
    #[arg(required_unless_present = "remove")]
    pub emoji: Option<String>,
    /// Remove this user's reaction instead.
    #[arg(long, conflicts_with = "emoji")]
    pub remove: bool,
    #[command(flatten)]
    pub id: MsgIdArg,
}

/// `tern edit`.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// The chat id.
    pub chat: u64,
    /// The message to edit (this user's).
    pub seq: u64,
    /// The new text; absent or `-` reads stdin.
    pub text: Option<String>,
    #[command(flatten)]
    pub id: MsgIdArg,
}

/// `tern delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The chat id.
    pub chat: u64,
    /// The messages (for everyone: one delete message each, in this order).
    #[arg(required = true, num_args = 1..)]
    pub seqs: Vec<u64>,
    /// Hide them on this user's devices only; the other members keep them.
    #[arg(long)]
    pub for_me: bool,
    /// Idempotency key of the (single) delete for everyone.
    #[arg(long, value_name = "N", conflicts_with = "for_me")]
    pub client_msg_id: Option<u64>,
}

/// `tern group ...`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group; this user becomes its admin.
    Create {
        /// The title.
        title: String,
        /// A member to add besides this user (repeatable).
        #[arg(long = "member", value_name = "USER")]
        members: Vec<u64>,
    },
    /// Add members (admins; everyone when the group's settings allow it).
    Add {
        /// The group's chat id.
        chat: u64,
        /// The users to add.
        #[arg(required = true, num_args = 1..)]
        users: Vec<u64>,
    },
    /// Remove a member (admins only).
    Remove {
        /// The group's chat id.
        chat: u64,
        /// The member.
        user: u64,
    },
    /// Leave the group.
    Leave {
        /// The group's chat id.
        chat: u64,
    },
    /// Make a member an admin, or with --demote take admin rights away (admins only).
    Admin {
        /// The group's chat id.
        chat: u64,
        /// The member.
        user: u64,
        /// Take admin rights away instead.
        #[arg(long)]
        demote: bool,
    },
    /// Show the title, description, settings and members.
    Info {
        /// The group's chat id.
        chat: u64,
    },
    /// Change the title and/or the description.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true)))]
    Edit {
        /// The group's chat id.
        chat: u64,
        /// The new title.
        #[arg(long, group = "change")]
        title: Option<String>,
        /// The new description (`""` clears it).
        #[arg(long, group = "change")]
        description: Option<String>,
    },
    /// Change settings (admins only); settings not given stay as they are.
    #[command(group(clap::ArgGroup::new("setting").required(true).multiple(true)))]
    Settings {
        /// The group's chat id.
        chat: u64,
        /// Whether members who are not admins may add members.
        #[arg(long, group = "setting", value_name = "BOOL", action = clap::ArgAction::Set)]
        members_can_add: Option<bool>,
        /// Whether members who are not admins may change title and description.
        #[arg(long, group = "setting", value_name = "BOOL", action = clap::ArgAction::Set)]
        members_can_edit_info: Option<bool>,
        /// Whether only admins may send.
        #[arg(long, group = "setting", value_name = "BOOL", action = clap::ArgAction::Set)]
        announcement_only: Option<bool>,
    },
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
    /// Also watch these users' presence (repeatable) and print their changes.
    #[arg(long = "watch", value_name = "USER")]
    pub watch: Vec<u64>,
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
    /// This user's membership of a group ended.
    ChatLeft,
    /// This user hid messages for themself.
    HiddenForMe,
    /// A contact's or chat peer's profile changed.
    ProfileChanged,
    /// Someone typing in a chat (never saved: only while tail runs).
    Typing,
    /// A watched user's presence (with `tail --watch`).
    Presence,
}
