//! Media streams: one bidirectional QUIC stream per upload or download, next to the control
//! stream, so bytes of a 50 MB video never queue in front of a chat message.
//!
//! Only a live authenticated session gets stream credit for them (`MediaLimits::max_streams`
//! at once, granted at login with `set_max_concurrent_bi_streams`); an anonymous connection can
//! open nothing but its control stream. Each stream holds at most one part of buffered bytes,
//! and all streams of the server together at most `[media] buffer_budget` (a stream waits for
//! room, and QUIC flow control makes its sender wait). A stream that stops moving for
//! [`STREAM_IDLE`] is ended, with what it delivered committed.

use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream, VarInt};
use tern_protocol::codec::{self, decode_media_open};
use tern_protocol::limits::MAX_MEDIA_HEADER_LEN;
use tern_protocol::{
    DownloadRequest, ErrorBody, ErrorCode, MediaOpen, MediaReply, SessionInfo, UploadHeader,
};

use crate::media::{Begin, MediaService};

/// How long the header may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stream may stall (no bytes either way) before the server ends it.
pub const STREAM_IDLE: Duration = Duration::from_secs(30);

/// Serves one media stream to its end.
pub async fn serve(
    mut send: SendStream,
    mut recv: RecvStream,
    s: SessionInfo,
    media: Arc<MediaService>,
) {
    let open = match tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut recv)).await {
        Ok(Ok(open)) => open,
        Ok(Err(e)) => return fail(&mut send, &mut recv, e).await,
        Err(_) => {
            let e = ErrorBody::new(ErrorCode::BadFrame, "no media header in time");
            return fail(&mut send, &mut recv, e).await;
        }
    };
    // One part of buffer per stream, from the server-wide budget.
    let Some(_permit) = media.buffer_permit().await else {
        return;
    };
    match open {
        MediaOpen::Upload(h) => upload(&mut send, &mut recv, s, h, &media).await,
        MediaOpen::Download(r) => download(&mut send, &mut recv, s, r, &media).await,
    }
}

/// Reads the length-prefixed header; nothing may follow it before the server's answer.
async fn read_header(recv: &mut RecvStream) -> Result<MediaOpen, ErrorBody> {
    let max = MAX_MEDIA_HEADER_LEN as usize + 5;
    let mut buf = Vec::new();
    loop {
        let chunk = recv
            .read_chunk(max - buf.len(), true)
            .await
            .map_err(|e| ErrorBody::new(ErrorCode::BadFrame, e.to_string()))?
            .ok_or_else(|| ErrorBody::new(ErrorCode::BadFrame, "stream ended in its header"))?;
        buf.extend_from_slice(&chunk.bytes);
        match decode_media_open(&buf) {
            Ok(Some((open, used))) if used == buf.len() => return Ok(open),
            Ok(Some(_)) => {
                return Err(ErrorBody::new(
                    ErrorCode::BadFrame,
                    "bytes after the header before the server's answer",
                ));
            }
            Ok(None) if buf.len() < max => {}
            Ok(None) => return Err(ErrorBody::new(ErrorCode::TooLarge, "media header too long")),
            Err(e) => return Err(ErrorBody::new(e.code(), e.to_string())),
        }
    }
}

async fn reply(send: &mut SendStream, r: &MediaReply) -> bool {
    match codec::encode_media_reply(r) {
        Ok(bytes) => send.write_all(&bytes).await.is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "a media reply did not encode");
            false
        }
    }
}

/// Answers an error and ends both directions.
async fn fail(send: &mut SendStream, recv: &mut RecvStream, e: ErrorBody) {
    let code = VarInt::from(e.code.as_u16());
    let _ = recv.stop(code);
    if reply(send, &MediaReply::Error(e)).await {
        let _ = send.finish();
    }
}

fn outcome(e: &ErrorBody) -> String {
    format!("{:?}", e.code)
}

async fn upload(
    send: &mut SendStream,
    recv: &mut RecvStream,
    s: SessionInfo,
    h: UploadHeader,
    media: &MediaService,
) {
    let part = media.config().part_size;
    let mut up = match media.begin_upload(s, h).await {
        Err(e) => {
            media.metrics().upload(&outcome(&e));
            return fail(send, recv, e).await;
        }
        Ok(Begin::Stored(info)) => {
            media.metrics().upload("already_stored");
            if reply(send, &MediaReply::Stored(info)).await {
                let _ = send.finish();
            }
            let _ = recv.stop(VarInt::from_u32(0));
            return;
        }
        Ok(Begin::Resume(up)) => *up,
    };
    if !reply(
        send,
        &MediaReply::Resume {
            offset: up.offset(),
        },
    )
    .await
    {
        return;
    }
    loop {
        let chunk = match tokio::time::timeout(STREAM_IDLE, recv.read_chunk(part, true)).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => break,
            // The connection dropped or the client reset the stream (a network switch): keep
            // every byte that arrived, for the resume.
            Ok(Err(_)) | Err(_) => {
                if let Err(e) = media.commit(&mut up).await {
                    media.metrics().upload(&outcome(&e));
                } else {
                    media.metrics().upload("interrupted");
                }
                return;
            }
        };
        if let Err(e) = media.write(&mut up, &chunk.bytes).await {
            media.metrics().upload(&outcome(&e));
            return fail(send, recv, e).await;
        }
    }
    match media.finish(up).await {
        Ok(info) => {
            if reply(send, &MediaReply::Stored(info)).await {
                let _ = send.finish();
            }
        }
        Err(e) => {
            media.metrics().upload(&outcome(&e));
            fail(send, recv, e).await
        }
    }
}

async fn download(
    send: &mut SendStream,
    recv: &mut RecvStream,
    s: SessionInfo,
    r: DownloadRequest,
    media: &MediaService,
) {
    let _ = recv.stop(VarInt::from_u32(0));
    let mut d = match media.open_download(s, r).await {
        Ok(d) => d,
        Err(e) => {
            media.metrics().download(&outcome(&e));
            return fail(send, recv, e).await;
        }
    };
    let sending = MediaReply::Sending {
        info: d.info.clone(),
        offset: d.position,
    };
    if !reply(send, &sending).await {
        return;
    }
    loop {
        match media.next_chunk(&mut d).await {
            Ok(Some(bytes)) => {
                match tokio::time::timeout(STREAM_IDLE, send.write_chunk(bytes)).await {
                    Ok(Ok(())) => {}
                    _ => {
                        media.metrics().download("interrupted");
                        return;
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                media.metrics().download(&outcome(&e));
                let _ = send.reset(VarInt::from(e.code.as_u16()));
                return;
            }
        }
    }
    media.metrics().download("ok");
    let _ = send.finish();
}
