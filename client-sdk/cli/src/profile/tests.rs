#![allow(clippy::unwrap_used)]

use super::*;
use tern_sdk::protocol::{ChatId, DeviceId, UserId};

fn sample() -> Profile {
    let mut sync = SyncState::default();
    sync.cursor.pts = 7;
    sync.chats.insert(ChatId(3), 5);
    Profile {
        server: Some("127.0.0.1:4433".into()),
        cert_fingerprint: Some("ab".repeat(32)),
        identifier: Some("alice@example.org".into()),
        session: Some(SessionInfo {
            user_id: UserId(1),
            device_id: DeviceId(2),
        }),
        tokens: Some(Tokens {
            access_token: "a".into(),
            access_expires_at_ms: 9,
            refresh_token: "r".into(),
        }),
        sync,
    }
}

#[test]
fn round_trips_with_owner_only_mode() {
    let home = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(Some(home.path()), "alice").unwrap();
    assert_eq!(store.load().unwrap(), Profile::default());
    store.save(&sample()).unwrap();
    assert_eq!(store.load().unwrap(), sample());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_profile_is_used_by_one_process_at_a_time() {
    let home = tempfile::tempdir().unwrap();
    let _held = ProfileStore::open(Some(home.path()), "bob").unwrap();
    let again = ProfileStore::open(Some(home.path()), "bob");
    assert!(matches!(again, Err(Failure::Local(_))));
    assert!(ProfileStore::open(Some(home.path()), "carol").is_ok());
}

#[test]
fn names_stay_inside_the_profiles_dir() {
    let home = tempfile::tempdir().unwrap();
    for bad in ["", "../x", ".hidden", "a/b"] {
        assert!(matches!(
            ProfileStore::open(Some(home.path()), bad),
            Err(Failure::Usage(_))
        ));
    }
}
