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
