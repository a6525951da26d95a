//! What every scenario needs: the target server (given or spawned), a progress bar, a stop flag
//! for Ctrl-C, counters, and CPU/memory samples at the edges of the measured window.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::CommonArgs;
use crate::metrics::{self, Samples, ServerView};
use crate::otp::OtpFile;
use crate::procstat::{self, Pid, Sample};
use crate::spawn::{self, SpawnedServer};
use crate::users::{self, Fleet, User};

/// One node of the server under load: where clients connect and how they log in.
#[derive(Debug, Clone)]
pub struct Node {
    /// QUIC address.
    pub addr: SocketAddr,
    /// Certificate fingerprint (hex).
    pub fingerprint: String,
    /// Where its login codes appear.
    pub otp: Arc<OtpFile>,
}

/// The server under load.
#[derive(Debug)]
pub struct Target {
    /// QUIC address (the first node's).
    pub addr: SocketAddr,
    /// Certificate fingerprint (hex; the first node's).
    pub fingerprint: String,
    /// Where login codes appear (the first node's).
    pub otp: Arc<OtpFile>,
    /// Every node; user i connects to node `i % nodes.len()`. One entry unless `--nodes`.
    pub nodes: Vec<Node>,
    /// Whose CPU and memory to read (summed over all of them).
    pub server_pids: Vec<u32>,
    /// Admin listener, for `/metrics` (the first node's).
    pub admin: Option<SocketAddr>,
    /// The children, when spawned; stopped when dropped.
    pub spawned: Vec<SpawnedServer>,
    /// Makes this run's identifiers unique.
    pub run_id: String,
}

impl Target {
    /// Spawns a server (or `--nodes` of them) or reads where the given one is.
    pub async fn resolve(c: &CommonArgs) -> anyhow::Result<Target> {
        let run_id = c.run_id.clone().unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!(
                "r{:x}",
                (nanos as u64) ^ u64::from(std::process::id()) << 40
            )
        });
        if c.nodes > 1 && !c.spawn_server {
            bail!("--nodes needs --spawn-server");
        }
        if c.spawn_server {
            let bin = spawn::find_server_binary(c.server_bin.as_deref())?;
            let servers = spawn_nodes(&bin, c).await?;
            let nodes: Vec<Node> = servers
                .iter()
                .map(|s| Node {
                    addr: s.addr,
                    fingerprint: s.fingerprint.clone(),
                    otp: Arc::new(OtpFile::new(&s.otp_file)),
                })
                .collect();
            let first = nodes[0].clone();
            return Ok(Target {
                addr: first.addr,
                fingerprint: first.fingerprint,
                otp: first.otp,
                server_pids: servers
                    .iter()
                    .map(|s| s.pid)
                    .chain(c.count_pid.iter().copied())
                    .collect(),
                admin: Some(servers[0].admin),
                nodes,
                spawned: servers,
                run_id,
            });
        }
        let fingerprint = match (&c.cert_fingerprint, &c.data_dir) {
            (Some(fp), _) => fp.trim().to_owned(),
            (None, Some(dir)) => {
                let p = dir.join("dev-cert.sha256");
                std::fs::read_to_string(&p)
                    .with_context(|| {
                        format!("reading the certificate fingerprint {}", p.display())
                    })?
                    .trim()
                    .to_owned()
            }
            (None, None) => bail!("pass --cert-fingerprint, --data-dir or --spawn-server"),
        };
        let Some(otp) = &c.otp_file else {
            bail!(
                "pass --otp-file (the server's `--otp-sender file:PATH`) or --spawn-server: users log in through the OTP flow"
            );
        };
        let otp = Arc::new(OtpFile::new(otp));
        Ok(Target {
            addr: c.server,
            fingerprint: fingerprint.clone(),
            otp: otp.clone(),
            nodes: vec![Node {
                addr: c.server,
                fingerprint,
                otp,
            }],
            server_pids: c
                .server_pid
                .into_iter()
                .chain(c.count_pid.iter().copied())
                .collect(),
            admin: c.admin,
            spawned: Vec::new(),
            run_id,
        })
    }

    /// Samples the server's CPU and memory (summed over its nodes), when known.
    pub fn sample(&self) -> Option<Sample> {
        sample_all(&self.server_pids)
    }

    /// Stops every spawned node.
    pub fn stop(&mut self) {
        for s in &mut self.spawned {
            s.stop();
        }
    }
}

/// CPU and memory of `pids` summed; `None` when there are none or one cannot be read.
fn sample_all(pids: &[u32]) -> Option<Sample> {
    if pids.is_empty() {
        return None;
    }
    let mut sum = Sample { cpu_s: 0.0, rss: 0 };
    for &p in pids {
        let s = procstat::sample(Pid::Other(p))?;
        sum.cpu_s += s.cpu_s;
        sum.rss += s.rss;
    }
    Some(sum)
}

