//! Media: uploads and downloads on their own QUIC streams, content-addressed, resumable.
//!
//! The transport ([`crate::transport::media`]) moves bytes; this service decides: limits and
//! quotas, type sniffing, hashing, thumbnails, who may read what, and which messages keep an
//! object alive. Bytes and bookkeeping live in one object store ([`store`]); chats are asked
//! through the storage trait for membership only.
//!
//! Who may download: the uploader, and the members of a chat in which a message references the
//! media. Anyone else gets `NotFound`, the same answer as an id that does not exist, so media
//! ids reveal nothing. Sending a media message needs the same right (forwarding is sending
//! what one may read), so a leaked id cannot be used to pull the media into another chat.

pub mod backend;
pub mod lifecycle;
pub mod metrics;
pub mod sniff;
pub mod store;
pub mod thumbnail;
mod upload;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tern_protocol::{
    ChatId, ClientMsgId, DownloadRequest, ErrorBody, ErrorCode, MediaInfo, MediaLimits,
    MediaMessage, MediaRef, MediaVariant, MessageBody, Seq, SessionInfo, Thumbnail, UserId,
};
use tokio::sync::Semaphore;

pub use self::metrics::MediaMetrics;
use self::store::{MediaStore, MediaStoreError, MessageRef, Part, StoredMeta};
use self::thumbnail::DecodeBounds;
pub use self::upload::{Begin, Upload};
use crate::chat::limits::UserLimiter;
use crate::storage::Storage;

/// Media settings: the `[media]` table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Where media lives (`--media-store`): `fs` (under the data dir, `media/`), `fs:PATH`, or
    /// `s3://BUCKET` (credentials, endpoint and region from the standard `AWS_*` variables).
    pub store: String,
    /// Size limits, quotas and lifetimes (announced in `Welcome`).
    pub limits: MediaLimits,
    /// Bounds for decoding images.
    pub bounds: DecodeBounds,
    /// Bytes buffered per stream before a part is committed (and read per download chunk).
    pub part_size: usize,
    /// Bytes all media streams of the server may buffer at once; a stream waits for room.
    pub buffer_budget: usize,
    /// How often the collector runs, in seconds.
    pub collect_every_s: u64,
    /// How long unreferenced media stays before it is collected, in seconds.
    pub grace_s: u64,
    /// Most users the upload rate limiter tracks.
    pub max_limited_users: usize,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            store: "fs".into(),
            limits: MediaLimits::default(),
            bounds: DecodeBounds::default(),
            part_size: 1024 * 1024,
            buffer_budget: 256 * 1024 * 1024,
            collect_every_s: 600,
            grace_s: 24 * 3600,
            max_limited_users: 100_000,
        }
    }
}

/// What the media service is built from.
#[derive(Debug)]
pub struct MediaDeps {
    /// Bytes and bookkeeping.
    pub store: MediaStore,
    /// Chats, for membership.
    pub storage: Arc<dyn Storage>,
    /// Counters.
    pub metrics: MediaMetrics,
    /// Settings.
    pub config: MediaConfig,
}

/// Media uploads, downloads and references.
#[derive(Debug)]
pub struct MediaService {
    store: MediaStore,
    storage: Arc<dyn Storage>,
    metrics: MediaMetrics,
    config: MediaConfig,
    uploads: UserLimiter,
    quota: UserLimiter,
    buffers: Arc<Semaphore>,
    /// Images being decoded at once: each may allocate up to `bounds.max_alloc`.
    decodes: Arc<Semaphore>,
    /// One stream at a time per (user, media) on this node: a resume waits for the stream it
    /// replaces to commit what it received, so the two never write overlapping parts.
    active: Arc<SlotTable>,
}

/// The upload slots of this node: one lock per (user, media) with a stream.
type SlotTable =
    std::sync::Mutex<std::collections::HashMap<(UserId, MediaRef), Arc<tokio::sync::Mutex<()>>>>;

/// Holds an upload's (user, media) slot; frees the map entry when the last holder goes.
pub struct UploadSlot {
    key: (UserId, MediaRef),
    lock: Option<tokio::sync::OwnedMutexGuard<()>>,
    map: Arc<SlotTable>,
}

impl std::fmt::Debug for UploadSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadSlot")
            .field("user", &self.key.0)
            .finish()
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        self.lock = None;
        if let Ok(mut map) = self.map.lock()
            && map
                .get(&self.key)
                .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

/// How long a resume waits for the stream it replaces.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) fn internal(e: MediaStoreError) -> ErrorBody {
    tracing::warn!(error = %e, "media store failed");
    ErrorBody::new(ErrorCode::Internal, "media storage failed; retry")
}

fn not_found() -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, "no such media")
}

/// Images read and decoded at once, server-wide: with the default limits at most
/// 2 × (16 MiB + 256 MiB).
const MAX_DECODES: usize = 2;

