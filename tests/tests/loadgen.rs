//! The load generator's correctness (not its speed): short, low-rate `tern-loadgen chat` and
//! `tern-loadgen group` runs against a spawned server must exit 0 and report messages delivered
//! with nothing lost, duplicated or reordered, with every documented report field present; a
//! group larger than the protocol allows is refused before anything connects.

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

/// Runs `tern-loadgen SCENARIO --spawn-server ARGS` with a short warm-up and a long grace,
/// expects exit 0 and returns the JSON report after checking the fields every messaging
/// scenario reports.
fn run_ok(scenario: &str, args: &[&str]) -> serde_json::Value {
    let (loadgen, server) = binaries();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let out = Command::new(&loadgen)
        .arg(scenario)
        .arg("--spawn-server")
        .arg("--server-bin")
        .arg(&server)
        .args(args)
        .args(["--warmup", "500ms", "--grace", "10s"])
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
    assert_eq!(report["scenario"], scenario);
    assert!(n("acked") > 0 && n("delivered") > 0, "{report:#}");
    assert_eq!(n("lost"), 0, "{report:#}");
    assert_eq!(n("duplicates"), 0, "{report:#}");
    assert_eq!(n("out_of_order"), 0, "{report:#}");
    assert_eq!(report["ok"], true);
    report
}

#[test]
fn a_short_chat_run_delivers_every_acknowledged_message_once_and_in_order() {
    let report = run_ok(
        "chat",
        &["--users", "10", "--rate", "200", "--duration", "3s"],
    );
    let n = |f: &str| report[f].as_u64().unwrap();
    assert_eq!(n("connections"), 10);
    // Every acknowledged message was matched at its recipient.
    assert_eq!(
        report["delivery_check"]["matched"].as_u64().unwrap(),
        n("acked")
    );
}

#[test]
fn a_short_group_run_delivers_every_message_to_every_member_once_and_in_order() {
    let (groups, members) = (2u64, 8u64);
    let report = run_ok(
        "group",
        &[
            "--groups",
            "2",
            "--members",
            "8",
            "--senders-per-group",
            "2",
            "--rate",
            "100",
            "--duration",
            "3s",
        ],
    );
    let n = |f: &str| report[f].as_u64().unwrap();
    let g = |f: &str| report["group"][f].as_u64().unwrap();
    assert_eq!(n("connections"), groups * members);
    assert_eq!(n("errors"), 0, "{report:#}");
    assert_eq!(n("unacked"), 0, "{report:#}");
    assert_eq!(n("sent"), n("acked"), "{report:#}");
    // Each message reaches the other S - 1 members, and the server also writes it into the
    // sender's own update log, so the sender's device gets it back once.
    let acked = n("acked");
    assert_eq!(n("delivered"), acked * (members - 1), "{report:#}");
    assert_eq!(g("expected_deliveries"), acked * (members - 1));
    assert_eq!(g("own_copies"), acked, "{report:#}");
    assert_eq!(g("members_checked"), groups * members);
    assert_eq!(g("members_failed"), 0, "{report:#}");
    // Every member matched every acknowledged message of its group, its own included.
    assert_eq!(
        report["delivery_check"]["matched"].as_u64().unwrap(),
        acked * members,
        "{report:#}"
    );
    // Members joined at creation: `Created` and `MembersAdded`, seen before the clock started.
    assert_eq!(g("system_messages"), groups * members * 2, "{report:#}");
    assert!(report["delivered_per_server_cpu_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_group_larger_than_the_protocol_allows_is_refused_before_connecting() {
    let (loadgen, _) = binaries();
    // The server binary does not exist: had the options been checked after spawning, this
    // would fail with "not found" instead.
    let out = Command::new(&loadgen)
        .args(["group", "--groups", "1", "--members", "1025"])
        .args(["--spawn-server", "--server-bin", "/nonexistent/tern-server"])
        .arg("--no-progress")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("--members 1025") && stderr.contains("1024"),
        "stderr:\n{stderr}"
    );
    assert!(!stderr.contains("not found"), "stderr:\n{stderr}");
    assert!(out.stdout.is_empty(), "no report for a refused run");
}

/// `tern-loadgen check-history FILE`: its exit code, stdout and stderr.
fn check_history(loadgen: &Path, file: &Path) -> (Option<i32>, String) {
    let out = Command::new(loadgen)
        .arg("check-history")
        .arg(file)
        .output()
        .unwrap();
    let text = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn a_chat_history_is_written_and_passes_the_offline_checker() {
    let (loadgen, server) = binaries();
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    let out = Command::new(&loadgen)
        .args(["chat", "--spawn-server", "--server-bin"])
        .arg(&server)
        .args(["--users", "6", "--rate", "100", "--duration", "2s"])
        .args(["--warmup", "500ms", "--grace", "10s", "--no-progress"])
        .arg("--history")
        .arg(&history)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "chat --history failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&history).unwrap();
    for line in text.lines() {
        let _: serde_json::Value = serde_json::from_str(line).unwrap();
    }
    for needle in [
        r#""type":"invoke","f":"send""#,
        r#""type":"ok","f":"send""#,
        r#""type":"ok","f":"receive""#,
        r#""type":"ok","f":"join""#,
    ] {
        assert!(text.contains(needle), "no {needle} line in the history");
    }

    let (code, stdout) = check_history(&loadgen, &history);
    assert_eq!(code, Some(0), "check-history failed\n{stdout}");
    assert!(stdout.contains("violations 0"), "{stdout}");

    // A doctored copy (one reception dropped) fails with the delivery check's exit code.
    let mut dropped = false;
    let doctored: String = text
        .lines()
        .filter(|l| {
            let drop = !dropped && l.contains(r#""f":"receive""#);
            dropped |= drop;
            !drop
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let bad = dir.path().join("doctored.jsonl");
    std::fs::write(&bad, doctored).unwrap();
    let (code, stdout) = check_history(&loadgen, &bad);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stdout.contains("lost 1"), "{stdout}");
}
