//! The one error model of the control plane, and its mapping to GraphQL.
//!
//! Every error a client can see carries a stable `extensions.code`. Internal
//! errors are logged with the request id and the client gets only that id.

use async_graphql::ErrorExtensions;
use serde::{Deserialize, Serialize};

use crate::ids::Invalid;
use crate::request::RequestId;

/// The stable codes a client may match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    /// The input is malformed or breaks a rule; `field` names the input at fault when known.
    BadUserInput,
    /// What the request names does not exist (or the caller may not know it does).
    NotFound,
    /// The request lost to the current state: a stale expected version, a duplicate, a race; read again and retry.
    Conflict,
    /// The caller is authenticated but not allowed to do this.
    Forbidden,
    /// No valid credentials came with the request.
    Unauthenticated,
    /// A dependency (database, another tier, the limiter store) is unreachable for now; retrying later is safe.
    Unavailable,
    /// The caller sent more requests than its rate allows; `retryAfterMs` says when to retry.
    RateLimited,
    /// A failure of the server; the message carries only a request id to quote.
    Internal,
}

impl Code {
    /// The code as sent in `extensions.code`, such as `BAD_USER_INPUT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::NotFound => "NOT_FOUND",
            Code::Conflict => "CONFLICT",
            Code::Forbidden => "FORBIDDEN",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Unavailable => "UNAVAILABLE",
            Code::RateLimited => "RATE_LIMITED",
            Code::Internal => "INTERNAL",
        }
    }

    /// The code named by its wire form; `None` for an unknown code.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "BAD_USER_INPUT" => Code::BadUserInput,
            "NOT_FOUND" => Code::NotFound,
            "CONFLICT" => Code::Conflict,
            "FORBIDDEN" => Code::Forbidden,
            "UNAUTHENTICATED" => Code::Unauthenticated,
            "UNAVAILABLE" => Code::Unavailable,
            "RATE_LIMITED" => Code::RateLimited,
            "INTERNAL" => Code::Internal,
            _ => return None,
        })
    }

    /// The HTTP status used when the error ends a request at the transport level.
    pub fn http_status(self) -> u16 {
        match self {
            Code::BadUserInput => 400,
            Code::NotFound => 404,
            Code::Conflict => 409,
            Code::Forbidden => 403,
            Code::Unauthenticated => 401,
            Code::Unavailable => 503,
            Code::RateLimited => 429,
            Code::Internal => 500,
        }
    }
}

