//! One upload: declared, buffered into parts, committed part by part, verified and published.
//!
//! The committed offset is what the store holds as parts, contiguous from 0: a part is written
//! when the buffer reaches the part size, and whatever is buffered when the stream ends early
//! (the phone switched networks) is written too, so a resume continues from the last byte the
//! server received, not from the last full part. The SHA-256 runs over the bytes as they
//! arrive; a resumed upload first re-hashes what is stored (reading it back, once).

use bytes::Bytes;
use ring::digest;
use tern_protocol::{
    ErrorBody, ErrorCode, MediaInfo, MediaKind, SessionInfo, UploadHeader, UserId,
};

use super::sniff::{self, SNIFF_LEN};
use super::store::{StoredMeta, UploadState};
use super::thumbnail::{self, ThumbError};
use super::{MediaService, info_of, internal};

/// How an upload starts.
#[derive(Debug)]
pub enum Begin {
    /// This user already stored these bytes: nothing to send.
    Stored(MediaInfo),
    /// Send the bytes from `upload.offset()`.
    Resume(Box<Upload>),
}

/// An upload in progress on one stream.
pub struct Upload {
    user: UserId,
    header: UploadHeader,
    /// Bytes committed as parts.
    committed: u64,
    /// Bytes received after `committed`, not yet written.
    buf: Vec<u8>,
    hash: digest::Context,
    /// The type to store, once the first bytes were sniffed.
    mime: Option<String>,
    _slot: super::UploadSlot,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("user", &self.user)
            .field("media", &self.header.media.to_hex())
            .field("committed", &self.committed)
            .field("buffered", &self.buf.len())
            .finish()
    }
}

impl Upload {
    /// The first byte the server needs.
    pub fn offset(&self) -> u64 {
        self.committed + self.buf.len() as u64
    }
}

fn state_of(h: &UploadHeader) -> UploadState {
    UploadState {
        size: h.size,
        kind: h.kind,
        mime: h.mime.clone(),
        encrypted: h.encrypted,
    }
}

impl MediaService {
    /// Starts or resumes an upload: checks the declaration against the limits and quota (new
    /// uploads only), and finds how much is committed already.
    pub async fn begin_upload(&self, s: SessionInfo, h: UploadHeader) -> Result<Begin, ErrorBody> {
        let user = s.user_id;
        let max = self.config.limits.max_bytes(h.kind);
        if h.size > max {
            return Err(ErrorBody::new(
                ErrorCode::TooLarge,
                format!("a {} may be at most {max} bytes", h.kind.name()),
            ));
        }
        if h.size == 0 {
            return Err(ErrorBody::new(ErrorCode::InvalidArgument, "empty media"));
        }
        if let Some(meta) = self.store.meta(h.media).await.map_err(internal)?
            && self.store.is_owner(h.media, user).await.map_err(internal)?
        {
            // Uploading the same bytes again: already done. (Another user's identical bytes
            // are stored once too, but they must send them: possession is proven, not claimed.)
            return Ok(Begin::Stored(info_of(h.media, &meta)));
        }
        let slot = self.slot(user, h.media).await?;
        let wanted = state_of(&h);
        let existing = self
            .store
            .upload_state(user, h.media)
            .await
            .map_err(internal)?;
        let mut upload = Upload {
            user,
            header: h,
            committed: 0,
            buf: Vec::new(),
            hash: digest::Context::new(&digest::SHA256),
            mime: None,
            _slot: slot,
        };
        if existing.as_ref() == Some(&wanted) {
            self.restore(&mut upload).await?;
            self.metrics.upload("resumed");
        } else {
            if existing.is_some() {
                // Re-declared differently: the old parts belong to another declaration.
                self.store
                    .delete_upload(user, upload.header.media)
                    .await
                    .map_err(internal)?;
            }
            self.charge(user, wanted.size).await?;
            self.store
                .put_upload_state(user, upload.header.media, &wanted)
                .await
                .map_err(internal)?;
        }
        Ok(Begin::Resume(Box::new(upload)))
    }

