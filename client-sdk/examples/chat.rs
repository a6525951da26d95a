//! Two users log in against a running tern-server and exchange messages.
//!
//! Start a server first (see README.md), then:
//!
//! ```text
//! cargo run -p tern-sdk --example chat -- --data-dir ./tern-data
//! ```
//!
//! The example pins the dev certificate from `<data-dir>/dev-cert.sha256`. OTP codes are read
//! from `--otp-file` when the server uses `--otp-sender file:PATH`; otherwise the example asks
//! you to type each code from the server log.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use tern_sdk::{Client, ClientConfig, ClientEvent, Events, Trust};

#[derive(Debug, Parser)]
struct Args {
    /// Server QUIC address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    server: SocketAddr,
    /// The server's data directory (for the dev certificate fingerprint).
    #[arg(long, default_value = "./tern-data")]
    data_dir: PathBuf,
    /// Pin this SHA-256 fingerprint instead of reading it from the data directory.
    #[arg(long)]
    fingerprint: Option<String>,
    /// File the server writes OTP codes to (`--otp-sender file:PATH`).
    #[arg(long)]
    otp_file: Option<PathBuf>,
    /// Messages each user sends.
    #[arg(long, default_value_t = 3)]
    messages: usize,
}

async fn code_for(args: &Args, identifier: &str, skip: usize) -> anyhow::Result<String> {
    if let Some(path) = &args.otp_file {
        for _ in 0..300 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().skip(skip).collect();
            if let Some(code) = lines.iter().rev().find_map(|l| {
                l.strip_prefix(identifier)
                    .and_then(|r| r.strip_prefix(' '))
                    .map(str::to_owned)
            }) {
                return Ok(code);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("no code for {identifier} appeared in {}", path.display());
    }
    println!("Enter the code for {identifier} from the server log:");
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await??;
    Ok(line.trim().to_owned())
}

fn lines_in(path: Option<&Path>) -> usize {
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .map_or(0, |t| t.lines().count())
}

async fn log_in(
    args: &Args,
    trust: &Trust,
    identifier: &str,
    device: &str,
) -> anyhow::Result<(Client, Events)> {
    let mut config = ClientConfig::new(args.server, trust.clone());
    config.device_name = device.into();
    let (client, events) = Client::start(config)?;
    let skip = lines_in(args.otp_file.as_deref());
    client
        .request_otp(identifier)
        .await
        .context("requesting a code")?;
    let code = code_for(args, identifier, skip).await?;
    let session = client
        .verify_otp(identifier, &code)
        .await
        .context("verifying the code")?;
    println!(
        "{identifier} logged in as user {} device {}",
        session.user_id, session.device_id
    );
    Ok((client, events))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fingerprint = match &args.fingerprint {
        Some(f) => f.clone(),
        None => std::fs::read_to_string(args.data_dir.join("dev-cert.sha256"))
            .context("reading dev-cert.sha256 (pass --fingerprint or --data-dir)")?,
    };
    let trust = Trust::pinned_hex(&fingerprint)?;
    let (alice, mut alice_events) =
        log_in(&args, &trust, "alice@example.org", "alice's laptop").await?;
    let (bob, mut bob_events) = log_in(&args, &trust, "bob@example.org", "bob's phone").await?;
    let bob_id = bob
        .snapshot()
        .await?
        .session
        .context("bob is logged in")?
        .user_id;
    let chat = alice.open_direct_chat(bob_id).await?;
    println!("direct chat {} opened", chat.chat_id);

    for i in 1..=args.messages {
        let sent = alice
            .send_text(chat.chat_id, format!("hello bob #{i}"))
            .await?;
        println!("alice -> bob: seq {} stored at {} ms", sent.seq, sent.ts_ms);
        let sent = bob
            .send_text(chat.chat_id, format!("hi alice #{i}"))
            .await?;
        println!("bob -> alice: seq {} stored", sent.seq);
    }
    let expected = 2 * args.messages;
    for (name, events) in [("alice", &mut alice_events), ("bob", &mut bob_events)] {
        let mut seen = 0;
        while seen < expected {
            match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
                Ok(Some(ClientEvent::Message { message, own, .. })) => {
                    seen += 1;
                    let who = if own { "me" } else { "peer" };
                    println!(
                        "{name} got seq {} from {who}: {:?}",
                        message.seq, message.body
                    );
                }
                Ok(Some(ClientEvent::Receipt(r))) => {
                    println!(
                        "{name} sees receipt: user {} delivered {} read {}",
                        r.user_id, r.delivered_seq, r.read_seq
                    );
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    bail!("{name} stopped receiving after {seen} of {expected} messages")
                }
            }
        }
    }
    bob.mark_read(chat.chat_id, expected as u64).await?;
    let receipts = alice.receipts(chat.chat_id).await?;
    println!("receipts now: {receipts:?}");
    alice.close().await;
    bob.close().await;
    println!("done");
    Ok(())
}