/// Every error the control plane returns; each maps to one [`Code`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is malformed or breaks a rule (`BAD_USER_INPUT`).
    #[error("{message}")]
    BadInput {
        /// The input field at fault, such as `input.name`, when known.
        field: Option<String>,
        /// What is wrong, shown to the client.
        message: String,
    },
    /// Nothing by that name exists, or the caller may not see it (`NOT_FOUND`).
    #[error("{0}")]
    NotFound(String),
    /// The change lost to the current state, such as a stale version (`CONFLICT`).
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this (`FORBIDDEN`).
    #[error("{0}")]
    Forbidden(String),
    /// The request carried no valid credentials (`UNAUTHENTICATED`).
    #[error("{0}")]
    Unauthenticated(String),
    /// A dependency is unreachable for now; a retry later is safe (`UNAVAILABLE`).
    #[error("{0}")]
    Unavailable(String),
    /// Too many requests; the client may retry after `retry_after_ms`.
    #[error("{message}")]
    RateLimited {
        /// Shown to the client.
        message: String,
        /// How long to wait before retrying, in milliseconds.
        retry_after_ms: u64,
    },
    /// Never shown to the client: only the request id is.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// A result whose error defaults to the control plane's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A `BAD_USER_INPUT` error blaming the input `field`.
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::BadInput {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// An `INTERNAL` error; its cause is logged, never shown to the client.
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Error::Internal(e.into())
    }

    /// The stable code the client sees.
    pub fn code(&self) -> Code {
        match self {
            Error::BadInput { .. } => Code::BadUserInput,
            Error::NotFound(_) => Code::NotFound,
            Error::Conflict(_) => Code::Conflict,
            Error::Forbidden(_) => Code::Forbidden,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Unavailable(_) => Code::Unavailable,
            Error::RateLimited { .. } => Code::RateLimited,
            Error::Internal(_) => Code::Internal,
        }
    }

    /// Rebuilds an error from a code and message received from another tier.
    pub fn from_remote(code: Code, message: String, field: Option<String>) -> Self {
        match code {
            Code::BadUserInput => Error::BadInput { field, message },
            Code::NotFound => Error::NotFound(message),
            Code::Conflict => Error::Conflict(message),
            Code::Forbidden => Error::Forbidden(message),
            Code::Unauthenticated => Error::Unauthenticated(message),
            Code::Unavailable => Error::Unavailable(message),
            Code::RateLimited => Error::RateLimited {
                message,
                retry_after_ms: 1000,
            },
            Code::Internal => Error::Internal(anyhow::anyhow!("remote internal error: {message}")),
        }
    }

    /// Converts into a GraphQL error with its `code` extension. Internal
    /// errors are logged here, with their whole chain, and replaced by the id.
    pub fn into_gql(self) -> async_graphql::Error {
        self.extend()
    }

    /// The message and extra fields a client may see.
    pub fn public_message(&self) -> (String, Option<String>) {
        match self {
            Error::Internal(e) => {
                let id = RequestId::current_or_new();
                tracing::error!(request_id = %id, error = format!("{e:#}"), "internal error");
                (
                    format!("internal error; request id {id}"),
                    Some(id.to_string()),
                )
            }
            other => (other.to_string(), None),
        }
    }
}

impl ErrorExtensions for Error {
    fn extend(&self) -> async_graphql::Error {
        let (message, request_id) = self.public_message();
        async_graphql::Error::new(message).extend_with(|_, ext| {
            ext.set("code", self.code().as_str());
            if let Error::BadInput {
                field: Some(field), ..
            } = self
            {
                ext.set("field", field.as_str());
            }
            if let Error::RateLimited { retry_after_ms, .. } = self {
                ext.set("retryAfterMs", *retry_after_ms);
            }
            if let Some(id) = &request_id {
                ext.set("requestId", id.as_str());
            }
        })
    }
}

impl From<Invalid> for Error {
    fn from(e: Invalid) -> Self {
        Error::BadInput {
            field: None,
            message: e.0,
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        match e {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
                tracing::warn!(error = %e, "database unavailable");
                Error::Unavailable("the database is unavailable; retry later".into())
            }
            // PostgreSQL aborted the transaction to break a deadlock or a
            // serialization conflict: nothing was written, a retry is safe.
            other if is_aborted_conflict(&other) => {
                tracing::warn!(error = %other, "transaction aborted by a conflict");
                Error::Unavailable(
                    "the database aborted this change in a conflict with another; retry".into(),
                )
            }
            // SQLite could not take its write lock (another connection
            // wrote since this transaction read, or held the lock past the
            // busy timeout): nothing was written; the change lost a race.
            other if is_sqlite_busy(&other) => {
                tracing::info!(error = %other, "SQLite busy: the change lost a race");
                Error::Conflict(BUSY.into())
            }
            other => Error::Internal(other.into()),
        }
    }
}

/// What a change that lost SQLite's write lock to a concurrent one answers
/// (CONFLICT): read again and retry.
pub const BUSY: &str =
    "the change conflicted with a concurrent change to the same data; read it again and retry";

/// SQLite's `SQLITE_BUSY` / `SQLITE_LOCKED` family, by their messages.
fn is_sqlite_busy(e: &sea_orm::DbErr) -> bool {
    let text = e.to_string();
    text.contains("database is locked")
        || text.contains("database table is locked")
        || text.contains("database schema is locked")
}

