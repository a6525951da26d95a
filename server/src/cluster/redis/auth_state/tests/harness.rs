//! `AuthService`s for the store tests: one node with its own fjall storage, or another node on
//! the same storage (nodes of a cluster share storage), codes caught in an inbox.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::SECRET;
use crate::auth::sender::{OtpSender, SendError};
use crate::auth::state::AuthState;
use crate::auth::token::{SigningKey, TokenIssuer};
use crate::auth::{AuthConfig, AuthDeps, AuthService};

pub(super) type Inbox = Arc<Mutex<Vec<(String, String)>>>;

#[derive(Debug)]
struct InboxSender(Inbox);

#[async_trait]
impl OtpSender for InboxSender {
    async fn send(&self, identifier: &str, code: &str) -> Result<(), SendError> {
        self.0
            .lock()
            .unwrap()
            .push((identifier.to_owned(), code.to_owned()));
        Ok(())
    }

    fn describe(&self) -> String {
        "test inbox".into()
    }
}

pub(super) struct Service {
    pub(super) auth: AuthService,
    pub(super) inbox: Inbox,
    storage: Arc<dyn crate::storage::Storage>,
    router: Arc<crate::router::Router>,
    _dir: Option<tempfile::TempDir>,
}

pub(super) fn service(state: Arc<dyn AuthState>) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let metrics = crate::metrics::Metrics::new(1);
    let limits = crate::router::RouterLimits {
        mailbox: 64,
        ..Default::default()
    };
    let (router, _inboxes) = crate::router::Router::new(1, limits, metrics);
    let router = Arc::new(router);
    let storage: Arc<dyn crate::storage::Storage> = Arc::new(
        crate::storage::fjall::FjallStorage::open(&dir.path().join("db"), router.clone(), None)
            .unwrap(),
    );
    build(state, storage, router, Some(dir))
}

/// Another node on the same storage as `other`.
pub(super) fn service_on(state: Arc<dyn AuthState>, other: &Service) -> Service {
    build(state, other.storage.clone(), other.router.clone(), None)
}

fn build(
    state: Arc<dyn AuthState>,
    storage: Arc<dyn crate::storage::Storage>,
    router: Arc<crate::router::Router>,
    dir: Option<tempfile::TempDir>,
) -> Service {
    let issuer = TokenIssuer::new(
        vec![SigningKey {
            kid: "k1".into(),
            secret: vec![7; 32],
        }],
        900,
    )
    .unwrap();
    let inbox = Inbox::default();
    let auth = AuthService::new(AuthDeps {
        storage: storage.clone(),
        sender: Arc::new(InboxSender(inbox.clone())),
        issuer,
        router: router.clone(),
        otp_secret: SECRET.to_vec(),
        state: Some(state),
        refresh_secret: vec![5; 32],
        config: AuthConfig::default(),
    });
    Service {
        auth,
        inbox,
        storage,
        router,
        _dir: dir,
    }
}
