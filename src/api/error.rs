//! The one error shape of the API, and the mapping of every failure onto it.
//!
//! ```json
//! {"error": {"code": "CAMERA_NOT_FOUND", "message": "…", "details": {}}, "request_id": "…"}
//! ```

use poem::Response;
use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde_json::{Value, json};
use vigil_actors::aggregates::incident::IncidentError;
use vigil_actors::pool::PoolError;

use crate::service::{Refusal, ServiceError};

tokio::task_local! {
    /// The id of the request being served, set by the request middleware.
    pub static REQUEST_ID: String;
}

/// The request id of the current request, or `-` outside one.
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".into())
}

/// What went wrong.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `VALIDATION_FAILED`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Structured context: for validation errors `field` and `reason`.
    pub details: Value,
}

/// The body of every 4xx and 5xx response.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
    /// The request's id (also in the `X-Request-Id` header and the logs).
    pub request_id: String,
}

/// An API error: one variant per status, each with the shared body.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed (e.g. the body is not JSON).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// `X-API-Key` is missing or not valid.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The key may not do this.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such resource.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request conflicts with the current state (e.g. the id is taken).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The request took longer than the server allows (slow upload or slow client).
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorBody>),
    /// `If-Match` names a version that is not the current one.
    #[oai(status = 412)]
    PreconditionFailed(Json<ErrorBody>),
    /// The body is larger than the server accepts.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body's content type is not JSON.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// A field's value is not acceptable; `details.field` names it.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Over the key's rate limit, or too many failed authentications; see `Retry-After`.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// The server failed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A dependency is unavailable; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
    /// What the request must store does not fit: the media folder is full (`STORAGE_FULL`).
    #[oai(status = 507)]
    InsufficientStorage(Json<ErrorBody>),
}

impl ApiError {
    /// An error with this status, code, message and details.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>, details: Value) -> Self {
        let body = Json(ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                details,
            },
            request_id: current_request_id(),
        });
        match status.as_u16() {
            400 => Self::BadRequest(body),
            401 => Self::Unauthorized(body),
            403 => Self::Forbidden(body),
            404 => Self::NotFound(body),
            408 => Self::RequestTimeout(body),
            409 => Self::Conflict(body),
            412 => Self::PreconditionFailed(body),
            413 => Self::PayloadTooLarge(body),
            415 => Self::UnsupportedMediaType(body),
            422 => Self::Unprocessable(body),
            429 => Self::TooManyRequests(body),
            503 => Self::Unavailable(body),
            507 => Self::InsufficientStorage(body),
            _ => Self::Internal(body),
        }
    }

    /// 422 `VALIDATION_FAILED` naming the offending field.
    pub fn validation(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let (field, reason) = (field.into(), reason.into());
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
            format!("invalid `{field}`: {reason}"),
            json!({"field": field, "reason": reason}),
        )
    }

    /// 404 with a resource-specific code such as `CAMERA_NOT_FOUND`.
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message, json!({}))
    }

    /// 500 `INTERNAL`; the cause is logged, not shown.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error; see the server log",
            json!({}),
        )
    }

    /// 503 `DATABASE_UNAVAILABLE`: the database did not answer within `database_timeout_secs`
    /// (stopped, restarting, unreachable, or every connection busy). Nothing was changed by a
    /// write refused so before it reached the database; one cut off mid-commit may have been
    /// stored (a client reads before it retries). The response carries
    /// `Retry-After` ([`RETRY_AFTER_SECS`]).
    pub fn database_unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "database unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "DATABASE_UNAVAILABLE",
            format!("the database is unavailable; retry in {RETRY_AFTER_SECS} s ({cause})"),
            json!({"retry_after_secs": RETRY_AFTER_SECS}),
        )
    }

    /// 503 `UNAVAILABLE`.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            format!("temporarily unavailable: {cause}"),
            json!({}),
        )
    }
}

pub use crate::service::command_error;

/// The `Retry-After` of every 503 that does not set its own: long enough for a database
/// restart or a model load, short enough that a dashboard recovers soon after.
pub const RETRY_AFTER_SECS: u64 = 5;

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Invalid { field, reason } => Self::validation(field, reason),
            ServiceError::Refused {
                refusal,
                code,
                message,
                details,
            } => {
                let status = match refusal {
                    Refusal::NotFound => StatusCode::NOT_FOUND,
                    Refusal::Conflict => StatusCode::CONFLICT,
                    Refusal::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
                    Refusal::VersionMismatch => StatusCode::PRECONDITION_FAILED,
                    Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                    Refusal::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
                };
                Self::new(status, code, message, details)
            }
            ServiceError::Query(e) => e.into(),
            ServiceError::Store(e) => e.into(),
            ServiceError::Unavailable(cause) => Self::unavailable(cause),
            ServiceError::Internal(cause) => Self::internal(cause),
        }
    }
}

