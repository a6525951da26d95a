//! `tern`: a command-line client for Tern, built on tern-sdk.
//!
//! One invocation is one command: parse flags, lock and load the profile, connect (bounded by
//! `--connect-timeout`), run the command, save what changed, exit. Exit codes (see `docs/cli.md`):
//! 0 success, 1 usage, 2 refused by the server, 3 cannot connect, 4 local failure. They are
//! decided in one place, [`failure::Failure::exit_code`], and printed in one place, here.

mod args;
mod commands;
mod connection;
mod failure;
mod output;
mod profile;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::args::Cli;
use crate::failure::{EXIT_USAGE, Failure};
use crate::output::Output;
use crate::profile::ProfileStore;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // clap exits 2 on usage errors; 2 means "refused by the server" here.
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_USAGE),
            };
        }
    };
    let out = Output::new(cli.global.json);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            out.failure(&failure);
            ExitCode::from(failure.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Local(format!("starting the runtime: {e}")))?;
    let store = ProfileStore::open(cli.global.home.as_deref(), &cli.global.profile)?;
    let profile = store.load()?;
    let mut ctx = commands::Ctx {
        out: Output::new(cli.global.json),
        global: cli.global,
        store,
        profile,
    };
    runtime.block_on(commands::run(&mut ctx, cli.command))
}