    /// Re-reads the committed parts of a resumed upload: the hash state, the committed offset
    /// (contiguous parts from 0) and the sniffed type.
    async fn restore(&self, up: &mut Upload) -> Result<(), ErrorBody> {
        let parts = self
            .store
            .upload_parts(up.user, up.header.media)
            .await
            .map_err(internal)?;
        let mut head = Vec::new();
        for part in parts {
            if part.offset != up.committed {
                // A gap (or an overlap) can only come from a part written twice with different
                // cuts: stop at the contiguous prefix; the client resends the rest.
                break;
            }
            let bytes = self
                .store
                .read(&part, 0..part.len)
                .await
                .map_err(internal)?;
            if head.len() < SNIFF_LEN {
                head.extend_from_slice(&bytes[..bytes.len().min(SNIFF_LEN - head.len())]);
            }
            up.hash.update(&bytes);
            up.committed += part.len;
        }
        if up.committed > up.header.size {
            return Err(ErrorBody::new(
                ErrorCode::Internal,
                "stored parts exceed the declared size",
            ));
        }
        if up.committed > 0 {
            up.mime = Some(self.sniff(&up.header, &head)?);
        }
        Ok(())
    }

    fn sniff(&self, h: &UploadHeader, head: &[u8]) -> Result<String, ErrorBody> {
        if h.encrypted {
            return Ok(h.mime.clone());
        }
        sniff::check(h.kind, &h.mime, head)
            .map_err(|e| ErrorBody::new(ErrorCode::MediaTypeMismatch, e.to_string()))
    }

    /// Takes received bytes; commits a part whenever a part's worth is buffered.
    pub async fn write(&self, up: &mut Upload, data: &[u8]) -> Result<(), ErrorBody> {
        if up.offset() + data.len() as u64 > up.header.size {
            return Err(ErrorBody::new(
                ErrorCode::TooLarge,
                "more bytes than the declared size",
            ));
        }
        up.buf.extend_from_slice(data);
        self.metrics.bytes("in", data.len() as u64);
        if up.buf.len() >= self.config.part_size {
            self.commit(up).await?;
        }
        Ok(())
    }

    /// Writes what is buffered as a part (also when the stream ended early).
    pub async fn commit(&self, up: &mut Upload) -> Result<(), ErrorBody> {
        if up.buf.is_empty() {
            return Ok(());
        }
        if up.mime.is_none() {
            // The type is decided by the first bytes, before any is stored.
            up.mime = Some(self.sniff(&up.header, &up.buf)?);
        }
        let bytes = Bytes::from(std::mem::take(&mut up.buf));
        up.hash.update(&bytes);
        let len = bytes.len() as u64;
        self.store
            .put_upload_part(up.user, up.header.media, up.committed, bytes)
            .await
            .map_err(internal)?;
        up.committed += len;
        Ok(())
    }

