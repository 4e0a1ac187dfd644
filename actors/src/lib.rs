//! Vigil's write side.
//!
//! Aggregates are pure and synchronous: `decide(&state, command) -> events` and
//! `evolve(state, event) -> state`, with no I/O. The [`handler::CommandHandler`] runs them
//! against an [`EventStore`](vigil_schemas::EventStore): load the stream, decide, append with the
//! expected version, and on a conflict decide again from fresh state.
//!
//! Camera actors, the inference pool and the incident manager (ractor) join this crate with the
//! camera-ingest issue; they will send commands through the same handler.
#![deny(missing_docs)]

pub mod aggregate;
pub mod apikey;
pub mod camera;
pub mod handler;

pub use aggregate::Aggregate;
pub use handler::{CommandError, CommandHandler, Executed};
