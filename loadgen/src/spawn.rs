//! `--spawn-server`: a `tern-server` child on a temporary data directory and free loopback ports,
//! with the file OTP sender and OTP limits raised for a load test, stopped (and its directory
//! removed) when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starting the server failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A local I/O step failed (temp dir, ports, log file).
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The binary is not where we looked and could not be built.
    #[error(
        "tern-server binary not found at {0}; build it (`cargo build --release -p tern-server`) or pass --server-bin"
    )]
    NotFound(PathBuf),
    /// Building the binary with cargo failed.
    #[error("building tern-server with `{0}` failed")]
    Build(String),
    /// The child exited or never became ready.
    #[error("tern-server did not come up: {reason}; its log: {log}")]
    NotReady {
        /// Why.
        reason: String,
        /// The last lines of its log.
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SpawnError {
    let what = what.into();
    move |source| SpawnError::Io { what, source }
}

/// Flags a given server binary may or may not have (older builds lack some); each is passed
/// only when the binary's `--help` lists it, and not when `--server-arg` sets it. The values lift
/// the per-address, per-domain, per-server and per-user (chat send, first contact) caps that would otherwise stop one loopback load
/// generator with thousands of users.
const OPTIONAL_FLAGS: &[(&str, &str)] = &[
    ("--otp-prefix-burst", "1000000000"),
    ("--otp-prefix-per-minute", "1000000000"),
    ("--max-connections-per-ip", "10000000"),
    ("--max-connections", "10000000"),
    ("--chat-send-burst", "1000000000"),
    ("--chat-send-per-minute", "1000000000"),
    ("--chat-new-peer-burst", "1000000000"),
    ("--chat-new-peers-per-day", "1000000000"),
];

/// A running `tern-server` child.
#[derive(Debug)]
pub struct SpawnedServer {
    child: Option<Child>,
    /// How long [`SpawnedServer::stop`] waits after SIGTERM before SIGKILL (zero: SIGKILL at
    /// once). A server under a profiler (callgrind writes its counts at exit) needs one.
    pub stop_grace: Duration,
    /// Its temporary directory (data, OTP file, log); removed on drop.
    dir: tempfile::TempDir,
    /// QUIC address.
    pub addr: SocketAddr,
    /// Admin HTTP address.
    pub admin: SocketAddr,
    /// The dev certificate's SHA-256 fingerprint.
    pub fingerprint: String,
    /// Where codes are written.
    pub otp_file: PathBuf,
    /// The child's process id.
    pub pid: u32,
}

/// The binary next to this executable (`target/<profile>/tern-server`), if there is one.
fn sibling_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?.to_owned();
    // Test executables live in target/<profile>/deps.
    if dir.ends_with("deps") {
        dir.pop();
    }
    Some(dir.join(format!("tern-server{}", std::env::consts::EXE_SUFFIX)))
}

/// Finds the server binary: `--server-bin`, else next to this executable; when it is missing
/// and this executable was built by cargo in this workspace, builds it with the same profile.
pub fn find_server_binary(explicit: Option<&Path>) -> Result<PathBuf, SpawnError> {
    if let Some(p) = explicit {
        return if p.exists() {
            Ok(p.to_owned())
        } else {
            Err(SpawnError::NotFound(p.to_owned()))
        };
    }
    let Some(bin) = sibling_binary() else {
        return Err(SpawnError::NotFound(PathBuf::from("tern-server")));
    };
    if bin.exists() {
        return Ok(bin);
    }
    // A fresh clone built only tern-loadgen: build the server the same way, in this workspace.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let profile = bin
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    if !workspace.join("Cargo.toml").exists() {
        return Err(SpawnError::NotFound(bin));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&workspace)
        .args(["build", "-p", "tern-server", "--bin", "tern-server"]);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let shown = format!("{cmd:?}");
    eprintln!(
        "tern-server not found at {}; building it: {shown}",
        bin.display()
    );
    let status = cmd.status().map_err(io(format!("running {shown}")))?;
    if !status.success() {
        return Err(SpawnError::Build(shown));
    }
    if bin.exists() {
        Ok(bin)
    } else {
        Err(SpawnError::NotFound(bin))
    }
}

fn free_udp() -> Result<SocketAddr, SpawnError> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_err(io("finding a free UDP port"))
}

fn free_tcp() -> Result<SocketAddr, SpawnError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_err(io("finding a free TCP port"))
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl SpawnedServer {
    /// Starts `bin` (pinned to `cpu` with taskset when given), waits until it accepts admin
    /// connections and has written its certificate fingerprint.
    pub async fn start(
        bin: &Path,
        cpu: Option<usize>,
        extra: &[String],
    ) -> Result<SpawnedServer, SpawnError> {
        let dir = tempfile::Builder::new()
            .prefix("tern-loadgen-")
            .tempdir()
            .map_err(io("creating a temporary directory"))?;
        let addr = free_udp()?;
        let admin = free_tcp()?;
        let data = dir.path().join("data");
        let otp_file = dir.path().join("otp.txt");
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).map_err(io("creating the server log"))?;
        let help = Command::new(bin)
            .arg("--help")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .map_err(io(format!("running {} --help", bin.display())))?;
        let known: std::collections::HashSet<&str> = help.split_whitespace().collect();
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("--listen")
            .arg(addr.to_string())
            .arg("--admin-listen")
            .arg(admin.to_string())
            .arg("--data-dir")
            .arg(&data)
            .arg("--otp-sender")
            .arg(format!("file:{}", otp_file.display()))
            .args(["--otp-address-burst", "1000000000"])
            .args(["--otp-address-per-minute", "1000000000"]);
        for (flag, value) in OPTIONAL_FLAGS {
            let overridden = extra
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
            if known.contains(flag) && !overridden {
                cmd.args([flag, value]);
            }
        }
        cmd.args(extra)
            .env(
                "TERN_LOG",
                std::env::var("TERN_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // Its own process group: Ctrl-C stops the load generator, which then stops the server.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .map_err(io(format!("starting {}", bin.display())))?;
        let pid = child.id();
        let mut server = SpawnedServer {
            child: Some(child),
            stop_grace: Duration::ZERO,
            dir,
            addr,
            admin,
            fingerprint: String::new(),
            otp_file,
            pid,
        };
        server.fingerprint = server.wait_ready(&data, &log_path).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, data: &Path, log: &Path) -> Result<String, SpawnError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let fp_path = data.join("dev-cert.sha256");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(SpawnError::NotReady {
                    reason: format!("it exited with {status}"),
                    log: log_tail(log),
                });
            }
            let up = tokio::net::TcpStream::connect(self.admin).await.is_ok();
            if up && let Ok(fp) = std::fs::read_to_string(&fp_path) {
                let fp = fp.trim().to_owned();
                if !fp.is_empty() {
                    return Ok(fp);
                }
            }
            if Instant::now() > deadline {
                return Err(SpawnError::NotReady {
                    reason: "no admin listener and certificate within 30 s".into(),
                    log: log_tail(log),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server: SIGKILL (its data directory is thrown away anyway), or with a
    /// [`SpawnedServer::stop_grace`] SIGTERM first and SIGKILL only if it has not exited by then.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if !self.stop_grace.is_zero() {
            // std has no SIGTERM; the `kill` utility is on every Linux this runs on.
            let termed = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            let deadline = Instant::now() + self.stop_grace;
            while termed && Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        self.stop();
    }
}
