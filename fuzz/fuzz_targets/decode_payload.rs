//! `codec::decode_payload` on arbitrary bytes: never panics, and whatever decodes is within the
//! field limits and round-trips (every Request, Response, Event, UpdateKind and MessageBody).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_fuzz::check_roundtrip;
use tern_protocol::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = codec::decode_payload(data) {
        assert!(frame.within_limits());
        check_roundtrip(&frame);
        let framed = codec::encode_to_vec(&frame).expect("re-encode");
        let again = codec::decode_payload(tern_fuzz::payload(&framed)).expect("re-decode");
        assert_eq!(again, frame);
    }
});