/// Starts `--nodes` servers. Several nodes share one secret file (a token one node issued is
/// accepted by the others) and get `--node-id nodeK`, when the binary has those flags.
async fn spawn_nodes(bin: &std::path::Path, c: &CommonArgs) -> anyhow::Result<Vec<SpawnedServer>> {
    let nodes = usize::from(c.nodes);
    let shared = tempfile::Builder::new()
        .prefix("tern-loadgen-cluster-")
        .tempdir()
        .context("creating the cluster's shared directory")?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut servers = Vec::with_capacity(nodes);
    for k in 0..nodes {
        let mut extra = c.server_arg.clone();
        if nodes > 1 {
            extra.push(format!(
                "--secret-file={}",
                shared.path().join("cluster.secret").display()
            ));
            extra.push(format!("--node-id=node{k}"));
        }
        let cpu = c.server_cpu.map(|cpu| (cpu + k) % cpus);
        let mut server = SpawnedServer::start(bin, cpu, &extra).await?;
        server.stop_grace = c.server_stop_grace;
        eprintln!(
            "spawned {} (pid {}) on {}{}, data in {}",
            bin.display(),
            server.pid,
            server.addr,
            cpu.map(|cpu| format!(", pinned to CPU {cpu}"))
                .unwrap_or_default(),
            server.dir().display()
        );
        servers.push(server);
    }
    // The secret file was read at start-up; the directory may go.
    drop(shared);
    Ok(servers)
}

/// Progress bars (hidden with --no-progress or when stderr is not a terminal).
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    hidden: bool,
}

impl Ui {
    /// Bars unless `hidden`.
    pub fn new(hidden: bool) -> Ui {
        Ui { hidden }
    }

    /// A bar of `len` steps.
    pub fn bar(&self, len: u64, label: &str) -> ProgressBar {
        if self.hidden {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:>8} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        ) {
            bar.set_style(style);
        }
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}

/// Counts errors by kind.
#[derive(Debug, Default)]
pub struct Errors {
    total: AtomicU64,
    kinds: Mutex<BTreeMap<String, u64>>,
}

impl Errors {
    /// Counts one error of `kind`.
    pub fn add(&self, kind: impl Into<String>) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut k) = self.kinds.lock() {
            *k.entry(kind.into()).or_insert(0) += 1;
        }
    }

    /// All errors so far.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Errors by kind.
    pub fn kinds(&self) -> BTreeMap<String, u64> {
        self.kinds.lock().map(|k| k.clone()).unwrap_or_default()
    }
}

/// The kind of an SDK error, for the report (no identifiers, no bodies).
pub fn sdk_error_kind(what: &str, e: &tern_sdk::Error) -> String {
    match e {
        tern_sdk::Error::Server(b) => format!("{what}: server {:?}", b.code),
        tern_sdk::Error::Disconnected => format!("{what}: disconnected"),
        tern_sdk::Error::Timeout => format!("{what}: timeout"),
        tern_sdk::Error::Closed(_) => format!("{what}: closed"),
        tern_sdk::Error::Config(_) => format!("{what}: config"),
        tern_sdk::Error::Protocol(_) => format!("{what}: protocol"),
        _ => format!("{what}: other"),
    }
}

/// Set on Ctrl-C or SIGTERM: scenarios stop early (a spawned server is stopped too) and still
/// report what they measured.
pub fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut t) => {
                    t.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        eprintln!("stopping (signal); the report follows");
        s.store(true, Ordering::Relaxed);
    });
    stop
}

/// CPU and memory of the server and of this process at the start and end of the window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Server at the start.
    pub server_start: Option<Sample>,
    /// Server at the end.
    pub server_end: Option<Sample>,
    /// This process at the start.
    pub own_start: Option<Sample>,
    /// This process at the end.
    pub own_end: Option<Sample>,
    /// When the window really ended (earlier than planned after Ctrl-C).
    pub ended: Option<Instant>,
    /// Machine busy and steal CPU seconds at the start and end.
    pub machine: [Option<(f64, f64)>; 2],
    /// The server's metrics at the start.
    pub metrics_start: Option<Samples>,
    /// The server's metrics at the end.
    pub metrics_end: Option<Samples>,
    /// The machine's UDP counters at the start and end.
    pub udp: [Option<procstat::UdpCounters>; 2],
}

impl Window {
    /// Server CPU seconds in the window.
    pub fn server_cpu(&self) -> Option<f64> {
        Some(self.server_end?.cpu_s - self.server_start?.cpu_s)
    }

    /// This process's CPU seconds in the window.
    pub fn own_cpu(&self) -> Option<f64> {
        Some(self.own_end?.cpu_s - self.own_start?.cpu_s)
    }

