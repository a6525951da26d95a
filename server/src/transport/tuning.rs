//! QUIC settings that change how many packets a message costs, not how much memory a connection
//! may pin (that is [`super::limits`]).
//!
//! At Tern's paced load every frame tends to travel in a packet of its own, and every packet the
//! client receives is acknowledged by a QUIC ACK-only packet that the server must receive,
//! decrypt and process: a large share of the server's packets carry no data at all. These knobs
//! are here so that the effect of each can be measured (BENCHMARKS.md, "quinn settings") rather
//! than guessed; the defaults are the measured choice.

use std::time::Duration;

use quinn::{AckFrequencyConfig, TransportConfig, VarInt};

/// The packet-level transport settings of a shard's endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuicTuning {
    /// Ask clients (through the QUIC ACK frequency extension, which quinn clients support) to
    /// acknowledge only after more than this many ack-eliciting packets, or after
    /// `ack_delay`. `None` leaves clients at the RFC 9000 default (every second packet, or
    /// after their `max_ack_delay` of 25 ms).
    pub ack_eliciting_threshold: Option<u32>,
    /// The delay to request with `ack_eliciting_threshold` (quinn clamps what the peer applies to
    /// at most the greater of the path RTT and 25 ms). `None` keeps the client's own.
    pub ack_delay: Option<Duration>,
    /// Send several packets of one connection with one `sendmsg` (UDP GSO) where the kernel
    /// supports it.
    pub segmentation_offload: bool,
    /// Probe for a larger path MTU (a few packets per connection after the handshake, and
    /// again every 10 minutes).
    pub mtu_discovery: bool,
    /// `SO_RCVBUF` of the shard's UDP socket, which every connection of the shard shares. The
    /// kernel's default (about 208 KiB) overflows when bursts from thousands of clients meet a
    /// busy shard, and each datagram dropped there costs a QUIC loss recovery on both sides.
    /// The kernel caps it at `net.core.rmem_max` (docs/operations.md).
    pub udp_receive_buffer: usize,
}

impl Default for QuicTuning {
    fn default() -> Self {
        QuicTuning {
            ack_eliciting_threshold: None,
            ack_delay: None,
            segmentation_offload: true,
            mtu_discovery: true,
            udp_receive_buffer: DEFAULT_UDP_RECEIVE_BUFFER,
        }
    }
}

/// The default [`QuicTuning::udp_receive_buffer`]: 4 MiB per shard.
pub const DEFAULT_UDP_RECEIVE_BUFFER: usize = 4 << 20;

impl QuicTuning {
    /// Applies these settings to `t`.
    pub fn apply(&self, t: &mut TransportConfig) {
        if let Some(threshold) = self.ack_eliciting_threshold {
            let mut ack = AckFrequencyConfig::default();
            ack.ack_eliciting_threshold(VarInt::from_u32(threshold))
                .max_ack_delay(self.ack_delay);
            t.ack_frequency_config(Some(ack));
        }
        t.enable_segmentation_offload(self.segmentation_offload);
        if !self.mtu_discovery {
            t.mtu_discovery_config(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_accepted_by_quinn() {
        let mut t = TransportConfig::default();
        QuicTuning::default().apply(&mut t);
        let tuned = QuicTuning {
            ack_eliciting_threshold: Some(8),
            ack_delay: Some(Duration::from_millis(25)),
            segmentation_offload: false,
            mtu_discovery: false,
            udp_receive_buffer: 1 << 20,
        };
        tuned.apply(&mut t);
        let debug = format!("{t:?}");
        assert!(debug.contains("ack_eliciting_threshold: 8"), "{debug}");
        assert!(debug.contains("mtu_discovery_config: None"), "{debug}");
    }
}
