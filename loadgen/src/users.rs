//! Users: client configurations on shared endpoints, and logins through the real OTP flow
//! (request a code, read it from the OTP file, verify), run concurrently in bounded batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tern_sdk::protocol::SessionInfo;
use tern_sdk::{Client, ClientConfig, Events, Trust};
use tokio::task::JoinSet;

use crate::otp::{OtpError, OtpFile};

/// A login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The SDK refused or the server answered with an error.
    #[error("{step} for {identifier}: {source}")]
    Sdk {
        /// Which step.
        step: &'static str,
        /// Who.
        identifier: String,
        /// The error.
        source: tern_sdk::Error,
    },
    /// The code did not show up.
    #[error(transparent)]
    Otp(#[from] OtpError),
    /// The run was stopped (Ctrl-C, SIGTERM) while users were logging in.
    #[error("stopped while logging in")]
    Stopped,
}

/// Client configurations, one per shared endpoint (UDP socket), for one or several nodes.
#[derive(Debug)]
pub struct Fleet {
    base: ClientConfig,
    /// Per node, its endpoints' configurations.
    configs: Vec<Vec<ClientConfig>>,
    per_endpoint: usize,
}

impl Fleet {
    /// Endpoints enough for `connections` at `per_endpoint` each, all using `base`.
    pub fn new(
        base: &ClientConfig,
        connections: usize,
        per_endpoint: usize,
    ) -> Result<Fleet, tern_sdk::Error> {
        Fleet::across(std::slice::from_ref(base), connections, per_endpoint)
    }

    /// Like [`Fleet::new`] for several nodes (one base configuration each): connection `i`
    /// goes to node `i % bases.len()`, on that node's endpoints.
    pub fn across(
        bases: &[ClientConfig],
        connections: usize,
        per_endpoint: usize,
    ) -> Result<Fleet, tern_sdk::Error> {
        let Some(first) = bases.first() else {
            return Err(tern_sdk::Error::Config(
                "a fleet needs at least one node".into(),
            ));
        };
        let per_endpoint = per_endpoint.max(1);
        let per_node = connections.div_ceil(bases.len());
        let endpoints = per_node.div_ceil(per_endpoint).max(1);
        let mut configs = Vec::with_capacity(bases.len());
        for base in bases {
            let mut node = Vec::with_capacity(endpoints);
            for _ in 0..endpoints {
                let mut c = base.clone();
                c.endpoint = Some(tern_sdk::shared_endpoint(base.server)?);
                node.push(c);
            }
            configs.push(node);
        }
        Ok(Fleet {
            base: first.clone(),
            configs,
            per_endpoint,
        })
    }

    /// The configuration for connection `i` (its endpoint is shared with its neighbours on
    /// the same node).
    pub fn config(&self, i: usize) -> ClientConfig {
        let nodes = self.configs.len().max(1);
        let Some(node) = self.configs.get(i % nodes) else {
            return self.base.clone();
        };
        let idx = (i / nodes / self.per_endpoint) % node.len().max(1);
        // `across` makes at least one endpoint; without one a client would bind its own socket.
        node.get(idx).unwrap_or(&self.base).clone()
    }

    /// How many nodes the fleet spreads over.
    pub fn nodes(&self) -> usize {
        self.configs.len()
    }

    /// How many UDP sockets the fleet uses.
    pub fn endpoints(&self) -> usize {
        self.configs.iter().map(Vec::len).sum()
    }
}

/// The base client configuration for a server.
pub fn base_config(
    server: std::net::SocketAddr,
    fingerprint: &str,
    keep_alive: Option<Duration>,
    ack_delay: Option<Duration>,
) -> Result<ClientConfig, tern_sdk::Error> {
    let mut c = ClientConfig::new(server, Trust::pinned_hex(fingerprint)?);
    c.device_name = "tern-loadgen".into();
    c.app = format!("tern-loadgen/{}", env!("CARGO_PKG_VERSION"));
    c.reconnect_min = Duration::from_millis(50);
    c.reconnect_max = Duration::from_secs(2);
    if let Some(k) = keep_alive {
        c.keep_alive = k;
    }
    if let Some(d) = ack_delay {
        c.ack_delay = d;
    }
    Ok(c)
}

/// The login identifier of user `i` in run `run`. Email addresses, 100 per domain: the server
/// rate-limits OTP requests per domain (and per number prefix), so users are spread out.
pub fn identifier(run: &str, i: usize) -> String {
    format!("u{i}@{run}-{}.loadgen.test", i / 100)
}

/// A logged-in user.
#[derive(Debug)]
pub struct User {
    /// Position in the run.
    pub index: usize,
    /// The handle.
    pub client: Client,
    /// Its events; drain them.
    pub events: Events,
    /// Who it is.
    pub session: SessionInfo,
    /// How long the login took (connect, request, read code, verify).
    pub login_time: Duration,
}

fn retryable(e: &tern_sdk::Error) -> bool {
    match e {
        tern_sdk::Error::Disconnected | tern_sdk::Error::Timeout => true,
        other => other.code().is_some_and(|c| c.is_retryable()),
    }
}

/// Calls `f` until it succeeds or fails for good (a few tries with backoff on retryable errors).
async fn with_retries<T, F, Fut>(
    step: &'static str,
    identifier: &str,
    mut f: F,
) -> Result<T, LoginError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tern_sdk::Error>>,
{
    let mut pause = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) && attempt < 6 => {
                attempt += 1;
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(source) => {
                return Err(LoginError::Sdk {
                    step,
                    identifier: identifier.to_owned(),
                    source,
                });
            }
        }
    }
}

