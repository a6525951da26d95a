//! `tern-server` as a child process, for tests that kill, signal or restart it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::workspace_binary;

/// A process's resident set size in bytes, from `/proc/<pid>/status` (0 if unreadable).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .map(|v| v.trim().trim_end_matches("kB").trim().to_owned())
        })
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A free UDP port on loopback (racy, but fine for tests).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A free TCP port on loopback.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The server binary, built first if missing.
pub fn ensure_binary() -> PathBuf {
    ensure_built("tern-server", "tern-server")
}

/// Binary `bin` of workspace package `package`, built first if missing (`scripts/test.sh`
/// prebuilds them, so a test never runs a stale one there).
pub fn ensure_built(bin: &str, package: &str) -> PathBuf {
    let path = workspace_binary(bin);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", package, "--bin", bin])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "building {bin} failed");
    }
    assert!(
        path.exists(),
        "{bin} binary not found at {}",
        path.display()
    );
    path
}

/// A server child on fixed loopback ports, restartable on the same data directory.
#[derive(Debug)]
pub struct ChildServer {
    /// The process.
    pub child: Child,
    /// QUIC address.
    pub quic: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// Working directory (data dir and OTP file live below it).
    pub dir: PathBuf,
    /// Extra flags.
    pub extra: Vec<String>,
}

impl ChildServer {
    /// Starts a server in `dir` with `extra` flags and waits until it answers.
    pub async fn start(dir: &Path, extra: &[&str]) -> ChildServer {
        let quic: SocketAddr = format!("127.0.0.1:{}", free_udp_port())
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        let admin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port())
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let child = spawn(dir, quic, admin, &extra);
        let s = ChildServer {
            child,
            quic,
            admin,
            dir: dir.to_owned(),
            extra,
        };
        wait_ready(admin).await;
        s
    }

    /// Starts the server again on the same ports and data.
    pub async fn restart(&mut self) {
        self.child = spawn(&self.dir, self.quic, self.admin, &self.extra);
        wait_ready(self.admin).await;
    }

    /// Starts the server again on the same ports and data; false if it exits before its admin
    /// listener is up (a data dir it cannot recover).
    pub async fn try_restart(&mut self) -> bool {
        self.child = spawn(&self.dir, self.quic, self.admin, &self.extra);
        for _ in 0..1000 {
            if tokio::net::TcpStream::connect(self.admin).await.is_ok() {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`TERM`, `INT`) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// The dev certificate fingerprint.
    pub fn fingerprint(&self) -> String {
        std::fs::read_to_string(self.dir.join("data/dev-cert.sha256"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// The OTP file.
    pub fn otp_file(&self) -> PathBuf {
        self.dir.join("otp.txt")
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Limits raised for tests (every test client comes from 127.0.0.1, reconnect storms open
/// thousands of connections, load tests send fast); a test that passes one of these flags in
/// its extra flags gets its own value instead.
const TEST_LIMITS: [(&str, &str); 8] = [
    ("--otp-address-burst", "1000000"),
    ("--otp-address-per-minute", "1000000"),
    ("--otp-prefix-burst", "1000000"),
    ("--otp-prefix-per-minute", "1000000"),
    ("--max-connections-per-ip", "100000"),
    ("--chat-send-burst", "1000000"),
    ("--chat-send-per-minute", "1000000"),
    ("--chat-new-peer-burst", "100000"),
];

fn spawn(dir: &Path, quic: SocketAddr, admin: SocketAddr, extra: &[String]) -> Child {
    let log = std::env::var("CHILD_LOG").ok();
    let overridden = |flag: &str| {
        extra
            .iter()
            .any(|e| e == flag || e.starts_with(&format!("{flag}=")))
    };
    let limits = TEST_LIMITS
        .iter()
        .filter(|(flag, _)| !overridden(flag))
        .flat_map(|(flag, value)| [*flag, *value]);
    Command::new(ensure_binary())
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--listen")
        .arg(quic.to_string())
        .arg("--admin-listen")
        .arg(admin.to_string())
        .arg("--otp-sender")
        .arg(format!("file:{}", dir.join("otp.txt").display()))
        .args(limits)
        .args(extra)
        .env("TERN_LOG", log.clone().unwrap_or_else(|| "warn".into()))
        .stdout(if log.is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning tern-server: {e}"))
}

/// Waits until the admin listener accepts connections.
pub async fn wait_ready(admin: SocketAddr) {
    for _ in 0..1000 {
        if tokio::net::TcpStream::connect(admin).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server did not come up");
}

/// GET `path` from the admin listener and return the body.
pub async fn admin_get(admin: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(admin).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body).await;
    body
}

/// The value of a Prometheus sample line `name{labels} value`, if present.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)
            .and_then(|v| v.trim().parse::<f64>().ok())
    })
}
