//! The event envelope: what the store records around every domain event.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who and what caused an event: carried by every event a command produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventMeta {
    /// Groups every event caused by one request or one frame batch.
    pub correlation_id: Uuid,
    /// The event (or request) that directly caused this one, if any.
    pub causation_id: Option<Uuid>,
    /// The principal that caused it: `key:{id}` for an API key, `rule:{name}` for a rule,
    /// `system` for Vigil itself.
    pub actor: String,
}

impl EventMeta {
    /// Metadata for work Vigil starts by itself, with a fresh correlation id.
    pub fn system() -> Self {
        Self {
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            actor: "system".into(),
        }
    }
}

/// An event about to be appended. The store assigns its stream version, global position and
/// recorded time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Unique id (UUID v7). Re-appending the same id is idempotent.
    pub event_id: Uuid,
    /// Frozen type name, e.g. `camera.registered`.
    pub event_type: String,
    /// Version of the payload's shape for this type.
    pub schema_version: u32,
    /// When the fact happened (may precede the append).
    pub occurred_at: DateTime<Utc>,
    /// Cause and actor.
    pub meta: EventMeta,
    /// The event's payload as JSON.
    pub payload: serde_json::Value,
}

/// An event as stored: the envelope every consumer sees (API audit, Kafka, WebSockets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecordedEvent {
    /// Unique id of the event (UUID v7).
    pub event_id: Uuid,
    /// The stream it belongs to, e.g. `camera-0195…`.
    pub stream: String,
    /// 1-based version within its stream: the first event of a stream has version 1.
    pub stream_version: u64,
    /// 1-based position in the global log (`$all`); gapless and in commit order.
    pub position: u64,
    /// Frozen type name, e.g. `camera.registered`.
    pub event_type: String,
    /// Version of the payload's shape.
    pub schema_version: u32,
    /// When the fact happened.
    pub occurred_at: DateTime<Utc>,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
    /// Groups every event caused by one request or one frame batch.
    pub correlation_id: Uuid,
    /// The event or request that directly caused this one.
    pub causation_id: Option<Uuid>,
    /// The principal that caused it.
    pub actor: String,
    /// The payload as JSON.
    pub payload: serde_json::Value,
}