    /// CPU seconds the rest of the machine used in the window (busy CPU time of all processes
    /// minus the server's and this process's), and the time the hypervisor stole.
    pub fn other_cpu(&self) -> (Option<f64>, Option<f64>) {
        let [Some(a), Some(b)] = self.machine else {
            return (None, None);
        };
        let busy = b.0 - a.0;
        let ours = self.server_cpu().unwrap_or(0.0) + self.own_cpu().unwrap_or(0.0);
        (Some((busy - ours).max(0.0)), Some(b.1 - a.1))
    }

    /// UDP datagrams sent on the machine in the window, and datagrams dropped for a full
    /// receive buffer.
    pub fn udp(&self) -> Option<(u64, u64)> {
        let [Some(a), Some(b)] = self.udp else {
            return None;
        };
        Some((
            b.out_datagrams.saturating_sub(a.out_datagrams),
            b.receive_buffer_errors
                .saturating_sub(a.receive_buffer_errors),
        ))
    }

    /// What the server's metrics say about the window.
    pub fn server_view(&self) -> Option<ServerView> {
        Some(ServerView::between(
            self.metrics_start.as_ref()?,
            self.metrics_end.as_ref()?,
        ))
    }
}

fn sleep_until(t: Instant, stop: &AtomicBool) -> bool {
    loop {
        let now = Instant::now();
        if now >= t {
            return true;
        }
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(50)));
    }
}

/// Samples at `from` and `to` on a thread of its own (precise even when the runtime is busy).
pub fn sample_window(
    target: &Target,
    from: Instant,
    to: Instant,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Window> {
    let (servers, admin) = (target.server_pids.clone(), target.admin);
    tokio::task::spawn_blocking(move || {
        let take = |w: &mut Window, start: bool| {
            let s = sample_all(&servers);
            let own = procstat::sample(Pid::SelfProcess);
            let m = admin.and_then(metrics::scrape);
            w.machine[usize::from(!start)] = procstat::machine_cpu().ok();
            w.udp[usize::from(!start)] = procstat::udp_counters().ok();
            if start {
                w.server_start = s;
                w.own_start = own;
                w.metrics_start = m;
            } else {
                w.server_end = s;
                w.own_end = own;
                w.metrics_end = m;
            }
        };
        let mut w = Window::default();
        sleep_until(from, &stop);
        take(&mut w, true);
        sleep_until(to, &stop);
        take(&mut w, false);
        w.ended = Some(Instant::now());
        w
    })
}

/// A fleet for `n` users of `target` (`per_endpoint` connections per UDP socket unless the
/// options say otherwise) and the users logged in on it.
pub async fn login_fleet(
    c: &CommonArgs,
    target: &Target,
    n: usize,
    per_endpoint: usize,
    ui: Ui,
    stop: &AtomicBool,
) -> anyhow::Result<(Fleet, Vec<User>)> {
    let mut bases = Vec::with_capacity(target.nodes.len());
    for node in &target.nodes {
        bases.push(users::base_config(
            node.addr,
            &node.fingerprint,
            c.keep_alive,
            c.ack_delay,
        )?);
    }
    let fleet = Fleet::across(&bases, n, c.per_endpoint(per_endpoint))?;
    let users = login_users(c, target, &fleet, n, ui, stop).await?;
    Ok((fleet, users))
}

/// Logs `n` users in with a progress bar; fails if any login fails.
pub async fn login_users(
    c: &CommonArgs,
    target: &Target,
    fleet: &Fleet,
    n: usize,
    ui: Ui,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<User>> {
    let bar = ui.bar(n as u64, "login");
    let t0 = Instant::now();
    let otps: Vec<Arc<OtpFile>> = match fleet.nodes() {
        1 => vec![target.otp.clone()],
        _ => target.nodes.iter().map(|n| n.otp.clone()).collect(),
    };
    let (users, errors) = users::login_all(
        fleet,
        &otps,
        &target.run_id,
        n,
        c.login_concurrency,
        stop,
        |_| bar.inc(1),
    )
    .await;
    bar.finish_and_clear();
    if errors
        .iter()
        .any(|e| matches!(e, users::LoginError::Stopped))
    {
        bail!(
            "stopped while logging in ({} of {n} users logged in)",
            users.len()
        );
    }
    if let Some(first) = errors.first() {
        bail!("{} of {n} logins failed; the first: {first}", errors.len());
    }
    eprintln!(
        "logged in {} users in {:.1}s ({} endpoints)",
        users.len(),
        t0.elapsed().as_secs_f64(),
        fleet.endpoints()
    );
    Ok(users)
}

/// Closes every client (concurrently).
pub async fn close_all(clients: impl IntoIterator<Item = tern_sdk::Client>) {
    let mut set = tokio::task::JoinSet::new();
    for c in clients {
        set.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.close()).await;
        });
    }
    while set.join_next().await.is_some() {}
}
