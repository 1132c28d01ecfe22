//! The one place where failures become HTTP responses in the spec's `ErrorResponse` (or
//! `AirspaceConflictResponse`) shape. Internals go to the log, never to the client.

use api::{AirspaceConflictResponse, ErrorResponse, WireError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dss::DssError;

#[derive(Debug)]
pub enum ApiError {
    Unauthenticated(String),
    Wire(WireError),
    Dss(DssError),
    PayloadTooLarge(String),
    NotFound(String),
    MethodNotAllowed,
    /// 503 with a message for the client (a write that could not be made durable).
    StorageFull(String),
    /// 429 with `Retry-After` (seconds).
    TooManyRequests {
        message: String,
        retry_after_s: u64,
    },
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        ApiError::Wire(e)
    }
}

impl From<auth::AuthError> for ApiError {
    fn from(e: auth::AuthError) -> Self {
        match e {
            auth::AuthError::Unauthenticated(m) => ApiError::Unauthenticated(m),
            auth::AuthError::Forbidden(m) => ApiError::Dss(DssError::Forbidden(m)),
        }
    }
}

impl From<DssError> for ApiError {
    fn from(e: DssError) -> Self {
        ApiError::Dss(e)
    }
}

fn message(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorResponse { message })).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Unauthenticated(m) => message(StatusCode::UNAUTHORIZED, m),
            ApiError::Wire(w) if w.too_large => message(StatusCode::PAYLOAD_TOO_LARGE, w.message),
            ApiError::Wire(w) => message(StatusCode::BAD_REQUEST, w.message),
            ApiError::PayloadTooLarge(m) => message(StatusCode::PAYLOAD_TOO_LARGE, m),
            ApiError::NotFound(m) => message(StatusCode::NOT_FOUND, m),
            ApiError::StorageFull(m) => message(StatusCode::SERVICE_UNAVAILABLE, m),
            ApiError::TooManyRequests { message: m, retry_after_s } => {
                let mut r = message(StatusCode::TOO_MANY_REQUESTS, m);
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(retry_after_s));
                r
            }
            ApiError::MethodNotAllowed => {
                message(StatusCode::METHOD_NOT_ALLOWED, "this method is not allowed on this path".into())
            }
            ApiError::Dss(e) => match e {
                DssError::BadRequest(m) => message(StatusCode::BAD_REQUEST, m),
                DssError::TooLarge(m) => message(StatusCode::PAYLOAD_TOO_LARGE, m),
                DssError::Forbidden(m) => message(StatusCode::FORBIDDEN, m),
                DssError::NotFound(m) => message(StatusCode::NOT_FOUND, m),
                DssError::Conflict(m) => conflict(m),
                DssError::Contention => conflict(DssError::Contention.to_string()),
                DssError::UssDown(m) => message(StatusCode::PRECONDITION_FAILED, m),
                DssError::StorageFull(m) => message(StatusCode::SERVICE_UNAVAILABLE, m),
                DssError::QuotaExceeded(m) => message(StatusCode::TOO_MANY_REQUESTS, m),
                DssError::MissingOvns { message, intents, constraints } => {
                    let body = api::ConflictOut { message: &message, intents: &intents, constraints: &constraints };
                    let mut response = crate::json_out(&body);
                    *response.status_mut() = StatusCode::CONFLICT;
                    response
                }
                DssError::Unavailable(m) => {
                    tracing::error!(error = %m, "storage unavailable");
                    message(StatusCode::SERVICE_UNAVAILABLE, "the DSS cannot reach its storage; retry later".into())
                }
            },
        }
    }
}

/// A 409 body that fits both `ErrorResponse` and `AirspaceConflictResponse`.
fn conflict(m: String) -> Response {
    (
        StatusCode::CONFLICT,
        Json(AirspaceConflictResponse { message: m, missing_operational_intents: vec![], missing_constraints: vec![] }),
    )
        .into_response()
}
