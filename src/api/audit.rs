//! `/api/v1/audit`: stored events with their envelopes.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Object, OpenApi};
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

    /// Read the global log (`$all`) after a position, optionally within a recording-time range
    /// (`from` inclusive, `to` exclusive, UTC).
    #[oai(path = "/events", method = "get", operation_id = "audit_events")]
    #[allow(clippy::too_many_arguments)] // one argument per query parameter
    async fn events(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000000000")))] after: Query<
            Option<u64>,
        >,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u32>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
    ) -> Result<Json<LogPage>, ApiError> {
        unrestricted(auth.require("audit_events")?)?;
        let limit = check_limit(limit.0)?;
        let after = after.0.unwrap_or(0);
        check_range(from.0, to.0)?;
        let head = app.store().head_position().await?;
        let events = app
            .store()
            .read_all_recorded(after, limit, from.0, to.0)
            .await?;
        // With a time range, a short page can still be followed by matches: continue from the
        // last position read, or from `after` when nothing matched.
        let next_after = events.last().map_or(after, |e| e.position);
        Ok(Json(LogPage {
            events: events.into_iter().map(Into::into).collect(),
            next_after,
            head,
        }))
    }

    /// Export the global log as NDJSON, streamed: one envelope per line.
    ///
    /// The whole range after `after` (and within `from`/`to` recording time, UTC) in position
    /// order, read page by page so memory stays bounded however long the range.
    #[oai(path = "/export", method = "get", operation_id = "audit_export")]
    async fn export(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000000000")))] after: Query<
            Option<u64>,
        >,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
    ) -> Result<Export, ApiError> {
        unrestricted(auth.require("audit_export")?)?;
        check_range(from.0, to.0)?;
        let store = app.store().clone();
        let (from, to) = (from.0, to.0);
        let pages = futures::stream::unfold(Some(after.0.unwrap_or(0)), move |cursor| {
            let store = store.clone();
            async move {
                let after = cursor?;
                match store.read_all_recorded(after, EXPORT_PAGE, from, to).await {
                    Ok(page) if page.is_empty() => None,
                    Ok(page) => {
                        let next = page.last().map(|e| e.position);
                        let mut lines = Vec::with_capacity(page.len() * 512);
                        for event in &page {
                            serde_json::to_writer(&mut lines, event).expect("envelopes serialise");
                            lines.push(b'\n');
                        }
                        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(lines)), next))
                    }
                    Err(err) => Some((Err(std::io::Error::other(err.to_string())), None)),
                }
            }
        });
        Ok(Export::Ok(Binary(poem::Body::from_bytes_stream(pages))))
    }
}

/// Events per page read while exporting.
const EXPORT_PAGE: usize = 1000;

fn check_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<(), ApiError> {
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(ApiError::validation("to", "must lie after `from`"));
    }
    Ok(())
}

/// An NDJSON export.
#[derive(ApiResponse)]
pub enum Export {
    /// One event envelope (as `schemas/json/envelope.v1.json`) per line.
    #[oai(status = 200, content_type = "application/x-ndjson")]
    Ok(Binary<poem::Body>),
}
