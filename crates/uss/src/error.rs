//! The participant's closed set of failures and the one place they become HTTP responses in
//! the spec's `ErrorResponse` shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, Clone, thiserror::Error)]
pub enum UssError {
    /// No valid bearer token (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token without the right, or a sender that is not the entity's manager (403).
    #[error("{0}")]
    Forbidden(String),
    /// Bad input: the message names the field (400).
    #[error("{0}")]
    BadRequest(String),
    /// A priority this participant does not grant (`--max-priority`; 400, `NotSupported` on the
    /// flight_planning interface).
    #[error("{0}")]
    PriorityNotAllowed(String),
    /// A plan whose times make it unplannable (the planner's rule; 400, `Rejected` on the
    /// flight_planning interface). Nothing was asked of the DSS.
    #[error("{0}")]
    InvalidPlan(planner::InvalidPlan),
    #[error("{0}")]
    NotFound(String),
    /// Another change of the same entity is in flight or being reconciled (409).
    #[error("{0}")]
    Busy(String),
    /// A body that is not `application/json` (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A body over the size limit (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The participant does not provide this (412, as the spec answers for telemetry).
    #[error("{0}")]
    NotProvided(String),
    /// The entity is not in a state that allows this (409, as the spec answers for telemetry
    /// of a nominal operation).
    #[error("{0}")]
    WrongState(String),
    /// The change could not be recorded durably here (503): nothing was acknowledged.
    #[error("{0}")]
    Storage(String),
    /// The DSS or a peer failed or refused (502).
    #[error("{0}")]
    Upstream(String),
    /// The caller (a peer) asks for more work than it may cause for now (429, `Retry-After`).
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_s: u64 },
    /// The DSS refused what was asked as invalid (its 400 or 413), with its reason (400).
    #[error("{0}")]
    DssRefused(String),
    /// The DSS is refusing our requests for now: its rate limit for us (429) or it is
    /// unavailable (503). Answered 503 with the DSS's `Retry-After`: try again later.
    #[error("{message}")]
    DssBusy { message: String, retry_after_s: u64 },
}

impl UssError {
    /// What a failed DSS call means to our caller, keeping the DSS's meaning: its rate limit or
    /// its unavailability is a 503 with `Retry-After` (not a bare 502), a refusal of what the
    /// caller asked for (400, 413) stays a 400 with the DSS's reason, anything else is a 502.
    pub fn from_dss(what: &str, e: crate::ports::DssFailure) -> Self {
        use crate::ports::DssFailure;
        match e {
            DssFailure::Busy { status, message, retry_after_s } => {
                let why = if status == 429 {
                    format!("the DSS's rate limit for this participant's requests was reached (HTTP 429: {message})")
                } else {
                    format!("the DSS is unavailable (HTTP 503: {message})")
                };
                let retry_after_s = retry_after_s.unwrap_or(1).clamp(1, 300);
                UssError::DssBusy { message: format!("{what}: {why}; try again in {retry_after_s} s"), retry_after_s }
            }
            DssFailure::Refused { message, .. } => {
                UssError::DssRefused(format!("{what}: the DSS refused the request: {message}"))
            }
            other => UssError::Upstream(format!("{what}: {other}")),
        }
    }
}

impl From<auth::AuthError> for UssError {
    fn from(e: auth::AuthError) -> Self {
        match e {
            auth::AuthError::Unauthenticated(m) => UssError::Unauthenticated(m),
            auth::AuthError::Forbidden(m) => UssError::Forbidden(m),
        }
    }
}

impl From<crate::db::DbError> for UssError {
    fn from(e: crate::db::DbError) -> Self {
        UssError::Storage(format!("the participant could not record the change durably: {e}"))
    }
}

impl UssError {
    pub fn status(&self) -> StatusCode {
        match self {
            UssError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            UssError::Forbidden(_) => StatusCode::FORBIDDEN,
            UssError::BadRequest(_)
            | UssError::PriorityNotAllowed(_)
            | UssError::InvalidPlan(_)
            | UssError::DssRefused(_) => StatusCode::BAD_REQUEST,
            UssError::NotFound(_) => StatusCode::NOT_FOUND,
            UssError::Busy(_) => StatusCode::CONFLICT,
            UssError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            UssError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UssError::NotProvided(_) => StatusCode::PRECONDITION_FAILED,
            UssError::WrongState(_) => StatusCode::CONFLICT,
            UssError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            UssError::Upstream(_) => StatusCode::BAD_GATEWAY,
            UssError::DssBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            UssError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl IntoResponse for UssError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "operator or peer request failed");
        }
        let retry_after = match &self {
            UssError::DssBusy { retry_after_s, .. } | UssError::TooManyRequests { retry_after_s, .. } => {
                Some(*retry_after_s)
            }
            _ => None,
        };
        let mut response = (status, Json(api::ErrorResponse { message: self.to_string() })).into_response();
        if let Some(s) = retry_after.and_then(|s| axum::http::HeaderValue::from_str(&s.to_string()).ok()) {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, s);
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The body of a request, or why it could not be read, as an `ErrorResponse`.
pub fn body_bytes(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, UssError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            UssError::PayloadTooLarge(format!("the request body exceeds {} bytes", crate::MAX_REQUEST_BYTES))
        } else {
            UssError::BadRequest(format!("the request body could not be read: {e}"))
        }
    })
}
