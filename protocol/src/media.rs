//! Media: what travels on a media stream, what a media message carries, and the limits the server
//! announces.
//!
//! Media never rides the control stream. A client opens a bidirectional QUIC stream per upload
//! or download, so a 50 MB video never queues in front of a chat message, and QUIC's per-stream
//! flow control paces each transfer on its own. A media stream starts with one length-prefixed
//! header frame each way ([`MediaOpen`] from the client, [`MediaReply`] from the server, the
//! same varint framing as control frames but at most [`MAX_MEDIA_HEADER_LEN`] bytes), then raw
//! bytes:
//!
//! * **Upload**: `Upload(header)` → `Resume { offset }` → the client sends bytes
//!   `offset..size` and finishes its side → `Stored(info)` (or `Error`). After a disconnect the
//!   client opens a new stream with the same header and is told how much the server already
//!   holds; those bytes are never sent twice.
//! * **Download**: `Download(request)` → `Sending { info, offset }` → bytes `offset..` to the end
//!   of the object, then the server finishes its side.
//!
//! Media is content-addressed: a media id is the SHA-256 of its stored bytes ([`MediaRef`]), so
//! the same bytes are stored once, and an upload is verified against the id it declared.

use serde::{Deserialize, Serialize};

use crate::error::ErrorBody;
use crate::limits::{MAX_CAPTION_LEN, MAX_INLINE_THUMBNAIL_LEN, MAX_MIME_LEN};

/// A content-addressed media reference: the SHA-256 of the stored bytes (for client-encrypted
/// media, of the ciphertext). Also a profile photo's reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MediaRef(pub [u8; 32]);

impl MediaRef {
    /// Lowercase hex, as object names and the CLI print it.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(DIGITS[usize::from(b >> 4)] as char);
            s.push(DIGITS[usize::from(b & 15)] as char);
        }
        s
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<MediaRef> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(MediaRef(out))
    }
}

/// What a media object is, for size limits and for how apps show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MediaKind {
    /// A photo (JPEG, PNG, WebP, GIF): the server makes a thumbnail unless it is encrypted.
    Image,
    /// A video (MP4, WebM, QuickTime).
    Video,
    /// A voice note or other audio (Ogg/Opus, MP3, M4A, WAV).
    Audio,
    /// Anything else (PDF, archives, office files).
    Document,
}

impl MediaKind {
    /// A short stable name, for metrics and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Document => "document",
        }
    }
}

/// What the client declares before the first byte of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadHeader {
    /// The SHA-256 of the whole content: the media id it will have.
    pub media: MediaRef,
    /// Total size in bytes; at most the kind's limit in [`MediaLimits`].
    pub size: u64,
    /// The kind.
    pub kind: MediaKind,
    /// The MIME type, e.g. `image/jpeg`, at most [`MAX_MIME_LEN`] bytes. For plain media it
    /// must match what the first bytes are (`MediaTypeMismatch` otherwise).
    pub mime: String,
    /// Client-encrypted: the server stores opaque bytes, sniffs nothing and makes no thumbnail.
    pub encrypted: bool,
}

/// Which bytes of a media object a download wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediaVariant {
    /// The object as uploaded.
    Original,
    /// The server's thumbnail of an image (a JPEG); `NotFound` where there is none.
    Thumbnail,
}

/// A download request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRequest {
    /// The media.
    pub media: MediaRef,
    /// Original or thumbnail.
    pub variant: MediaVariant,
    /// First byte wanted (resume); at most the object's size.
    pub offset: u64,
}

/// The first frame a client writes on a media stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediaOpen {
    /// Start or resume an upload.
    Upload(UploadHeader),
    /// Download an object (the uploader, or a member of a chat where a message references it;
    /// anyone else gets `NotFound`, as for an id that does not exist).
    Download(DownloadRequest),
}

/// What the server knows of a stored media object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaInfo {
    /// The media id (SHA-256 of the bytes).
    pub media: MediaRef,
    /// The kind.
    pub kind: MediaKind,
    /// The MIME type (for plain media: the sniffed one, which matched the declared one).
    pub mime: String,
    /// Size in bytes of the variant this describes.
    pub size: u64,
    /// Width and height in pixels, for plain images.
    pub dimensions: Option<(u32, u32)>,
    /// Whether the server holds a thumbnail ([`MediaVariant::Thumbnail`]).
    pub thumbnail: bool,
    /// Client-encrypted (opaque to the server).
    pub encrypted: bool,
}

impl MediaInfo {
    fn within_limits(&self) -> bool {
        self.mime.len() <= MAX_MIME_LEN
    }
}

/// The server's frames on a media stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediaReply {
    /// Upload accepted: send the bytes from `offset` (what the server already holds of this
    /// upload, 0 for a new one) to the end, then finish the stream.
    Resume {
        /// First byte the server still needs.
        offset: u64,
    },
    /// Upload complete: verified against its SHA-256 and stored. Also the immediate answer
    /// when the uploader already stored these bytes.
    Stored(MediaInfo),
    /// Download: the object's bytes from `offset` follow, then the stream finishes.
    Sending {
        /// The variant's description (`size` is the whole variant's).
        info: MediaInfo,
        /// Where the bytes that follow start.
        offset: u64,
    },
    /// The upload or download failed; the stream ends.
    Error(ErrorBody),
}

