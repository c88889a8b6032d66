//! Per-request identity: the request id, carried in a task-local so that
//! errors and logs deep in a call can name the request they belong to.

use std::fmt;
use std::sync::Arc;

use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

tokio::task_local! {
    static CURRENT: RequestId;
}

impl RequestId {
    pub fn new() -> Self {
        Self(Uuid::now_v7().to_string().into())
    }

    /// Accepts a caller-supplied id when it is short and printable.
    pub fn from_header(v: &str) -> Option<Self> {
        (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| Self(v.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn current() -> Option<Self> {
        CURRENT.try_with(|id| id.clone()).ok()
    }

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
