//! Per-request identity: the request id, carried in a task-local so that
//! errors and logs deep in a call can name the request they belong to.

use std::fmt;
use std::sync::Arc;

use uuid::Uuid;

/// The id of one request: the caller's `x-request-id` when acceptable, else
/// a fresh UUIDv7. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

tokio::task_local! {
    static CURRENT: RequestId;
}

impl RequestId {
    /// A fresh id (a UUIDv7, so ids sort by time).
    pub fn new() -> Self {
        Self(Uuid::now_v7().to_string().into())
    }

    /// Accepts a caller-supplied id when it is short and printable: 1 to 128
    /// visible ASCII characters, no spaces; `None` otherwise.
    pub fn from_header(v: &str) -> Option<Self> {
        (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| Self(v.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the request the calling task serves, if it runs inside [`RequestId::scope`].
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|id| id.clone()).ok()
    }

    /// The current request's id, or a fresh one outside any request.
    pub fn current_or_new() -> Self {
        Self::current().unwrap_or_default()
    }

    /// Runs `fut` with this id as the current request id.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
