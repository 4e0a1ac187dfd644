//! The aggregates: the consistency boundaries of the write side, each pure and synchronous
//! (`decide(&state, command) -> events`, `evolve(state, event) -> state`), with its commands
//! and refusals. One file per aggregate; the [`crate::handler::CommandHandler`] runs them
//! against the event store.

pub mod action;
pub mod alert;
pub mod apikey;
pub mod calibration;
pub mod camera;
pub mod camera_status;
pub mod incident;
pub mod subject;

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

/// Given/when/then for the aggregates' tests: the state a stream's events fold into, and what a
/// command decides on it.
#[cfg(test)]
pub(crate) mod testing {
    use chrono::Utc;

    use super::Aggregate;

    /// The state after `events` (given).
    pub(crate) fn given<A: Aggregate>(events: &[A::Event]) -> A::State {
        events
            .iter()
            .fold(A::State::default(), |s, e| A::evolve(s, e, Utc::now()))
    }

    /// What `command` decides after `events` (when; the result is the then).
    pub(crate) fn when<A: Aggregate>(
        events: &[A::Event],
        command: A::Command,
    ) -> Result<Vec<A::Event>, A::Error> {
        A::decide(&given::<A>(events), command)
    }
}
