//! The cell's data plane: every `/v1/` route, served from memory, with one
//! authorization (`auth.rs`) and one JSON error body (`error.rs`).
//!
//! - `quota.rs`: `POST /v1/quota/check`, `/v1/quota/consume`, `/v1/quota/release`
//! - `usage.rs`: `POST /v1/usage`
//! - `flags.rs`: `GET /v1/tenants/{id}/flags`, `POST /v1/flags/evaluate`,
//!   `GET /v1/flags/snapshot`
//! - `signals.rs`: `POST /v1/signals`
//!
//! The route modules depend on `auth` and `error` (and on the quota engine
//! and flag runtime they serve), never on each other. The routes sit
//! outside the per-request span layer: the hot paths (consume, evaluate)
//! log nothing unless they fail, and take no lock or allocation beyond the
//! decision's own.

mod auth;
mod error;
mod flags;
mod quota;
mod signals;
mod tokens;
mod usage;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use shared::auth::Keys;
use shared::quota::hooks::{CHECK, CONSUME, RELEASE, USAGE};

pub use auth::Access;
pub use error::{error, not_found};

/// What every data-plane route shares, behind one `Arc` (cloned per request).
pub struct Plane {
    pub st: crate::State,
    keys: Arc<Keys>,
    tokens: tokens::Tokens,
}

/// Every `/v1/` route of the cell; bodies larger than `max_body` bytes are
/// refused (413). Unknown `/v1/` paths are answered by [`not_found`], the
/// fallback of the cell's whole router.
pub fn router(st: crate::State, keys: Arc<Keys>, max_body: usize) -> Router {
    Router::new()
        .route(CHECK, post(quota::check))
        .route(CONSUME, post(quota::consume))
        .route(RELEASE, post(quota::release))
        .route(USAGE, post(usage::ingest))
        .route("/v1/tenants/{id}/flags", get(flags::tenant_flags))
        .route("/v1/flags/evaluate", post(flags::evaluate))
        .route("/v1/flags/snapshot", get(flags::snapshot))
        .route("/v1/signals", post(signals::post))
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(Arc::new(Plane {
            st,
            keys,
            tokens: tokens::Tokens::default(),
        }))
}