/// The quota's unit: the per-day limiter counts MiB, so a 2 GiB quota is 2048 tokens.
const QUOTA_UNIT: u64 = 1024 * 1024;

impl MediaService {
    /// Builds the service.
    pub fn new(deps: MediaDeps) -> Self {
        let l = deps.config.limits;
        let users = deps.config.max_limited_users;
        let quota_units = u32::try_from(l.daily_upload_bytes / QUOTA_UNIT).unwrap_or(u32::MAX);
        let buffers = deps
            .config
            .buffer_budget
            .div_ceil(deps.config.part_size.max(1));
        MediaService {
            uploads: UserLimiter::per_minute(
                "uploads",
                l.uploads_per_minute,
                l.uploads_per_minute,
                users,
            ),
            quota: UserLimiter::per_day(
                "upload bytes",
                quota_units.max(1),
                quota_units.max(1),
                users,
            ),
            buffers: Arc::new(Semaphore::new(buffers.max(1))),
            active: Arc::default(),
            decodes: Arc::new(Semaphore::new(MAX_DECODES)),
            store: deps.store,
            storage: deps.storage,
            metrics: deps.metrics,
            config: deps.config,
        }
    }

    /// The limits announced in `Welcome`.
    pub fn limits(&self) -> MediaLimits {
        self.config.limits
    }

    /// The settings.
    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    /// The counters.
    pub fn metrics(&self) -> &MediaMetrics {
        &self.metrics
    }

    /// The object layout (for the collector and tests).
    pub fn store(&self) -> &MediaStore {
        &self.store
    }

