//! Where media bytes and their bookkeeping live: one object store (the local filesystem under
//! the data dir, or S3), shared by every node of a cluster. Only this file knows object names.
//!
//! ```text
//! uploads/{user}/{media}/header          the declared upload (JSON), its age is the upload's
//! uploads/{user}/{media}/p{offset:020}   committed parts of an unfinished upload
//! media/{media}/meta                     what the server knows (JSON); present = published
//! media/{media}/p{offset:020}            the bytes, in parts (renamed from the upload's)
//! media/{media}/thumb                    the server's thumbnail (JPEG), for plain images
//! media/{media}/owner/{user}             a user who uploaded these bytes
//! media/{media}/ref/{chat}-{device}-{client_msg_id}
//!                                        a message that references the media
//! media/{media}/released                 when the last reference went (its age, for collection)
//! ```
//!
//! Parts are never concatenated: a published object is read part by part, so finishing an
//! upload moves names (a rename on the filesystem, a server-side copy on S3), never bytes.
//! Every object is immutable once written except the markers, and writing a marker twice is
//! harmless: the store needs no transactions. The one race that matters (a message taking a
//! reference while the collector removes unreferenced media) is ordered in [`super::lifecycle`].

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tern_protocol::{ChatId, ClientMsgId, DeviceId, MediaKind, MediaRef, UserId};

/// Why the object store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaStoreError {
    /// The store answered with an error (IO, network, permissions).
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// An object the server wrote does not read back as it wrote it.
    #[error("corrupt media bookkeeping at {path}: {reason}")]
    Corrupt {
        /// The object.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

type Result<T> = std::result::Result<T, MediaStoreError>;

/// A declared upload, kept while it is unfinished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    /// Total size.
    pub size: u64,
    /// Declared kind.
    pub kind: MediaKind,
    /// Declared type.
    pub mime: String,
    /// Client-encrypted.
    pub encrypted: bool,
}

/// What the server knows of a published object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMeta {
    /// Kind.
    pub kind: MediaKind,
    /// Type (sniffed, for plain media).
    pub mime: String,
    /// Size of the original.
    pub size: u64,
    /// Width and height, for plain images.
    pub dimensions: Option<(u32, u32)>,
    /// Size of the thumbnail, if there is one.
    pub thumbnail: Option<u64>,
    /// Client-encrypted.
    pub encrypted: bool,
}

/// One stored part: its first byte's offset, its length and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Offset of its first byte in the object.
    pub offset: u64,
    /// Length.
    pub len: u64,
    /// Object name.
    pub path: Path,
}

/// A message's reference to a media object: stable across retries of the same send (the chat's
/// idempotency key), so writing it before the message is appended is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageRef {
    /// The chat.
    pub chat: ChatId,
    /// The sending device.
    pub device: DeviceId,
    /// The device's idempotency key.
    pub client_msg_id: ClientMsgId,
}

impl MessageRef {
    fn name(&self) -> String {
        format!("{}-{}-{}", self.chat.0, self.device.0, self.client_msg_id)
    }

    fn parse(name: &str) -> Option<MessageRef> {
        let mut it = name.split('-');
        let r = MessageRef {
            chat: ChatId(it.next()?.parse().ok()?),
            device: DeviceId(it.next()?.parse().ok()?),
            client_msg_id: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(r)
    }
}

/// The media layout over an object store.
#[derive(Debug, Clone)]
pub struct MediaStore {
    store: Arc<dyn ObjectStore>,
}

fn not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

fn part_name(prefix: &str, offset: u64) -> Path {
    Path::from(format!("{prefix}/p{offset:020}"))
}

impl MediaStore {
    /// The layout over `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        MediaStore { store }
    }

    fn upload_prefix(user: UserId, media: MediaRef) -> String {
        format!("uploads/{}/{}", user.0, media.to_hex())
    }

    fn media_prefix(media: MediaRef) -> String {
        format!("media/{}", media.to_hex())
    }

    /// `media/{media}/{leaf}`.
    fn media_object(media: MediaRef, leaf: &str) -> Path {
        Path::from(format!("{}/{leaf}", Self::media_prefix(media)))
    }

