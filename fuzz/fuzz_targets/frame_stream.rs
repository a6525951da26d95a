//! Arbitrary bytes fed to `FrameDecoder` in arbitrary chunkings, draining frames after each
//! chunk as the server does. Never panics; the buffer stays within one maximum frame (plus its
//! length prefix) and one chunk; every decoded frame round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_fuzz::{MAX_LEN_PREFIX, check_roundtrip, split_stream};
use tern_protocol::codec::FrameDecoder;
use tern_protocol::limits::MAX_FRAME_LEN;

const MAX_PENDING: usize = MAX_FRAME_LEN as usize + MAX_LEN_PREFIX;

fuzz_target!(|data: &[u8]| {
    let (sizes, mut stream) = split_stream(data);
    let mut dec = FrameDecoder::new();
    let mut i = 0;
    while !stream.is_empty() {
        let size = if sizes.is_empty() {
            stream.len()
        } else {
            sizes[i % sizes.len()]
        };
        i += 1;
        let (chunk, rest) = stream.split_at(size.min(stream.len()));
        stream = rest;
        dec.extend(chunk);
        assert!(
            dec.buffered() <= MAX_PENDING + chunk.len(),
            "{} bytes buffered after a chunk of {}",
            dec.buffered(),
            chunk.len()
        );
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.within_limits());
                    check_roundtrip(&frame);
                }
                Ok(None) => break,
                // The stream cannot be resynchronised: the server answers and closes.
                Err(_) => return,
            }
        }
        assert!(
            dec.buffered() < MAX_PENDING,
            "{} bytes buffered with no complete frame",
            dec.buffered()
        );
    }
});
