//! Tern server library: a realtime messaging backend over QUIC.
//!
//! Map (see `docs/ARCHITECTURE.md`): [`transport`] is the only module that knows quinn; it feeds
//! decoded frames through the pure session state machine of `tern-protocol` into [`services`],
//! which calls [`auth`] and [`chat`]. Both persist through the [`storage`] trait; storage hands
//! committed updates to the [`router`], which pushes them to live connections.

pub mod admin;
pub mod auth;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod groups;
pub mod keys;
pub mod media;
pub mod metrics;
pub mod policy;
pub mod presence;
pub mod router;
pub mod server;
pub mod services;
pub mod shard;
pub mod social;
pub mod storage;
pub mod transport;

pub use config::Config;
pub use server::RunningServer;
