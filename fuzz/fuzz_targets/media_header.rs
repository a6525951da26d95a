//! Media stream headers: `codec::decode_media_open` and `codec::decode_media_reply` on arbitrary
//! bytes (what a peer writes at the start of a media stream). Never panics; what decodes is
//! within the limits, took at most `MAX_MEDIA_HEADER_LEN` + its prefix, re-encodes to exactly
//! the bytes it took and decodes back to the same value; and every strict prefix of a header
//! that decodes is still "more bytes needed", never an error or another value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_protocol::codec::{self, CodecError};
use tern_protocol::limits::MAX_MEDIA_HEADER_LEN;

/// Longest varint length prefix (a `u32`).
const MAX_LEN_PREFIX: usize = 5;

fn check<T: PartialEq + std::fmt::Debug>(
    data: &[u8],
    decode: impl Fn(&[u8]) -> Result<Option<(T, usize)>, CodecError>,
    encode: impl Fn(&T) -> Result<Vec<u8>, CodecError>,
) {
    match decode(data) {
        Ok(Some((value, used))) => {
            assert!(used <= data.len(), "used {used} of {} bytes", data.len());
            assert!(
                used <= MAX_MEDIA_HEADER_LEN as usize + MAX_LEN_PREFIX,
                "a header of {used} bytes passed the limit"
            );
            let again = encode(&value).expect("a decoded header must re-encode");
            // postcard is canonical except for over-long varints inside the payload, so the
            // re-encoding may be shorter than what was read, never longer.
            assert!(
                again.len() <= used,
                "re-encoding grew: {} > {used}",
                again.len()
            );
            assert_eq!(
                decode(&again).expect("a re-encoded header must decode"),
                Some((value, again.len())),
                "round trip changed the value"
            );
            // Bytes after the header are media data and must not change what the header is.
            assert_eq!(
                decode(&data[..used]).ok().flatten().map(|(_, n)| n),
                Some(used)
            );
            // A header still arriving is waited for, whatever byte it was cut at.
            for cut in 0..used {
                assert!(
                    matches!(decode(&data[..cut]), Ok(None)),
                    "a header cut at {cut} of {used} bytes was not waited for"
                );
            }
        }
        Ok(None) => {
            // Waiting for more: never more than the limit allows.
            assert!(data.len() < MAX_MEDIA_HEADER_LEN as usize + MAX_LEN_PREFIX);
        }
        Err(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, codec::decode_media_open, codec::encode_media_open);
    check(data, codec::decode_media_reply, codec::encode_media_reply);
});
