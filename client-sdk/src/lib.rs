//! The Tern client SDK.
//!
//! [`Client::start`] spawns a driver task that owns the QUIC connection and returns a cheap
//! handle plus an [`Events`] stream. The driver connects, logs in (OTP, or tokens from an earlier
//! run, refreshing them when needed), syncs what the device missed, and reconnects with jittered
//! backoff when the network drops. Sends go through an outbox that retries with the same
//! `client_msg_id` until the server answers `Sent`, so a retry never duplicates a message.
//!
//! Updates reach the app exactly once and in order: the server numbers every update of a user
//! densely (pts); [`SyncState`] applies only the next one, drops duplicates, and turns a gap into
//! a sync.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tern_sdk::Error> {
//! use tern_sdk::{Client, ClientConfig, ClientEvent, Trust};
//! let trust = Trust::pinned_hex("58fb...")?;
//! let (client, mut events) = Client::start(ClientConfig::new("127.0.0.1:4433".parse().unwrap(), trust))?;
//! client.request_otp("+15550001111").await?;
//! let session = client.verify_otp("+15550001111", "123456").await?;
//! while let Some(ev) = events.next().await {
//!     if let ClientEvent::Message { message, .. } = ev { println!("{message:?}"); }
//! }
//! # Ok(()) }
//! ```

mod body;
mod client;
mod config;
mod driver;
mod error;
mod media;
mod social;
mod state;
mod tls;

pub use client::{Client, ClientEvent, Events, Snapshot};
pub use config::{ClientConfig, shared_endpoint};
pub use error::Error;
pub use media::{Attempt, MediaSource, UploadSpec, Uploaded, retryable};
pub use state::{HoleGuard, MAX_HOLE_RETRIES, PageStep, SyncState, Verdict};
pub use tern_protocol as protocol;
pub use tls::{SessionCache, Trust, client_config, client_config_with};