impl From<vigil_projections::QueryError> for ApiError {
    fn from(err: vigil_projections::QueryError) -> Self {
        use vigil_projections::QueryError;
        match err {
            QueryError::Cursor(_) => Self::validation("cursor", "not a cursor this API returned"),
            QueryError::Database(e) => Self::database_unavailable(e),
            QueryError::Corrupt(e) => Self::internal(e),
        }
    }
}

impl From<vigil_schemas::StoreError> for ApiError {
    fn from(err: vigil_schemas::StoreError) -> Self {
        match err {
            vigil_schemas::StoreError::Backend(_) => Self::database_unavailable(err),
            other => Self::internal(other),
        }
    }
}

fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        408 => "REQUEST_TIMEOUT",
        409 => "CONFLICT",
        412 => "PRECONDITION_FAILED",
        413 => "PAYLOAD_TOO_LARGE",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        422 => "VALIDATION_FAILED",
        429 => "RATE_LIMITED",
        503 => "UNAVAILABLE",
        507 => "STORAGE_FULL",
        _ if status.is_server_error() => "INTERNAL",
        _ => "ERROR",
    }
}

/// The documented error body as a response.
pub fn shaped(
    status: StatusCode,
    code: &str,
    message: String,
    details: Value,
    request_id: &str,
) -> Response {
    let body = json!({
        "error": {"code": code, "message": message, "details": details},
        "request_id": request_id,
    });
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(body.to_string())
}

/// Turns any error that reached the edge into the documented shape.
pub fn error_to_response(err: poem::Error, request_id: &str) -> Response {
    use poem_openapi::error::{
        AuthorizationError, ContentTypeError, ParseParamError, ParsePathError,
    };
    if let Some(e) = err.downcast_ref::<ParseParamError>() {
        let details = json!({"field": e.name, "reason": e.reason});
        return shaped(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
            e.to_string(),
            details,
            request_id,
        );
    }
    if let Some(e) = err.downcast_ref::<ParsePathError>() {
        let details = json!({"field": e.name, "reason": e.reason});
        return shaped(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
            e.to_string(),
            details,
            request_id,
        );
    }
    if err.downcast_ref::<AuthorizationError>().is_some() {
        return shaped(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "a key is required: send X-API-Key or Authorization: Bearer".into(),
            json!({}),
            request_id,
        );
    }
    if let Some(e) = err.downcast_ref::<ContentTypeError>() {
        return shaped(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            e.to_string(),
            json!({}),
            request_id,
        );
    }
    let status = err.status();
    let message = err.to_string();
    normalize(err.into_response(), status, message, request_id)
}

/// Leaves responses in the documented shape alone and rewrites any other error response.
fn normalize(resp: Response, status: StatusCode, message: String, request_id: &str) -> Response {
    let is_json = resp
        .content_type()
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json || status.as_u16() < 400 {
        return resp;
    }
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        message
    };
    shaped(
        status,
        code_for_status(status),
        message,
        json!({}),
        request_id,
    )
}

/// Rewrites a plain-text error response (e.g. a 405 from the router) into the shape.
pub fn normalize_response(resp: Response, request_id: &str) -> Response {
    let status = resp.status();
    let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
    normalize(resp, status, reason, request_id)
}

/// 404 `CAMERA_NOT_FOUND`.
pub fn camera_not_found(id: &str) -> ApiError {
    ApiError::not_found("CAMERA_NOT_FOUND", format!("camera `{id}` does not exist"))
}

/// 404 `INCIDENT_NOT_FOUND`.
pub fn incident_not_found(id: &str) -> ApiError {
    crate::service::incidents::incident_not_found(id).into()
}

/// Maps an incident command's failure.
pub fn incident_error(err: vigil_actors::CommandError<IncidentError>, id: &str) -> ApiError {
    crate::service::incidents::incident_error(err, id).into()
}

/// 503 for a picture the inference pool did not analyse (`INFERENCE_BUSY`,
/// `MODELS_UNAVAILABLE`).
pub fn pool_error(e: PoolError) -> ApiError {
    crate::service::pool_error(e).into()
}
