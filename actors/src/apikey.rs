//! The API key aggregate (stream `apikey-{id}`). Today it issues the bootstrap admin key;
//! scoped keys, revocation and rate limits arrive with the access issue.

use chrono::{DateTime, Utc};
use vigil_schemas::ApiKeyEvent;
use vigil_schemas::events::{ApiKeyIssued, apikey_stream};

use crate::aggregate::Aggregate;

/// State of one key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiKeyState {
    /// The issued key, if any.
    pub issued: Option<ApiKeyIssued>,
}

/// Commands on a key.
#[derive(Debug, Clone)]
pub enum ApiKeyCommand {
    /// Issue the key with this (already hashed) secret.
    Issue(ApiKeyIssued),
}

/// Why a key command was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApiKeyError {
    /// The key already exists.
    #[error("API key `{0}` already exists")]
    AlreadyIssued(String),
}

/// Marker type implementing [`Aggregate`] for API keys.
pub struct ApiKey;

impl Aggregate for ApiKey {
    type State = ApiKeyState;
    type Command = ApiKeyCommand;
    type Event = ApiKeyEvent;
    type Error = ApiKeyError;

    fn stream(id: &str) -> String {
        apikey_stream(id)
    }

    fn decide(
        state: &ApiKeyState,
        command: ApiKeyCommand,
    ) -> Result<Vec<ApiKeyEvent>, ApiKeyError> {
        match command {
            ApiKeyCommand::Issue(issued) => match &state.issued {
                Some(existing) => Err(ApiKeyError::AlreadyIssued(existing.key_id.clone())),
                None => Ok(vec![ApiKeyEvent::Issued(issued)]),
            },
        }
    }

    fn evolve(mut state: ApiKeyState, event: &ApiKeyEvent, _at: DateTime<Utc>) -> ApiKeyState {
        match event {
            ApiKeyEvent::Issued(issued) => state.issued = Some(issued.clone()),
        }
        state
    }
}