/// How the message shows a preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Thumbnail {
    /// No preview.
    None,
    /// The server's thumbnail: download [`MediaVariant::Thumbnail`] of the media.
    Server,
    /// The client's own small preview (for encrypted media, encrypted by the client too), at
    /// most [`MAX_INLINE_THUMBNAIL_LEN`] bytes.
    Inline(Vec<u8>),
}

/// A photo, video, voice note or document in a chat ([`crate::MessageBody::Media`]). The
/// server checks the media exists and that the sender may reference it (they uploaded it or can
/// download it), and stores the message with the kind, type, size and dimensions it knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaMessage {
    /// The media id (its SHA-256).
    pub media: MediaRef,
    /// The kind.
    pub kind: MediaKind,
    /// The MIME type, at most [`MAX_MIME_LEN`] bytes.
    pub mime: String,
    /// Size in bytes.
    pub size: u64,
    /// Width and height in pixels (images and videos), if known.
    pub dimensions: Option<(u32, u32)>,
    /// Length in milliseconds (audio and video), as the client measured it.
    pub duration_ms: Option<u32>,
    /// The preview.
    pub thumbnail: Thumbnail,
    /// Text shown with it, at most [`MAX_CAPTION_LEN`] bytes.
    pub caption: Option<String>,
    /// Client-encrypted.
    pub encrypted: bool,
}

impl MediaMessage {
    pub(crate) fn within_limits(&self) -> bool {
        self.mime.len() <= MAX_MIME_LEN
            && self
                .caption
                .as_ref()
                .is_none_or(|c| c.len() <= MAX_CAPTION_LEN)
            && match &self.thumbnail {
                Thumbnail::Inline(b) => b.len() <= MAX_INLINE_THUMBNAIL_LEN,
                Thumbnail::None | Thumbnail::Server => true,
            }
    }
}

/// Media limits and lifetimes, announced in `Welcome` (new in v4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaLimits {
    /// Largest image, in bytes.
    pub max_image_bytes: u64,
    /// Largest video, in bytes.
    pub max_video_bytes: u64,
    /// Largest audio, in bytes.
    pub max_audio_bytes: u64,
    /// Largest document, in bytes.
    pub max_document_bytes: u64,
    /// Bytes one user may upload per day (`QuotaExceeded` beyond it).
    pub daily_upload_bytes: u64,
    /// Uploads one user may start per minute (`RateLimited` beyond it).
    pub uploads_per_minute: u32,
    /// Media streams one connection may have open at once (QUIC stream credit).
    pub max_streams: u32,
    /// Largest side of a server thumbnail, in pixels.
    pub thumbnail_px: u32,
    /// How long an unfinished upload is kept for resuming, in seconds.
    pub unfinished_upload_ttl_s: u32,
}

impl MediaLimits {
    /// The size limit of one kind.
    pub fn max_bytes(&self, kind: MediaKind) -> u64 {
        match kind {
            MediaKind::Image => self.max_image_bytes,
            MediaKind::Video => self.max_video_bytes,
            MediaKind::Audio => self.max_audio_bytes,
            MediaKind::Document => self.max_document_bytes,
        }
    }
}

impl Default for MediaLimits {
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        MediaLimits {
            max_image_bytes: 16 * MIB,
            max_video_bytes: 256 * MIB,
            max_audio_bytes: 64 * MIB,
            max_document_bytes: 256 * MIB,
            daily_upload_bytes: 2048 * MIB,
            uploads_per_minute: 30,
            max_streams: 4,
            thumbnail_px: 320,
            unfinished_upload_ttl_s: 24 * 3600,
        }
    }
}

impl MediaOpen {
    pub(crate) fn within_limits(&self) -> bool {
        match self {
            MediaOpen::Upload(h) => h.mime.len() <= MAX_MIME_LEN,
            MediaOpen::Download(_) => true,
        }
    }
}

impl MediaReply {
    pub(crate) fn within_limits(&self) -> bool {
        match self {
            MediaReply::Stored(info) | MediaReply::Sending { info, .. } => info.within_limits(),
            MediaReply::Error(e) => e.message.len() <= crate::limits::MAX_ERROR_MESSAGE_LEN,
            MediaReply::Resume { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_anything_else() {
        let r = MediaRef([0xa5; 32]);
        assert_eq!(MediaRef::from_hex(&r.to_hex()), Some(r));
        assert_eq!(r.to_hex().len(), 64);
        assert_eq!(MediaRef::from_hex("a5"), None);
        assert_eq!(MediaRef::from_hex(&"g".repeat(64)), None);
        assert_eq!(MediaRef::from_hex(&"é".repeat(32)), None);
    }
}
