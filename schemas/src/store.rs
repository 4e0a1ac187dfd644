//! The event store contract. Adapters (SQL through sqlx, later KurrentDB) implement
//! [`EventStore`]; one conformance suite (`tests/it/store_conformance.rs`) holds them to it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::envelope::{NewEvent, RecordedEvent};

/// What the writer believes the stream's version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the version.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must hold exactly this many events.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` (0 = no stream) satisfies this expectation.
    pub fn admits(self, actual: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => actual == 0,
            Self::Exact(n) => actual == n,
        }
    }
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(n) => write!(f, "version {n}"),
        }
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOutcome {
    /// Global position of the first appended event (0 when nothing was appended).
    pub first_position: u64,
    /// Global position of the last appended event (0 when nothing was appended).
    pub last_position: u64,
    /// The stream's version after the append: pass it as `Exact` to append next.
    pub stream_version: u64,
}

/// Reading direction within a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Oldest first, from the given version upwards.
    Forward,
    /// Newest first, from the given version downwards.
    Backward,
}

/// Errors of an event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream's version did not match the expectation; nothing was appended.
    #[error("stream `{stream}` is at version {actual}, expected {expected}")]
    WrongExpectedVersion {
        /// The stream.
        stream: String,
        /// What the writer expected.
        expected: ExpectedVersion,
        /// The version the stream actually has (0 = no stream).
        actual: u64,
    },
    /// Some, but not all, of the batch's event ids are already stored, or they are stored in
    /// another stream or order: the batch is neither new nor a true retry.
    #[error(
        "event id {event_id} is already stored elsewhere; the batch is not a retry of a stored one"
    )]
    IdempotencyMismatch {
        /// The first clashing id.
        event_id: uuid::Uuid,
    },
    /// A batch with no events, or with an event id twice.
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// A reader found a hole or a step back in the global log.
    #[error("gap in the event log: expected position {expected}, found {found}")]
    Gap {
        /// The position that should have come next.
        expected: u64,
        /// The position that came.
        found: u64,
    },
    /// A stored row could not be decoded.
    #[error("corrupt event at position {position}: {reason}")]
    Corrupt {
        /// Its global position.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// The writer appends for a camera whose lease its node no longer holds with the token
    /// it started with (another node took the camera, or the lease expired while the node was
    /// stopped or cut off); nothing was appended.
    #[error("node `{node}` no longer holds the lease of camera `{camera}` (token {token})")]
    Fenced {
        /// The camera.
        camera: String,
        /// The node that tried to write.
        node: String,
        /// The fencing token it wrote with.
        token: u64,
    },
    /// The backend failed (connection lost, disk full, …).
    #[error("event store backend: {0}")]
    Backend(String),
}

/// A live subscription to `$all`: contiguous, non-empty batches in position order, catch-up
/// first and then live, forever (until dropped or an error).
pub type EventSubscription = BoxStream<'static, Result<Vec<RecordedEvent>, StoreError>>;

/// An append-only log of streams with a global order.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if its version admits `expected`, all or nothing.
    ///
    /// Re-appending a batch whose event ids are all stored, in that stream and order, returns
    /// their original positions and appends nothing, whatever `expected` says.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError>;

    /// Reads up to `limit` events of one stream starting at version `from` (inclusive),
    /// in `direction`. `Backward` from `u64::MAX` reads the newest first.
    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
        direction: Direction,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `limit` events of `$all` with position greater than `after`, in order.
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `limit` events of `$all` after `after` whose `recorded_at` lies in
    /// `[from, to)` (either bound optional), in position order.
    async fn read_all_recorded(
        &self,
        after: u64,
        limit: usize,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The position of the newest committed event (0 when the log is empty).
    async fn head_position(&self) -> Result<u64, StoreError>;

    /// The current version of a stream (0 when it does not exist).
    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError>;

    /// Subscribes to `$all` after `after`: every event exactly once, in position order.
    fn subscribe_all(&self, after: u64) -> EventSubscription;
}
