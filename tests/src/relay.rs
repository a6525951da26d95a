//! A fault-injecting UDP relay for network-fault tests (the kernel here has no netem).
//!
//! Clients send to [`Relay::addr`]; the relay keeps one upstream socket per client address and
//! forwards both ways, applying the current [`Faults`]: random loss, delay with jitter, extra
//! delay for a share of packets (reordering), duplication, a partition (everything dropped both
//! ways) and an address change ([`Relay::change_address`]: every upstream socket is replaced, so
//! the server sees each client arrive from a new port mid-conversation). Every decision is
//! counted in [`RelayStats`]. All tasks stop when the [`Relay`] is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A small seeded random number generator (SplitMix64): reproducible fault schedules without a
/// dependency. Print the seed; rerun with it.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A seed from `FAULTS_SEED` if set, else from the clock.
    pub fn seed_from_env() -> u64 {
        std::env::var("FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
    }

    /// [`Rng::seed_from_env`], printed with how to rerun `what` with it.
    pub fn announced_seed(what: &str) -> u64 {
        let seed = Self::seed_from_env();
        eprintln!("{what} seed: {seed} (rerun with FAULTS_SEED={seed})");
        seed
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// What the relay does to packets, both directions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Probability a packet is dropped.
    pub loss: f64,
    /// Delay every packet by this much...
    pub delay: Duration,
    /// ...plus a uniform random extra of up to this much (jitter reorders packets too).
    pub jitter: Duration,
    /// Probability a packet is held back by `reorder_by` more, so later ones overtake it.
    pub reorder: f64,
    /// How long a reordered packet is held back.
    pub reorder_by: Duration,
    /// Probability a packet is delivered twice.
    pub duplicate: f64,
    /// Drop everything, both ways.
    pub partition: bool,
}

/// Counters of what the relay did.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Packets passed on (duplicates included).
    pub forwarded: AtomicU64,
    /// Packets dropped by random loss.
    pub dropped_loss: AtomicU64,
    /// Packets dropped by a partition.
    pub dropped_partition: AtomicU64,
    /// Extra copies sent.
    pub duplicated: AtomicU64,
    /// Packets held back to be overtaken.
    pub reordered: AtomicU64,
    /// Upstream sockets replaced by address changes.
    pub address_changes: AtomicU64,
}

/// A snapshot of [`RelayStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Packets passed on.
    pub forwarded: u64,
    /// Dropped by random loss.
    pub dropped_loss: u64,
    /// Dropped by a partition.
    pub dropped_partition: u64,
    /// Extra copies.
    pub duplicated: u64,
    /// Held back.
    pub reordered: u64,
    /// Upstream sockets replaced.
    pub address_changes: u64,
}

impl StatsSnapshot {
    /// Every packet the relay dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_partition
    }
}

struct Shared {
    upstream: SocketAddr,
    front: Arc<UdpSocket>,
    faults: Mutex<Faults>,
    stats: RelayStats,
    rng: Mutex<Rng>,
    /// Client address -> its current upstream socket.
    sessions: Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stopped: AtomicBool,
}

/// A running relay; dropping it stops every task.
pub struct Relay {
    shared: Arc<Shared>,
    /// Where clients should connect.
    pub addr: SocketAddr,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .finish()
    }
}

/// Which way a packet travels.
#[derive(Debug, Clone)]
enum Dir {
    Up(Arc<UdpSocket>),
    Down(SocketAddr),
}

