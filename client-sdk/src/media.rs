//! Media: uploads that resume by themselves across reconnects, and downloads with an offset.
//!
//! Each transfer opens its own QUIC stream on the client's live connection, so it never
//! delays a chat message. An upload hashes its source first (its SHA-256 is its media id),
//! then asks the server how much it already holds and sends only the rest; when the connection
//! drops (a network switch, [`Client::reconnect`]) it waits for the driver to reconnect and
//! resumes from the server's committed offset. Server refusals (too large, wrong type, hash
//! mismatch, quota) are returned as [`Error::Server`] and never retried.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use ring::digest;
use tern_protocol::codec::{decode_media_reply, encode_media_open};
use tern_protocol::limits::MAX_MEDIA_HEADER_LEN;
use tern_protocol::{
    ChatId, DownloadRequest, ErrorCode, MediaInfo, MediaKind, MediaMessage, MediaOpen, MediaRef,
    MediaReply, MediaVariant, MessageBody, Sent, Thumbnail, UploadHeader,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::client::{Client, closed};
use crate::driver::Command;
use crate::error::Error;

/// Bytes read from the source per stream write.
const CHUNK: usize = 256 * 1024;
/// Attempts before an upload or download gives up on a connection that keeps failing.
const MAX_ATTEMPTS: u32 = 12;

/// What to upload.
#[derive(Debug, Clone)]
pub enum MediaSource {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A file, read from disk as it is sent (never held in memory whole).
    File(PathBuf),
}

/// An upload's declaration.
#[derive(Debug, Clone)]
pub struct UploadSpec {
    /// The kind.
    pub kind: MediaKind,
    /// The MIME type (must match the bytes for plain media).
    pub mime: String,
    /// Client-encrypted bytes (opaque to the server).
    pub encrypted: bool,
    /// The id to declare; `None` (the normal case): the source's SHA-256. Tools that already
    /// know it skip a read of the source; a wrong one gets `HashMismatch`.
    pub declared: Option<MediaRef>,
}

/// One stream an upload used: where it started and how many bytes it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The offset the server asked for.
    pub offset: u64,
    /// Bytes written on this stream.
    pub written: u64,
}

/// A finished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// What the server stored.
    pub info: MediaInfo,
    /// Every stream used, in order (more than one after a reconnect).
    pub attempts: Vec<Attempt>,
}

enum Failure {
    /// The server refused: final unless the code is retryable.
    Server(tern_protocol::ErrorBody),
    /// The stream or connection broke: reconnect and resume.
    Link(String),
    /// Local IO on the source or target.
    Local(String),
}

impl Client {
    /// The live connection (waits until the driver has an authenticated one).
    async fn connection(&self) -> Result<quinn::Connection, Error> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Connection { reply })
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())
    }

    /// Uploads `source`, resuming across reconnects; `progress(done, total)` is called as
    /// bytes are handed to the connection (a resume starts from the server's offset).
    pub async fn upload(
        &self,
        source: MediaSource,
        spec: UploadSpec,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<Uploaded, Error> {
        let (hashed, size) = hash(&source).await.map_err(Error::Config)?;
        let media = spec.declared.unwrap_or(hashed);
        let header = UploadHeader {
            media,
            size,
            kind: spec.kind,
            mime: spec.mime,
            encrypted: spec.encrypted,
        };
        let mut attempts = Vec::new();
        let mut failures = 0;
        loop {
            let conn = self.connection().await?;
            match upload_once(&conn, &header, &source, &mut attempts, &mut progress).await {
                Ok(info) => return Ok(Uploaded { info, attempts }),
                Err(f) => tokio::time::sleep(retry_after(f, &mut failures, "upload")?).await,
            }
        }
    }

    /// Downloads a variant of `media` into `path`, resuming a partial file left by an earlier
    /// call (and across reconnects); `progress(done, total)` as bytes arrive.
    pub async fn download_to_file(
        &self,
        media: MediaRef,
        variant: MediaVariant,
        path: &Path,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<MediaInfo, Error> {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let mut failures = 0;
        loop {
            let have = file
                .metadata()
                .await
                .map_err(|e| Error::Config(e.to_string()))?
                .len();
            let conn = self.connection().await?;
            let req = DownloadRequest {
                media,
                variant,
                offset: have,
            };
            match download_once(&conn, req, &mut file, &mut progress).await {
                Ok(info) => return Ok(info),
                Err(f) => tokio::time::sleep(retry_after(f, &mut failures, "download")?).await,
            }
        }
    }

    /// Downloads a variant of `media` into memory (at most `max` bytes).
    pub async fn download(
        &self,
        media: MediaRef,
        variant: MediaVariant,
        max: u64,
    ) -> Result<(MediaInfo, Vec<u8>), Error> {
        let conn = self.connection().await?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|_| Error::Disconnected)?;
        let req = DownloadRequest {
            media,
            variant,
            offset: 0,
        };
        let open = encode_media_open(&MediaOpen::Download(req))
            .map_err(|e| Error::Protocol(e.to_string()))?;
        send.write_all(&open)
            .await
            .map_err(|_| Error::Disconnected)?;
        let _ = send.finish();
        let (reply, rest) = read_reply(&mut recv).await.map_err(to_error)?;
        let info = match reply {
            MediaReply::Sending { info, .. } => info,
            MediaReply::Error(e) => return Err(Error::Server(e)),
            other => return Err(Error::Protocol(format!("unexpected {other:?}"))),
        };
        if info.size > max {
            return Err(Error::Config(format!(
                "{} bytes is over the {max} asked for",
                info.size
            )));
        }
        let mut out = rest;
        while let Some(chunk) = recv
            .read_chunk(CHUNK, true)
            .await
            .map_err(|_| Error::Disconnected)?
        {
            out.extend_from_slice(&chunk.bytes);
            if out.len() as u64 > info.size {
                return Err(Error::Protocol("more bytes than announced".into()));
            }
        }
        if out.len() as u64 != info.size {
            return Err(Error::Disconnected);
        }
        Ok((info, out))
    }

    /// Sends a media message for an uploaded object (the server fills in what it stored).
    pub async fn send_media(
        &self,
        chat_id: ChatId,
        info: &MediaInfo,
        caption: Option<String>,
    ) -> Result<Sent, Error> {
        let body = MessageBody::Media(MediaMessage {
            media: info.media,
            kind: info.kind,
            mime: info.mime.clone(),
            size: info.size,
            dimensions: info.dimensions,
            duration_ms: None,
            thumbnail: if info.thumbnail {
                Thumbnail::Server
            } else {
                Thumbnail::None
            },
            caption,
            encrypted: info.encrypted,
        });
        self.send(chat_id, body, rand::random()).await
    }
}

