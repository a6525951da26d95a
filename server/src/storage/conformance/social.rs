//! Conformance checks for the social rows: last seen, profiles and the username index,
//! contacts, blocks, privacy settings, `ProfileChanged` fan-out and withheld messages.

use tern_protocol::UserId;

use super::{Opener, fresh};
use crate::storage::StorageError;

/// Runs every social check, each on a fresh store.
pub async fn run_all(open: Opener<'_>) {
    last_seen_is_saved_in_batches(open).await;
}

/// Last-seen values round-trip, the newest write wins, unknown users read as `None`, and a
/// closed store refuses.
pub async fn last_seen_is_saved_in_batches(open: Opener<'_>) {
    let (store, _) = fresh(open);
    let (a, b) = (UserId(11), UserId(12));
    assert_eq!(store.last_seen(a).await.unwrap(), None, "never saved");
    store.save_last_seen(Vec::new()).await.unwrap();
    store
        .save_last_seen(vec![(a, 1_000), (b, 2_000)])
        .await
        .unwrap();
    assert_eq!(store.last_seen(a).await.unwrap(), Some(1_000));
    assert_eq!(store.last_seen(b).await.unwrap(), Some(2_000));
    store.save_last_seen(vec![(a, 5_000)]).await.unwrap();
    assert_eq!(store.last_seen(a).await.unwrap(), Some(5_000), "replaced");
    assert_eq!(store.last_seen(b).await.unwrap(), Some(2_000), "untouched");
    store.close().await.unwrap();
    let refused = store.save_last_seen(vec![(a, 9_000)]).await.unwrap_err();
    assert!(matches!(refused, StorageError::Closed), "got {refused:?}");
}
