//! `/api/v1/audit`: stored events with their envelopes.

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use vigil_schemas::{Direction, RecordedEvent};

use super::ApiTags;
use super::auth::Auth;
use super::error::ApiError;
use crate::app::App;
use crate::app::Principal;
use poem::http::StatusCode;
use serde_json::json;

/// Most events one audit page returns.
pub const MAX_PAGE: u32 = 1000;

/// A stored event and its envelope.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct EventDto {
    /// Unique id (UUID v7).
    pub event_id: String,
    /// Stream, e.g. `camera-lobby`.
    pub stream: String,
    /// 1-based version within the stream.
    pub stream_version: u64,
    /// 1-based global position.
    pub position: u64,
    /// Type, e.g. `camera.registered`.
    pub event_type: String,
    /// Payload schema version.
    pub schema_version: u32,
    /// When it happened (UTC).
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    /// When it was stored (UTC).
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    /// Correlation id (the request id for API writes).
    pub correlation_id: String,
    /// Causing event or request, if any.
    pub causation_id: Option<String>,
    /// Who caused it: `key:…`, `rule:…` or `system`.
    pub actor: String,
    /// The payload (see the JSON Schemas under `schemas/json/`).
    pub payload: serde_json::Value,
}

impl From<RecordedEvent> for EventDto {
    fn from(e: RecordedEvent) -> Self {
        Self {
            event_id: e.event_id.to_string(),
            stream: e.stream,
            stream_version: e.stream_version,
            position: e.position,
            event_type: e.event_type,
            schema_version: e.schema_version,
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            correlation_id: e.correlation_id.to_string(),
            causation_id: e.causation_id.map(|c| c.to_string()),
            actor: e.actor,
            payload: e.payload,
        }
    }
}

/// Which way to read a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum ReadDirection {
    /// Oldest first.
    Forward,
    /// Newest first.
    Backward,
}

/// A page of one stream.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct StreamPage {
    /// Events in the requested direction.
    pub events: Vec<EventDto>,
    /// Pass as `from` for the next page; absent at the end.
    pub next_from: Option<u64>,
}

/// A page of the global log.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct LogPage {
    /// Events in position order.
    pub events: Vec<EventDto>,
    /// Pass as `after` for the next page (the last position returned, or `after` when empty).
    pub next_after: u64,
    /// Position of the newest stored event.
    pub head: u64,
}

fn check_limit(limit: Option<u32>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    Ok(limit as usize)
}

/// Audit reads whole streams and the whole log: keys restricted to some cameras get 403.
fn unrestricted(principal: &Principal) -> Result<(), ApiError> {
    if principal.is_camera_restricted() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "a key restricted to some cameras cannot read the audit log",
            json!({}),
        ));
    }
    Ok(())
}

/// Audit endpoints.
pub struct AuditApi;

#[OpenApi(prefix_path = "/api/v1/audit", tag = "ApiTags::Audit")]
impl AuditApi {
    /// Read one stream.
    ///
    /// `direction` is `forward` (default: from version `from`, default 1, upwards) or
    /// `backward` (from `from`, default the newest, downwards). A stream that does not exist
    /// reads as empty.
    #[oai(
        path = "/streams/:stream",
        method = "get",
        operation_id = "audit_stream"
    )]
    async fn stream(
        &self,
        app: Data<&App>,
        auth: Auth,
        stream: Path<String>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000000000000")))] from: Query<
            Option<u64>,
        >,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u32>>,
        direction: Query<Option<ReadDirection>>,
    ) -> Result<Json<StreamPage>, ApiError> {
        unrestricted(auth.require("audit_stream")?)?;
        let limit = check_limit(limit.0)?;
        let direction = match direction.0 {
            None | Some(ReadDirection::Forward) => Direction::Forward,
            Some(ReadDirection::Backward) => Direction::Backward,
        };
        let from = from.0.unwrap_or(match direction {
            Direction::Forward => 1,
            Direction::Backward => u64::MAX,
        });
        let events = app
            .store()
            .read_stream(&stream.0, from, limit, direction)
            .await?;
        let next_from = if events.len() == limit {
            events.last().and_then(|e| match direction {
                Direction::Forward => Some(e.stream_version + 1),
                Direction::Backward => e.stream_version.checked_sub(1).filter(|v| *v > 0),
            })
        } else {
            None
        };
        Ok(Json(StreamPage {
            events: events.into_iter().map(Into::into).collect(),
            next_from,
        }))
    }

    /// Read the global log (`$all`) after a position.
    #[oai(path = "/events", method = "get", operation_id = "audit_events")]
    async fn events(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000000000")))] after: Query<
            Option<u64>,
        >,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u32>>,
    ) -> Result<Json<LogPage>, ApiError> {
        unrestricted(auth.require("audit_events")?)?;
        let limit = check_limit(limit.0)?;
        let after = after.0.unwrap_or(0);
        let head = app.store().head_position().await?;
        let events = app.store().read_all(after, limit).await?;
        let next_after = events.last().map_or(after, |e| e.position);
        Ok(Json(LogPage {
            events: events.into_iter().map(Into::into).collect(),
            next_after,
            head,
        }))
    }
}
