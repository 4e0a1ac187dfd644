//! The use cases: what an operator, a device or the dispatcher asks of a node, between the
//! transports (the HTTP API, the dispatcher) and the domain (`vigil-actors` aggregates and
//! actors, `vigil-projections` read models).
//!
//! A use case takes domain inputs (ids, [`EventMeta`](vigil_schemas::EventMeta), decoded
//! values) and answers with domain results or a [`ServiceError`]. It knows nothing of HTTP: the
//! API parses requests into these inputs, calls the use case, and maps results and errors onto
//! its DTOs and its one error shape.
//!
//! | module | use cases |
//! | --- | --- |
//! | [`subjects`] | find the one face in each uploaded picture, store face crops, enrol, erase |
//! | [`incidents`] | retention (delete old incidents and their media), reanalysis of evidence |
//! | [`search`] | search by face: identify among enrolled subjects, then their appearances |
//! | [`ingest`] | hand a pushed frame to its camera's actor, waiting while it starts |
//! | [`nodes`] | which node runs which camera: the nodes sharing the database, their leases |
//! | [`actions`] | which targets an action goes to, request one, open or extend an outside alert's incident |
//! | [`visibility`] | read-your-writes: wait until the read models show a write |

pub mod actions;
pub mod clips;
pub mod incidents;
pub mod ingest;
pub mod nodes;
pub mod search;
pub mod subjects;
pub mod visibility;

use serde_json::{Value, json};
use vigil_actors::CommandError;
use vigil_actors::pool::PoolError;
use vigil_projections::QueryError;
use vigil_schemas::StoreError;

/// How a use case refuses: what the caller should understand, whatever the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Something named does not exist, or the caller may not see it.
    NotFound,
    /// The current state does not allow it (a closed incident, a taken id, contention).
    Conflict,
    /// The input is well formed but cannot be used (a picture without exactly one face).
    Unprocessable,
    /// The caller named a version that is not the current one.
    VersionMismatch,
    /// It cannot be done now; retrying later may work (models busy, a read model lagging).
    Unavailable,
    /// What it must store does not fit: the media folder is full.
    StorageFull,
}

/// Why a use case did not do what it was asked.
#[derive(Debug)]
pub enum ServiceError {
    /// A field of the input is not acceptable.
    Invalid {
        /// The field, as the caller named it (`files[1]`, `evidence`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Refused, with a stable code (`SUBJECT_NOT_FOUND`, `FACE_COUNT`), a sentence for people
    /// and structured details for programs.
    Refused {
        /// How.
        refusal: Refusal,
        /// Stable code.
        code: &'static str,
        /// For people.
        message: String,
        /// For programs (`{}` when there is nothing to add).
        details: Value,
    },
    /// A read model could not be queried.
    Query(QueryError),
    /// The event store failed.
    Store(StoreError),
    /// A dependency is down for now (a database, a read model that does not catch up).
    Unavailable(String),
    /// A bug or a broken invariant; the cause is for the log, not for the caller.
    Internal(String),
}

impl ServiceError {
    /// A field that is not acceptable.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A refusal with its code, message and details.
    pub fn refused(
        refusal: Refusal,
        code: &'static str,
        message: impl Into<String>,
        details: Value,
    ) -> Self {
        Self::Refused {
            refusal,
            code,
            message: message.into(),
            details,
        }
    }

    /// Something named that does not exist (or may not be seen).
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::refused(Refusal::NotFound, code, message, json!({}))
    }

    /// A bug or a broken invariant.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    /// A dependency that is down for now.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        Self::Unavailable(cause.to_string())
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid { field, reason } => write!(f, "invalid `{field}`: {reason}"),
            Self::Refused { code, message, .. } => write!(f, "{code}: {message}"),
            Self::Query(e) => write!(f, "read model: {e}"),
            Self::Store(e) => write!(f, "event store: {e}"),
            Self::Unavailable(cause) => write!(f, "unavailable: {cause}"),
            Self::Internal(cause) => write!(f, "internal: {cause}"),
        }
    }
}

impl std::error::Error for ServiceError {}

impl From<QueryError> for ServiceError {
    fn from(e: QueryError) -> Self {
        Self::Query(e)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Maps a command's failure: `domain` handles the aggregate's own refusals; version
/// mismatches, contention and store failures are the same for every aggregate. `what` names
/// the aggregate in messages ("camera", "key"). Generic over the result so that a transport
/// can map the aggregate's refusals straight onto its own errors.
pub fn command_error<E: std::error::Error + 'static, T: From<ServiceError>>(
    err: CommandError<E>,
    what: &str,
    domain: impl FnOnce(E) -> T,
) -> T {
    let err = match err {
        CommandError::Domain(e) => return domain(e),
        CommandError::VersionMismatch { expected, actual } => ServiceError::refused(
            Refusal::VersionMismatch,
            "VERSION_MISMATCH",
            format!("If-Match names version {expected}, the {what} is at version {actual}"),
            json!({"expected_version": expected, "current_version": actual}),
        ),
        CommandError::TooMuchContention(n) => ServiceError::refused(
            Refusal::Conflict,
            "WRITE_CONFLICT",
            format!("concurrent writers won {n} times in a row; retry"),
            json!({}),
        ),
        CommandError::Store(e) => ServiceError::Store(e),
        CommandError::Decode(e) => ServiceError::internal(e),
    };
    err.into()
}

/// A picture the inference pool did not analyse: `INFERENCE_BUSY` (queue full or stopped) or
/// `MODELS_UNAVAILABLE`.
pub fn pool_error(e: PoolError) -> ServiceError {
    match e {
        PoolError::Busy(_) | PoolError::Stopped => ServiceError::refused(
            Refusal::Unavailable,
            "INFERENCE_BUSY",
            e.to_string(),
            json!({}),
        ),
        PoolError::Models(reason) => ServiceError::refused(
            Refusal::Unavailable,
            "MODELS_UNAVAILABLE",
            format!("the models cannot run: {reason}"),
            json!({}),
        ),
    }
}
