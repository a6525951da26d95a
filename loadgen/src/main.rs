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
mod idle;
mod ledger;
mod metrics;
mod openloop;
mod otp;
mod plot;
mod procstat;
mod report;
mod run;
mod spawn;
mod stats;
mod users;

use clap::Parser;

use crate::cli::{Cli, EXIT_FAILURE, EXIT_VIOLATION, Scenario};
use crate::run::{Target, Ui};

fn main() {
    let cli = Cli::parse();
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
    let code = match runtime.block_on(run(&cli)) {
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

/// Runs the scenario; `Ok(false)` when the delivery check failed.
async fn run(cli: &Cli) -> anyhow::Result<bool> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    cli.scenario.validate()?;
    let common = cli.scenario.common();
    let ui = Ui::new(common.no_progress);
    let stop = run::stop_flag();
    let mut target = Target::resolve(common).await?;
    let result = match &cli.scenario {
        Scenario::Chat(a) => chat::run(a, &target, ui, stop).await,
        Scenario::Idle(a) => idle::run(a, &target, ui, stop).await,
        Scenario::Churn(a) => churn::run(a, &target, ui, stop).await,
        Scenario::Group(a) => group::run(a, &target, ui, stop).await,
    };
    if let Some(server) = target.spawned.as_mut() {
        server.stop();
    }
    let mut report = result?;
    report.command = std::env::args().collect();
    print!("{}", report.human());
    if let Some(path) = &common.json {
        report.write_json(path)?;
        println!("report written to {}", path.display());
    }
    if let Some(path) = &common.plot {
        let kinds: &[&str] = match cli.scenario {
            Scenario::Chat(_) | Scenario::Group(_) => &["ack", "deliver"],
            _ => &["connect", "sync"],
        };
        let title = format!(
            "tern-loadgen {}: latency per second (p50 solid, p99 dashed)",
            cli.scenario.name()
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
