//! The only place that knows the encoding (postcard) and the framing (varint length prefix).
//!
//! A frame on a stream is `len: varint u32` followed by `len` bytes of postcard-encoded [`Frame`].
//! The length is checked against [`MAX_FRAME_LEN`] before any byte of the payload is buffered, so
//! a peer cannot make the decoder allocate more than one maximum frame plus one read chunk.

use crate::error::ErrorCode;
use crate::event::{Update, UpdateKind};
use crate::frame::Frame;
use crate::limits::{MAX_DATAGRAM_LEN, MAX_FRAME_LEN, MAX_MEDIA_HEADER_LEN};
use crate::media::{MediaOpen, MediaReply};
use crate::social::Datagram;

/// Longest varint encoding of a `u32` frame length.
const MAX_LEN_PREFIX: usize = 5;

/// Why bytes could not become a frame, or a frame could not become bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The length prefix announced more than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced or encoded length.
        len: u64,
        /// The limit.
        max: u32,
    },
    /// A field exceeded its protocol limit.
    #[error("a field exceeds its protocol limit")]
    FieldTooLarge,
    /// The length prefix was not a valid varint.
    #[error("malformed length prefix")]
    BadLength,
    /// The payload did not decode as a frame.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl CodecError {
    /// The wire error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            CodecError::TooLarge { .. } | CodecError::FieldTooLarge => ErrorCode::TooLarge,
            CodecError::BadLength | CodecError::Malformed(_) => ErrorCode::BadFrame,
        }
    }
}

/// Appends `frame`, length-prefixed, to `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let payload = postcard::to_stdvec(frame).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if payload.len() > MAX_FRAME_LEN as usize {
        return Err(CodecError::TooLarge {
            len: payload.len() as u64,
            max: MAX_FRAME_LEN,
        });
    }
    put_varint(payload.len() as u32, out);
    out.extend_from_slice(&payload);
    Ok(())
}

/// Encodes one frame into a fresh buffer.
pub fn encode_to_vec(frame: &Frame) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode(frame, &mut out)?;
    Ok(out)
}

/// Encodes `Frame::Event(Event::Update(update))` without building (cloning into) the frame: the
/// server pushes every committed update this way. Byte-for-byte equal to [`encode_to_vec`] of the
/// full frame (postcard writes an enum as its variant index followed by the variant's fields).
pub fn encode_update_event(update: &Update) -> Result<Vec<u8>, CodecError> {
    encode_update_event_parts(update.pts, &encode_update_kind(&update.kind)?)
}

/// The encoded `kind` of an update, to frame it for many recipients with
/// [`encode_update_event_parts`]: a group message goes to every member with the same kind and
/// only the recipient's `pts` differs, so it is encoded once.
pub fn encode_update_kind(kind: &UpdateKind) -> Result<Vec<u8>, CodecError> {
    postcard::to_stdvec(kind).map_err(|e| CodecError::Malformed(e.to_string()))
}

/// `Frame::Event(Event::Update(Update { pts, kind }))` from `kind` already encoded by
/// [`encode_update_kind`]; byte-for-byte equal to [`encode_update_event`] (postcard writes a
/// struct as its fields in order and a `u64` as a LEB128 varint).
pub fn encode_update_event_parts(pts: u64, kind: &[u8]) -> Result<Vec<u8>, CodecError> {
    // Variant indices: `Frame::Event` is 4, `Event::Update` is 0.
    const PREFIX: [u8; 2] = [4, 0];
    let mut pts_bytes = [0u8; 10];
    let pts_len = put_varint_u64(pts, &mut pts_bytes);
    let len = PREFIX.len() + pts_len + kind.len();
    if len > MAX_FRAME_LEN as usize {
        return Err(CodecError::TooLarge {
            len: len as u64,
            max: MAX_FRAME_LEN,
        });
    }
    let mut out = Vec::with_capacity(len + MAX_LEN_PREFIX);
    put_varint(len as u32, &mut out);
    out.extend_from_slice(&PREFIX);
    out.extend_from_slice(&pts_bytes[..pts_len]);
    out.extend_from_slice(kind);
    Ok(out)
}

fn put_varint_u64(mut n: u64, out: &mut [u8; 10]) -> usize {
    let mut i = 0;
    while n >= 0x80 {
        out[i] = (n as u8) | 0x80;
        n >>= 7;
        i += 1;
    }
    out[i] = n as u8;
    i + 1
}

/// Decodes a frame payload (without its length prefix) and checks field limits.
pub fn decode_payload(payload: &[u8]) -> Result<Frame, CodecError> {
    if payload.len() > MAX_FRAME_LEN as usize {
        return Err(CodecError::TooLarge {
            len: payload.len() as u64,
            max: MAX_FRAME_LEN,
        });
    }
    let frame: Frame = decode_exact(payload)?;
    if !frame.within_limits() {
        return Err(CodecError::FieldTooLarge);
    }
    Ok(frame)
}

/// Encodes one QUIC datagram payload (no length prefix: a datagram is its own frame).
pub fn encode_datagram(datagram: &Datagram) -> Result<Vec<u8>, CodecError> {
    let out = postcard::to_stdvec(datagram).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if out.len() > MAX_DATAGRAM_LEN {
        return Err(CodecError::TooLarge {
            len: out.len() as u64,
            max: MAX_DATAGRAM_LEN as u32,
        });
    }
    Ok(out)
}

/// Decodes one QUIC datagram payload; trailing bytes and oversized datagrams are errors (the
/// receiver drops the datagram and counts it; it never closes the connection for one).
pub fn decode_datagram(payload: &[u8]) -> Result<Datagram, CodecError> {
    if payload.len() > MAX_DATAGRAM_LEN {
        return Err(CodecError::TooLarge {
            len: payload.len() as u64,
            max: MAX_DATAGRAM_LEN as u32,
        });
    }
    decode_exact(payload)
}