/// Starts a client and logs it in as a new device of `identifier`.
///
/// When verification fails in a way worth retrying (rate limit, overload, timeout, dropped
/// connection), the attempt starts over on a fresh client: a `VerifyOtp` that timed out in the
/// client may still have succeeded on the server, leaving that connection authenticated there
/// while the client does not know it (and an authenticated session may not ask for codes).
pub async fn login(
    config: ClientConfig,
    otp: &OtpFile,
    identifier: &str,
    index: usize,
) -> Result<User, LoginError> {
    let t0 = Instant::now();
    let mut tries = 0;
    loop {
        let (client, events) = Client::start(config.clone()).map_err(|source| LoginError::Sdk {
            step: "start",
            identifier: identifier.to_owned(),
            source,
        })?;
        let mark = otp.mark()?;
        with_retries("request_otp", identifier, || client.request_otp(identifier)).await?;
        let code = otp
            .wait_code(identifier, mark, Duration::from_secs(10))
            .await?;
        match client.verify_otp(identifier, &code).await {
            Ok(session) => {
                return Ok(User {
                    index,
                    client,
                    events,
                    session,
                    login_time: t0.elapsed(),
                });
            }
            Err(e) if retryable(&e) && tries < 5 => {
                tries += 1;
                client.close().await;
                tokio::time::sleep(Duration::from_millis(100 << tries)).await;
            }
            Err(source) => {
                return Err(LoginError::Sdk {
                    step: "verify_otp",
                    identifier: identifier.to_owned(),
                    source,
                });
            }
        }
    }
}

/// Logs in users `0..n` with at most `concurrency` logins in flight; `on_done` is called after
/// each (for progress). User `i` reads its code from `otps[i % otps.len()]` (its node's file).
/// Returns the users in index order and the failures.
pub async fn login_all(
    fleet: &Fleet,
    otps: &[Arc<OtpFile>],
    run: &str,
    n: usize,
    concurrency: usize,
    stop: &AtomicBool,
    on_done: impl Fn(&Result<User, LoginError>),
) -> (Vec<User>, Vec<LoginError>) {
    let Some(first) = otps.first() else {
        let source = tern_sdk::Error::Config("no OTP file to read codes from".into());
        return (
            Vec::new(),
            vec![LoginError::Sdk {
                step: "login",
                identifier: String::new(),
                source,
            }],
        );
    };
    let mut set = JoinSet::new();
    let mut users: Vec<User> = Vec::with_capacity(n);
    let mut errors = Vec::new();
    let mut next = 0;
    let concurrency = concurrency.max(1);
    loop {
        if stop.load(Ordering::Relaxed) {
            set.abort_all();
            errors.push(LoginError::Stopped);
            break;
        }
        while next < n && set.len() < concurrency {
            let cfg = fleet.config(next);
            // Each node writes the codes of the logins it serves to its own file.
            let otp = otps.get(next % otps.len()).unwrap_or(first).clone();
            let id = identifier(run, next);
            let index = next;
            set.spawn(async move { login(cfg, &otp, &id, index).await });
            next += 1;
        }
        let done = tokio::select! {
            done = set.join_next() => match done {
                Some(done) => done,
                None => break,
            },
            // Look at the stop flag now and then even while logins hang.
            _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
        };
        match done {
            Ok(result) => {
                on_done(&result);
                match result {
                    Ok(u) => users.push(u),
                    Err(e) => errors.push(e),
                }
            }
            Err(join) => errors.push(LoginError::Sdk {
                step: "login task",
                identifier: join.to_string(),
                source: tern_sdk::Error::Closed("the login task panicked".into()),
            }),
        }
    }
    users.sort_by_key(|u| u.index);
    (users, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(port: u16) -> ClientConfig {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        ClientConfig::new(
            addr,
            Trust::pinned_hex(&"ab".repeat(32)).unwrap_or_else(|e| panic!("{e}")),
        )
    }

    #[tokio::test]
    async fn a_fleet_across_nodes_alternates_them_and_shares_endpoints_per_node() {
        let fleet =
            Fleet::across(&[base(1001), base(1002)], 8, 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fleet.nodes(), 2);
        assert_eq!(
            fleet.endpoints(),
            4,
            "4 connections per node, 2 per endpoint"
        );
        let ports: Vec<u16> = (0..8).map(|i| fleet.config(i).server.port()).collect();
        assert_eq!(ports, [1001, 1002, 1001, 1002, 1001, 1002, 1001, 1002]);
        // Connections 0 and 2 (node 0's first two) share an endpoint; 4 is on the next one.
        let local = |i: usize| {
            fleet
                .config(i)
                .endpoint
                .and_then(|e| e.local_addr().ok())
                .unwrap_or_else(|| panic!("connection {i} has a shared endpoint"))
        };
        assert_eq!(local(0), local(2));
        assert_ne!(local(0), local(4));
        assert_ne!(local(0), local(1), "another node, another endpoint");
        let one = Fleet::new(&base(1001), 3, 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((one.nodes(), one.endpoints()), (1, 2));
        assert!(Fleet::across(&[], 1, 1).is_err());
    }
}
