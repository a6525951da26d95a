//! One function per verb. Each gets a [`Ctx`] (flags, output, the locked profile) and returns a
//! [`Failure`] on error; `main` alone turns failures into exit codes.
//!
//! The cursor rule: only `tail` saves the sync cursor, and only after printing. Every other
//! command lets the SDK catch up in memory on connect (it cannot not: the server pushes live
//! updates), but leaves the saved cursor alone, so the next `tail` still prints each update once.

mod account;
mod chat;
mod group;
mod media;
mod message;
mod social;
mod tail;

use tern_sdk::protocol::SessionInfo;

use crate::args::{Command, Global};
use crate::connection::{Connection, Target};
use crate::failure::Failure;
use crate::output::Output;
use crate::profile::{Profile, ProfileStore};

/// What every command works with.
#[derive(Debug)]
pub struct Ctx {
    /// Global flags.
    pub global: Global,
    /// Where results go.
    pub out: Output,
    /// The locked profile files.
    pub store: ProfileStore,
    /// The profile as loaded (and as updated by the command).
    pub profile: Profile,
}

impl Ctx {
    /// Connects as the profile's device: fails with a usage error when it is not logged in.
    async fn connect(&mut self) -> Result<(Connection, SessionInfo), Failure> {
        let session = match (&self.profile.session, self.profile.logged_in()) {
            (Some(s), true) => *s,
            _ => {
                let name = self.store.name();
                return Err(Failure::Usage(format!(
                    "profile {name} is not logged in: run `tern --profile {name} login IDENTIFIER`"
                )));
            }
        };
        let target = Target::resolve(&self.global, &self.profile, false)?;
        let mut conn = Connection::start(&self.global, &target, &self.profile, "", true)?;
        let timeout = self.global.connect_timeout;
        conn.wait_connected(&self.store, &mut self.profile, timeout)
            .await?;
        Ok((conn, session))
    }

    /// Ends a command's connection, saving refreshed tokens.
    async fn finish(&mut self, conn: Connection) -> Result<(), Failure> {
        conn.finish(&self.store, &mut self.profile).await
    }
}

/// Runs `command`; a failure's advice names this profile and identifier.
pub async fn run(ctx: &mut Ctx, command: Command) -> Result<(), Failure> {
    let identifier = match &command {
        Command::Login(args) => Some(args.identifier.clone()),
        _ => ctx.profile.identifier.clone(),
    };
    dispatch(ctx, command)
        .await
        .map_err(|f| f.for_profile(ctx.store.name(), identifier.as_deref()))
}

async fn dispatch(ctx: &mut Ctx, command: Command) -> Result<(), Failure> {
    match command {
        Command::Login(args) => account::login(ctx, args).await,
        Command::Logout => account::logout(ctx).await,
        Command::Whoami => account::whoami(ctx),
        Command::Devices => account::devices(ctx).await,
        Command::Revoke { device } => account::revoke(ctx, device).await,
        Command::Chats => chat::chats(ctx).await,
        Command::Open { user } => chat::open(ctx, user).await,
        Command::Send(args) => chat::send(ctx, args).await,
        Command::History(args) => chat::history(ctx, args).await,
        Command::Read { chat, seq } => chat::read(ctx, chat, seq).await,
        Command::Receipts { chat, seq } => chat::receipts(ctx, chat, seq).await,
        Command::Reply(args) => message::reply(ctx, args).await,
        Command::React(args) => message::react(ctx, args).await,
        Command::Edit(args) => message::edit(ctx, args).await,
        Command::Delete(args) => message::delete(ctx, args).await,
        Command::Group(command) => group::run(ctx, command).await,
        Command::Tail(args) => tail::tail(ctx, args).await,
        Command::Profile(args) => social::profile(ctx, args).await,
        Command::Lookup { query } => social::lookup(ctx, &query).await,
        Command::Contacts { action } => social::contacts(ctx, action).await,
        Command::Block { user } => social::block(ctx, user, true).await,
        Command::Unblock { user } => social::block(ctx, user, false).await,
        Command::Blocked => social::blocked(ctx).await,
        Command::Privacy(args) => social::privacy(ctx, args).await,
        Command::Presence { users } => social::presence(ctx, users).await,
        Command::Watch(args) => social::watch(ctx, args).await,
        Command::Typing { chat, stop } => social::typing(ctx, chat, !stop).await,
        Command::SendFile(args) => media::send_file(ctx, args).await,
        Command::Download(args) => media::download(ctx, args).await,
    }
}