/// Encodes the client's header frame of a media stream, length-prefixed like a control frame.
pub fn encode_media_open(open: &MediaOpen) -> Result<Vec<u8>, CodecError> {
    encode_media_header(open)
}

/// Encodes a server frame of a media stream, length-prefixed like a control frame.
pub fn encode_media_reply(reply: &MediaReply) -> Result<Vec<u8>, CodecError> {
    encode_media_header(reply)
}

fn encode_media_header<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let payload = postcard::to_stdvec(value).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if payload.len() > MAX_MEDIA_HEADER_LEN as usize {
        return Err(CodecError::TooLarge {
            len: payload.len() as u64,
            max: MAX_MEDIA_HEADER_LEN,
        });
    }
    let mut out = Vec::with_capacity(payload.len() + 2);
    put_varint(payload.len() as u32, &mut out);
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The client's header at the start of `buf`, and how many bytes it took; `Ok(None)` while
/// `buf` holds less than the whole header. Bytes after it are media data, not frames.
pub fn decode_media_open(buf: &[u8]) -> Result<Option<(MediaOpen, usize)>, CodecError> {
    let Some((payload, used)) = media_header(buf)? else {
        return Ok(None);
    };
    let open: MediaOpen = decode_exact(payload)?;
    if !open.within_limits() {
        return Err(CodecError::FieldTooLarge);
    }
    Ok(Some((open, used)))
}

/// A server header at the start of `buf`, and how many bytes it took; `Ok(None)` while `buf`
/// holds less than the whole header.
pub fn decode_media_reply(buf: &[u8]) -> Result<Option<(MediaReply, usize)>, CodecError> {
    let Some((payload, used)) = media_header(buf)? else {
        return Ok(None);
    };
    let reply: MediaReply = decode_exact(payload)?;
    if !reply.within_limits() {
        return Err(CodecError::FieldTooLarge);
    }
    Ok(Some((reply, used)))
}

/// The payload of a length-prefixed media header, checked against [`MAX_MEDIA_HEADER_LEN`]
/// before waiting for it, and the bytes prefix and payload take.
fn media_header(buf: &[u8]) -> Result<Option<(&[u8], usize)>, CodecError> {
    let Some((len, prefix)) = get_varint(buf)? else {
        return Ok(None);
    };
    if len > u64::from(MAX_MEDIA_HEADER_LEN) {
        return Err(CodecError::TooLarge {
            len,
            max: MAX_MEDIA_HEADER_LEN,
        });
    }
    let end = prefix + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((&buf[prefix..end], end)))
}

/// One value that takes all of `payload`: trailing bytes are an error.
fn decode_exact<'a, T: serde::Deserialize<'a>>(payload: &'a [u8]) -> Result<T, CodecError> {
    let (value, rest) = postcard::take_from_bytes::<T>(payload)
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

fn put_varint(mut n: u32, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a varint length prefix. `Ok(None)` means more bytes are needed.
fn get_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, CodecError> {
    let mut value: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(MAX_LEN_PREFIX) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= MAX_LEN_PREFIX {
        Err(CodecError::BadLength)
    } else {
        Ok(None)
    }
}

/// Incremental decoder for a byte stream carrying frames.
///
/// Feed it what the stream yields with [`FrameDecoder::extend`], then call
/// [`FrameDecoder::next_frame`] until it returns `Ok(None)`. After an error the stream cannot be
/// resynchronised: answer with the error's code and close.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        FrameDecoder::default()
    }

    /// Appends bytes read from the stream. The caller reads in bounded chunks and drains frames
    /// after each one, so the buffer never holds more than one frame plus one chunk.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, CodecError> {
        let Some((len, prefix)) = get_varint(&self.buf)? else {
            return Ok(None);
        };
        if len > u64::from(MAX_FRAME_LEN) {
            return Err(CodecError::TooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        let end = prefix + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let frame = decode_payload(&self.buf[prefix..end]);
        self.buf.drain(..end);
        frame.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Message, MessageBody, Receipt, UpdateKind};
    use crate::ids::{ChatId, DeviceId, MessageId, UserId};

    #[test]
    fn the_update_shortcut_encodes_exactly_the_full_frame() {
        let updates = [
            Update {
                pts: 300,
                kind: UpdateKind::Message(Message {
                    chat_id: ChatId(7),
                    seq: 9,
                    msg_id: MessageId(11),
                    sender: UserId(1),
                    sender_device: DeviceId(2),
                    client_msg_id: 99,
                    ts_ms: 1_700_000_000_000,
                    body: MessageBody::Text("x".repeat(200)),
                }),
            },
            Update {
                pts: 1,
                kind: UpdateKind::Receipt(Receipt {
                    chat_id: ChatId(7),
                    user_id: UserId(2),
                    delivered_seq: 9,
                    read_seq: 3,
                }),
            },
        ];
        for mut u in updates {
            let full = encode_to_vec(&Frame::Event(Event::Update(u.clone()))).unwrap();
            assert_eq!(encode_update_event(&u).unwrap(), full);
            let kind = encode_update_kind(&u.kind).unwrap();
            assert_eq!(encode_update_event_parts(u.pts, &kind).unwrap(), full);
            for pts in [0, 127, 128, 16_384, u64::MAX] {
                u.pts = pts;
                let full = encode_to_vec(&Frame::Event(Event::Update(u.clone()))).unwrap();
                assert_eq!(
                    encode_update_event_parts(pts, &kind).unwrap(),
                    full,
                    "pts {pts}"
                );
            }
        }
    }
}
