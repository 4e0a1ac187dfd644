//! Vigil's contracts, shared by every other crate and by downstream consumers.
//!
//! This crate owns the shapes that cross a boundary and must stay stable:
//! - [`envelope`]: the stored event envelope ([`RecordedEvent`]) and what a writer hands the store
//!   ([`NewEvent`]);
//! - [`events`]: the versioned domain events, their frozen type names, and upcasting from old
//!   versions;
//! - [`store`]: the [`EventStore`] trait every adapter implements, with its error type;
//! - [`json_schema`]: the JSON Schemas published for Kafka consumers (`schemas/json/`).
//!
//! It performs no I/O. The SQL migrations (`schemas/migrations/`) and golden fixtures
//! (`schemas/fixtures/`) live beside it as data.
#![deny(missing_docs)]

pub mod envelope;
pub mod events;
pub mod json_schema;
pub mod store;

pub use envelope::{EventMeta, NewEvent, RecordedEvent};
pub use events::{ApiKeyEvent, AppearanceEvent, CameraEvent, DomainEvent, EventDecodeError};
pub use store::{
    AppendOutcome, Direction, EventStore, EventSubscription, ExpectedVersion, StoreError,
};

/// The SQL migrations, in the order they apply: `(version, name, sql)`.
///
/// The SQL is portable between SQLite and PostgreSQL (BIGINT, TEXT, DOUBLE PRECISION,
/// `ON CONFLICT`), so one list serves both backends.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "event_store",
        include_str!("../migrations/0001_event_store.sql"),
    ),
    (
        2,
        "read_models",
        include_str!("../migrations/0002_read_models.sql"),
    ),
    (
        3,
        "api_keys",
        include_str!("../migrations/0003_api_keys.sql"),
    ),
    (
        4,
        "events_by_recorded_at",
        include_str!("../migrations/0004_events_by_recorded_at.sql"),
    ),
    (
        5,
        "camera_status",
        include_str!("../migrations/0005_camera_status.sql"),
    ),
];