/// After a failed stream: how long to wait before the next one, or the error to give up with
/// (a final refusal, a local problem, or too many broken streams in a row).
fn retry_after(f: Failure, failures: &mut u32, what: &str) -> Result<Duration, Error> {
    match f {
        Failure::Server(ref e) if e.code.is_retryable() && *failures + 1 < MAX_ATTEMPTS => {}
        Failure::Link(ref why) if *failures + 1 < MAX_ATTEMPTS => {
            tracing::debug!(%why, "{what} stream broke; resuming");
        }
        f => return Err(to_error(f)),
    }
    *failures += 1;
    Ok(Duration::from_millis(100 * u64::from(*failures)))
}

fn to_error(f: Failure) -> Error {
    match f {
        Failure::Server(e) => Error::Server(e),
        Failure::Link(_) => Error::Disconnected,
        Failure::Local(e) => Error::Config(e),
    }
}

/// The SHA-256 and size of the source, read once.
async fn hash(source: &MediaSource) -> Result<(MediaRef, u64), String> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let size = match source {
        MediaSource::Bytes(b) => {
            ctx.update(b);
            b.len() as u64
        }
        MediaSource::File(p) => {
            let mut f = tokio::fs::File::open(p)
                .await
                .map_err(|e| format!("{}: {e}", p.display()))?;
            let mut buf = vec![0u8; CHUNK];
            let mut size = 0;
            loop {
                let n = f.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                ctx.update(&buf[..n]);
                size += n as u64;
            }
            size
        }
    };
    let d = ctx.finish();
    let mut id = [0u8; 32];
    id.copy_from_slice(d.as_ref());
    Ok((MediaRef(id), size))
}

/// Reads the server's header; returns it and any bytes that followed it.
async fn read_reply(recv: &mut quinn::RecvStream) -> Result<(MediaReply, Vec<u8>), Failure> {
    let mut buf = Vec::new();
    loop {
        if let Some((reply, used)) =
            decode_media_reply(&buf).map_err(|e| Failure::Link(e.to_string()))?
        {
            return Ok((reply, buf.split_off(used)));
        }
        if buf.len() > MAX_MEDIA_HEADER_LEN as usize + 5 {
            return Err(Failure::Link("media header too long".into()));
        }
        match recv.read_chunk(CHUNK, true).await {
            Ok(Some(c)) => buf.extend_from_slice(&c.bytes),
            Ok(None) => {
                return Err(Failure::Link(
                    "stream ended before the server answered".into(),
                ));
            }
            Err(e) => return Err(Failure::Link(e.to_string())),
        }
    }
}

