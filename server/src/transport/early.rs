//! 0-RTT: what the server does with data that arrives before the handshake is confirmed.
//!
//! A client resuming a TLS session may send its first flight as 0-RTT early data. Anyone who
//! recorded that flight can send it again, and until the client's `Finished` arrives the server
//! cannot tell the original from a replay (a replayer lacks the 1-RTT keys, so a replayed
//! connection never gets past this point). Tickets are single use (`tls::server_config_with`),
//! which stops most replays in TLS already; this module is the rule for the rest, and the one
//! place it is written down:
//!
//! 1. **`Hello` is answered at once.** Checking the access token and reading the user's latest
//!    pts are reads, and the `Welcome` goes to a connection only the real client can read. What
//!    `Hello` *changes* (registering the connection for live updates, which may close the
//!    device's oldest connection over its cap, and going online for presence watchers) waits
//!    until the handshake is confirmed ([`super::connection`] calls it going live).
//! 2. **Replay-safe requests run at once** ([`Request::replay_safe`]: pure reads and `Ping`),
//!    so a `Sync` sent with the `Hello` is answered without waiting for a round trip.
//! 3. **The first other request stops the reader** until the handshake is confirmed. Nothing
//!    after it is read either, so the order of requests is kept, and what is waiting is bounded
//!    by the stream's flow-control window (it is not read out of quinn at all). If the
//!    handshake does not complete within [`CONFIRM_TIMEOUT`] (a replay, or a lost client), the
//!    connection is closed with `HandshakeRequired` and the held requests are never executed;
//!    this also bounds how long a session that is not registered (so not reached by a device
//!    revocation) can be answered reads.
//! 4. **Datagrams (typing) are dropped** until the session is live: they reach other users, and
//!    a hint lost is harmless (the client sends typing again while the user types).
//!
//! With `transport.zero_rtt = false` the server offers no early data and every connection
//! starts confirmed.

use std::time::Duration;

use quinn::{Connection, ConnectionError, Incoming, ZeroRttAccepted};
use tern_protocol::{Frame, Request};

/// How long after accepting a connection its handshake must be confirmed (as long as a client
/// has to send `Hello`).
pub const CONFIRM_TIMEOUT: Duration = tern_protocol::session::HELLO_TIMEOUT;

/// Where a connection's handshake stands when it is handed to [`super::connection::serve`].
pub enum Handshake {
    /// Complete: everything may run.
    Confirmed,
    /// Still in progress (the connection was accepted as 0.5-RTT): the future resolves when it
    /// completes or fails.
    Pending(ZeroRttAccepted),
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Handshake::Confirmed => "Confirmed",
            Handshake::Pending(_) => "Pending",
        })
    }
}

/// Accepts `incoming`: with `zero_rtt`, at once as a 0.5-RTT connection whose early data may be
/// read before the handshake completes; otherwise after the full handshake.
pub async fn accept(
    incoming: Incoming,
    zero_rtt: bool,
) -> Result<(Connection, Handshake), ConnectionError> {
    if !zero_rtt {
        return Ok((incoming.await?, Handshake::Confirmed));
    }
    let connecting = incoming.accept()?;
    match connecting.into_0rtt() {
        Ok((conn, accepted)) => Ok((conn, Handshake::Pending(accepted))),
        // quinn always converts server connections; finish the handshake if it ever does not.
        Err(connecting) => Ok((connecting.await?, Handshake::Confirmed)),
    }
}

/// Whether `conn`'s handshake completed when its [`Handshake::Pending`] future resolved. On a
/// server quinn resolves it with `false` both on completion and on failure, so the connection's
/// state decides.
pub fn completed(conn: &Connection) -> bool {
    conn.close_reason().is_none()
}

/// Whether a frame received before the handshake is confirmed may be handled at once (rule 1
/// and 2). Frames a client must never send are let through too: they close the connection,
/// which is safe from a replay.
pub fn may_run_early(frame: &Frame) -> bool {
    match frame {
        Frame::Request { body, .. } => runs_early(body),
        Frame::Hello(_)
        | Frame::Welcome(_)
        | Frame::Response { .. }
        | Frame::Event(_)
        | Frame::Error(_)
        | Frame::GoAway(_) => true,
    }
}

/// Rule 2, for one request.
pub fn runs_early(request: &Request) -> bool {
    request.replay_safe()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_protocol::{ChatId, ClientInfo, Hello, MessageBody, PROTOCOL_VERSION, SyncCursor};

    #[test]
    fn hello_and_reads_run_early_writes_wait() {
        let hello = Frame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client: ClientInfo {
                name: "t".into(),
                version: "1".into(),
                platform: "linux".into(),
            },
            auth: Some("token".into()),
            resume: None,
        });
        assert!(may_run_early(&hello));
        let sync = Frame::Request {
            req_id: 1,
            body: Request::Sync {
                after: SyncCursor { pts: 0 },
                limit: 10,
            },
        };
        assert!(may_run_early(&sync));
        let send = Frame::Request {
            req_id: 2,
            body: Request::SendMessage {
                chat_id: ChatId(1),
                client_msg_id: 7,
                body: MessageBody::Text("hi".into()),
            },
        };
        assert!(!may_run_early(&send));
        let otp = Frame::Request {
            req_id: 3,
            body: Request::RequestOtp {
                identifier: "a@example.org".into(),
            },
        };
        assert!(!may_run_early(&otp), "an OTP request sends an SMS");
    }
}
