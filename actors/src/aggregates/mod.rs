//! The aggregate contract.

use chrono::{DateTime, Utc};
use vigil_schemas::DomainEvent;

/// A consistency boundary: one stream, its state folded from its events, and the rules that
/// decide which new events a command produces.
pub trait Aggregate {
    /// State folded from the stream's events. `Default` is the state of an empty stream.
    type State: Default + Clone + Send + Sync;
    /// What callers ask for.
    type Command: Clone + Send + Sync;
    /// What happened.
    type Event: DomainEvent + Clone + Send + Sync;
    /// Why a command was refused.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The stream holding the aggregate with this id.
    fn stream(id: &str) -> String;

    /// Decides the events a command produces from the current state. Pure.
    fn decide(state: &Self::State, command: Self::Command)
    -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one event, which happened at `at`, into the state. Pure and total: stored events
    /// are facts, so evolve never fails.
    fn evolve(state: Self::State, event: &Self::Event, at: DateTime<Utc>) -> Self::State;
}