async fn upload_once(
    conn: &quinn::Connection,
    header: &UploadHeader,
    source: &MediaSource,
    attempts: &mut Vec<Attempt>,
    progress: &mut (impl FnMut(u64, u64) + Send),
) -> Result<MediaInfo, Failure> {
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| Failure::Link(e.to_string()))?;
    let open = encode_media_open(&MediaOpen::Upload(header.clone()))
        .map_err(|e| Failure::Local(e.to_string()))?;
    send.write_all(&open)
        .await
        .map_err(|e| Failure::Link(e.to_string()))?;
    let offset = match read_reply(&mut recv).await?.0 {
        MediaReply::Resume { offset } => offset,
        MediaReply::Stored(info) => return Ok(info),
        MediaReply::Error(e) => return Err(Failure::Server(e)),
        other => return Err(Failure::Link(format!("unexpected {other:?}"))),
    };
    attempts.push(Attempt { offset, written: 0 });
    let size = header.size;
    let mut pos = offset;
    progress(pos, size);
    let mut file = match source {
        MediaSource::File(p) => {
            let mut f = tokio::fs::File::open(p)
                .await
                .map_err(|e| Failure::Local(e.to_string()))?;
            f.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| Failure::Local(e.to_string()))?;
            Some(f)
        }
        MediaSource::Bytes(_) => None,
    };
    let mut buf = vec![0u8; CHUNK];
    while pos < size {
        let chunk = match (source, file.as_mut()) {
            (MediaSource::Bytes(b), _) => {
                let end = (pos as usize + CHUNK).min(b.len());
                b.slice(pos as usize..end)
            }
            (MediaSource::File(_), Some(f)) => {
                let n = f
                    .read(&mut buf)
                    .await
                    .map_err(|e| Failure::Local(e.to_string()))?;
                if n == 0 {
                    return Err(Failure::Local("the file shrank while uploading".into()));
                }
                Bytes::copy_from_slice(&buf[..n])
            }
            (MediaSource::File(_), None) => return Err(Failure::Local("no file".into())),
        };
        let n = chunk.len() as u64;
        if let Err(e) = send.write_chunk(chunk).await {
            // A refusal arrives as the reply while our side is stopped: read it.
            if let Ok((MediaReply::Error(body), _)) = read_reply(&mut recv).await {
                return Err(Failure::Server(body));
            }
            return Err(Failure::Link(e.to_string()));
        }
        pos += n;
        if let Some(a) = attempts.last_mut() {
            a.written += n;
        }
        progress(pos, size);
    }
    send.finish().map_err(|e| Failure::Link(e.to_string()))?;
    match read_reply(&mut recv).await?.0 {
        MediaReply::Stored(info) => Ok(info),
        MediaReply::Error(e) => Err(Failure::Server(e)),
        other => Err(Failure::Link(format!("unexpected {other:?}"))),
    }
}

async fn download_once(
    conn: &quinn::Connection,
    req: DownloadRequest,
    file: &mut tokio::fs::File,
    progress: &mut (impl FnMut(u64, u64) + Send),
) -> Result<MediaInfo, Failure> {
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| Failure::Link(e.to_string()))?;
    let open =
        encode_media_open(&MediaOpen::Download(req)).map_err(|e| Failure::Local(e.to_string()))?;
    send.write_all(&open)
        .await
        .map_err(|e| Failure::Link(e.to_string()))?;
    let _ = send.finish();
    let (reply, rest) = read_reply(&mut recv).await?;
    let (info, offset) = match reply {
        MediaReply::Sending { info, offset } => (info, offset),
        MediaReply::Error(e) => return Err(Failure::Server(e)),
        other => return Err(Failure::Link(format!("unexpected {other:?}"))),
    };
    if offset != req.offset {
        return Err(Failure::Link("the server started at another offset".into()));
    }
    let mut pos = offset;
    progress(pos, info.size);
    let local = |e: std::io::Error| Failure::Local(e.to_string());
    if !rest.is_empty() {
        if pos + rest.len() as u64 > info.size {
            return Err(Failure::Link("more bytes than announced".into()));
        }
        file.write_all(&rest).await.map_err(local)?;
        pos += rest.len() as u64;
        progress(pos, info.size);
    }
    loop {
        match recv.read_chunk(CHUNK, true).await {
            Ok(Some(c)) => {
                pos += c.bytes.len() as u64;
                if pos > info.size {
                    return Err(Failure::Link("more bytes than announced".into()));
                }
                file.write_all(&c.bytes).await.map_err(local)?;
                progress(pos, info.size);
            }
            Ok(None) => break,
            Err(e) => {
                file.flush().await.map_err(local)?;
                return Err(Failure::Link(e.to_string()));
            }
        }
    }
    file.flush().await.map_err(local)?;
    file.sync_all().await.map_err(local)?;
    if pos != info.size {
        return Err(Failure::Link(format!(
            "ended at {pos} of {} bytes",
            info.size
        )));
    }
    Ok(info)
}

/// Whether an error from a media call is worth retrying later.
pub fn retryable(e: &Error) -> bool {
    matches!(e, Error::Disconnected | Error::Timeout)
        || e.code().is_some_and(ErrorCode::is_retryable)
}