impl Relay {
    /// A relay on a free loopback port forwarding to `upstream`, with faults from `seed`.
    pub async fn start(upstream: SocketAddr, seed: u64) -> std::io::Result<Relay> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = front.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            front,
            faults: Mutex::new(Faults::default()),
            stats: RelayStats::default(),
            rng: Mutex::new(Rng::new(seed)),
            sessions: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
        });
        let s = shared.clone();
        let front_task = tokio::spawn(async move { front_loop(s).await });
        shared.tasks.lock().unwrap().push(front_task);
        Ok(Relay { shared, addr })
    }

    /// Replaces the faults applied from now on.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap() = faults;
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults.lock().unwrap().clone()
    }

    /// Starts or ends a partition, keeping the other faults.
    pub fn set_partition(&self, on: bool) {
        self.shared.faults.lock().unwrap().partition = on;
    }

    /// Gives every client a new upstream socket: the server sees new source ports.
    pub async fn change_address(&self) -> std::io::Result<()> {
        let clients: Vec<SocketAddr> = self
            .shared
            .sessions
            .lock()
            .unwrap()
            .keys()
            .copied()
            .collect();
        for client in clients {
            let sock = new_upstream(&self.shared, client).await?;
            self.shared.sessions.lock().unwrap().insert(client, sock);
            self.shared
                .stats
                .address_changes
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// What the relay has done so far.
    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.shared.stats;
        StatsSnapshot {
            forwarded: s.forwarded.load(Ordering::Relaxed),
            dropped_loss: s.dropped_loss.load(Ordering::Relaxed),
            dropped_partition: s.dropped_partition.load(Ordering::Relaxed),
            duplicated: s.duplicated.load(Ordering::Relaxed),
            reordered: s.reordered.load(Ordering::Relaxed),
            address_changes: s.address_changes.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        for t in self.shared.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        self.shared.sessions.lock().unwrap().clear();
    }
}

/// Binds a fresh upstream socket for `client` and starts its reader (server -> client). The
/// reader stops once the socket is no longer the client's current one, or the relay stops.
async fn new_upstream(shared: &Arc<Shared>, client: SocketAddr) -> std::io::Result<Arc<UdpSocket>> {
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    sock.connect(shared.upstream).await?;
    let s = shared.clone();
    let reader = sock.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let n = match tokio::time::timeout(Duration::from_millis(500), reader.recv(&mut buf))
                .await
            {
                Ok(Ok(n)) => n,
                Ok(Err(_)) => continue,
                Err(_) => {
                    // Idle: stop if replaced or stopped (checked below).
                    0
                }
            };
            if s.stopped.load(Ordering::Relaxed) {
                return;
            }
            let current = s
                .sessions
                .lock()
                .unwrap()
                .get(&client)
                .is_some_and(|c| Arc::ptr_eq(c, &reader));
            if !current {
                // Replaced by an address change: answers to the old port are lost, as on a
                // real NAT rebinding.
                return;
            }
            if n > 0 {
                forward(&s, buf[..n].to_vec(), Dir::Down(client));
            }
        }
    });
    let mut tasks = shared.tasks.lock().unwrap();
    tasks.retain(|t| !t.is_finished());
    tasks.push(task);
    Ok(sock)
}

async fn front_loop(shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = shared.front.recv_from(&mut buf).await else {
            continue;
        };
        if shared.stopped.load(Ordering::Relaxed) {
            return;
        }
        let existing = shared.sessions.lock().unwrap().get(&from).cloned();
        let sock = match existing {
            Some(s) => s,
            None => match new_upstream(&shared, from).await {
                Ok(s) => {
                    shared.sessions.lock().unwrap().insert(from, s.clone());
                    s
                }
                Err(_) => continue,
            },
        };
        forward(&shared, buf[..n].to_vec(), Dir::Up(sock));
    }
}

/// Applies the faults to one packet and sends what survives (after its delay).
fn forward(shared: &Arc<Shared>, packet: Vec<u8>, dir: Dir) {
    let faults = shared.faults.lock().unwrap().clone();
    let stats = &shared.stats;
    if faults.partition {
        stats.dropped_partition.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let (lost, copies, delays) = {
        let mut rng = shared.rng.lock().unwrap();
        let lost = rng.unit() < faults.loss;
        let copies = if rng.unit() < faults.duplicate { 2 } else { 1 };
        let mut delays = Vec::with_capacity(copies);
        for _ in 0..copies {
            let jitter = faults.jitter.as_micros() as u64;
            let mut d = faults.delay + Duration::from_micros(rng.range(0, jitter));
            if rng.unit() < faults.reorder {
                d += faults.reorder_by;
                stats.reordered.fetch_add(1, Ordering::Relaxed);
            }
            delays.push(d);
        }
        (lost, copies, delays)
    };
    if lost {
        stats.dropped_loss.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if copies > 1 {
        stats.duplicated.fetch_add(1, Ordering::Relaxed);
    }
    for d in delays {
        stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let packet = packet.clone();
        let dir = dir.clone();
        let front = shared.front.clone();
        let send = async move {
            let _ = match dir {
                Dir::Up(sock) => sock.send(&packet).await,
                Dir::Down(to) => front.send_to(&packet, to).await,
            };
        };
        // A task per packet, bounded by its delay: jitter reorders packets as a real path would.
        tokio::spawn(async move {
            if !d.is_zero() {
                tokio::time::sleep(d).await;
            }
            send.await;
        });
    }
}
