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

/// Opens the store `spec` names: `fs` is `DATA_DIR/media`, `fs:PATH` a directory,
/// `s3://BUCKET[/PREFIX]` a bucket (or a prefix in it).
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
    if let Some(rest) = spec.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let store = s3(bucket)?;
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            return Ok(store);
        }
        // Several servers (or test runs) may share a bucket, each under its own prefix.
        return Ok(Arc::new(object_store::prefix::PrefixStore::new(
            store,
            prefix.to_owned(),
        )));
    }
    Err(BackendError::Unknown(spec.to_owned()))
}

#[cfg(feature = "s3")]
fn s3(bucket: &str) -> Result<Arc<dyn ObjectStore>, BackendError> {
    // Endpoint, region and credentials from the standard AWS_* variables (AWS_ENDPOINT,
    // AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP for a local
    // S3-compatible server), like every other S3 client an operator runs.
    // TERN_S3_* (as scripts/services.sh exports them for its SeaweedFS) override those.
    let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(endpoint) = var("TERN_S3_ENDPOINT") {
        b = b
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint);
    }
    if let Some(v) = var("TERN_S3_REGION") {
        b = b.with_region(v);
    }
    if let Some(v) = var("TERN_S3_ACCESS_KEY") {
        b = b.with_access_key_id(v);
    }
    if let Some(v) = var("TERN_S3_SECRET_KEY") {
        b = b.with_secret_access_key(v);
    }
    let s3 = b.build()?;
    Ok(Arc::new(s3))
}

#[cfg(not(feature = "s3"))]
fn s3(_bucket: &str) -> Result<Arc<dyn ObjectStore>, BackendError> {
    Err(BackendError::NoS3)
}