    /// Waits for room to buffer one part: bounds what all media streams hold together.
    pub async fn buffer_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.buffers.clone().acquire_owned().await.ok()
    }

    /// Takes the (user, media) slot, waiting a little for a stream that still holds it.
    pub(crate) async fn slot(
        &self,
        user: UserId,
        media: MediaRef,
    ) -> Result<UploadSlot, ErrorBody> {
        let key = (user, media);
        let lock = match self.active.lock() {
            Ok(mut map) => map.entry(key).or_default().clone(),
            Err(_) => return Err(ErrorBody::new(ErrorCode::Internal, "upload table poisoned")),
        };
        let guard = tokio::time::timeout(SLOT_WAIT, lock.lock_owned())
            .await
            .map_err(|_| {
                ErrorBody::new(
                    ErrorCode::TooManyRequests,
                    "this upload is still in progress on another stream; retry",
                )
            })?;
        Ok(UploadSlot {
            key,
            lock: Some(guard),
            map: self.active.clone(),
        })
    }

    /// One of the decoder slots: the whole image is read into memory and decoded under it, so
    /// at most `MAX_DECODES` × (largest image + `bounds.max_alloc`) is held server-wide.
    pub(crate) async fn decode_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.decodes.clone().acquire_owned().await.ok()
    }

    /// Spends one upload of the per-minute rate and `size` bytes of the daily quota.
    async fn charge(&self, user: UserId, size: u64) -> Result<(), ErrorBody> {
        let now = Instant::now();
        self.uploads.check(user, now).await?;
        let units = size.div_ceil(QUOTA_UNIT).max(1);
        for _ in 0..units {
            self.quota.check(user, now).await.map_err(|_| {
                ErrorBody::new(
                    ErrorCode::QuotaExceeded,
                    "daily media upload quota used up; retry tomorrow",
                )
            })?;
        }
        Ok(())
    }

    /// Whether `user` may read `media`: its uploader, or a member of a chat where a message
    /// references it.
    pub async fn may_read(&self, user: UserId, media: MediaRef) -> Result<bool, ErrorBody> {
        if self.store.is_owner(media, user).await.map_err(internal)? {
            return Ok(true);
        }
        let refs = self.store.refs(media).await.map_err(internal)?;
        let mut seen: Vec<ChatId> = Vec::new();
        for r in refs {
            if seen.contains(&r.chat) {
                continue;
            }
            seen.push(r.chat);
            let chat = self.storage.chat(r.chat).await.map_err(|e| {
                tracing::warn!(error = %e, "chat read failed");
                ErrorBody::new(ErrorCode::Internal, "storage failed; retry")
            })?;
            if chat.is_some_and(|c| c.has_member(user)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Opens a download, or answers `NotFound` for media that does not exist or that `user`
    /// may not read (the same answer).
    pub async fn open_download(
        &self,
        s: SessionInfo,
        req: DownloadRequest,
    ) -> Result<Download, ErrorBody> {
        let Some(meta) = self.store.meta(req.media).await.map_err(internal)? else {
            return Err(not_found());
        };
        if !self.may_read(s.user_id, req.media).await? {
            return Err(not_found());
        }
        let (size, parts) = match req.variant {
            MediaVariant::Original => (
                meta.size,
                self.store.parts(req.media).await.map_err(internal)?,
            ),
            MediaVariant::Thumbnail => {
                let Some(len) = meta.thumbnail else {
                    return Err(ErrorBody::new(ErrorCode::NotFound, "no thumbnail"));
                };
                (len, vec![MediaStore::thumbnail_part(req.media, len)])
            }
        };
        if req.offset > size {
            return Err(ErrorBody::new(
                ErrorCode::InvalidArgument,
                format!("offset {} is past the end ({size} bytes)", req.offset),
            ));
        }
        let mut info = info_of(req.media, &meta);
        info.size = size;
        if req.variant == MediaVariant::Thumbnail {
            info.mime = "image/jpeg".into();
        }
        Ok(Download {
            info,
            position: req.offset,
            parts,
        })
    }

    /// The next bytes of a download (at most one part size), `None` at the end.
    pub async fn next_chunk(&self, d: &mut Download) -> Result<Option<Bytes>, ErrorBody> {
        if d.position >= d.info.size {
            return Ok(None);
        }
        let pos = d.position;
        let part = d
            .parts
            .iter()
            .find(|p| p.offset <= pos && pos < p.offset + p.len)
            .cloned()
            .ok_or_else(|| {
                tracing::error!(media = %d.info.media.to_hex(), pos, "a published object has a hole");
                ErrorBody::new(ErrorCode::Internal, "media object incomplete")
            })?;
        let start = pos - part.offset;
        let end = (start + self.config.part_size as u64).min(part.len);
        let bytes = self.store.read(&part, start..end).await.map_err(internal)?;
        d.position += bytes.len() as u64;
        self.metrics.bytes("out", bytes.len() as u64);
        Ok(Some(bytes))
    }

    /// Checks a media message before it is appended and records its reference: the media must
    /// be published and readable by the sender; kind, type, size and dimensions are replaced by
    /// what the server knows. The reference is written first and the media checked after, so
    /// the collector (which unpublishes first and looks for references after) never removes
    /// media a message is being sent with ([`lifecycle`]).
    pub async fn reference(
        &self,
        s: SessionInfo,
        chat: ChatId,
        client_msg_id: ClientMsgId,
        m: &mut MediaMessage,
    ) -> Result<(), ErrorBody> {
        // A non-member learns nothing about the media and leaves no reference behind.
        crate::chat::member_chat(&*self.storage, s.user_id, chat).await?;
        if self.store.meta(m.media).await.map_err(internal)?.is_none()
            || !self.may_read(s.user_id, m.media).await?
        {
            return Err(not_found());
        }
        let r = MessageRef {
            chat,
            device: s.device_id,
            client_msg_id,
        };
        self.store.add_ref(m.media, r).await.map_err(internal)?;
        let Some(meta) = self.store.meta(m.media).await.map_err(internal)? else {
            let _ = self.store.remove_ref(m.media, r).await;
            return Err(not_found());
        };
        m.kind = meta.kind;
        m.mime = meta.mime;
        m.size = meta.size;
        m.encrypted = meta.encrypted;
        if meta.dimensions.is_some() {
            m.dimensions = meta.dimensions;
        }
        if meta.thumbnail.is_some() {
            m.thumbnail = Thumbnail::Server;
        } else if m.thumbnail == Thumbnail::Server {
            m.thumbnail = Thumbnail::None;
        }
        Ok(())
    }

    /// Before a delete for everyone of `target`: the media reference it will drop, if the
    /// target is a media message.
    pub async fn deleting(&self, chat: ChatId, target: Seq) -> Option<(MediaRef, MessageRef)> {
        let message = self.storage.message(chat, target).await.ok()??;
        match message.body {
            MessageBody::Media(m) => Some((
                m.media,
                MessageRef {
                    chat,
                    device: message.sender_device,
                    client_msg_id: message.client_msg_id,
                },
            )),
            _ => None,
        }
    }

    /// After the delete committed: drops the reference (a failure leaves it, which only keeps
    /// the bytes longer).
    pub async fn release(&self, media: MediaRef, r: MessageRef) {
        if let Err(e) = self.store.remove_ref(media, r).await {
            tracing::warn!(error = %e, "a media reference was not dropped; the media stays");
        }
    }
}

/// A download in progress.
#[derive(Debug)]
pub struct Download {
    /// What is being sent.
    pub info: MediaInfo,
    /// Next byte to send.
    pub position: u64,
    parts: Vec<Part>,
}

pub(crate) fn info_of(media: MediaRef, meta: &StoredMeta) -> MediaInfo {
    MediaInfo {
        media,
        kind: meta.kind,
        mime: meta.mime.clone(),
        size: meta.size,
        dimensions: meta.dimensions,
        thumbnail: meta.thumbnail.is_some(),
        encrypted: meta.encrypted,
    }
}
