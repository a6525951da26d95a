//! `tern-loadgen`: drives a Tern server through the production protocol (tern-sdk over QUIC) and
//! reports throughput, HDR latency percentiles, server CPU and memory, and a delivery check that
//! matches every acknowledged message against what its recipient received.
//!
//! ```text
//! cargo run --release -p tern-loadgen -- chat --spawn-server --users 100 --duration 10s --json out.json
//! cargo run --release -p tern-loadgen -- group --spawn-server --groups 8 --members 128 --rate 200 --json out.json
//! ```

mod chat;
mod churn;
mod cli;
mod group;
mod history;
mod idle;
mod ledger;
mod metrics;
mod openloop;
mod otp;
mod plot;
mod presence;
mod procstat;
mod report;
mod run;
mod spawn;
mod stats;
mod upload;
mod users;

use clap::Parser;

use crate::cli::{Cli, Command, EXIT_FAILURE, EXIT_VIOLATION, Scenario};
use crate::run::{Target, Ui};

fn main() {
    let cli = Cli::parse();
    let scenario = match cli.command {
        Command::Scenario(s) => s,
        Command::CheckHistory(a) => std::process::exit(check_history(&a.file)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("loadgen")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tern-loadgen: starting the runtime: {e}");
            std::process::exit(EXIT_FAILURE);
        }
    };
    let code = match runtime.block_on(run(&scenario)) {
        Ok(ok) if ok => 0,
        Ok(_) => EXIT_VIOLATION,
        Err(e) => {
            eprintln!("tern-loadgen: {e:#}");
            EXIT_FAILURE
        }
    };
    // Client drivers may still be winding down; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}

/// `check-history FILE`: prints the summary; the exit code.
fn check_history(path: &std::path::Path) -> i32 {
    match history::check_file(path) {
        Ok(summary) => {
            print!("{}", summary.human());
            if summary.violations() == 0 {
                println!("history check passed");
                0
            } else {
                println!("history check FAILED");
                EXIT_VIOLATION
            }
        }
        Err(e) => {
            eprintln!("tern-loadgen: {e:#}");
            EXIT_FAILURE
        }
    }
}

/// Runs the scenario; `Ok(false)` when the delivery check failed.
async fn run(scenario: &Scenario) -> anyhow::Result<bool> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    scenario.validate()?;
    let common = scenario.common();
    let ui = Ui::new(common.no_progress);
    let stop = run::stop_flag();
    let mut target = Target::resolve(common).await?;
    let result = match scenario {
        Scenario::Chat(a) => chat::run(a, &target, ui, stop).await,
        Scenario::Idle(a) => idle::run(a, &target, ui, stop).await,
        Scenario::Churn(a) => churn::run(a, &target, ui, stop).await,
        Scenario::Group(a) => group::run(a, &target, ui, stop).await,
        Scenario::Presence(a) => presence::run(a, &target, ui, stop).await,
        Scenario::Upload(a) => upload::run(a, &target, ui, stop).await,
    };
    target.stop();
    let mut report = result?;
    report.command = std::env::args().collect();
    print!("{}", report.human());
    if let Some(path) = &common.json {
        report.write_json(path)?;
        println!("report written to {}", path.display());
    }
    if let Some(path) = &common.plot {
        let kinds: &[&str] = match scenario {
            Scenario::Chat(_) | Scenario::Group(_) => &["ack", "deliver"],
            Scenario::Presence(_) => &["online", "offline"],
            _ => &["connect", "sync"],
        };
        let title = format!(
            "tern-loadgen {}: latency per second (p50 solid, p99 dashed)",
            scenario.name()
        );
        plot::latency_chart(
            path,
            &title,
            &report.latency_per_second_us,
            kinds,
            report.warmup_s,
        )?;
        println!("latency chart written to {}", path.display());
    }
    Ok(report.ok)
}
