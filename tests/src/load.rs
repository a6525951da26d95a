//! Chat load for fault tests: senders that keep sending through their outboxes until told to
//! stop, devices whose events are recorded in the background (messages, connects, disconnects),
//! and the final check of everything acknowledged against everything received.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_sdk::protocol::{ChatId, Message, MessageBody, SessionInfo};
use tern_sdk::{Client, ClientConfig, ClientEvent};
use tokio::task::JoinHandle;

use crate::child::ChildServer;
use crate::history::{self, Acked};
use crate::{Device, client_config, login};

/// What a device's event stream showed.
#[derive(Debug, Default, Clone)]
pub struct EventLog {
    /// Message events, in arrival order.
    pub messages: Vec<Message>,
    /// `Connected` events.
    pub connected: u32,
    /// `Disconnected` events.
    pub disconnected: u32,
    /// Their reasons.
    pub disconnect_reasons: Vec<String>,
    /// `ConnectFailed` events.
    pub connect_failed: u32,
}

/// A logged-in device whose events a background task records.
#[derive(Debug)]
pub struct Watched {
    /// For reports.
    pub name: String,
    /// The handle.
    pub client: Client,
    /// Who it is.
    pub session: SessionInfo,
    /// What its events showed so far.
    pub log: Arc<Mutex<EventLog>>,
    task: JoinHandle<()>,
}

