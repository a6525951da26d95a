//! QUIC datagrams: `codec::decode_datagram` and the server's per-connection `DatagramGate` on
//! arbitrary bytes: never panics, whatever decodes round-trips, and the gate only ever passes a
//! client-to-server `Typing` (an authenticated one, within the rate).
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tern_protocol::{Datagram, codec};
use tern_server::transport::datagram::{DatagramGate, Inbound};

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = codec::decode_datagram(data) {
        let again = codec::encode_datagram(&d).expect("re-encode");
        assert_eq!(codec::decode_datagram(&again).expect("re-decode"), d);
    }
    let t = Instant::now();
    let mut gate = DatagramGate::new(10.0, 20.0, t);
    for (i, chunk) in data.chunks(16).enumerate() {
        let now = t + Duration::from_millis(i as u64 * 7);
        match gate.admit(chunk, i % 3 != 0, now) {
            Inbound::Typing { chat_id, typing } => {
                assert!(i % 3 != 0, "an unauthenticated datagram passed");
                assert_eq!(
                    codec::decode_datagram(chunk).ok(),
                    Some(Datagram::Typing { chat_id, typing })
                );
            }
            Inbound::Dropped(_) => {}
        }
    }
});
