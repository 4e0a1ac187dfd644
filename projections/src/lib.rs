//! Vigil's read side.
//!
//! Each projection reads `$all` from its own checkpoint and writes its rows and its new
//! checkpoint in one transaction ([`runner`]), so a crash never applies an event twice or
//! skips one. Any projection can be emptied and replayed from position 0
//! ([`runner::ProjectionRunner::rebuild`]); [`digest`] proves the rebuilt tables equal the
//! live ones. Query functions for the API live beside the projection that owns the table
//! ([`cameras`], [`api_keys`], [`incidents`], [`actions`], [`calibration`],
//! [`subjects`]).
//!
//! Queries share the toolkit of [`sql`] and the errors of [`error`]. All SQL here is portable between SQLite and PostgreSQL and runs through sqlx's `Any`
//! driver, except incident search (FTS5 on SQLite, `to_tsvector` on PostgreSQL). The
//! [`vectors`] projection also writes Lance tables (enrolled faces, appearances) outside the
//! database, through the runner's `apply_outside` hook, idempotently.
#![deny(missing_docs)]

pub mod actions;
pub mod api_keys;
pub mod calibration;
pub mod cameras;
pub mod checkpoint;
pub mod clips;
pub mod digest;
pub mod error;
pub mod incidents;
pub mod leader;
pub mod runner;
pub(crate) mod sql;
pub mod subjects;
#[cfg(test)]
pub(crate) mod testing;
pub mod vectors;

pub use error::{InvalidCursor, QueryError};
pub use runner::{Projection, ProjectionError, ProjectionRunner, ProjectionStatus};

/// Every projection of this build, in the order nodes start them; the `vectors` projection
/// writes into `vectors`.
pub fn all(vectors: std::sync::Arc<vectors::VectorStore>) -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(cameras::CameraProjection),
        std::sync::Arc::new(api_keys::ApiKeyProjection),
        std::sync::Arc::new(incidents::IncidentProjection),
        std::sync::Arc::new(actions::ActionProjection),
        std::sync::Arc::new(calibration::CalibrationProjection),
        std::sync::Arc::new(subjects::SubjectProjection),
        std::sync::Arc::new(clips::ClipProjection),
        std::sync::Arc::new(vectors::VectorProjection::new(vectors)),
    ]
}

/// Which way a listing runs over its sort key (each listing documents its key and default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Ascending: oldest (or lowest id) first.
    Asc,
    /// Descending: newest (or highest id) first.
    Desc,
}

impl Order {
    /// The SQL keyword.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Asc => "ASC",
            Self::Desc => "DESC",
        }
    }

    /// The comparison that keeps what comes after a cursor's key in this order.
    pub fn after(self) -> &'static str {
        match self {
            Self::Asc => ">",
            Self::Desc => "<",
        }
    }
}

/// Timestamps are stored as RFC 3339 text with microseconds and `Z`, which sorts correctly.
pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
