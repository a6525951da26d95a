//! `upload`: one logged-in user uploads `--count` media objects of `--size-mib` MiB each,
//! `--streams` at once, on its own QUIC streams (the SDK's resumable upload, verified by the
//! server's SHA-256). Reports MB per wall second and MB per server CPU-second; the bare-quinn
//! ceiling for the same bytes is `quinn-upload` (benches), run alongside.
//!
//! Each object is distinct (its first bytes carry its number), so nothing is deduplicated, and
//! each is downloaded once after the window and compared with what was sent.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_sdk::protocol::{MediaKind, MediaVariant};
use tern_sdk::{MediaSource, UploadSpec};

use crate::cli::UploadArgs;
use crate::report::{Report, UploadSummary};
use crate::run::{self, Target, Ui};
use crate::users::{self, Fleet};

/// Runs the scenario.
pub async fn run(
    args: &UploadArgs,
    target: &Target,
    ui: Ui,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Report> {
    let c = &args.common;
    let base = users::base_config(target.addr, &target.fingerprint, c.keep_alive, c.ack_delay)?;
    let fleet = Fleet::new(&base, 1, 1)?;
    let mut users = run::login_users(c, target, &fleet, 1, ui, &stop).await?;
    let user = users.remove(0);
    let size = args.size_mib.max(1) << 20;
    let objects: Vec<Bytes> = (0..args.count.max(1))
        .map(|i| {
            let mut v = vec![0x5a_u8; size];
            v[..16].copy_from_slice(&format!("tern-load{i:07}").into_bytes()[..16]);
            Bytes::from(v)
        })
        .collect();
    let spec = UploadSpec {
        kind: MediaKind::Document,
        mime: "application/octet-stream".into(),
        encrypted: false,
        declared: None,
    };
    // Hash the sources before the window: the client's SHA-256 is not the server's work.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = target.sample();
    let t0 = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(args.streams.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for object in objects.clone() {
        let permit = gate.clone().acquire_owned().await?;
        let client = user.client.clone();
        let spec = spec.clone();
        tasks.spawn(async move {
            let r = client
                .upload(MediaSource::Bytes(object), spec, |_, _| {})
                .await;
            drop(permit);
            r
        });
    }
    let mut uploaded = Vec::new();
    let mut errors = 0;
    let mut resumed = 0;
    while let Some(r) = tasks.join_next().await {
        match r? {
            Ok(u) => {
                resumed += u.attempts.len().saturating_sub(1) as u64;
                uploaded.push(u.info);
            }
            Err(e) => {
                eprintln!("upload failed: {e}");
                errors += 1;
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let after = target.sample();
    let server_cpu_s = match (before, after) {
        (Some(b), Some(a)) => Some(a.cpu_s - b.cpu_s),
        _ => None,
    };
    // The check, outside the window: every stored object reads back as sent.
    let mut mismatched = 0;
    for info in &uploaded {
        let want = objects
            .iter()
            .find(|o| ring_sha(o) == info.media.0)
            .cloned();
        match (
            want,
            user.client
                .download(info.media, MediaVariant::Original, u64::MAX)
                .await,
        ) {
            (Some(w), Ok((_, got))) if got == w => {}
            _ => mismatched += 1,
        }
    }
    run::close_all(vec![user.client]).await;
    let mb = (uploaded.len() * size) as f64 / 1e6;
    let summary = UploadSummary {
        objects: uploaded.len() as u64,
        object_bytes: size as u64,
        streams: args.streams as u64,
        mb,
        mb_per_s: mb / wall.max(1e-9),
        mb_per_server_cpu_s: server_cpu_s.map(|c| mb / c.max(1e-9)),
        resumed,
        mismatched,
    };
    Ok(Report {
        scenario: "upload".into(),
        ok: errors == 0 && mismatched == 0,
        connections: 1,
        users: 1,
        endpoints: 1,
        duration_s: wall,
        errors,
        throughput_unit: "MB uploaded".into(),
        throughput_per_s: summary.mb_per_s,
        server_cpu_s,
        upload: Some(summary),
        ..Report::default()
    })
}

fn ring_sha(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
