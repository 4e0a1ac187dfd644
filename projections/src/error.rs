//! The errors of read-model queries, shared by every read model of the crate.

/// A cursor that is not one this API handed out.
#[derive(Debug, thiserror::Error)]
#[error("cursor is not valid")]
pub struct InvalidCursor;

/// Errors of camera queries.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Bad cursor.
    #[error(transparent)]
    Cursor(#[from] InvalidCursor),
    /// Database failure.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A stored row does not decode.
    #[error("corrupt read-model row: {0}")]
    Corrupt(String),
}
