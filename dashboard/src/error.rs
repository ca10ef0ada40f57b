//! [`AppError`]: what a handler returns on failure, and the HTTP response each case becomes.
//!
//! Body shape for every error: `{"error": "<code>", "message": "<text>"}` (plus `"param"` for 400).
//! Client mistakes say exactly what was wrong; internal faults answer a generic 500 and log the detail.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: a query parameter or body field is missing or invalid.
    #[error("bad parameter `{param}`: {reason}")]
    BadParam {
        /// Parameter name as in the request.
        param: String,
        /// What is wrong with it.
        reason: String,
    },
    /// 401: no token, or an unknown, malformed, expired or revoked one (the reason never echoes it).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: authenticated, but the request is beyond the token's scope.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: the named lot, feeder, device or page does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// 429: the per-token/IP rate limit is exhausted.
    #[error("rate limit exceeded")]
    RateLimited,
    /// 503: storage is temporarily unavailable (retryable).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// 500: anything else; the detail is logged, never sent.
    #[error("internal: {0}")]
    Internal(String),
}

impl AppError {
    /// Shorthand for [`AppError::BadParam`].
    pub fn bad(param: &str, reason: impl Into<String>) -> Self {
        AppError::BadParam {
            param: param.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`AppError::Forbidden`].
    pub fn forbidden(reason: impl Into<String>) -> Self {
        AppError::Forbidden(reason.into())
    }
}

impl From<stream_core::store::StoreError> for AppError {
    fn from(e: stream_core::store::StoreError) -> Self {
        if e.is_retryable() {
            AppError::Unavailable(e.to_string())
        } else {
            AppError::Internal(e.to_string())
        }
    }
}

impl From<crate::access::AccessError> for AppError {
    fn from(e: crate::access::AccessError) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(e: tokio::task::JoinError) -> Self {
        AppError::Internal(format!("blocking task failed: {e}"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            AppError::BadParam { param, reason } => (
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_parameter", "param": param, "message": format!("bad parameter `{param}`: {reason}")}),
            ),
            AppError::Unauthorized(m) => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "unauthorized", "message": m}),
            ),
            AppError::Forbidden(m) => (
                StatusCode::FORBIDDEN,
                json!({"error": "forbidden", "message": m}),
            ),
            AppError::NotFound(m) => (
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "message": m}),
            ),
            AppError::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": "rate_limited", "message": "too many requests; slow down"}),
            ),
            AppError::Unavailable(detail) => {
                tracing::warn!(%detail, "storage unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "unavailable", "message": "storage temporarily unavailable; retry later"}),
                )
            }
            AppError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "internal", "message": "internal server error"}),
                )
            }
        };
        let mut resp = (status, Json(body)).into_response();
        if matches!(self, AppError::Unauthorized(_)) {
            resp.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
