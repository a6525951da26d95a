//! The collector: unfinished uploads expire, and media no message references any more is
//! removed after a grace period.
//!
//! A message takes a reference by writing its marker and then checking the media is still
//! published ([`super::MediaService::reference`]); the collector unpublishes (deletes the
//! description) and then looks for references. With an object store that reads its own
//! writes (the filesystem, S3 since 2020), at least one of the two sees the other: either the
//! send finds the media unpublished and fails (`NotFound`, the client uploads again), or the
//! collector finds the new reference and publishes the description again. So a message never
//! points at collected bytes.

use std::time::{Duration, SystemTime};

use tern_protocol::MediaRef;

use super::MediaService;
use super::store::MediaStoreError;

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    /// Unfinished uploads that expired.
    pub uploads_expired: usize,
    /// Unreferenced media removed.
    pub media: usize,
    /// Objects deleted.
    pub objects: usize,
}

fn older_than(t: SystemTime, age: Duration, now: SystemTime) -> bool {
    now.duration_since(t).is_ok_and(|d| d >= age)
}

/// When an object was last written (`object_store` reports a `chrono` time).
fn modified(meta: &object_store::ObjectMeta) -> SystemTime {
    let ms = meta.last_modified.timestamp_millis();
    std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl MediaService {
    /// One collection pass at `now`.
    pub async fn collect(&self, now: SystemTime) -> Result<Collected, MediaStoreError> {
        let mut done = Collected::default();
        let ttl = Duration::from_secs(u64::from(self.config.limits.unfinished_upload_ttl_s));
        for (user, media, meta) in self.store.uploads().await? {
            if older_than(modified(&meta), ttl, now) {
                done.objects += self.store.delete_upload(user, media).await?;
                done.uploads_expired += 1;
                self.metrics.uploads_expired.inc();
            }
        }
        for (media, meta) in self.store.published().await? {
            let since = match self.store.released_at(media).await? {
                Some(r) => modified(&r).max(modified(&meta)),
                None => modified(&meta),
            };
            if !older_than(since, Duration::from_secs(self.config.grace_s), now) {
                continue;
            }
            if !self.store.refs(media).await?.is_empty() {
                continue;
            }
            if let Some(n) = self.remove_unreferenced(media).await? {
                done.objects += n;
                done.media += 1;
                self.metrics.collected.inc();
            }
        }
        self.metrics.objects_deleted.inc_by(done.objects as u64);
        Ok(done)
    }

    /// Unpublishes, then looks for references again (see the module docs); removes the bytes
    /// only if none appeared.
    async fn remove_unreferenced(&self, media: MediaRef) -> Result<Option<usize>, MediaStoreError> {
        let Some(meta) = self.store.meta(media).await? else {
            return Ok(None);
        };
        self.store.delete_meta(media).await?;
        if !self.store.refs(media).await?.is_empty() {
            self.store.put_meta(media, &meta).await?;
            return Ok(None);
        }
        Ok(Some(self.store.delete_media(media).await? + 1))
    }

    /// Runs [`MediaService::collect`] every `collect_every` until `stop` says so.
    pub async fn run_collector(
        self: std::sync::Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let every = Duration::from_secs(self.config.collect_every_s.max(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            match self.collect(SystemTime::now()).await {
                Ok(c) if c != Collected::default() => {
                    tracing::info!(
                        uploads_expired = c.uploads_expired,
                        media = c.media,
                        objects = c.objects,
                        "media collected"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "media collection failed; next pass retries"),
            }
        }
    }
}
