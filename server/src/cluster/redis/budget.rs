//! The cluster-wide per-user budgets ([`SharedBudget`]) in Redis: message sends, group changes,
//! first contacts, directory lookups and profile changes of a user whose connections are on
//! several nodes are counted once for the whole cluster, in the same kind of token bucket as
//! the OTP quotas ([`RedisAuthState::take_user_budget`], one Lua script, Redis's clock).
//!
//! "Several nodes" is the router's directory cache: a user every other node knows nothing of
//! is limited exactly by this node's own bucket, so the common case costs no round trip. A
//! user who just connected a second device elsewhere may get one extra burst before both
//! nodes see each other's announcement (milliseconds).

use std::sync::Arc;

use async_trait::async_trait;
use tern_protocol::UserId;

use super::auth_state::RedisAuthState;
use crate::chat::limits::SharedBudget;
use crate::router::Router;

/// See the module docs.
#[derive(Debug)]
pub struct RedisBudget {
    store: Arc<RedisAuthState>,
    router: Arc<Router>,
}

impl RedisBudget {
    /// Budgets in `store`'s Redis, for users `router` sees on other nodes.
    pub fn new(store: Arc<RedisAuthState>, router: Arc<Router>) -> Self {
        RedisBudget { store, router }
    }
}

#[async_trait]
impl SharedBudget for RedisBudget {
    fn spans_nodes(&self, user: UserId) -> bool {
        self.router.cluster().is_some_and(|c| c.is_remote(user))
    }

    async fn take(
        &self,
        what: &'static str,
        user: UserId,
        burst: u32,
        per_ms: f64,
    ) -> Result<bool, String> {
        self.store
            .take_user_budget(what, user.0, burst, per_ms)
            .await
            .map_err(|e| e.to_string())
    }
}