/// PostgreSQL's `deadlock_detected` (40P01) and `serialization_failure`
/// (40001), by their messages (sea-orm carries the driver error as text).
fn is_aborted_conflict(e: &sea_orm::DbErr) -> bool {
    let text = e.to_string();
    text.contains("deadlock detected") || text.contains("could not serialize access")
}

/// `result.gql()` turns a crate result into what a resolver returns.
pub trait IntoGql<T> {
    /// Converts the error, if any, into a GraphQL error with its `code` extension.
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> IntoGql<T> for Result<T> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(Error::into_gql)
    }
}

/// Tags a field name onto an `Invalid` from newtype parsing.
pub trait Field<T> {
    /// Turns the `Invalid` into a `BAD_USER_INPUT` blaming the input field `name`.
    fn field(self, name: &str) -> Result<T>;
}

impl<T> Field<T> for std::result::Result<T, Invalid> {
    fn field(self, name: &str) -> Result<T> {
        self.map_err(|e| Error::bad_input(name, e.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aborted_conflicts_are_retryable_and_other_errors_internal() {
        let deadlock =
            sea_orm::DbErr::Custom("error returned from database: deadlock detected".into());
        assert!(matches!(Error::from(deadlock), Error::Unavailable(_)));
        let serial =
            sea_orm::DbErr::Custom("could not serialize access due to concurrent update".into());
        assert!(matches!(Error::from(serial), Error::Unavailable(_)));
        let other = sea_orm::DbErr::Custom("syntax error at or near".into());
        assert!(matches!(Error::from(other), Error::Internal(_)));
    }

    #[test]
    fn sqlite_busy_is_a_conflict_never_internal() {
        for text in [
            "error returned from database: (code: 5) database is locked",
            "error returned from database: (code: 517) database is locked",
            "error returned from database: (code: 6) database table is locked",
        ] {
            let e = Error::from(sea_orm::DbErr::Custom(text.into()));
            assert!(matches!(&e, Error::Conflict(m) if m == BUSY), "{e:?}");
            assert_eq!(e.into_gql().message, BUSY);
        }
    }

    #[test]
    fn rate_limited_carries_its_code_and_retry_after() {
        let e = Error::RateLimited {
            message: "slow down".into(),
            retry_after_ms: 250,
        }
        .into_gql();
        let ext = e.extensions.expect("extensions");
        assert_eq!(
            ext.get("code").map(|v| v.to_string()),
            Some("\"RATE_LIMITED\"".into())
        );
        assert_eq!(
            ext.get("retryAfterMs").map(|v| v.to_string()),
            Some("250".into())
        );
    }

    #[test]
    fn bad_input_carries_code_and_field() {
        let e = Error::bad_input("input.slug", "too short").into_gql();
        let ext = e.extensions.expect("extensions");
        assert_eq!(
            ext.get("code").map(|v| v.to_string()),
            Some("\"BAD_USER_INPUT\"".into())
        );
        assert_eq!(
            ext.get("field").map(|v| v.to_string()),
            Some("\"input.slug\"".into())
        );
        assert_eq!(e.message, "too short");
    }

    #[test]
    fn internal_hides_its_cause() {
        let e = Error::internal(anyhow::anyhow!("password=hunter2 at db.internal:5432")).into_gql();
        assert!(!e.message.contains("hunter2"));
        assert!(e.message.starts_with("internal error; request id "));
        let ext = e.extensions.expect("extensions");
        assert_eq!(
            ext.get("code").map(|v| v.to_string()),
            Some("\"INTERNAL\"".into())
        );
        assert!(ext.get("requestId").is_some());
    }

    #[test]
    fn codes_round_trip() {
        for c in [
            Code::BadUserInput,
            Code::NotFound,
            Code::Conflict,
            Code::Forbidden,
            Code::Unauthenticated,
            Code::Unavailable,
            Code::RateLimited,
            Code::Internal,
        ] {
            assert_eq!(Code::parse(c.as_str()), Some(c));
        }
        assert_eq!(Code::parse("nope"), None);
    }
}
