//! Shared pieces of the fuzz targets: the checks every decoded frame must pass, the input
//! formats of the targets (so the seed generator writes exactly what the targets read) and the
//! golden-vector reader. See README.md.

use tern_protocol::codec::{self, FrameDecoder};
use tern_protocol::{Event, Frame};

/// Longest varint length prefix of a frame (a `u32`).
pub const MAX_LEN_PREFIX: usize = 5;

/// A decoded frame re-encodes, and the encoding decodes back to the same value, consuming every
/// byte; encoding is stable (the re-decoded value encodes to the same bytes); and the update
/// shortcuts the server uses encode exactly the full frame.
pub fn check_roundtrip(frame: &Frame) {
    let bytes = codec::encode_to_vec(frame).expect("a decoded frame must re-encode");
    let mut dec = FrameDecoder::new();
    dec.extend(&bytes);
    let again = dec
        .next_frame()
        .expect("a re-encoded frame must decode")
        .expect("a re-encoded frame must be complete");
    assert_eq!(&again, frame, "round trip changed the value");
    assert_eq!(dec.buffered(), 0, "round trip left bytes in the decoder");
    assert_eq!(
        codec::encode_to_vec(&again).expect("re-encode"),
        bytes,
        "encoding is not stable"
    );
    if let Frame::Event(Event::Update(u)) = frame {
        assert_eq!(codec::encode_update_event(u).expect("shortcut"), bytes);
        let kind = codec::encode_update_kind(&u.kind).expect("kind");
        assert_eq!(
            codec::encode_update_event_parts(u.pts, &kind).expect("parts"),
            bytes
        );
    }
}

/// `frame_stream` input: byte 0's low nibble is the number `n` of chunk-size bytes that follow;
/// the rest is the stream, cut into chunks of those sizes in turn (`n == 0`: one chunk).
/// A size byte `b < 128` means `b + 1` bytes, otherwise `(b - 127) * 512` (up to 64 KiB).
pub fn split_stream(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return (Vec::new(), &[]);
    };
    let n = usize::from(head & 0x0f).min(rest.len());
    let sizes = rest[..n]
        .iter()
        .map(|&b| {
            if b < 128 {
                usize::from(b) + 1
            } else {
                usize::from(b - 127) * 512
            }
        })
        .collect();
    (sizes, &rest[n..])
}

/// Operations of the `session` input, one tag byte each (taken modulo 4) and its operands.
pub mod session_ops {
    /// `FRAME len:u16le payload[len]`: a frame payload for `decode_payload`.
    pub const FRAME: u8 = 0;
    /// `ADVANCE ms10:u16le`: the clock moves on by `ms10 * 10` ms.
    pub const ADVANCE: u8 = 1;
    /// `TIMEOUT`: the shell's timer fired: `handle_timeout(now)`.
    pub const TIMEOUT: u8 = 2;
    /// `AUTH user:u16le device:u8`: a token check or login succeeded: `authenticate`.
    pub const AUTH: u8 = 3;
}

/// One `(name, framed bytes)` per golden vector in `protocol/tests/golden.rs`, read from its
/// source: each vector's name is its first string literal matching `group/case` and its bytes
/// are the last hex literal before the next name. Every one is checked to decode to exactly
/// one frame, so a change of the file's layout fails loudly instead of seeding garbage.
pub fn golden_vectors(src: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let start = src.find("fn cases()").ok_or("no fn cases() in golden.rs")?;
    let end = src[start..]
        .find("\n}\n")
        .map(|e| start + e)
        .ok_or("no end of fn cases()")?;
    let body = &src[start..end];
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    // String literals: the text between pairs of quotes (no escaped quotes occur in the table).
    for (i, lit) in body.split('"').enumerate() {
        if i % 2 == 0 {
            continue;
        }
        let is_name = lit.contains('/')
            && lit
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '/');
        let is_hex = !lit.is_empty()
            && lit.len() % 2 == 0
            && lit
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        if is_name {
            out.push((lit.to_string(), None));
        } else if is_hex && let Some(last) = out.last_mut() {
            last.1 = Some(lit.to_string());
        }
    }
    let mut vectors = Vec::new();
    for (name, hex_str) in out {
        let hex_str = hex_str.ok_or_else(|| format!("{name}: no hex literal"))?;
        let bytes = hex::decode(&hex_str).map_err(|e| format!("{name}: {e}"))?;
        let mut dec = FrameDecoder::new();
        dec.extend(&bytes);
        match dec.next_frame() {
            Ok(Some(_)) if dec.buffered() == 0 => {}
            other => return Err(format!("{name}: {hex_str} is not one frame: {other:?}")),
        }
        vectors.push((name, bytes));
    }
    if vectors.len() < 50 {
        return Err(format!("only {} golden vectors found", vectors.len()));
    }
    Ok(vectors)
}

/// The payload of a framed vector (its length prefix stripped).
pub fn payload(framed: &[u8]) -> &[u8] {
    let prefix = framed
        .iter()
        .position(|b| b & 0x80 == 0)
        .map_or(framed.len(), |i| i + 1);
    &framed[prefix..]
}