    /// `uploads/{user}/{media}/header`.
    fn upload_header(user: UserId, media: MediaRef) -> Path {
        Path::from(format!("{}/header", Self::upload_prefix(user, media)))
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, path: &Path) -> Result<Option<T>> {
        let bytes = match self.store.get(path).await {
            Ok(r) => r.bytes().await?,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| MediaStoreError::Corrupt {
                path: path.to_string(),
                reason: e.to_string(),
            })
    }

    async fn put_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| MediaStoreError::Corrupt {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        self.store.put(path, PutPayload::from(bytes)).await?;
        Ok(())
    }

    async fn exists(&self, path: &Path) -> Result<bool> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_quietly(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let prefix = Path::from(prefix);
        Ok(self.store.list(Some(&prefix)).try_collect().await?)
    }

    /// Deletes every object under `prefix`.
    async fn delete_all(&self, prefix: &str) -> Result<usize> {
        let objects = self.list(prefix).await?;
        for o in &objects {
            self.delete_quietly(&o.location).await?;
        }
        Ok(objects.len())
    }

    async fn parts_under(&self, prefix: &str) -> Result<Vec<Part>> {
        let mut parts: Vec<Part> = self
            .list(prefix)
            .await?
            .into_iter()
            .filter_map(|o| {
                let name = o.location.filename()?;
                let offset = name.strip_prefix('p')?.parse().ok()?;
                Some(Part {
                    offset,
                    len: o.size,
                    path: o.location.clone(),
                })
            })
            .collect();
        parts.sort_by_key(|p| p.offset);
        Ok(parts)
    }

    // --- unfinished uploads ---

    /// The declared upload of `media` by `user`, if one is unfinished.
    pub async fn upload_state(&self, user: UserId, media: MediaRef) -> Result<Option<UploadState>> {
        let path = Self::upload_header(user, media);
        self.get_json(&path).await
    }

    /// Declares (or re-declares) an upload.
    pub async fn put_upload_state(
        &self,
        user: UserId,
        media: MediaRef,
        state: &UploadState,
    ) -> Result<()> {
        let path = Self::upload_header(user, media);
        self.put_json(&path, state).await
    }

    /// The committed parts of an unfinished upload, in offset order.
    pub async fn upload_parts(&self, user: UserId, media: MediaRef) -> Result<Vec<Part>> {
        self.parts_under(&Self::upload_prefix(user, media)).await
    }

