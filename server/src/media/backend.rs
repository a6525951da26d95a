//! The object store behind media, chosen by `[media] store`: the only place that knows which
//! `object_store` backend runs.

use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

/// Why the media store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The setting names no known store.
    #[error("media store {0:?}: use `fs`, `fs:PATH` or `s3://BUCKET`")]
    Unknown(String),
    /// `s3://` on a build without the `s3` feature.
    #[error("this build has no S3 support (cargo feature `s3`)")]
    NoS3,
    /// The directory could not be created.
    #[error("media directory {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The backend refused its settings.
    #[error("media store: {0}")]
    Store(#[from] object_store::Error),
}

/// Opens the store `spec` names; `fs` is `DATA_DIR/media`.
pub fn open(spec: &str, data_dir: &Path) -> Result<Arc<dyn ObjectStore>, BackendError> {
    if spec == "fs" || spec.starts_with("fs:") {
        let dir = match spec.strip_prefix("fs:") {
            Some(p) => Path::new(p).to_path_buf(),
            None => data_dir.join("media"),
        };
        std::fs::create_dir_all(&dir).map_err(|source| BackendError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        // Durable like the database: a committed part or a published description survives a
        // power cut (file and directory are synced before the write returns).
        let fs = LocalFileSystem::new_with_prefix(&dir)?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        return Ok(Arc::new(fs));
    }
    if let Some(bucket) = spec.strip_prefix("s3://") {
        return s3(bucket.trim_end_matches('/'));
    }
    Err(BackendError::Unknown(spec.to_owned()))
}

#[cfg(feature = "s3")]
fn s3(bucket: &str) -> Result<Arc<dyn ObjectStore>, BackendError> {
    // Endpoint, region and credentials from the standard AWS_* variables (AWS_ENDPOINT,
    // AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP for a local
    // S3-compatible server), like every other S3 client an operator runs.
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()?;
    Ok(Arc::new(s3))
}

#[cfg(not(feature = "s3"))]
fn s3(_bucket: &str) -> Result<Arc<dyn ObjectStore>, BackendError> {
    Err(BackendError::NoS3)
}