impl Watched {
    /// Starts recording `device`'s events.
    pub fn new(name: impl Into<String>, device: Device) -> Watched {
        let Device {
            client,
            mut events,
            session,
        } = device;
        let log: Arc<Mutex<EventLog>> = Arc::default();
        let l = log.clone();
        let task = tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                let mut l = l.lock().unwrap();
                match ev {
                    ClientEvent::Message { message, .. } => l.messages.push(message),
                    ClientEvent::Connected { .. } => l.connected += 1,
                    ClientEvent::Disconnected { reason } => {
                        l.disconnected += 1;
                        l.disconnect_reasons.push(reason);
                    }
                    ClientEvent::ConnectFailed { .. } => l.connect_failed += 1,
                    _ => {}
                }
            }
        });
        Watched {
            name: name.into(),
            client,
            session,
            log,
            task,
        }
    }

    /// A copy of the log.
    pub fn snapshot(&self) -> EventLog {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Senders with one direct chat each to a receiving user with two devices.
#[derive(Debug)]
pub struct Scenario {
    /// Sending devices; sender `i` writes in `chats[i]`.
    pub senders: Vec<Watched>,
    /// Two devices of the receiving user.
    pub receivers: Vec<Watched>,
    /// One chat per sender.
    pub chats: Vec<ChatId>,
}

impl Scenario {
    /// A server child in `dir` (two shards) and a scenario of `senders` on it, connected directly.
    pub async fn on_child(dir: &Path, prefix: &str, senders: usize) -> (ChildServer, Scenario) {
        crate::init();
        let server = ChildServer::start(dir, &["--shards", "2"]).await;
        let fp = server.fingerprint();
        let quic = server.quic;
        let scenario = Scenario::new(
            || client_config(quic, &fp),
            &server.otp_file(),
            prefix,
            senders,
        )
        .await;
        (server, scenario)
    }

    /// Logs in `senders` senders and two receiver devices (identifiers from `prefix`, a phone
    /// number prefix of 8 digits such as `+1555007`) and opens the chats.
    pub async fn new(
        cfg: impl Fn() -> ClientConfig,
        otp: &Path,
        prefix: &str,
        senders: usize,
    ) -> Scenario {
        let receiver_id = format!("{prefix}9999");
        let mut receivers = Vec::new();
        for i in 0..2 {
            let d = login(cfg(), otp, &receiver_id).await.unwrap();
            receivers.push(Watched::new(format!("r{i}"), d));
        }
        let mut out = Vec::new();
        let mut chats = Vec::new();
        for i in 0..senders {
            let d = login(cfg(), otp, &format!("{prefix}{i:04}")).await.unwrap();
            let chat = d
                .client
                .open_direct_chat(receivers[0].session.user_id)
                .await
                .unwrap()
                .chat_id;
            chats.push(chat);
            out.push(Watched::new(format!("s{i}"), d));
        }
        Scenario {
            senders: out,
            receivers,
            chats,
        }
    }

    /// Starts `lanes` concurrent senders per sending device, each pausing `pace` between sends.
    pub fn start_load(&self, lanes: usize, pace: Duration) -> ChatLoad {
        let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (i, s) in self.senders.iter().enumerate() {
            for lane in 0..lanes {
                let client = s.client.clone();
                let chat = self.chats[i];
                let acked = acked.clone();
                let stop = stop.clone();
                tasks.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let body = MessageBody::Text(format!("s{i}-l{lane}-{n}"));
                        let cmid = ((i as u64) << 40) | ((lane as u64) << 32) | n;
                        let sent = client.send(chat, body.clone(), cmid).await.unwrap();
                        acked.lock().unwrap().push(Acked { sent, body });
                        n += 1;
                        tokio::time::sleep(pace).await;
                    }
                }));
            }
        }
        ChatLoad { acked, stop, tasks }
    }

    /// Waits until every device has every acknowledged message of its chats (or `timeout`
    /// passes), then checks the history: nothing acknowledged missing, nothing duplicated or
    /// out of order, same order on both receiving devices, no send stored twice. Returns the
    /// problems found (empty when correct).
    pub async fn verify(&self, acked: &[Acked], timeout: Duration) -> Vec<String> {
        let expected = |chats: &[ChatId]| -> Vec<Acked> {
            acked
                .iter()
                .filter(|a| chats.contains(&a.sent.chat_id))
                .cloned()
                .collect()
        };
        let mut devices: Vec<(&Watched, Vec<Acked>)> = Vec::new();
        for r in &self.receivers {
            devices.push((r, expected(&self.chats)));
        }
        for (i, s) in self.senders.iter().enumerate() {
            devices.push((s, expected(&self.chats[i..=i])));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        for (d, want) in &devices {
            while d.log.lock().unwrap().messages.len() < want.len()
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // A late duplicate would arrive now.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut problems = Vec::new();
        let mut receivers = Vec::new();
        for (d, want) in &devices {
            let got = d.snapshot().messages;
            if got.len() != want.len() {
                problems.push(format!(
                    "{}: {} messages, {} acknowledged",
                    d.name,
                    got.len(),
                    want.len()
                ));
            }
            let keys: HashSet<_> = got
                .iter()
                .map(|m| (m.sender_device, m.client_msg_id))
                .collect();
            if keys.len() != got.len() {
                problems.push(format!("{}: a send was stored twice", d.name));
            }
            if d.name.starts_with('r') {
                receivers.push((d.name.clone(), got));
            } else {
                problems.extend(history::check(want, &[(d.name.clone(), got)]));
            }
        }
        problems.extend(history::check(&devices[0].1, &receivers));
        problems
    }

    /// Connect and disconnect counts over every device: (connected, disconnected, failed).
    pub fn reconnects(&self) -> Vec<(String, EventLog)> {
        self.senders
            .iter()
            .chain(&self.receivers)
            .map(|w| {
                let mut l = w.snapshot();
                l.messages.clear();
                (w.name.clone(), l)
            })
            .collect()
    }
}

/// Running senders.
#[derive(Debug)]
pub struct ChatLoad {
    /// Every acknowledged send so far.
    pub acked: Arc<Mutex<Vec<Acked>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ChatLoad {
    /// Sends acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until at least `n` more sends have been acknowledged than now, or `timeout`.
    pub async fn wait_more(&self, n: usize, timeout: Duration) -> bool {
        let target = self.acked_count() + n;
        let deadline = tokio::time::Instant::now() + timeout;
        while self.acked_count() < target {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Stops sending, waits (up to `timeout`) until every send in flight is acknowledged, and
    /// returns all acknowledged sends. Panics if the outboxes do not drain in time.
    pub async fn stop(self, timeout: Duration) -> Vec<Acked> {
        self.stop.store(true, Ordering::Relaxed);
        let done = tokio::time::timeout(timeout, async {
            for t in self.tasks {
                t.await.unwrap();
            }
        })
        .await;
        assert!(
            done.is_ok(),
            "the outboxes did not drain within {timeout:?}"
        );
        self.acked.lock().unwrap().clone()
    }
}
