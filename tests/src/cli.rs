//! The `tern` CLI as a subprocess: a private `TERN_HOME` per test, one profile per user, and
//! helpers that run a command and hand back its exit code, stdout and stderr.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::TestServer;
use crate::child::ensure_built;

/// The `tern` binary, brought up to date once per test process: `cargo test -p tern-tests`
/// does not build other packages' binaries, so a `tern` left from before a change to the CLI
/// or the SDK would be tested without it.
pub fn cli_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let path = crate::workspace_binary("tern");
            let release = path.parent().is_some_and(|d| d.ends_with("release"));
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = std::process::Command::new(cargo);
            build.args(["build", "--quiet", "-p", "tern-cli", "--bin", "tern"]);
            if release {
                build.arg("--release");
            }
            // Offline or without cargo the existing binary is used (and built if missing).
            let _ = build.status();
            ensure_built("tern", "tern-cli")
        })
        .clone()
}

/// What one invocation did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Every stdout line parsed as JSON; panics (failing the test) on a line that is not.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
            .collect()
    }

    /// The JSON lines whose `type` is `kind`.
    pub fn records(&self, kind: &str) -> Vec<Value> {
        self.json_lines()
            .into_iter()
            .filter(|v| v["type"] == kind)
            .collect()
    }

    /// Asserts success, showing stderr otherwise.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "tern failed: {}", self.stderr);
        self
    }
}

/// `tern` pointed at one test server, with its own home directory.
#[derive(Debug)]
pub struct Tern {
    /// `TERN_HOME`.
    pub home: tempfile::TempDir,
    /// `HOST:PORT` of the server.
    pub server: String,
    /// Its certificate fingerprint.
    pub fingerprint: String,
    /// The server's OTP file.
    pub otp_file: PathBuf,
    bin: PathBuf,
}

impl Tern {
    /// A CLI for `server`.
    pub fn new(server: &TestServer) -> Tern {
        Tern {
            home: tempfile::tempdir().unwrap(),
            server: server.addr.to_string(),
            fingerprint: server.fingerprint.clone(),
            otp_file: server.otp_file(),
            bin: cli_binary(),
        }
    }

    /// The file of profile `name`.
    pub fn profile_path(&self, name: &str) -> PathBuf {
        self.home
            .path()
            .join("profiles")
            .join(format!("{name}.json"))
    }

    /// A command for `profile` with `args`: only `TERN_HOME` and `TERN_PROFILE` are set (so the
    /// profile, not the environment, supplies the server), stdin is empty, output is captured.
    pub fn command(&self, profile: &str, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        for (k, _) in std::env::vars() {
            if k.starts_with("TERN_") {
                c.env_remove(k);
            }
        }
        c.env("TERN_HOME", self.home.path())
            .env("TERN_PROFILE", profile)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs `tern args` as `profile`.
    pub async fn run(&self, profile: &str, args: &[&str]) -> Run {
        finish(self.command(profile, args).spawn().unwrap()).await
    }

    /// Runs `tern args` as `profile` with `input` on stdin.
    pub async fn run_with_stdin(&self, profile: &str, args: &[&str], input: &str) -> Run {
        let mut child = self
            .command(profile, args)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        finish(child).await
    }

    /// Starts `tern args` as `profile` in the background; collect it with [`finish`].
    pub fn spawn(&self, profile: &str, args: &[&str]) -> Child {
        self.command(profile, args).spawn().unwrap()
    }

    /// The flags that name the server, as `login` needs them the first time.
    pub fn server_flags(&self) -> Vec<String> {
        vec![
            "--server".into(),
            self.server.clone(),
            "--cert-fingerprint".into(),
            self.fingerprint.clone(),
        ]
    }

    /// Logs `profile` in as `identifier` through the server's OTP file; returns the JSON result.
    pub async fn login(&self, profile: &str, identifier: &str) -> Value {
        let otp = self.otp_file.display().to_string();
        let mut args: Vec<String> = vec!["--json".into()];
        args.extend(self.server_flags());
        args.extend(["login".into(), identifier.into(), "--otp-file".into(), otp]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = self.run(profile, &args).await.ok();
        let mut lines = run.records("logged_in");
        assert_eq!(lines.len(), 1, "one login line: {}", run.stdout);
        lines.remove(0)
    }
}

/// Waits for a child started by [`Tern::spawn`] and collects its output.
pub async fn finish(child: Child) -> Run {
    let out = child.wait_with_output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
