//! The load generator's correctness (not its speed): a short, low-rate `tern-loadgen chat
//! --spawn-server` run must exit 0 and report messages delivered with nothing lost, duplicated or
//! reordered, with every documented report field present.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// `target/<profile>`, where cargo puts this test's binaries' siblings.
fn target_dir() -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// The loadgen and server binaries, built with cargo when missing or older than loadgen's sources.
fn binaries() -> (PathBuf, PathBuf) {
    let dir = target_dir();
    let exe = |name: &str| dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let (loadgen, server) = (exe("tern-loadgen"), exe("tern-server"));
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../loadgen");
    let built = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    let stale = match (built(&loadgen), newest_mtime(&sources)) {
        (Some(bin), Some(src)) => src > bin,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if stale || !server.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "tern-loadgen", "-p", "tern-server"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "building tern-loadgen and tern-server failed");
    }
    assert!(loadgen.exists(), "no {}", loadgen.display());
    assert!(server.exists(), "no {}", server.display());
    (loadgen, server)
}

#[test]
fn a_short_chat_run_delivers_every_acknowledged_message_once_and_in_order() {
    let (loadgen, server) = binaries();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let out = Command::new(&loadgen)
        .arg("chat")
        .arg("--spawn-server")
        .arg("--server-bin")
        .arg(&server)
        .args(["--users", "10", "--rate", "200"])
        .args(["--duration", "3s", "--warmup", "500ms", "--grace", "10s"])
        .arg("--json")
        .arg(&json)
        .arg("--no-progress")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "tern-loadgen failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for field in [
        "scenario",
        "connections",
        "sent",
        "acked",
        "delivered",
        "lost",
        "duplicates",
        "out_of_order",
        "errors",
        "throughput_per_s",
        "latency_us",
        "server_cpu_s",
        "server_rss_bytes",
        "acked_per_server_cpu_s",
    ] {
        assert!(
            report.get(field).is_some_and(|v| !v.is_null()),
            "report lacks {field}: {report:#}"
        );
    }
    for kind in ["ack", "deliver"] {
        for q in ["p50", "p99", "p999", "max"] {
            assert!(
                report["latency_us"][kind][q].is_u64(),
                "latency_us.{kind}.{q} missing: {report:#}"
            );
        }
    }
    let n = |f: &str| report[f].as_u64().unwrap();
    assert_eq!(report["scenario"], "chat");
    assert_eq!(n("connections"), 10);
    assert!(n("acked") > 0 && n("delivered") > 0, "{report:#}");
    assert_eq!(n("lost"), 0, "{report:#}");
    assert_eq!(n("duplicates"), 0, "{report:#}");
    assert_eq!(n("out_of_order"), 0, "{report:#}");
    assert_eq!(report["ok"], true);
    // Every acknowledged message was matched at its recipient.
    assert_eq!(
        report["delivery_check"]["matched"].as_u64().unwrap(),
        n("acked")
    );
}
