//! The one error body of the data plane (`shared::quota::hooks::ErrorBody`):
//! `{"error": {"code", "message", "field"?, "requestId"?}}` with the code's
//! HTTP status. An internal error is logged with a request id and the
//! client gets only that id.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::error::Error;
use shared::quota::hooks::{ErrorBody, ErrorDetail};

/// A coded error as the data plane's JSON body, with the matching status.
pub fn error(e: Error) -> Response {
    let code = e.code();
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    respond(status, e)
}

/// The error body with an explicit status (a transport-level refusal, such
/// as 413 for a body over the limit, keeps its own status).
pub fn respond(status: StatusCode, e: Error) -> Response {
    let code = e.code();
    let (message, request_id) = e.public_message();
    let field = match e {
        Error::BadInput { field, .. } => field,
        _ => None,
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.as_str().to_owned(),
            message,
            field,
            request_id,
        },
    };
    (status, Json(body)).into_response()
}

/// A request an extractor refused (its body, query or path), as the error
/// body: 413 for a body over the limit, else 400.
pub fn rejected(status: StatusCode, field: &str, message: String) -> Response {
    let status = if status == StatusCode::PAYLOAD_TOO_LARGE {
        status
    } else {
        StatusCode::BAD_REQUEST
    };
    respond(status, Error::bad_input(field, message))
}

/// An unknown `/v1/` path: 404 with the error body (other paths keep an
/// empty 404, as before).
pub async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/v1/") || uri.path() == "/v1" {
        error(Error::NotFound(format!(
            "no data-plane route {}",
            uri.path()
        )))
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// A data-plane route called with a method it does not serve: 405 with the
/// error body (axum adds the `Allow` header).
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    respond(
        StatusCode::METHOD_NOT_ALLOWED,
        Error::BadInput {
            field: None,
            message: format!("{} does not serve {method}", uri.path()),
        },
    )
}
