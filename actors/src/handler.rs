//! Runs commands against aggregates stored in an event store.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use vigil_schemas::{
    DomainEvent, EventDecodeError, EventMeta, EventStore, ExpectedVersion, StoreError,
};

use crate::aggregates::Aggregate;

/// How many times a command is decided again after losing an append race.
const MAX_ATTEMPTS: usize = 5;
/// Page size when loading a stream.
const LOAD_PAGE: usize = 500;

/// Why a command did not produce its events.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Domain(E),
    /// The caller asked for a version (HTTP `If-Match`) that is not the current one.
    #[error("expected version {expected}, the aggregate is at version {actual}")]
    VersionMismatch {
        /// The version the caller asked for.
        expected: u64,
        /// The current version.
        actual: u64,
    },
    /// Writers kept racing this one; every attempt lost.
    #[error("gave up after {0} conflicting attempts")]
    TooMuchContention(usize),
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(#[from] EventDecodeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of a command.
#[derive(Debug, Clone)]
pub struct Executed<S> {
    /// The aggregate's state after the command.
    pub state: S,
    /// The stream's version after the command.
    pub version: u64,
    /// Global position of the last event appended, `None` when the command changed nothing.
    pub position: Option<u64>,
}

/// Loads aggregates, decides, appends.
#[derive(Clone)]
pub struct CommandHandler {
    store: Arc<dyn EventStore>,
}

impl CommandHandler {
    /// A handler over `store`.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { store }
    }

    /// The store this handler writes to.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Folds the aggregate's stream into its state; returns it with the stream's version.
    pub async fn load<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<(A::State, u64), CommandError<A::Error>> {
        let stream = A::stream(id);
        let mut state = A::State::default();
        let mut version = 0;
        loop {
            let page = self
                .store
                .read_stream(
                    &stream,
                    version + 1,
                    LOAD_PAGE,
                    vigil_schemas::Direction::Forward,
                )
                .await?;
            let done = page.len() < LOAD_PAGE;
            for recorded in page {
                let event = A::Event::decode(
                    &recorded.event_type,
                    recorded.schema_version,
                    &recorded.payload,
                )?;
                state = A::evolve(state, &event, recorded.occurred_at);
                version = recorded.stream_version;
            }
            if done {
                return Ok((state, version));
            }
        }
    }

    /// Runs `command` on aggregate `id`.
    ///
    /// With `if_version`, the command runs only if the aggregate is at exactly that version
    /// and is not retried on a conflict ([`CommandError::VersionMismatch`]). Without it, a lost
    /// append race decides again from fresh state, up to a few times.
    pub async fn execute<A: Aggregate>(
        &self,
        id: &str,
        command: A::Command,
        meta: &EventMeta,
        if_version: Option<u64>,
    ) -> Result<Executed<A::State>, CommandError<A::Error>> {
        self.execute_at::<A>(id, command, meta, if_version, None)
            .await
    }

    /// [`execute`](Self::execute), with the events' `occurred_at` given: the time the fact
    /// happened in the world when it is not now (a camera's finding happened at its frame's
    /// capture time). `None`: now.
    pub async fn execute_at<A: Aggregate>(
        &self,
        id: &str,
        command: A::Command,
        meta: &EventMeta,
        if_version: Option<u64>,
        occurred_at: Option<DateTime<Utc>>,
    ) -> Result<Executed<A::State>, CommandError<A::Error>> {
        let stream = A::stream(id);
        for _ in 0..MAX_ATTEMPTS {
            let (state, version) = self.load::<A>(id).await?;
            // Decide first: a command that is invalid in itself is refused as such, whatever
            // version the caller expected.
            let events = A::decide(&state, command.clone()).map_err(CommandError::Domain)?;
            if let Some(expected) = if_version
                && expected != version
            {
                return Err(CommandError::VersionMismatch {
                    expected,
                    actual: version,
                });
            }
            if events.is_empty() {
                return Ok(Executed {
                    state,
                    version,
                    position: None,
                });
            }
            let now = occurred_at.unwrap_or_else(Utc::now);
            let new_events: Vec<_> = events.iter().map(|e| e.to_new_event(now, meta)).collect();
            match self
                .store
                .append(&stream, ExpectedVersion::Exact(version), new_events)
                .await
            {
                Ok(outcome) => {
                    let state = events
                        .iter()
                        .fold(state, |state, event| A::evolve(state, event, now));
                    return Ok(Executed {
                        state,
                        version: outcome.stream_version,
                        position: Some(outcome.last_position),
                    });
                }
                Err(StoreError::WrongExpectedVersion { actual, .. }) => {
                    if let Some(expected) = if_version {
                        return Err(CommandError::VersionMismatch { expected, actual });
                    }
                    tracing::debug!(%stream, actual, "append lost a race; deciding again");
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(CommandError::TooMuchContention(MAX_ATTEMPTS))
    }
}
