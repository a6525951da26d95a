//! How much memory one connection may make the server hold, and the quinn settings that enforce
//! it.
//!
//! quinn's defaults are sized for bulk transfer: 100 streams each way, a 1.25 MB receive window
//! per stream, no connection-wide receive limit and a 10 MB send buffer. A client that opens every
//! stream, fills each window and never reads could pin tens of megabytes per connection, and a
//! few thousand such connections the whole machine. Tern's protocol needs one bidirectional
//! control stream and small windows, so the server grants exactly that and counts every other
//! buffer in bytes: [`TransportLimits::worst_case_bytes`] is the most one connection can pin, and
//! the test below keeps it honest when a limit changes. Media (its own streams, a later feature)
//! will raise the stream credit per authenticated connection with
//! `Connection::set_max_concurrent_bi_streams`, never for anonymous ones.

use std::time::Duration;

use quinn::{IdleTimeout, TransportConfig, VarInt};
use tern_protocol::limits::{MAX_DATAGRAM_LEN, MAX_FRAME_LEN};

use super::TransportError;

/// Per-connection buffer limits, in bytes unless named otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportLimits {
    /// Bidirectional streams a client may open: the control stream only.
    pub bidi_streams: u32,
    /// Unidirectional streams a client may open: none are used.
    pub uni_streams: u32,
    /// Unread bytes buffered per stream.
    pub stream_receive_window: u32,
    /// Unread bytes buffered per connection, all streams together.
    pub receive_window: u32,
    /// Bytes written but not yet acknowledged by the client, per connection (quinn's buffer).
    pub send_window: u32,
    /// Datagrams received but not yet read.
    pub datagram_receive_buffer: usize,
    /// Frames queued for the writer of an authenticated connection (ours, before quinn's).
    pub outbound_queue: usize,
    /// The same for a connection that has not logged in: it only gets small answers.
    pub anonymous_outbound_queue: usize,
}

impl Default for TransportLimits {
    fn default() -> Self {
        // Two frames of credit on the control stream keeps requests flowing without a stall
        // while one frame is decoded; the connection window adds a little for stream framing.
        let frame = MAX_FRAME_LEN;
        TransportLimits {
            bidi_streams: 1,
            uni_streams: 0,
            stream_receive_window: 2 * frame,
            receive_window: 2 * frame + 16 * 1024,
            send_window: 2 * frame,
            datagram_receive_buffer: 8 * MAX_DATAGRAM_LEN,
            outbound_queue: 4 * frame as usize,
            anonymous_outbound_queue: 16 * 1024,
        }
    }
}

/// What quinn itself keeps per connection regardless of the windows (connection state, crypto,
/// packet spaces, timers), measured at about 38 KiB per idle connection on this project's
/// machines (BENCHMARKS.md); rounded up.
pub const QUINN_BASE_BYTES: usize = 48 * 1024;
/// TLS handshake messages quinn buffers per connection (its `crypto_buffer_size` default).
pub const CRYPTO_BUFFER_BYTES: usize = 16 * 1024;

impl TransportLimits {
    /// The most memory one connection can pin, counted from the limits: quinn's base state, its
    /// crypto buffer, the connection-wide receive window (which bounds every stream together),
    /// the frame decoder (at most one frame), the datagram buffer, quinn's send buffer and our
    /// outbound queue. `anonymous` uses the anonymous queue bound.
    pub fn worst_case_bytes(&self, anonymous: bool) -> usize {
        let queue = if anonymous {
            self.anonymous_outbound_queue
        } else {
            self.outbound_queue
        };
        QUINN_BASE_BYTES
            + CRYPTO_BUFFER_BYTES
            + self.receive_window as usize
            + MAX_FRAME_LEN as usize
            + self.datagram_receive_buffer
            + self.send_window as usize
            + queue
    }

    /// The quinn transport configuration enforcing these limits.
    pub fn transport_config(
        &self,
        idle_timeout: Duration,
    ) -> Result<TransportConfig, TransportError> {
        let mut t = TransportConfig::default();
        t.max_concurrent_bidi_streams(VarInt::from_u32(self.bidi_streams))
            .max_concurrent_uni_streams(VarInt::from_u32(self.uni_streams))
            .stream_receive_window(VarInt::from_u32(self.stream_receive_window))
            .receive_window(VarInt::from_u32(self.receive_window))
            .send_window(u64::from(self.send_window))
            .datagram_receive_buffer_size(Some(self.datagram_receive_buffer))
            .datagram_send_buffer_size(self.datagram_receive_buffer)
            .max_idle_timeout(Some(
                IdleTimeout::try_from(idle_timeout)
                    .map_err(|e| TransportError::Config(e.to_string()))?,
            ));
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_connection_pins_at_most_a_few_hundred_kib() {
        let l = TransportLimits::default();
        assert_eq!(l.bidi_streams, 1, "only the control stream is granted");
        assert_eq!(l.uni_streams, 0);
        assert!(
            l.stream_receive_window >= MAX_FRAME_LEN,
            "a full frame must fit"
        );
        assert!(l.receive_window >= l.stream_receive_window);
        let anonymous = l.worst_case_bytes(true);
        let authenticated = l.worst_case_bytes(false);
        // 48 + 16 + 144 + 64 + 4 + 128 + 16 KiB.
        assert_eq!(anonymous, 420 * 1024);
        assert_eq!(authenticated, anonymous - 16 * 1024 + 256 * 1024);
        assert!(l.transport_config(Duration::from_secs(30)).is_ok());
    }
}