    /// The client finished its side: every declared byte must be there and hash to the
    /// declared id. Then the object is published (or, if these bytes are stored already, the
    /// upload's copy is dropped) and the user recorded as an uploader.
    pub async fn finish(&self, mut up: Upload) -> Result<MediaInfo, ErrorBody> {
        self.commit(&mut up).await?;
        let media = up.header.media;
        if up.committed != up.header.size {
            return Err(ErrorBody::new(
                ErrorCode::InvalidArgument,
                format!(
                    "the stream ended at {} of {} bytes",
                    up.committed, up.header.size
                ),
            ));
        }
        // Every byte must be in the parts too, not only in the hash: parts written by two
        // nodes' streams at once could leave a hole (the client retries; the resume re-reads).
        let mut end = 0;
        for p in self
            .store
            .upload_parts(up.user, media)
            .await
            .map_err(internal)?
        {
            if p.offset > end {
                break;
            }
            end = end.max(p.offset + p.len);
        }
        if end != up.header.size {
            return Err(ErrorBody::new(
                ErrorCode::Internal,
                "the stored parts do not cover the upload; retry to resume",
            ));
        }
        let digest = up.hash.clone().finish();
        if digest.as_ref() != media.0 {
            self.store
                .delete_upload(up.user, media)
                .await
                .map_err(internal)?;
            return Err(ErrorBody::new(
                ErrorCode::HashMismatch,
                "the bytes do not hash to the declared SHA-256; nothing was stored",
            ));
        }
        let meta = match self.store.meta(media).await.map_err(internal)? {
            Some(meta) => {
                self.store
                    .delete_upload(up.user, media)
                    .await
                    .map_err(internal)?;
                self.metrics.upload("deduplicated");
                meta
            }
            None => {
                let meta = self.describe(&up).await?;
                self.store
                    .publish_parts(up.user, media)
                    .await
                    .map_err(internal)?;
                self.store.put_meta(media, &meta).await.map_err(internal)?;
                self.store
                    .delete_upload(up.user, media)
                    .await
                    .map_err(internal)?;
                self.metrics.upload("stored");
                meta
            }
        };
        self.store
            .add_owner(media, up.user)
            .await
            .map_err(internal)?;
        Ok(info_of(media, &meta))
    }

    /// The description of a verified upload; for plain images, the thumbnail is made and
    /// stored first. A bomb or a broken image is refused and its parts dropped.
    async fn describe(&self, up: &Upload) -> Result<StoredMeta, ErrorBody> {
        let mime = up.mime.clone().unwrap_or_else(|| up.header.mime.clone());
        let mut meta = StoredMeta {
            kind: up.header.kind,
            mime,
            size: up.header.size,
            dimensions: None,
            thumbnail: None,
            encrypted: up.header.encrypted,
        };
        if up.header.encrypted
            || up.header.kind != MediaKind::Image
            || !sniff::thumbnailable(&meta.mime)
        {
            return Ok(meta);
        }
        // The whole image in memory plus the decoder's working set: both bounded server-wide.
        let Some(_slot) = self.decode_slot().await else {
            return Err(ErrorBody::new(ErrorCode::Internal, "media budget closed"));
        };
        let mut bytes = Vec::with_capacity(up.header.size as usize);
        for part in self
            .store
            .upload_parts(up.user, up.header.media)
            .await
            .map_err(internal)?
        {
            let b = self
                .store
                .read(&part, 0..part.len)
                .await
                .map_err(internal)?;
            bytes.extend_from_slice(&b);
        }
        let (mime, px, bounds) = (
            meta.mime.clone(),
            self.config.limits.thumbnail_px,
            self.config.bounds,
        );
        let made = tokio::task::spawn_blocking(move || thumbnail::make(&bytes, &mime, px, bounds))
            .await
            .map_err(|_| ErrorBody::new(ErrorCode::Internal, "thumbnailer failed"))?;
        match made {
            Ok(t) => {
                meta.dimensions = Some((t.width, t.height));
                meta.thumbnail = Some(t.jpeg.len() as u64);
                self.store
                    .put_thumbnail(up.header.media, Bytes::from(t.jpeg))
                    .await
                    .map_err(internal)?;
                Ok(meta)
            }
            Err(e) => {
                self.store
                    .delete_upload(up.user, up.header.media)
                    .await
                    .map_err(internal)?;
                let why = match e {
                    ThumbError::TooLarge(_) => "the image is too large to decode",
                    _ => "the image does not decode",
                };
                Err(ErrorBody::new(
                    ErrorCode::UndecodableMedia,
                    format!("{why}: {e}"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tern_protocol::MediaRef;

    #[test]
    fn a_media_id_is_the_sha256_of_the_bytes() {
        let d = ring::digest::digest(&ring::digest::SHA256, b"abc");
        let id = MediaRef(d.as_ref().try_into().unwrap_or([0; 32]));
        assert_eq!(
            id.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