    /// Commits one part: once this returns the bytes are durable (the filesystem store syncs
    /// file and directory; S3 answers after storing).
    pub async fn put_upload_part(
        &self,
        user: UserId,
        media: MediaRef,
        offset: u64,
        bytes: Bytes,
    ) -> Result<()> {
        let path = part_name(&Self::upload_prefix(user, media), offset);
        self.store.put(&path, PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// Drops an unfinished upload and its parts.
    pub async fn delete_upload(&self, user: UserId, media: MediaRef) -> Result<usize> {
        self.delete_all(&format!("{}/", Self::upload_prefix(user, media)))
            .await
    }

    /// Every unfinished upload: (user, media, when it was declared).
    pub async fn uploads(&self) -> Result<Vec<(UserId, MediaRef, ObjectMeta)>> {
        Ok(self
            .list("uploads")
            .await?
            .into_iter()
            .filter_map(|o| {
                let parts: Vec<_> = o.location.parts().collect();
                if parts.len() != 4 || parts[3].as_ref() != "header" {
                    return None;
                }
                let user = UserId(parts[1].as_ref().parse().ok()?);
                let media = MediaRef::from_hex(parts[2].as_ref())?;
                Some((user, media, o))
            })
            .collect())
    }

    /// Moves an upload's parts under the published object (no bytes copied on the filesystem).
    pub async fn publish_parts(&self, user: UserId, media: MediaRef) -> Result<()> {
        let to = Self::media_prefix(media);
        for part in self.upload_parts(user, media).await? {
            self.store
                .rename(&part.path, &part_name(&to, part.offset))
                .await?;
        }
        Ok(())
    }

    // --- published media ---

    /// What is known of a published object; `None` if it is not (or no longer) published.
    pub async fn meta(&self, media: MediaRef) -> Result<Option<StoredMeta>> {
        let path = Self::media_object(media, "meta");
        self.get_json(&path).await
    }

    /// Publishes (or restores) the description: from now on the object can be referenced.
    pub async fn put_meta(&self, media: MediaRef, meta: &StoredMeta) -> Result<()> {
        let path = Self::media_object(media, "meta");
        self.put_json(&path, meta).await
    }

    /// Unpublishes: references are refused from now on (the collector's first step).
    pub async fn delete_meta(&self, media: MediaRef) -> Result<()> {
        let path = Self::media_object(media, "meta");
        self.delete_quietly(&path).await
    }

    /// Every published object with its description's age.
    pub async fn published(&self) -> Result<Vec<(MediaRef, ObjectMeta)>> {
        Ok(self
            .list("media")
            .await?
            .into_iter()
            .filter_map(|o| {
                let parts: Vec<_> = o.location.parts().collect();
                if parts.len() != 3 || parts[2].as_ref() != "meta" {
                    return None;
                }
                Some((MediaRef::from_hex(parts[1].as_ref())?, o))
            })
            .collect())
    }

    /// The parts of a published object, in offset order (parts of two uploads of the same
    /// bytes may overlap; overlapping bytes are equal, the hash says so).
    pub async fn parts(&self, media: MediaRef) -> Result<Vec<Part>> {
        self.parts_under(&Self::media_prefix(media)).await
    }

    /// Bytes `range` of one part.
    pub async fn read(&self, part: &Part, range: Range<u64>) -> Result<Bytes> {
        Ok(self.store.get_range(&part.path, range).await?)
    }

    /// Stores the thumbnail.
    pub async fn put_thumbnail(&self, media: MediaRef, bytes: Bytes) -> Result<()> {
        let path = Self::media_object(media, "thumb");
        self.store.put(&path, PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// The thumbnail as a part, for downloads.
    pub fn thumbnail_part(media: MediaRef, len: u64) -> Part {
        Part {
            offset: 0,
            len,
            path: Self::media_object(media, "thumb"),
        }
    }

    /// Records `user` as an uploader.
    pub async fn add_owner(&self, media: MediaRef, user: UserId) -> Result<()> {
        let path = Self::media_object(media, &format!("owner/{}", user.0));
        self.store.put(&path, PutPayload::new()).await?;
        Ok(())
    }

    /// Whether `user` uploaded these bytes.
    pub async fn is_owner(&self, media: MediaRef, user: UserId) -> Result<bool> {
        let path = Self::media_object(media, &format!("owner/{}", user.0));
        self.exists(&path).await
    }

    /// Records a message's reference.
    pub async fn add_ref(&self, media: MediaRef, r: MessageRef) -> Result<()> {
        let path = Self::media_object(media, &format!("ref/{}", r.name()));
        self.store.put(&path, PutPayload::new()).await?;
        Ok(())
    }

    /// Drops a message's reference and notes when, for the collector's grace period.
    pub async fn remove_ref(&self, media: MediaRef, r: MessageRef) -> Result<()> {
        let path = Self::media_object(media, &format!("ref/{}", r.name()));
        self.delete_quietly(&path).await?;
        let released = Self::media_object(media, "released");
        self.store.put(&released, PutPayload::new()).await?;
        Ok(())
    }

    /// The messages referencing the media.
    pub async fn refs(&self, media: MediaRef) -> Result<Vec<MessageRef>> {
        Ok(self
            .list(&format!("{}/ref", Self::media_prefix(media)))
            .await?
            .iter()
            .filter_map(|o| MessageRef::parse(o.location.filename()?))
            .collect())
    }

    /// When the last reference was dropped, if ever.
    pub async fn released_at(&self, media: MediaRef) -> Result<Option<ObjectMeta>> {
        let path = Self::media_object(media, "released");
        match self.store.head(&path).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes everything left of a published object (after its description is gone).
    pub async fn delete_media(&self, media: MediaRef) -> Result<usize> {
        self.delete_all(&format!("{}/", Self::media_prefix(media)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_refs_name_and_parse_back() {
        let r = MessageRef {
            chat: ChatId(12),
            device: DeviceId(3),
            client_msg_id: u64::MAX,
        };
        assert_eq!(MessageRef::parse(&r.name()), Some(r));
        assert_eq!(MessageRef::parse("1-2"), None);
        assert_eq!(MessageRef::parse("1-2-3-4"), None);
        assert_eq!(MessageRef::parse("a-2-3"), None);
    }

    #[test]
    fn part_names_sort_by_offset() {
        let a = part_name("x", 9).to_string();
        let b = part_name("x", 10).to_string();
        assert!(a < b, "{a} < {b}");
    }
}
