//! `send-file` and `download`: media through the SDK, with a progress bar on stderr (text
//! mode on a terminal only; never mixed into JSON output).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tern_sdk::protocol::{ChatId, MediaKind, MediaRef, MediaVariant};
use tern_sdk::{MediaSource, UploadSpec};

use super::Ctx;
use crate::args::{DownloadArgs, SendFileArgs};
use crate::failure::Failure;
use crate::output::Record;

/// The MIME type apps use for a file name's extension; anything unknown is a document.
pub fn mime_for(path: &std::path::Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "ogg" | "opus" | "oga" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "wav" => "audio/x-wav",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

fn kind_for(mime: &str) -> MediaKind {
    match mime.split('/').next() {
        Some("image") => MediaKind::Image,
        Some("video") => MediaKind::Video,
        Some("audio") => MediaKind::Audio,
        _ => MediaKind::Document,
    }
}

fn bar(ctx: &Ctx, quiet: bool, what: &str) -> ProgressBar {
    if quiet || ctx.global.json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `tern send-file CHAT PATH`: uploads (resuming across reconnects), then sends the message.
pub async fn send_file(ctx: &mut Ctx, args: SendFileArgs) -> Result<(), Failure> {
    if !args.path.is_file() {
        return Err(Failure::Usage(format!(
            "{} is not a file",
            args.path.display()
        )));
    }
    let mime = args
        .mime
        .clone()
        .unwrap_or_else(|| mime_for(&args.path).to_owned());
    let spec = UploadSpec {
        kind: kind_for(&mime),
        mime,
        encrypted: false,
        declared: None,
    };
    let (conn, _) = ctx.connect().await?;
    let progress = bar(ctx, args.quiet, "uploading");
    let p = progress.clone();
    let uploaded = conn
        .client
        .upload(
            MediaSource::File(args.path.clone()),
            spec,
            move |done, total| {
                p.set_length(total);
                p.set_position(done);
            },
        )
        .await
        .map_err(Failure::from);
    progress.finish_and_clear();
    let uploaded = match uploaded {
        Ok(u) => u,
        Err(e) => {
            ctx.finish(conn).await?;
            return Err(e);
        }
    };
    let info = &uploaded.info;
    ctx.out.print(&Record::Uploaded {
        media: info.media.to_hex(),
        kind: info.kind.name(),
        mime: info.mime.clone(),
        size: info.size,
        dimensions: info.dimensions,
        resumed_from: uploaded.attempts.iter().skip(1).map(|a| a.offset).collect(),
    })?;
    let sent = conn
        .call(
            "sending the media message",
            conn.client
                .send_media(ChatId(args.chat), info, args.caption.clone()),
        )
        .await;
    ctx.finish(conn).await?;
    ctx.out.print(&Record::sent(&sent?))
}

/// `tern download MEDIA PATH`.
pub async fn download(ctx: &mut Ctx, args: DownloadArgs) -> Result<(), Failure> {
    let media = MediaRef::from_hex(&args.media).ok_or_else(|| {
        Failure::Usage(format!(
            "{:?} is not a media id (64 hex digits)",
            args.media
        ))
    })?;
    let variant = if args.thumbnail {
        MediaVariant::Thumbnail
    } else {
        MediaVariant::Original
    };
    let (conn, _) = ctx.connect().await?;
    let progress = bar(ctx, args.quiet, "downloading");
    let p = progress.clone();
    let result = conn
        .client
        .download_to_file(media, variant, &args.path, move |done, total| {
            p.set_length(total);
            p.set_position(done);
        })
        .await
        .map_err(Failure::from);
    progress.finish_and_clear();
    ctx.finish(conn).await?;
    let info = result?;
    ctx.out.print(&Record::Downloaded {
        media: info.media.to_hex(),
        path: args.path.display().to_string(),
        mime: info.mime,
        size: info.size,
    })
}
