//! Thumbnails and dimensions of plain images, decoded within bounds.
//!
//! A 40 KB PNG can claim 60,000 × 60,000 pixels and ask the decoder for gigabytes: the decoder
//! is given `image::Limits` (width, height and total allocation), checked against the header
//! before a pixel is decoded, so such a bomb costs a header read and gets a typed error.
//! Decoding is CPU work: callers run it on the blocking pool.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};

/// How large an image the server decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeBounds {
    /// Widest image, in pixels.
    pub max_width: u32,
    /// Tallest image, in pixels.
    pub max_height: u32,
    /// Most bytes the decoder may allocate.
    pub max_alloc: u64,
}

impl Default for DecodeBounds {
    fn default() -> Self {
        // 8192 × 8192 covers every phone camera; 256 MiB is one such RGBA frame plus the
        // decoder's working set.
        DecodeBounds {
            max_width: 8192,
            max_height: 8192,
            max_alloc: 256 * 1024 * 1024,
        }
    }
}

/// A made thumbnail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumb {
    /// The original's width.
    pub width: u32,
    /// The original's height.
    pub height: u32,
    /// The thumbnail, a JPEG whose larger side is at most the asked size.
    pub jpeg: Vec<u8>,
}

/// Why no thumbnail could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ThumbError {
    /// Over the bounds (dimensions or memory).
    #[error("image exceeds the decoding bounds: {0}")]
    TooLarge(String),
    /// Not a decodable image of its type.
    #[error("image does not decode: {0}")]
    Undecodable(String),
}

fn format_of(mime: &str) -> Option<ImageFormat> {
    match mime {
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/png" => Some(ImageFormat::Png),
        "image/webp" => Some(ImageFormat::WebP),
        "image/gif" => Some(ImageFormat::Gif),
        _ => None,
    }
}

/// Decodes `bytes` (of type `mime`) within `bounds` and makes a JPEG thumbnail whose larger
/// side is `px`.
pub fn make(bytes: &[u8], mime: &str, px: u32, bounds: DecodeBounds) -> Result<Thumb, ThumbError> {
    let format =
        format_of(mime).ok_or_else(|| ThumbError::Undecodable(format!("{mime} is not decoded")))?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(bounds.max_width);
    limits.max_image_height = Some(bounds.max_height);
    limits.max_alloc = Some(bounds.max_alloc);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => ThumbError::TooLarge(l.to_string()),
        other => ThumbError::Undecodable(other.to_string()),
    })?;
    let (width, height) = (image.width(), image.height());
    let small = image.thumbnail(px, px).to_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode_image(&small)
        .map_err(|e| ThumbError::Undecodable(e.to_string()))?;
    Ok(Thumb {
        width,
        height,
        jpeg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
        });
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap_or_else(|e| panic!("encode: {e}"));
        out
    }

    #[test]
    fn a_thumbnail_keeps_the_aspect_and_reports_the_original_size() {
        let t = make(&png(640, 480), "image/png", 320, DecodeBounds::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.width, t.height), (640, 480));
        let small = image::load_from_memory(&t.jpeg).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((small.width(), small.height()), (320, 240));
    }

    #[test]
    fn too_many_pixels_is_refused_before_decoding() {
        let bounds = DecodeBounds {
            max_width: 100,
            max_height: 100,
            max_alloc: 1 << 20,
        };
        assert!(matches!(
            make(&png(200, 10), "image/png", 32, bounds),
            Err(ThumbError::TooLarge(_))
        ));
    }

    #[test]
    fn garbage_is_undecodable_not_a_panic() {
        assert!(matches!(
            make(
                b"\x89PNG\r\n\x1a\nnot really",
                "image/png",
                32,
                DecodeBounds::default()
            ),
            Err(ThumbError::Undecodable(_))
        ));
    }
}
