//! What the first bytes of an upload say it is, against what the client declared.
//!
//! The declared type decides how every receiving app opens the file, so a lie ("image/jpeg"
//! on an executable, "audio/ogg" on HTML) is refused before any byte is stored. Magic numbers
//! come from the `infer` crate; this module only maps them to kinds and compares.

use tern_protocol::MediaKind;

/// Bytes the sniffer looks at: enough for every signature it knows (MP4's `ftyp` box, RIFF's
/// form type, tar's header).
pub const SNIFF_LEN: usize = 512;

/// Why an upload's type was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SniffError {
    /// The bytes are of another type than declared.
    #[error("declared {declared} but the bytes are {found}")]
    Mismatch {
        /// What the client said.
        declared: String,
        /// What the bytes are.
        found: String,
    },
    /// The declared type is not one of the kind's (e.g. `video/mp4` as an image).
    #[error("{mime} is not a type of {kind}")]
    WrongKind {
        /// The declared type.
        mime: String,
        /// The declared kind.
        kind: &'static str,
    },
}

/// Declared types refused outright: they carry code a viewer may execute.
const ACTIVE: &[&str] = &[
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/javascript",
    "application/javascript",
    "application/x-msdownload",
];

/// The kind a MIME type belongs to, by its top-level type; documents are everything else.
pub fn kind_of(mime: &str) -> MediaKind {
    match mime.split('/').next() {
        Some("image") => MediaKind::Image,
        Some("video") => MediaKind::Video,
        Some("audio") => MediaKind::Audio,
        _ => MediaKind::Document,
    }
}

/// The image types the server decodes for thumbnails.
pub fn thumbnailable(mime: &str) -> bool {
    matches!(
        mime,
        "image/jpeg" | "image/png" | "image/webp" | "image/gif"
    )
}

/// Aliases apps send for the same type.
fn canonical(mime: &str) -> &str {
    match mime {
        "image/jpg" | "image/pjpeg" => "image/jpeg",
        "audio/mp3" => "audio/mpeg",
        "audio/x-wav" | "audio/wave" => "audio/x-wav",
        "audio/opus" => "audio/ogg",
        "video/x-m4v" => "video/mp4",
        other => other,
    }
}

/// Checks `head` (the first up to [`SNIFF_LEN`] bytes) against the declared `kind` and `mime`
/// and answers the type to store: the sniffed one where the bytes name one. Media, images and
/// anything with a recognised signature must match exactly; a document whose bytes have no
/// signature (plain text, CSV) keeps its declared type, but may not claim a media type.
pub fn check(kind: MediaKind, mime: &str, head: &[u8]) -> Result<String, SniffError> {
    let declared = canonical(&mime.to_ascii_lowercase()).to_owned();
    if ACTIVE.contains(&declared.as_str()) {
        // Types a receiving app or browser would run rather than show.
        return Err(SniffError::Mismatch {
            declared,
            found: "active content, which is not accepted".into(),
        });
    }
    if kind != MediaKind::Document && kind_of(&declared) != kind {
        return Err(SniffError::WrongKind {
            mime: declared,
            kind: kind.name(),
        });
    }
    let head = &head[..head.len().min(SNIFF_LEN)];
    let found = infer::get(head).map(|t| canonical(t.mime_type()).to_owned());
    match found {
        Some(found) if found == declared => Ok(found),
        // Containers infer names more finely than apps do (an M4A is an MP4 file; Ogg audio
        // may say "audio/ogg" or "audio/opus"): same family, same container.
        Some(found) if same_container(&found, &declared) => Ok(declared),
        Some(found) => Err(SniffError::Mismatch { declared, found }),
        None if kind == MediaKind::Document && kind_of(&declared) == MediaKind::Document => {
            Ok(declared)
        }
        None => Err(SniffError::Mismatch {
            declared,
            found: "of no recognised type".into(),
        }),
    }
}

fn same_container(found: &str, declared: &str) -> bool {
    const FAMILIES: &[&[&str]] = &[
        &[
            "video/mp4",
            "audio/mp4",
            "audio/m4a",
            "audio/x-m4a",
            "video/quicktime",
        ],
        &["audio/ogg", "video/ogg", "application/ogg"],
        &["video/webm", "audio/webm", "video/x-matroska"],
    ];
    FAMILIES
        .iter()
        .any(|f| f.contains(&found) && f.contains(&declared))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF\0";
    const PDF: &[u8] = b"%PDF-1.7\n";

    #[test]
    fn a_matching_type_passes_and_is_what_is_stored() {
        assert_eq!(
            check(MediaKind::Image, "image/png", PNG),
            Ok("image/png".into())
        );
        assert_eq!(
            check(MediaKind::Image, "IMAGE/JPG", JPEG),
            Ok("image/jpeg".into())
        );
        assert_eq!(
            check(MediaKind::Document, "application/pdf", PDF),
            Ok("application/pdf".into())
        );
    }

    #[test]
    fn a_lie_about_the_type_is_refused() {
        assert!(matches!(
            check(MediaKind::Image, "image/jpeg", PNG),
            Err(SniffError::Mismatch { .. })
        ));
        assert!(matches!(
            check(MediaKind::Image, "image/png", b"<html><script>"),
            Err(SniffError::Mismatch { .. })
        ));
        assert!(matches!(
            check(MediaKind::Document, "image/png", b"plain text"),
            Err(SniffError::Mismatch { .. })
        ));
        assert!(matches!(
            check(MediaKind::Image, "video/mp4", PNG),
            Err(SniffError::WrongKind { .. })
        ));
    }

    #[test]
    fn an_unsigned_document_keeps_its_declared_type() {
        assert_eq!(
            check(MediaKind::Document, "text/plain", b"hello"),
            Ok("text/plain".into())
        );
        assert!(check(MediaKind::Document, "application/pdf", PNG).is_err());
        assert!(check(MediaKind::Document, "text/html", b"<p>hi").is_err());
        assert!(check(MediaKind::Image, "image/svg+xml", b"<svg>").is_err());
    }

    #[test]
    fn empty_or_short_input_never_panics() {
        for n in 0..PNG.len() {
            let _ = check(MediaKind::Image, "image/png", &PNG[..n]);
        }
    }
}
